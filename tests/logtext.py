"""What a container wrote, from its log file (the data of its records), for tests that
look at a container's output directly."""

from __future__ import annotations

from pathlib import Path

from sheep_runtime.process.logs import parse_record


def log_text(path: Path | str) -> str:
    """The data of every record in the log file `path` ("" if there is none), stdout
    and stderr as they were read; lines that are no records are left out."""
    try:
        lines = Path(path).read_bytes().split(b"\n")
    except FileNotFoundError:
        return ""
    return b"".join(r.data for line in lines if (r := parse_record(line))).decode(
        errors="replace")
