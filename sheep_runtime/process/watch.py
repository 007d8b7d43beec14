"""Watch, stop and re-adopt container processes started by `spawn.start`.

Nothing here needs the shim to be a child of this process: waiting uses a pidfd on the
event loop, so it works the same for shims adopted after a daemon restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from sheep_runtime.errors import KernelError
from sheep_runtime.process import procfs
from sheep_runtime.process.procfs import is_alive, process_start_time

KILL_TIMEOUT = 5.0
EXIT_CODE_UNKNOWN = -1
"""Exit code recorded when the shim died (was killed) before recording one."""


@dataclass(frozen=True)
class ProcessHandle:
    """A running container: its shim and its command, each as (pid, start time).

    `pid` is the command's host pid (PID 1 of its pid namespace); 0 if the command had
    already exited when it was looked for.
    """

    shim_pid: int
    shim_start_time: int
    pid: int
    pid_start_time: int
    container_dir: Path


@dataclass(frozen=True)
class ExitStatus:
    """How a container ended: exit code (128+N if killed by signal N), and when.

    As PID 1 of its namespace the command dies by a signal only from SIGKILL or a
    fault (SIGSEGV, SIGBUS...); other signals need a handler, whose exit code counts.
    """

    code: int
    finished_at_ns: int


def read_exit_status(container_dir: Path) -> ExitStatus | None:
    """The recorded exit status, or None if the container has not (yet) exited."""
    try:
        text = (container_dir / "exit").read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise KernelError(f"cannot read exit status in {container_dir}: {e}") from e
    if not text.endswith("\n"):  # being written by the shim (it writes it in one go)
        return None
    try:
        code, finished = text.split()
        return ExitStatus(int(code), int(finished))
    except ValueError as e:
        raise KernelError(f"corrupt exit status in {container_dir}: {text!r}") from e


def _write_exit_status(container_dir: Path, status: ExitStatus) -> None:
    tmp = container_dir / "exit.tmp"
    try:
        tmp.write_text(f"{status.code} {status.finished_at_ns}\n")
        os.replace(tmp, container_dir / "exit")
    except OSError as e:
        raise KernelError(f"cannot record exit status in {container_dir}: {e}") from e


async def _wait_shim(handle: ProcessHandle) -> None:
    """Return when the shim has exited (no polling: its pidfd becomes readable)."""
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


async def wait_exit(handle: ProcessHandle) -> ExitStatus:
    """Wait for the container to exit and return its exit status.

    Works for shims this process did not spawn (adopted after a restart). If the shim
    was killed before recording a status, the command is killed too (nothing could
    report its exit any more) and EXIT_CODE_UNKNOWN is recorded and returned.
    """
    await _wait_shim(handle)
    status = read_exit_status(handle.container_dir)
    if status is None:
        kill(handle)
        status = ExitStatus(EXIT_CODE_UNKNOWN, time.time_ns())
        _write_exit_status(handle.container_dir, status)
    return status


def _command(handle: ProcessHandle) -> tuple[int, int]:
    """(pid, start time) of the command, looked up again if the handle has none."""
    if handle.pid:
        return handle.pid, handle.pid_start_time
    if is_alive(handle.shim_pid, handle.shim_start_time):
        return _find_command(handle.shim_pid)
    return 0, 0


def _find_command(shim_pid: int) -> tuple[int, int]:
    for child in procfs.children(shim_pid):  # the command is the shim's only child
        start = process_start_time(child)
        if start:
            return child, start
    return 0, 0


def kill(handle: ProcessHandle) -> None:
    """SIGKILL the command now (no-op if it is gone); the shim then records 137."""
    pid, start = _command(handle)
    procfs.send_signal(pid, start, signal.SIGKILL)


async def stop(handle: ProcessHandle, *, timeout: float) -> None:
    """SIGTERM the command, SIGKILL it after `timeout` s; return once the shim exited.

    The command is PID 1 of its namespace: the kernel drops SIGTERM for it unless it
    installed a handler, so for most commands the SIGKILL is what ends it (exit 137).
    A no-op if the container already exited.
    """
    pid, start = _command(handle)
    procfs.send_signal(pid, start, signal.SIGTERM)
    try:
        await asyncio.wait_for(_wait_shim(handle), timeout)
        return
    except TimeoutError:
        pass
    kill(handle)
    try:
        await asyncio.wait_for(_wait_shim(handle), KILL_TIMEOUT)
    except TimeoutError as e:
        raise KernelError(f"container process {pid} survived SIGKILL for {KILL_TIMEOUT}s") from e


def _read_pid_file(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def _is_shim_of(pid: int, container_id: str) -> bool:
    argv = procfs.cmdline(pid)
    return (
        len(argv) > 8
        and Path(argv[1]).name == "shim.sh"
        and argv[2] == container_id
        and argv[6] == "--supervise"
    )


def adopt(
    container_id: str,
    container_dir: Path,
    *,
    shim_pid: int | None,
    shim_start_time: int | None,
) -> ProcessHandle | None:
    """Re-attach to a container after a daemon restart; None if its shim is gone.

    With a known shim start time the shim is identified by (pid, start time); without
    one, the pid comes from `shim_pid` or `<dir>/shim.pid` and must be a shim of
    `container_id` (checked on its command line).
    """
    if shim_pid is not None and shim_start_time is not None:
        if not is_alive(shim_pid, shim_start_time):
            return None
    else:
        shim_pid = shim_pid if shim_pid is not None else _read_pid_file(container_dir / "shim.pid")
        if shim_pid is None:
            return None
        shim_start_time = process_start_time(shim_pid)
        if (
            shim_start_time is None
            or not is_alive(shim_pid, shim_start_time)
            or not _is_shim_of(shim_pid, container_id)
        ):
            return None
    pid, pid_start = _find_command(shim_pid)
    return ProcessHandle(shim_pid, shim_start_time, pid, pid_start, container_dir)
