"""Supervised background tasks: every task is named, and an unexpected exception is
logged with that name and counted in `sheep_task_failures_total{task}`, never lost.

One-shot tasks (a container's exit watcher, a repair) end there. Services (the netlink
monitor, the leak collector, ...) are restarted after a back-off, or, when they cannot
be, stop the daemon (`failed` completes) rather than leave it half alive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from sheep_runtime.metrics import Metrics
from sheep_runtime.schedstat import thread_cpu_wait

log = logging.getLogger(__name__)

RESTART_DELAYS = (0.1, 0.5, 2.0, 10.0)  # then every 10 s


class TaskSupervisor:
    """Owns the daemon's background tasks."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._tasks: set[asyncio.Task[None]] = set()
        self.failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def spawn(self, kind: str, coro: Coroutine[Any, Any, object], *, name: str = ""
              ) -> asyncio.Task[None]:
        """Run `coro` once as task `name` (default `kind`); `kind` is the metric label."""
        task = asyncio.create_task(self._guard(kind, name or kind, coro), name=name or kind)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guard(self, kind: str, name: str, coro: Awaitable[object]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task %s failed", name)
            self._metrics.task_failures.labels(kind).inc()

    def service(self, name: str, run: Callable[[], Awaitable[object]], *,
                restart: bool = True) -> asyncio.Task[None]:
        """Keep `run()` running for the daemon's lifetime: restarted after a failure
        with back-off, or (`restart` False) a failure stops the daemon."""
        return self.spawn(name, self._keep(name, run, restart))

    async def _keep(self, name: str, run: Callable[[], Awaitable[object]], restart: bool
                    ) -> None:
        failures = 0
        while True:
            try:
                await run()
                log.error("service %s returned; restarting it", name)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.exception("service %s failed", name)
                self._metrics.task_failures.labels(name).inc()
                if not restart:
                    if not self.failed.done():
                        self.failed.set_result(f"service {name} failed: {e}")
                    return
            delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)]
            failures += 1
            await asyncio.sleep(delay)

    async def close(self) -> None:
        """Cancel every task and wait for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


LOOP_LAG_INTERVAL = 0.1


async def measure_loop_lag(metrics: Metrics) -> None:
    """Every 100 ms, observe how much later than asked the loop woke us: anything that
    blocks the loop (a slow syscall, a big JSON) shows here. Also how long of those
    100 ms the loop's thread waited for a CPU, which tells a busy loop from a busy host."""
    loop = asyncio.get_running_loop()
    waited = thread_cpu_wait()
    while True:
        due = loop.time() + LOOP_LAG_INTERVAL
        await asyncio.sleep(LOOP_LAG_INTERVAL)
        metrics.loop_lag.observe(max(0.0, loop.time() - due))
        if waited is not None and (now := thread_cpu_wait()) is not None:
            metrics.loop_cpu_wait.observe(now - waited)
            waited = now
