"""Files in a container dir: the exit record, pid files and the end of the log.

`exit` is "CODE UNIX_NS\\n" (CODE = exit code, 128+N if killed by signal N), written
once by the supervisor; `shim.pid` and `init.pid` (the command's host pid, by runc)
name the processes; `log` (and `log.1` ...) get the container's stdout and stderr as
records from its logger (see logger.py and logs.py), after any errors of the
supervisor itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from sheep_runtime.errors import KernelError
from sheep_runtime.model import ExitStatus
from sheep_runtime.process.logs import parse_record

EXIT_CODE_UNKNOWN = -1
"""Exit code recorded when the supervisor died (was killed) before recording one."""


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
    """The end of the container's log on one line (for error messages): the data of
    the last records (runc's errors are among them), and any lines of the supervisor."""
    try:
        with open(container_dir / "log", "rb") as f:
            start = max(0, f.seek(0, os.SEEK_END) - 4 * limit)
            f.seek(start)
            lines = f.read().split(b"\n")
    except OSError:
        return ""
    if start:
        del lines[0]  # it begins before what was read
    texts = [r.data.rstrip(b"\n") if (r := parse_record(line)) else line for line in lines]
    text = b"\n".join(texts).decode(errors="replace").strip()
    return text[-limit:].replace("\n", "; ")
