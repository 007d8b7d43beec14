"""Keeps our nftables table equal to what the store says: every network and every
published port, plus publications still being set up and minus those being torn down.
Each change re-applies the whole table in one transaction, under one lock, so an older
state never lands last."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from sheep_runtime.errors import FirewallError, SheepError
from sheep_runtime.firewall.rules import ClusterRules, FirewallState, NetworkRules, PortRule
from sheep_runtime.metrics import Metrics
from sheep_runtime.model import Attachment, Network
from sheep_runtime.ops.backends import Firewall, Store
from sheep_runtime.ops.events import EventBus
from sheep_runtime.ops.tasks import TaskSupervisor

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.05, 0.2, 1.0, 5.0, 30.0, 60.0, 60.0, 60.0)


def rules_of(a: Attachment, net: Network) -> tuple[PortRule, ...]:
    """The port rules an attachment publishes."""
    return tuple(PortRule.of(net, a.address.ip, p) for p in a.ports)


class FirewallSync:
    """Owns the desired firewall state and applies it. Attachments are keyed by their
    host interface name."""

    def __init__(self, *, firewall: Firewall, store: Store, tasks: TaskSupervisor,
                 metrics: Metrics, events: EventBus) -> None:
        self._fw = firewall
        self._store = store
        self._tasks = tasks
        self._metrics = metrics
        self._events = events
        self._lock = asyncio.Lock()
        self._pending: dict[str, tuple[PortRule, ...]] = {}
        self._withdrawn: set[str] = set()
        self._retrying: asyncio.Task[None] | None = None
        # Cluster mode: the overlay's rules (peers' VXLAN, no masquerade inside).
        self.cluster: ClusterRules | None = None

    def desired(self) -> FirewallState:
        networks = {n.id: n for n in self._store.networks()}
        committed = [r for a in self._store.attachments()
                     if a.ports and a.host_interface not in self._withdrawn
                     and a.network_id in networks
                     for r in rules_of(a, networks[a.network_id])]
        pending = [r for rules in self._pending.values() for r in rules]
        return FirewallState(networks=tuple(NetworkRules.of(n) for n in networks.values()),
                             ports=tuple(committed + pending), cluster=self.cluster)

    async def sync(self) -> None:
        """Apply the desired state (one atomic transaction)."""
        async with self._lock:
            await self._fw.apply(self.desired())

    def retry_later(self) -> None:
        """A teardown could not apply the table: keep trying in the background, so
        the rules of what is gone do not outlive it."""
        if self._retrying is None or self._retrying.done():
            self._retrying = self._tasks.spawn("firewall-retry", self._retry())

    async def settled(self) -> None:
        """Wait until no background re-apply is pending (for tests and shutdown)."""
        if self._retrying is not None:
            await asyncio.gather(self._retrying, return_exceptions=True)

    async def _retry(self) -> None:
        for delay in RETRY_DELAYS:
            await asyncio.sleep(delay)
            try:
                await self.sync()
            except SheepError as e:
                log.warning("firewall re-apply failed (retrying): %s", e)
            else:
                return
        raise FirewallError(f"firewall re-apply failed {len(RETRY_DELAYS)} times")

    async def publish(self, key: str, rules: Sequence[PortRule]) -> None:
        """Add the rules of an attachment not committed yet; `committed` or `unpublish`
        ends that."""
        self._pending[key] = tuple(rules)
        try:
            await self.sync()
        except BaseException:
            self._pending.pop(key, None)
            raise

    async def unpublish(self, key: str) -> None:
        """Undo `publish` of an attachment that was never committed."""
        if self._pending.pop(key, None) is not None:
            await self.sync()

    def committed(self, key: str) -> None:
        """The attachment is in the store now: its rules are no longer pending."""
        self._pending.pop(key, None)

    async def withdraw(self, keys: Sequence[str]) -> None:
        """Take the rules of committed attachments out (first step of a teardown);
        `forget` once their records are gone."""
        self._withdrawn.update(keys)
        await self.sync()

    def forget(self, keys: Sequence[str]) -> None:
        self._withdrawn.difference_update(keys)

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
