"""A container's cgroup counters, from `runc events --stats` (runc reads cgroup v1 and
v2 alike, from the paths in its state: no guessing of hierarchies here)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
from collections.abc import Mapping
from typing import Any

from sheep_runtime.model import CgroupUsage
from sheep_runtime.process import procfs
from sheep_runtime.process.bundle import DEFAULT_PATH
from sheep_runtime.process.exec import Capture, drain
from sheep_runtime.process.spawn import Runc

log = logging.getLogger(__name__)

STATS_TIMEOUT = 5.0
_MAX_OUTPUT = 1024 * 1024  # one JSON object of a few KiB
# No limit reads as the largest value: PAGE_COUNTER_MAX pages on v1 (2^63 - 4096 with
# 4 KiB pages), "max" (2^64 - 1, as runc reports it) on v2.
_UNLIMITED = 1 << 62


def _number(tree: Mapping[str, Any], *path: str) -> int:
    node: Any = tree
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, int) and node >= 0 else 0


def _limit(value: int) -> int:
    return 0 if value >= _UNLIMITED else value


def parse_stats(output: bytes) -> CgroupUsage | None:
    """The usage in `runc events --stats` output (one JSON event of type "stats");
    None if it is not one."""
    try:
        event = json.loads(output)
    except ValueError:
        return None
    if not isinstance(event, Mapping) or event.get("type") != "stats":
        return None
    data = event.get("data")
    if not isinstance(data, Mapping):
        return None
    return CgroupUsage(
        cpu_usage_ns=_number(data, "cpu", "usage", "total"),
        memory_usage_bytes=_number(data, "memory", "usage", "usage"),
        memory_limit_bytes=_limit(_number(data, "memory", "usage", "limit")),
        pids_current=_number(data, "pids", "current"),
        pids_limit=_limit(_number(data, "pids", "limit")))


async def cgroup_usage(runc: Runc, container_id: str, *, timeout: float = STATS_TIMEOUT
                       ) -> CgroupUsage | None:
    """The container's cgroup counters; None if runc cannot read them (the container
    is gone, or runc failed or took longer than `timeout`)."""
    out_r, out_w = os.pipe()
    try:
        try:
            proc = subprocess.Popen(runc.argv("events", "--stats", container_id),
                                    stdin=subprocess.DEVNULL, stdout=out_w,
                                    stderr=subprocess.DEVNULL, env={"PATH": DEFAULT_PATH},
                                    cwd="/", start_new_session=True)
        except OSError as e:
            log.warning("cannot run runc events for %s: %s", container_id[:12], e)
            return None
        finally:
            os.close(out_w)
        os.set_blocking(out_r, False)
        runc_fd = os.pidfd_open(proc.pid)
        try:
            out = Capture(_MAX_OUTPUT)
            tasks = [asyncio.ensure_future(procfs.wait_readable(runc_fd)),
                     asyncio.ensure_future(drain(out_r, out))]
            try:
                _, pending = await asyncio.wait(tasks, timeout=timeout)
                if pending:
                    with contextlib.suppress(ProcessLookupError):
                        signal.pidfd_send_signal(runc_fd, signal.SIGKILL)
                    await asyncio.wait([tasks[0]])
            finally:
                for t in tasks:
                    t.cancel()
                if tasks[0].done():
                    proc.wait()  # exited: this does not block
                else:  # cancelled: subprocess reaps it at a later Popen
                    with contextlib.suppress(ProcessLookupError):
                        signal.pidfd_send_signal(runc_fd, signal.SIGKILL)
            if pending or proc.returncode != 0 or out.dropped:
                return None
            return parse_stats(bytes(out.data))
        finally:
            os.close(runc_fd)
    finally:
        os.close(out_r)
