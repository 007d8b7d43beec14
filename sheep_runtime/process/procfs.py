"""Process identity from /proc; pidfds to signal and await a process without races.

A pid alone is not an identity: it is reused after the process is reaped. A process is
named here by (pid, start time), the start time being field 22 of /proc/PID/stat
(clock ticks since boot), which never changes for the life of a process.
"""

from __future__ import annotations

import asyncio
import os
import signal


def _stat_fields(pid: int) -> list[bytes] | None:
    """Fields 3.. of /proc/PID/stat (state first), or None if there is no such process."""
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:  # ENOENT, or ESRCH while the process is being torn down
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    return data[data.rindex(b")") + 2 :].split()


def process_start_time(pid: int) -> int | None:
    """Start time of `pid` (field 22 of /proc/PID/stat), or None if it does not exist."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields is not None else None


def is_alive(pid: int, start_time: int) -> bool:
    """True if `pid` is the process that started at `start_time` and has not exited.

    A zombie (exited, not yet reaped) counts as dead.
    """
    fields = _stat_fields(pid)
    return (
        fields is not None
        and start_time != 0
        and int(fields[19]) == start_time
        and fields[0] not in (b"Z", b"X")
    )


def parent(pid: int) -> int | None:
    """The parent pid of `pid` (field 4 of /proc/PID/stat), or None if it does not exist."""
    fields = _stat_fields(pid)
    return int(fields[1]) if fields is not None else None


def comm(pid: int) -> str:
    """The command name of `pid` (/proc/PID/comm, at most 15 bytes; empty if gone)."""
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read().rstrip(b"\n").decode(errors="surrogateescape")
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    """Pids of the children of `pid`'s main thread (empty if it does not exist)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def cmdline(pid: int) -> list[str]:
    """argv of `pid` (empty if it does not exist or is a zombie)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode(errors="surrogateescape") for a in raw.split(b"\0")[:-1]]


def open_pidfd(pid: int, start_time: int) -> int | None:
    """A pidfd for the process (pid, start_time), or None if that process is gone.

    The start time is checked after the pidfd is open, so the fd cannot refer to a
    process that reused the pid. A zombie still gets a pidfd (it polls readable at once).
    """
    if pid <= 0 or start_time == 0:
        return None
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    if process_start_time(pid) != start_time:
        os.close(fd)
        return None
    return fd


def send_signal(pid: int, start_time: int, sig: int) -> bool:
    """Send `sig` to (pid, start_time) if it still exists; True if it was sent."""
    fd = open_pidfd(pid, start_time)
    if fd is None:
        return False
    try:
        signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:  # exited (and reaped) since the pidfd was opened
        return False
    finally:
        os.close(fd)
    return True


async def wait_readable(fd: int) -> None:
    """Wait until `fd` is readable (a pidfd is readable once its process has exited)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
