"""Parsing of docker-style option values: sizes, restart policies, durations, times,
--log-opt and -e. Pure functions; each raises ValueError with a message for a person."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime

from sheep.runtime.v1 import runtime_pb2 as pb

_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?) ?([kmgtp])?(i)?(b)?$", re.I)
_UNIT_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def _size(text: str, base: int, what: str) -> int:
    m = _SIZE_RE.match(text.strip())
    if not m or (m[3] and not m[2]):
        raise ValueError(f"bad {what} {text!r}: use a number of bytes with an optional "
                         "unit b, k, m, g, t or p (e.g. 512m, 1g)")
    return int(float(m[1]) * base ** _UNIT_POWERS[(m[2] or "").lower()])


def parse_memory(text: str) -> int:
    """A memory size in bytes, as docker's --memory reads it: binary units (512m =
    512 MiB, 1g = 1 GiB; b, k, m, g, t, p, case-insensitive, optional i/b suffix)."""
    return _size(text, 1024, "memory size")


def parse_log_size(text: str) -> int:
    """A log file size in bytes, as docker's `--log-opt max-size` reads it: decimal
    units (10m = 10,000,000 bytes)."""
    size = _size(text, 1000, "max-size")
    if size <= 0:
        raise ValueError(f"bad max-size {text!r}: must be positive")
    return size


RESTART_POLICIES = ("no", "on-failure", "always", "unless-stopped")


def parse_restart_policy(text: str) -> pb.RestartPolicy:
    """no | on-failure[:MAX_RETRIES] | always | unless-stopped, as docker's --restart."""
    name, sep, retries = text.partition(":")
    if name not in RESTART_POLICIES:
        raise ValueError(f"bad restart policy {text!r}: use no, on-failure[:N], always or "
                         "unless-stopped")
    if not sep:
        return pb.RestartPolicy(name=name)
    if name != "on-failure":
        raise ValueError(f"bad restart policy {text!r}: only on-failure takes a maximum "
                         "retry count")
    if not retries.isdigit():
        raise ValueError(f"bad restart policy {text!r}: the retry count is a number >= 0")
    return pb.RestartPolicy(name=name, max_retries=int(retries))


#: Units of a duration in seconds, as Go's time.ParseDuration (and so docker) takes them.
DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
                  "m": 60.0, "h": 3600.0}
_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """A duration in seconds, written as Go (and docker) write them: "10m", "1h30s",
    "1.5h", "300ms"; a unit on every number, "0" alone allowed."""
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(body):
        if m.start() != pos:
            break
        total += float(m[1]) * DURATION_UNITS[m[2]]
        pos = m.end()
    if not body or pos != len(body):
        raise ValueError(f"bad duration {text!r}: use e.g. 10m, 1h30s, 1.5h or 300ms")
    return -total if text.startswith("-") else total


_UNIX_RE = re.compile(r"^\d+(\.\d+)?$")


def parse_time(text: str, *, now: float) -> float:
    """A point in time in Unix seconds, as docker's --since and --until take it: a
    duration before `now` ("10m", "1h30s"), RFC 3339 ("2024-05-01T10:00:00Z", with an
    offset or fractional seconds; without a zone it is local time, as docker reads it;
    a date alone is its midnight), or Unix seconds ("1714557600.5")."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    if _UNIX_RE.match(text):
        return float(text)
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(f"bad time {text!r}: use RFC 3339 (2024-05-01T10:00:00Z), Unix "
                         "seconds, or a duration before now (10m, 1h30s)") from None


LOG_OPTS = ("max-size", "max-file")


def parse_log_opt(text: str) -> tuple[str, int]:
    """One --log-opt: max-size=SIZE (decimal units, e.g. 10m) or max-file=N (N >= 1);
    the key and its value in bytes or files."""
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"bad log opt {text!r}: use KEY=VALUE (max-size=10m, max-file=3)")
    if key == "max-size":
        return key, parse_log_size(value)
    if key == "max-file":
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"bad log opt {text!r}: max-file is a number >= 1")
        return key, int(value)
    raise ValueError(f"unknown log opt {key!r}: use {' or '.join(LOG_OPTS)}")


def log_config(opts: Sequence[tuple[str, int]]) -> pb.LogConfig | None:
    """A LogConfig from parsed --log-opt values (the last of each key wins); None if
    there are none (the daemon's defaults)."""
    if not opts:
        return None
    values = dict(opts)
    return pb.LogConfig(max_bytes=values.get("max-size", 0),
                        max_files=values.get("max-file", 0))


def parse_cpus(text: str) -> float:
    """CPU cores as docker's --cpus takes them: a number >= 0 (0.5 = half a core)."""
    try:
        cpus = float(text)
    except ValueError:
        cpus = math.nan
    if not math.isfinite(cpus) or cpus < 0:
        raise ValueError(f"bad cpus {text!r}: use a number of cores >= 0, e.g. 1.5")
    return cpus


def parse_pids_limit(text: str) -> int:
    """Docker's --pids-limit: a number of tasks; 0 or a negative number means none."""
    try:
        return max(int(text), 0)
    except ValueError:
        raise ValueError(f"bad pids limit {text!r}: use a whole number") from None


def parse_tail(text: str) -> int | None:
    """Docker's --tail: a number of lines, or "all" (a negative number means all too);
    None for all."""
    if text == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"bad tail {text!r}: use a number of lines or all") from None
    return n if n >= 0 else None


def parse_env(pairs: Sequence[str], environ: Mapping[str, str]) -> dict[str, str]:
    """-e values as docker reads them: KEY=VALUE, or KEY alone for the value of KEY
    in `environ` (left out if it has none)."""
    out = {}
    for kv in pairs:
        key, sep, value = kv.partition("=")
        if not key:
            raise ValueError(f"bad environment variable {kv!r}: use KEY=VALUE or KEY")
        if sep:
            out[key] = value
        elif key in environ:
            out[key] = environ[key]
    return out


def parse_pairs(pairs: Sequence[str], what: str) -> dict[str, str]:
    """KEY=VALUE strings as a dict (the last of each key wins)."""
    out = {}
    for kv in pairs:
        key, sep, value = kv.partition("=")
        if not sep:
            raise ValueError(f"bad {what} {kv!r}: use KEY=VALUE")
        out[key] = value
    return out
