"""Supervised tasks never vanish: a failure is logged with the task's name and counted;
services restart or stop the daemon; the loop-lag metric sees a blocked loop, and its
CPU-wait companion a loop that shares its CPU."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from sheep_runtime.metrics import Metrics
from sheep_runtime.ops.tasks import TaskSupervisor, measure_loop_lag
from sheep_runtime.schedstat import thread_cpu_wait


def failures(metrics: Metrics, task: str) -> float:
    return metrics.registry.get_sample_value("sheep_task_failures_total", {"task": task}) or 0


async def test_a_failing_task_is_logged_with_its_name_and_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    tasks = TaskSupervisor(metrics)

    async def boom() -> None:
        raise ValueError("not a SheepError")

    await tasks.spawn("repair", boom(), name="heal-link:shp0")
    assert failures(metrics, "repair") == 1
    assert "task heal-link:shp0 failed" in caplog.text and "not a SheepError" in caplog.text


async def test_a_service_is_restarted_after_a_failure() -> None:
    metrics = Metrics()
    tasks = TaskSupervisor(metrics)
    runs = 0
    second = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("first run dies")
        second.set()
        await asyncio.Event().wait()

    tasks.service("collector", flaky)
    await asyncio.wait_for(second.wait(), 5)
    assert failures(metrics, "collector") == 1 and not tasks.failed.done()
    await tasks.close()


async def test_a_service_that_must_not_restart_stops_the_daemon() -> None:
    tasks = TaskSupervisor(Metrics())

    async def monitor() -> None:
        raise OSError("socket gone")

    tasks.service("netlink-monitor", monitor, restart=False)
    reason = await asyncio.wait_for(tasks.failed, 5)
    assert "netlink-monitor" in reason and "socket gone" in reason


async def test_loop_lag_sees_a_blocked_loop() -> None:
    metrics = Metrics()
    task = asyncio.create_task(measure_loop_lag(metrics))
    await asyncio.sleep(0.05)
    time.sleep(0.3)  # block the loop, as a slow call on it would
    await asyncio.sleep(0.2)
    task.cancel()
    slow = metrics.registry.get_sample_value("sheep_event_loop_lag_seconds_bucket",
                                             {"le": "0.1"})
    total = metrics.registry.get_sample_value("sheep_event_loop_lag_seconds_count")
    assert total is not None and slow is not None and total > slow, "no lag over 100 ms seen"


async def test_loop_cpu_wait_sees_a_loop_that_shares_its_cpu() -> None:
    """A busy loop pinned to one CPU with a spinning process: the kernel makes the
    loop's thread wait for its turn about half of the time, and the metric shows it."""
    assert thread_cpu_wait() is not None, "the kernel keeps no schedstat (CONFIG_SCHED_INFO)"
    metrics = Metrics()
    cpus = os.sched_getaffinity(0)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        one = {min(cpus)}
        os.sched_setaffinity(spinner.pid, one)
        os.sched_setaffinity(0, one)  # this thread only: the loop's
        task = asyncio.create_task(measure_loop_lag(metrics))
        end = time.monotonic() + 0.8
        while time.monotonic() < end:
            busy = time.monotonic() + 0.02
            while time.monotonic() < busy:
                pass
            await asyncio.sleep(0)
        task.cancel()
    finally:
        os.sched_setaffinity(0, cpus)
        spinner.kill()
        spinner.wait()
    waited = metrics.registry.get_sample_value("sheep_event_loop_cpu_wait_seconds_sum")
    assert waited is not None and waited > 0.15, f"the loop waited {waited} s for its CPU"
