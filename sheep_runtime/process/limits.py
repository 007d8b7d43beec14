"""What the kernel's cgroups can limit here, probed once."""

from __future__ import annotations

import functools
from pathlib import Path

_MEMSW = "memory.memsw.limit_in_bytes"


@functools.cache
def swap_limit_supported() -> bool:
    """False on a cgroup v1 memory hierarchy without swap accounting (no memsw files,
    e.g. booted with swapaccount=0), where runc fails to write a swap limit; True
    otherwise (on cgroup v2 runc skips a swap limit the kernel cannot take)."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                if fields[sep + 1] == "cgroup" and "memory" in fields[sep + 3].split(","):
                    return (Path(fields[4]) / _MEMSW).exists()
    except (OSError, ValueError, IndexError):
        pass
    return True
