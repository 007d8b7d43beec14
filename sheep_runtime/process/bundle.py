"""The OCI bundle (`config.json`) of a container: pure, from a `ProcessSpec`.

The container sees the host's root filesystem, recursively read-only (a `rro` rbind of
/ onto the bundle's empty `rootfs` dir: runc cannot pivot_root into "/" itself), with
its own /proc, a minimal /dev (runc's default devices), a read-only /sys of its netns,
a writable tmpfs /tmp, and its own /etc files (`etc_files`, read-only) over the host's.
Its network namespace is the pre-pinned one, the others are new. `hidden_paths` are
emptied of mounts and covered (maskedPaths) even when privileged; unless privileged
it also gets no new privileges, the default seccomp profile and Docker's masked and
read-only paths.

With `spec.rootfs` (an image's overlay, mounted by the daemon) that is the root,
writable, instead: no host root, no /tmp tmpfs, nothing of the host to hide.

`spec.resources` become cgroup limits (linux.resources; runc writes them for cgroup v1
or v2): memory with swap capped at the same (no swap beyond it), a CFS quota over a
100 ms period, a pids limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sheep_runtime.model import ProcessSpec, Resources

OCI_VERSION = "1.0.2"
ENV_PATH = "/usr/bin/env"
SHIM_PATH = Path(__file__).resolve().with_name("shim.sh")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ID_ANNOTATION = "io.sheep.container-id"
MAX_NOFILE = 1048576
CPU_PERIOD_US = 100_000

# Docker's defaults (moby oci/defaults.go).
DOCKER_MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)
DOCKER_READONLY_PATHS = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)

_MOUNTS: tuple[dict[str, Any], ...] = (
    {"destination": "/", "type": "bind", "source": "/", "options": ["rbind", "rro"]},
    {"destination": "/proc", "type": "proc", "source": "proc",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "nodev", "mode=1777"]},
)


def container_env(spec: ProcessSpec) -> list[str]:
    """`spec.env` as KEY=VALUE, with PATH and HOSTNAME added if absent."""
    env: dict[str, str] = {"PATH": DEFAULT_PATH, "HOSTNAME": spec.hostname}
    env.update(spec.env)
    return [f"{k}={v}" for k, v in env.items()]


def _unmount_hook(rootfs: Path, hidden: Sequence[Path]) -> dict[str, Any]:
    # The rbind of / copies every mount below a hidden path into the container's mount
    # namespace too: the netns pins in the run dir would then live on there (holding
    # each namespace alive after the daemon unpinned it, since the pins are private
    # mounts) and be reachable by unmounting the mask. A createContainer hook runs in
    # that mount namespace before pivot_root, with the host paths under rootfs.
    targets = [str(rootfs / p.relative_to("/")) for p in hidden]
    return {"path": "/bin/sh", "args": ["sh", str(SHIM_PATH), "--unmount-under", *targets],
            "env": [f"PATH={DEFAULT_PATH}"], "timeout": 10}


def _etc_mounts(spec: ProcessSpec) -> list[dict[str, Any]]:
    """The container's own /etc files (resolv.conf, hosts, hostname), read-only."""
    etc = spec.container_dir.absolute() / "etc"
    return [{"destination": f"/etc/{name}", "type": "bind", "source": str(etc / name),
             "options": ["bind", "ro", "nosuid", "nodev", "noexec"]}
            for name in spec.etc_files]


def resources(limits: Resources, *, swap_limit: bool = True) -> dict[str, Any]:
    """The OCI linux.resources limits of `limits` (0: not set). OCI's memory.swap is
    memory plus swap: the same as the limit means no swap. `swap_limit` False leaves it
    out, for a cgroup v1 kernel without swap accounting (runc would fail to write it;
    on v2 runc itself skips it when the kernel has no swap controller)."""
    out: dict[str, Any] = {}
    if limits.memory_bytes:
        out["memory"] = {"limit": limits.memory_bytes}
        if swap_limit:
            out["memory"]["swap"] = limits.memory_bytes
    if limits.cpus:
        out["cpu"] = {"quota": max(1000, round(limits.cpus * CPU_PERIOD_US)),
                      "period": CPU_PERIOD_US}
    if limits.pids_limit:
        out["pids"] = {"limit": limits.pids_limit}
    return out


def _mounts(spec: ProcessSpec) -> list[dict[str, Any]]:
    own = [m for m in _MOUNTS if m["destination"] not in ("/", "/tmp")]
    return [dict(m) for m in (own if spec.rootfs else _MOUNTS)] + _etc_mounts(spec)


def build_config(spec: ProcessSpec, *, capabilities: tuple[str, ...],
                 seccomp: Mapping[str, Any] | None, nofile: int, cgroup_parent: str,
                 swap_limit: bool = True) -> dict[str, Any]:
    """config.json for `spec`, granting exactly `capabilities` (bounding, effective,
    permitted; none inheritable or ambient), with `seccomp` (an OCI `linux.seccomp`
    object, None for none), RLIMIT_NOFILE `nofile` and cgroup `cgroup_parent/ID`
    limited by `spec.resources` (`swap_limit`: see `resources`)."""
    caps = list(capabilities)
    linux: dict[str, Any] = {
        "namespaces": [{"type": "pid"}, {"type": "network", "path": str(spec.netns_path)},
                       {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
        "cgroupsPath": f"{cgroup_parent}/{spec.container_id}",
        "resources": {"devices": [{"allow": spec.privileged, "access": "rwm"}],
                      **resources(spec.resources, swap_limit=swap_limit)},
        "maskedPaths": [] if spec.rootfs else [str(p) for p in spec.hidden_paths],
        "readonlyPaths": [],
    }
    if not spec.privileged:
        linux["maskedPaths"] += DOCKER_MASKED_PATHS
        linux["readonlyPaths"] += DOCKER_READONLY_PATHS
    if seccomp is not None:
        linux["seccomp"] = dict(seccomp)
    config: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            # env(1) as a step before the command: a command that cannot be run then
            # exits 127 (126 if not executable) as from a shell, instead of runc
            # failing the start with exit 1. An image need not have env(1).
            "args": list(spec.argv) if spec.rootfs else [ENV_PATH, "--", *spec.argv],
            "env": container_env(spec),
            "cwd": spec.cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps,
                             "inheritable": [], "ambient": []},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": not spec.privileged,
        },
        "root": ({"path": str(spec.rootfs.absolute()), "readonly": False} if spec.rootfs
                 else {"path": "rootfs", "readonly": True}),
        "hostname": spec.hostname,
        "mounts": _mounts(spec),
        "annotations": {ID_ANNOTATION: spec.container_id},
        "linux": linux,
    }
    # Copies below runc's own mounts (e.g. under /tmp) are shadowed by them: out of the
    # container's reach, and out of the hook's too.
    reachable = [p for p in spec.hidden_paths
                 if not any(p.is_relative_to(m["destination"]) for m in _MOUNTS[1:])]
    if reachable and spec.rootfs is None:
        rootfs = spec.container_dir.absolute() / "rootfs"
        config["hooks"] = {"createContainer": [_unmount_hook(rootfs, reachable)]}
    return config
