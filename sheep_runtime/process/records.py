"""Files in a container dir: the exit record, pid files and the log (with rotation).

`exit` is "CODE UNIX_NS\\n" (CODE = exit code, 128+N if killed by signal N), written
once by the supervisor; `shim.pid` and `init.pid` (the command's host pid, by runc)
name the processes; `log` gets the container's stdout and stderr, O_APPEND.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sheep_runtime.errors import KernelError
from sheep_runtime.model import ExitStatus

EXIT_CODE_UNKNOWN = -1
"""Exit code recorded when the supervisor died (was killed) before recording one."""
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_KEEP = 3


class CorruptExitRecord(KernelError):
    """The exit record exists but does not parse: the container's outcome is unknown."""


def read_exit_status(container_dir: Path) -> ExitStatus | None:
    """The recorded exit status, or None if the container has not (yet) exited."""
    try:
        text = (container_dir / "exit").read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise CorruptExitRecord(f"cannot read exit status in {container_dir}: {e}") from e
    try:
        code, finished = text.split()
        if not text.endswith("\n"):
            raise ValueError("no newline")
        return ExitStatus(int(code), int(finished))
    except ValueError as e:
        raise CorruptExitRecord(f"corrupt exit status in {container_dir}: {text!r}") from e


def write_exit_status(container_dir: Path, status: ExitStatus) -> None:
    """Record `status` durably (tmp file, fsync, rename, fsync of the dir)."""
    tmp = container_dir / "exit.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(f"{status.code} {status.finished_at_ns}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, container_dir / "exit")
        dir_fd = os.open(container_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        raise KernelError(f"cannot record exit status in {container_dir}: {e}") from e


def read_pid_file(path: Path) -> int | None:
    """The pid in `path`, or None if it is missing or incomplete."""
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def log_tail(container_dir: Path, limit: int = 1024) -> str:
    """The end of the container's log on one line (for error messages)."""
    try:
        with open(container_dir / "log", "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - limit))
            data = f.read()
    except OSError:
        return ""
    return data.decode(errors="replace").strip().replace("\n", "; ")


def rotate_log(container_dir: Path, *, max_bytes: int = LOG_MAX_BYTES,
               keep: int = LOG_KEEP) -> bool:
    """If `<dir>/log` is over `max_bytes`, shift log.1..log.KEEP (the oldest dropped),
    copy the log to log.1 and truncate it; True if it rotated. Blocking: run it in a
    thread. Copy-then-truncate because the container keeps its fd: it writes with
    O_APPEND, so it goes on at the new end; what it writes between the copy and the
    truncation is lost."""
    log = container_dir / "log"
    try:
        if log.stat().st_size <= max_bytes:
            return False
        for n in range(keep - 1, 0, -1):
            older = container_dir / f"log.{n}"
            if older.exists():
                os.replace(older, container_dir / f"log.{n + 1}")
        if keep > 0:
            shutil.copyfile(log, container_dir / "log.1")
        os.truncate(log, 0)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise KernelError(f"cannot rotate the log in {container_dir}: {e}") from e
    return True
