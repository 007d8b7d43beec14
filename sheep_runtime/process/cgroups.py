"""The cgroup dirs of a container, to sweep what runc could not delete.

runc removes a container's cgroups when it ends or on `runc delete`, but only once it
has saved the container's state: a runc killed while creating one (a start that timed
out) leaves cgroup dirs nobody knows of. runc makes a relative cgroupsPath relative to
its own cgroup in each hierarchy, which is the daemon's (runc is its grandchild).
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from pathlib import Path

from sheep_runtime.errors import KernelError

SWEEP_TIMEOUT = 2.0


def _mounts() -> list[tuple[Path, str, set[str]]]:
    """(mount point, root, controllers) of each cgroup hierarchy; controllers of a v1
    one are its super options (e.g. {"cpu"}, {"name=systemd"}), of cgroup2 empty."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, options = fields[sep + 1], fields[sep + 3]
            if fstype in ("cgroup", "cgroup2"):
                controllers = set() if fstype == "cgroup2" else set(options.split(","))
                found.append((Path(fields[4]), fields[3], controllers))
    return found


def container_dirs(relative: str) -> list[Path]:
    """The existing dirs `relative` (e.g. "sheep/ID") below this process's cgroup."""
    mounts = _mounts()
    dirs = []
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            wanted = set(names.split(",")) if names else set()
            for point, root, controllers in mounts:
                if (wanted <= controllers if wanted else not controllers):
                    inner = os.path.relpath(path, root) if path != root else ""
                    d = point / inner / relative
                    if d.is_dir():
                        dirs.append(d)
                    break
    return dirs


async def sweep(relative: str) -> None:
    """Remove the cgroups `relative` (deepest first), waiting up to SWEEP_TIMEOUT s for
    the processes in them to be gone (runc killed them); KernelError if they stay."""
    deadline = time.monotonic() + SWEEP_TIMEOUT
    for d in sorted(container_dirs(relative), key=lambda p: -len(p.parts)):
        while True:
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise KernelError(f"cannot remove cgroup {d}: {e}") from e
            await asyncio.sleep(0.02)
