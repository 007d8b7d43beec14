"""Undo stack: every kernel or store change pushes its undo before the next step."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

UndoFn = Callable[[], Awaitable[object] | object]


class UndoStack:
    """Collects undo actions; `unwind` runs them newest first and keeps going on errors."""

    def __init__(self) -> None:
        self._actions: list[tuple[str, UndoFn]] = []

    def push(self, what: str, fn: UndoFn) -> None:
        self._actions.append((what, fn))

    def discard(self) -> None:
        """Forget every action: the operation committed."""
        self._actions.clear()

    async def unwind(self) -> list[str]:
        """Run all actions in reverse; return the errors met (each already logged)."""
        errors: list[str] = []
        while self._actions:
            what, fn = self._actions.pop()
            try:
                result = fn()
                if inspect.isawaitable(result):
                    await result
            except Exception as e:  # teardown keeps going and reports every error
                log.error("undo %s failed: %s", what, e)
                errors.append(f"{what}: {e}")
        return errors
