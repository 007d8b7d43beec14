"""Supervised tasks never vanish: a failure is logged with the task's name and counted;
services restart or stop the daemon; the loop-lag metric sees a blocked loop."""

from __future__ import annotations

import asyncio
import time

import pytest

from sheep_runtime.metrics import Metrics
from sheep_runtime.ops.tasks import TaskSupervisor, measure_loop_lag


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
