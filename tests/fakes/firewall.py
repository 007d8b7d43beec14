"""`Firewall`: holds the last applied state; a test can change the "table" behind
the daemon's back."""

from __future__ import annotations

from sheep_runtime.errors import FirewallError
from sheep_runtime.firewall.rules import FirewallState, validate
from tests.fakes.calls import CallLog


class FakeFirewall:
    """The `inet sheep` table as the last `FirewallState` applied (None: no table)."""

    def __init__(self, calls: CallLog) -> None:
        self._calls = calls
        self.state: FirewallState | None = None

    async def apply(self, state: FirewallState) -> None:
        self._calls.record("firewall.apply", mutating=True, error=FirewallError)
        validate(state)  # what the real backend's build_ruleset checks first
        self.state = state

    async def is_intact(self, state: FirewallState) -> bool:
        self._calls.record("firewall.is_intact", mutating=False)
        return self.state == state

    def tamper(self) -> None:
        """Someone flushed the table."""
        self.state = FirewallState()
