"""How sheepctl prints: JSON of messages, docker-style tables, sizes, ages and times."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from sheep_client.errors import SheepClientError, Unavailable


def message_dict(msg: Message) -> dict[str, object]:
    """A message as proto JSON would write it, with the proto field names."""
    return MessageToDict(msg, preserving_proto_field_name=True)


def message_json(msg: Message) -> str:
    """A message as indented JSON (inspect)."""
    return json.dumps(message_dict(msg), indent=2)


def json_line(obj: object) -> str:
    """One compact JSON object, for one-object-per-line output."""
    return json.dumps(obj, separators=(",", ":"))


#: Spaces between table columns, as docker's tabwriter pads them.
COLUMN_GAP = 3


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a table whose columns are as wide as their widest cell, docker's way."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    return ["".join(cell.ljust(w + COLUMN_GAP) for cell, w in zip(r, widths, strict=True))
            .rstrip() for r in (header, *rows)]


def print_listing(a: argparse.Namespace, items: Sequence[Message], *,
                  ids: Callable[[], list[str]], lines: Callable[[], list[str]]) -> int:
    """Print a listing as -q / --format asked: ids, JSON lines, or the table."""
    if a.quiet:
        out = ids()
    elif a.format == "json":
        out = [json_line(message_dict(m)) for m in items]
    else:
        out = lines()
    for line in out:
        print(line)
    return 0


def for_each(refs: Sequence[str], fn: Callable[[str], object], *,
             echo: bool = True) -> int:
    """Apply `fn` to each name as docker does with several: print the name (if `echo`)
    or the error of each, go on after an error, and return 1 if any failed. An
    unreachable daemon stops at once."""
    failed = False
    for ref in refs:
        try:
            fn(ref)
        except Unavailable:
            raise
        except SheepClientError as e:
            print(f"sheepctl: {e.code.name}: {e.details}", file=sys.stderr)
            failed = True
            continue
        if echo:
            print(ref, flush=True)
    return 1 if failed else 0


def size(n: float) -> str:
    """Bytes as docker prints sizes of images and traffic: three significant digits,
    decimal units ("1.23MB")."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 999.5:
            return f"{n:.3g}{unit}"
        n /= 1000
    return f"{n:.3g}TB"


def binary_size(n: float) -> str:
    """Bytes as docker prints memory: four significant digits, binary units
    ("1.484MiB")."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            return f"{n:.4g}{unit}"
        n /= 1024
    return f"{n:.4g}PiB"


def human_duration(seconds: float) -> str:
    """A duration as docker writes ages ("Less than a second", "About a minute",
    "3 hours", "2 weeks")."""
    s = int(seconds)
    minutes, hours = s // 60, round(seconds / 3600)
    if s < 1:
        return "Less than a second"
    if s < 60:
        return "1 second" if s == 1 else f"{s} seconds"
    if minutes < 60:
        return "About a minute" if minutes == 1 else f"{minutes} minutes"
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{math.floor(seconds / 3600) // 24 // 365} years"


def seconds(ts: Timestamp) -> float:
    """A Timestamp as Unix seconds."""
    return ts.seconds + ts.nanos / 1e9


def ago(ts: Timestamp, now: float) -> str:
    """How long ago, docker's way ("3 minutes ago")."""
    return f"{human_duration(max(0.0, now - seconds(ts)))} ago"


def rfc3339_nano(ts: Timestamp) -> str:
    """A Timestamp in UTC with nine fractional digits, as docker's logs -t and events
    print times ("2024-05-01T10:00:00.123456789Z")."""
    day = datetime.fromtimestamp(ts.seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{day}.{ts.nanos:09d}Z"
