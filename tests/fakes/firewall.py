"""`Firewall`: holds the last applied state; a test can change the "table" behind
the daemon's back."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from sheep_runtime.errors import FirewallError, InvalidArgument
from sheep_runtime.firewall.elements import build_port_update
from sheep_runtime.firewall.rules import FirewallState, PortRule, validate
from tests.fakes.calls import CallLog


def normalized(state: FirewallState) -> FirewallState:
    """`state` with its ports in a canonical order: the kernel's maps have none, so
    a table changed port by port equals one rebuilt from the same rules."""
    return replace(state, ports=_sorted(set(state.ports)))


class FakeFirewall:
    """The `inet sheep` table as the last `FirewallState` applied, normalized (None:
    no table)."""

    def __init__(self, calls: CallLog) -> None:
        self._calls = calls
        self.state: FirewallState | None = None

    async def apply(self, state: FirewallState) -> None:
        self._calls.record("firewall.apply", mutating=True, error=FirewallError)
        validate(state)  # what the real backend's build_ruleset checks first
        self.state = normalized(state)

    async def update_ports(self, *, add: Sequence[PortRule] = (),
                           remove: Sequence[PortRule] = ()) -> None:
        try:
            self._calls.record("firewall.update_ports", mutating=True, error=FirewallError)
        except FirewallError:
            # FirewallSync falls back to a full apply; that fails too, so that one
            # injected fault still fails the operation (test_firewall_sync.py covers
            # the fallback that succeeds).
            self._calls.fail_nth(0)
            raise
        build_port_update(add=add, remove=remove)  # what the real backend checks first
        if self.state is None:
            raise FirewallError("update ports of nft table inet sheep: No such file or directory")
        ports = set(self.state.ports).difference(remove) | set(add)
        try:
            validate(replace(self.state, ports=tuple(ports)))
        except InvalidArgument as e:  # the kernel refuses a clash with its own words
            raise FirewallError(f"update ports of nft table inet sheep: {e}") from e
        self.state = replace(self.state, ports=_sorted(ports))

    async def is_intact(self, state: FirewallState) -> bool:
        self._calls.record("firewall.is_intact", mutating=False)
        return self.state == normalized(state)

    def tamper(self) -> None:
        """Someone flushed the table."""
        self.state = FirewallState()

    def delete(self) -> None:
        """Someone deleted the table: incremental changes fail until an apply."""
        self.state = None


def _sorted(ports: Iterable[PortRule]) -> tuple[PortRule, ...]:
    return tuple(sorted(ports, key=repr))
