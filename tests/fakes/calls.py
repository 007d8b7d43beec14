"""One ordered log of every Protocol call the fakes receive, with fault injection.

A mutating call is one that changes state and can fail in the real backend; a test
arms "fail the Nth mutating call from now" and the fake raises the error that backend
would raise (KernelError kinds, StoreError) before changing anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

INJECTED = "injected fault"


@dataclass(frozen=True)
class Call:
    """One Protocol call: e.g. "links.create_veth", and whether it mutates."""

    name: str
    mutating: bool


class CallLog:
    """The calls made through the fakes, in order, and the armed fault."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.injected: list[str] = []
        self._mutating = 0
        self._fail_at: int | None = None

    def record(self, name: str, *, mutating: bool,
               error: Callable[[str], Exception] | None = None) -> None:
        """Log the call; raise `error(message)` if it is the armed mutating call."""
        self.calls.append(Call(name, mutating))
        if not mutating:
            return
        index, self._mutating = self._mutating, self._mutating + 1
        if index == self._fail_at and error is not None:
            self._fail_at = None
            self.injected.append(name)
            raise error(f"{INJECTED}: {name} (mutating call #{index})")

    def fail_nth(self, n: int) -> None:
        """Fail the `n`-th (0-based) mutating call made from now on, once."""
        self._fail_at = self._mutating + n

    def disarm(self) -> None:
        self._fail_at = None

    @property
    def armed(self) -> bool:
        """True while an armed fault has not fired yet."""
        return self._fail_at is not None

    def mark(self) -> int:
        """A position in the log, for `since`."""
        return len(self.calls)

    def since(self, mark: int, *, mutating_only: bool = False) -> list[str]:
        """Names of the calls made after `mark`."""
        return [c.name for c in self.calls[mark:] if c.mutating or not mutating_only]
