"""Failure injection for tests: a step named in SHEEP_FAULTS fails on purpose, so a
test can prove that whatever step fails, nothing is left behind."""

from __future__ import annotations

from sheep_runtime.errors import KernelError

# The steps where a fault can be injected, in the order an attach runs them.
ATTACH_STEPS = ("ipam", "veth", "address", "route", "firewall", "store")
CREATE_STEPS = ("netns", "attach", "process")


class Faults:
    """The set of steps that must fail."""

    def __init__(self, points: frozenset[str] = frozenset()) -> None:
        self._points = points

    def check(self, point: str) -> None:
        """Raise if `point` was named as a fault."""
        if point in self._points:
            raise KernelError(f"injected fault after step {point!r}")
