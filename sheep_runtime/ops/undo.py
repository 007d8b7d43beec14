"""Undo and teardown: every change pushes its undo before the next step; a teardown runs
its steps in a stated order. Both keep going past errors and report every one."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable

from sheep_runtime.errors import KernelError
from sheep_runtime.metrics import Metrics

log = logging.getLogger(__name__)

Step = Callable[[], Awaitable[object] | object]


async def _run(fn: Step) -> None:
    result = fn()
    if inspect.isawaitable(result):
        await result


class UndoStack:
    """Collects undo actions; `unwind` runs them newest first and keeps going on errors,
    each counted in `sheep_teardown_errors_total{step="rollback"}`."""

    def __init__(self, metrics: Metrics) -> None:
        self._actions: list[tuple[str, Step]] = []
        self._metrics = metrics

    def push(self, what: str, fn: Step) -> None:
        self._actions.append((what, fn))

    async def unwind(self) -> list[str]:
        """Run all actions in reverse; return the errors met (each already logged)."""
        errors: list[str] = []
        while self._actions:
            what, fn = self._actions.pop()
            try:
                await _run(fn)
            except Exception as e:  # keep going: the rest must still be undone
                log.error("undo %s failed: %s", what, e)
                self._metrics.teardown_errors.labels("rollback").inc()
                errors.append(f"{what}: {e}")
        return errors


class Teardown:
    """Runs the steps of one teardown in order; a failed step is logged, counted in
    `sheep_teardown_errors_total{step}` and kept, and the next step runs anyway."""

    def __init__(self, what: str, metrics: Metrics) -> None:
        self.what = what
        self.errors: list[str] = []
        self._metrics = metrics

    async def step(self, name: str, fn: Step) -> bool:
        """Run one step; True if it succeeded."""
        try:
            await _run(fn)
        except Exception as e:  # teardown keeps going and reports every error
            log.error("%s: %s failed: %s", self.what, name, e)
            self._metrics.teardown_errors.labels(name).inc()
            self.errors.append(f"{name}: {e}")
            return False
        return True

    def raise_if_failed(self, done: str) -> None:
        """KernelError naming every failed step, after `done` (what did happen)."""
        if self.errors:
            raise KernelError(f"{done}, but {len(self.errors)} step(s) failed: "
                              + "; ".join(self.errors)
                              + " (leftovers are collected within a minute)",
                              reason="TEARDOWN_INCOMPLETE")
