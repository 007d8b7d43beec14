"""Keeps our nftables table equal to what the store says: every network and every
published port, plus publications still being set up. Each change re-applies the
whole table in one transaction, under one lock, so an older state never lands last."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from sheep_runtime.firewall import Firewall, FirewallState, NetworkRules, PortRule
from sheep_runtime.metrics import Metrics
from sheep_runtime.model import Attachment
from sheep_runtime.ops.events import EventBus
from sheep_runtime.ops.networks import NetworkRegistry
from sheep_runtime.store import Store

log = logging.getLogger(__name__)


class FirewallSync:
    """Owns the desired firewall state and applies it."""

    def __init__(self, *, firewall: Firewall, store: Store, networks: NetworkRegistry,
                 metrics: Metrics, events: EventBus) -> None:
        self._fw = firewall
        self._store = store
        self._networks = networks
        self._metrics = metrics
        self._events = events
        self._lock = asyncio.Lock()
        self._pending: dict[str, tuple[PortRule, ...]] = {}

    def rules_of(self, a: Attachment) -> tuple[PortRule, ...]:
        """The port rules an attachment publishes."""
        net = self._networks.get_by_id(a.network_id)
        return tuple(PortRule.of(net, a.address.ip, p) for p in a.ports)

    def desired(self) -> FirewallState:
        committed = [r for a in self._store.attachments() if a.ports for r in self.rules_of(a)]
        pending = [r for rules in self._pending.values() for r in rules]
        return FirewallState(
            networks=tuple(NetworkRules.of(n) for n in self._networks.all()),
            ports=tuple(committed + pending))

    async def sync(self) -> None:
        """Apply the desired state (one atomic transaction)."""
        async with self._lock:
            await self._fw.apply(self.desired())

    async def publish(self, key: str, rules: Sequence[PortRule]) -> None:
        """Add rules of an attachment not committed yet; `withdraw` undoes it."""
        self._pending[key] = tuple(rules)
        try:
            await self.sync()
        except BaseException:
            self._pending.pop(key, None)
            raise

    async def withdraw(self, key: str) -> None:
        if self._pending.pop(key, None) is not None:
            await self.sync()

    def committed(self, key: str) -> None:
        """The attachment is in the store now: its rules are no longer pending."""
        self._pending.pop(key, None)

    async def repair_if_broken(self) -> None:
        """Firewall monitor callback: restore the table if someone changed it."""
        async with self._lock:
            state = self.desired()
            if await self._fw.is_intact(state):
                return
            await self._fw.apply(state)
        self._metrics.repairs.labels("firewall").inc()
        self._events.publish("firewall.repaired", attributes={"table": "inet sheep"})
        log.warning("firewall table inet sheep was changed from outside: restored")
