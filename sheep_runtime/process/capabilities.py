"""Linux capability names and the sets a container can be given on this host."""

from __future__ import annotations

from collections.abc import Iterable

from sheep_runtime.errors import InvalidArgument, KernelError
from sheep_runtime.model import ALL_CAPABILITIES

NAMES = ALL_CAPABILITIES  # by number: bit N of a mask is NAMES[N]


def from_mask(mask: int) -> tuple[str, ...]:
    """The names of the capabilities set in a /proc/PID/status mask (e.g. CapBnd)."""
    return tuple(name for bit, name in enumerate(NAMES) if mask >> bit & 1)


def to_mask(names: Iterable[str]) -> int:
    """The /proc/PID/status mask of `names`."""
    return sum(1 << NAMES.index(n) for n in set(names))


def bounding_set(pid: int | str = "self") -> tuple[str, ...]:
    """The capabilities `pid` can still pass on (its CapBnd): a container run by a
    child of it can get no others (e.g. no CAP_SYS_RESOURCE where a sandbox dropped it)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return from_mask(int(line.split()[1], 16))
    raise KernelError(f"/proc/{pid}/status has no CapBnd line")


def resolve(requested: Iterable[str], *, privileged: bool, available: Iterable[str]
            ) -> tuple[str, ...]:
    """The capability set to grant: every available one if `privileged`, else exactly
    `requested` (each known and available here, else InvalidArgument), in kernel order."""
    available = set(available)
    if privileged:
        return tuple(n for n in NAMES if n in available)
    wanted = set(requested)
    for name in sorted(wanted):
        if name not in NAMES:
            raise InvalidArgument(f"unknown capability {name!r}", field="capabilities")
        if name not in available:
            raise InvalidArgument(f"capability {name} is not available on this host "
                                  "(not in the daemon's bounding set)", field="capabilities")
    return tuple(n for n in NAMES if n in wanted)
