"""sheepctl stats: a table of containers' usage, once (default) or refreshed each
second (--stream), as `docker stats` prints it."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_client.client import SheepClient
from sheep_client.errors import SheepClientError, Unavailable
from sheep_client.output import binary_size, json_line, message_dict, seconds, size, table

#: Seconds between two samples of --stream (docker's too).
STREAM_INTERVAL = 1.0
#: What docker prints for a value it could not read.
UNAVAILABLE = "--"
#: Clears a terminal and homes its cursor before each --stream frame.
CLEAR_SCREEN = "\033[2J\033[H"


def cpu_percent(prev: pb.ContainerStats, cur: pb.ContainerStats) -> float | None:
    """CPU use between two samples, in percent of one core (200 = two cores busy);
    None unless both read the cgroup and time went on."""
    dt = seconds(cur.time) - seconds(prev.time)
    if dt <= 0 or not (prev.cgroup_readable and cur.cgroup_readable):
        return None
    return max(0, cur.cpu_usage_ns - prev.cpu_usage_ns) / 1e9 / dt * 100


def cpu_time(s: pb.ContainerStats) -> str:
    """CPU time used since start, of one sample."""
    return f"{s.cpu_usage_ns / 1e9:.2f}s" if s.cgroup_readable else UNAVAILABLE


def memory(s: pb.ContainerStats) -> tuple[str, str]:
    """MEM USAGE / LIMIT and MEM % cells."""
    if not s.cgroup_readable:
        return f"{UNAVAILABLE} / {UNAVAILABLE}", UNAVAILABLE
    if not s.memory_limit_bytes:
        return f"{binary_size(s.memory_usage_bytes)} / unlimited", UNAVAILABLE
    pct = s.memory_usage_bytes / s.memory_limit_bytes * 100
    return (f"{binary_size(s.memory_usage_bytes)} / {binary_size(s.memory_limit_bytes)}",
            f"{pct:.2f}%")


def network(s: pb.ContainerStats) -> str:
    """NET I/O: bytes received / sent over every interface."""
    rx = sum(i.rx_bytes for i in s.interfaces)
    tx = sum(i.tx_bytes for i in s.interfaces)
    return f"{size(rx)} / {size(tx)}"


def row(s: pb.ContainerStats, cpu: str) -> list[str]:
    mem, mem_pct = memory(s)
    pids = str(s.pids_current) if s.cgroup_readable else UNAVAILABLE
    return [s.container_id[:12], s.name, cpu, mem, mem_pct, network(s), pids]


def frame(samples: Sequence[pb.ContainerStats],
          previous: dict[str, pb.ContainerStats] | None) -> list[str]:
    """The table of one sample each: CPU % against `previous` samples (--stream), or
    the CPU time used so far (one shot)."""
    rows = []
    for s in samples:
        if previous is None:
            rows.append(row(s, cpu_time(s)))
            continue
        prev = previous.get(s.container_id)
        pct = cpu_percent(prev, s) if prev is not None else None
        rows.append(row(s, UNAVAILABLE if pct is None else f"{pct:.2f}%"))
    cpu = "CPU TIME" if previous is None else "CPU %"
    return table(["CONTAINER ID", "NAME", cpu, "MEM USAGE / LIMIT", "MEM %", "NET I/O",
                  "PIDS"], rows)


def json_lines(samples: Sequence[pb.ContainerStats],
               previous: dict[str, pb.ContainerStats] | None) -> list[str]:
    """One JSON object per sample (the ContainerStats fields, and cpu_percent when
    streaming)."""
    out = []
    for s in samples:
        d = message_dict(s)
        prev = previous.get(s.container_id) if previous else None
        pct = cpu_percent(prev, s) if prev is not None else None
        if pct is not None:
            d["cpu_percent"] = round(pct, 2)
        out.append(json_line(d))
    return out


def sample(api: SheepClient, refs: Sequence[str]
           ) -> tuple[list[pb.ContainerStats], list[SheepClientError]]:
    """One sample of each container `refs` names (every running one if none), and
    the errors of those that could not be read."""
    targets = list(refs) or [c.id for c in api.list_containers()]
    got, errors = [], []
    for ref in targets:
        try:
            got.append(api.stats(ref))
        except Unavailable:
            raise
        except SheepClientError as e:
            errors.append(e)
    return got, errors


def _show(a: argparse.Namespace, samples: Sequence[pb.ContainerStats],
          previous: dict[str, pb.ContainerStats] | None) -> None:
    if a.format == "json":
        lines = json_lines(samples, previous)
    else:
        lines = frame(samples, previous)
        if previous is not None and sys.stdout.isatty():
            print(CLEAR_SCREEN, end="")
    print("\n".join(lines), flush=True)


def cmd_stats(api: SheepClient, a: argparse.Namespace) -> int:
    """Print the usage of the named (or every running) container: one sample with the
    CPU time used (default, --no-stream), or with --stream a frame each second with the
    CPU % between two samples, until interrupted. Containers that cannot be read at
    the start are errors; later, one that exits leaves the table."""
    samples, errors = sample(api, a.containers)
    for e in errors:
        print(f"sheepctl: {e.code.name}: {e.details}", file=sys.stderr)
    if errors and a.containers and (not a.stream or not samples):
        if samples:
            _show(a, samples, None)
        return 1
    if not a.stream:
        _show(a, samples, None)
        return 0
    while True:
        previous = {s.container_id: s for s in samples}
        time.sleep(STREAM_INTERVAL)
        samples, _ = sample(api, a.containers)
        _show(a, samples, previous)
