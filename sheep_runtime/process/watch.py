"""Watch, stop and re-adopt containers started by `spawn.start`.

Nothing here needs the supervisor to be a child of this process: waiting uses a pidfd
on the event loop, so it works the same for supervisors adopted after a daemon restart.
The command is runc's child, and runc the supervisor's: (pid, start time) plus that
parentage identify it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path

from sheep_runtime.errors import KernelError
from sheep_runtime.model import ExitStatus, ProcessHandle
from sheep_runtime.process import procfs
from sheep_runtime.process.bundle import ID_ANNOTATION, SHIM_PATH
from sheep_runtime.process.procfs import is_alive, process_start_time
from sheep_runtime.process.records import (
    EXIT_CODE_UNKNOWN,
    read_exit_status,
    read_pid_file,
    write_exit_status,
)
from sheep_runtime.process.spawn import Runc

KILL_TIMEOUT = 5.0


async def wait_shim(handle: ProcessHandle) -> None:
    """Return when the supervisor has exited (no polling: its pidfd becomes readable)."""
    fd = procfs.open_pidfd(handle.shim_pid, handle.shim_start_time)
    if fd is None:
        return
    try:
        await procfs.wait_readable(fd)
        # Reap it if it is our child (e.g. if the daemon is a child subreaper).
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG)
    finally:
        os.close(fd)


def _bundle_ids(container_dir: Path) -> tuple[str, str] | None:
    """(container id, cgroups path) from the bundle's config.json."""
    try:
        config = json.loads((container_dir / "config.json").read_text())
        return str(config["annotations"][ID_ANNOTATION]), str(config["linux"]["cgroupsPath"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


async def wait_exit(handle: ProcessHandle, *, runc: Runc) -> ExitStatus:
    """Wait for the container to exit and return its exit status.

    If the supervisor was killed before recording a status, the command is killed and
    runc's container deleted (nothing could report its exit any more), and
    EXIT_CODE_UNKNOWN is recorded and returned.
    """
    await wait_shim(handle)
    status = read_exit_status(handle.container_dir)
    if status is None:
        kill(handle)
        if (ids := _bundle_ids(handle.container_dir)) is not None:
            await runc.delete(ids[0], cgroups_path=ids[1])
        status = ExitStatus(EXIT_CODE_UNKNOWN, time.time_ns())
        write_exit_status(handle.container_dir, status)
    return status


def find_command(shim_pid: int, container_dir: Path) -> tuple[int, int]:
    """(pid, start time) of the command from `<dir>/init.pid`, if that process is the
    child of a child (runc) of the supervisor; (0, 0) if there is none."""
    pid = read_pid_file(container_dir / "init.pid")
    if pid is None or procfs.parent(pid) not in procfs.children(shim_pid):
        return 0, 0
    start = process_start_time(pid)
    return (pid, start) if start else (0, 0)


def _command(handle: ProcessHandle) -> tuple[int, int]:
    """(pid, start time) of the command, looked up again if the handle has none."""
    if handle.pid:
        return handle.pid, handle.pid_start_time
    if is_alive(handle.shim_pid, handle.shim_start_time):
        return find_command(handle.shim_pid, handle.container_dir)
    return 0, 0


def kill(handle: ProcessHandle) -> None:
    """SIGKILL the command now (no-op if it is gone); the supervisor then records 137."""
    pid, start = _command(handle)
    procfs.send_signal(pid, start, signal.SIGKILL)


async def stop(handle: ProcessHandle, *, timeout: float,
               signal_number: int = signal.SIGTERM) -> None:
    """Send `signal_number` to the command, SIGKILL it after `timeout` s; return once
    the supervisor exited (runc's container deleted, exit recorded).

    The command is PID 1 of its namespace: the kernel drops SIGTERM for it unless it
    installed a handler, so for most commands the SIGKILL is what ends it (exit 137).
    A no-op if the container already exited.
    """
    pid, start = _command(handle)
    procfs.send_signal(pid, start, signal_number)
    try:
        await asyncio.wait_for(wait_shim(handle), timeout)
        return
    except TimeoutError:
        pass
    kill(handle)
    try:
        await asyncio.wait_for(wait_shim(handle), KILL_TIMEOUT)
    except TimeoutError as e:
        raise KernelError(f"container process {pid} survived SIGKILL for {KILL_TIMEOUT}s") from e


def _is_shim_of(pid: int, container_id: str) -> bool:
    argv = procfs.cmdline(pid)
    return (len(argv) >= 7 and Path(argv[1]).name == SHIM_PATH.name  # 7: before the logger
            and argv[2] == "--supervise" and argv[3] == container_id)


def adopt(container_id: str, container_dir: Path, *, shim_pid: int | None,
          shim_start_time: int | None) -> ProcessHandle | None:
    """Re-attach to a container after a daemon restart; None if its supervisor is gone.

    With a known start time the supervisor is identified by (pid, start time); without
    one, the pid comes from `shim_pid` or `<dir>/shim.pid` and must be the supervisor
    of `container_id` (checked on its command line).
    """
    if shim_pid is not None and shim_start_time is not None:
        if not is_alive(shim_pid, shim_start_time):
            return None
    else:
        shim_pid = shim_pid if shim_pid is not None else read_pid_file(
            container_dir / "shim.pid")
        if shim_pid is None:
            return None
        shim_start_time = process_start_time(shim_pid)
        if (shim_start_time is None or not is_alive(shim_pid, shim_start_time)
                or not _is_shim_of(shim_pid, container_id)):
            return None
    pid, pid_start = find_command(shim_pid, container_dir)
    return ProcessHandle(shim_pid, shim_start_time, pid, pid_start, container_dir)
