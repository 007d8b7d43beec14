"""Keeps our nftables table equal to what the store says: every network and every
published port, plus publications still being set up and minus those being torn down.

Publishing or withdrawing the ports of one attachment changes only their map elements
(`Firewall.update_ports`, one transaction whose cost does not grow with the number of
ports published); everything else - start-up, networks, repairs, retries, and an
incremental change the kernel refused - re-applies the whole table in one
transaction. Every change runs under one lock, so an older state never lands last."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from sheep_runtime.errors import FirewallError, SheepError
from sheep_runtime.firewall.records import PortClaims, validate_ports
from sheep_runtime.firewall.rules import ClusterRules, FirewallState, NetworkRules, PortRule
from sheep_runtime.metrics import Metrics
from sheep_runtime.model import Attachment, Network
from sheep_runtime.ops.backends import Firewall, Store
from sheep_runtime.ops.events import EventBus
from sheep_runtime.ops.tasks import TaskSupervisor

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.05, 0.2, 1.0, 5.0, 30.0, 60.0, 60.0, 60.0)


def rules_of(a: Attachment, net: Network) -> tuple[PortRule, ...]:
    """The port rules an attachment publishes (over IPv6 too when it has an address6)."""
    ip6 = a.address6.ip if a.address6 is not None else None
    return tuple(PortRule.of(net, a.address.ip, p, container_ip6=ip6) for p in a.ports)


class FirewallSync:
    """Owns the desired firewall state and applies it. Attachments are keyed by their
    host interface name. `incremental=False` re-applies the whole table for every
    change (the behaviour before issue #16; the benchmark's baseline)."""

    def __init__(self, *, firewall: Firewall, store: Store, tasks: TaskSupervisor,
                 metrics: Metrics, events: EventBus, incremental: bool = True) -> None:
        self._fw = firewall
        self._store = store
        self._tasks = tasks
        self._metrics = metrics
        self._events = events
        self._incremental = incremental
        self._lock = asyncio.Lock()
        self._pending: dict[str, tuple[PortRule, ...]] = {}
        self._withdrawn: set[str] = set()
        self._retrying: asyncio.Task[None] | None = None
        # The host ports in the kernel's table as of our last change (None: unknown,
        # the next change rebuilds): overlaps are checked against it.
        self._claims: PortClaims | None = None
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
            await self._rebuild()

    async def _rebuild(self) -> FirewallState:
        state = self.desired()
        self._claims = None
        await self._fw.apply(state)
        self._claims = PortClaims(state.ports)
        return state

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
        rules = tuple(rules)
        if self._incremental:
            bridges = {n.bridge: NetworkRules.of(n) for n in self._store.networks()}
            validate_ports(rules, bridges)  # the rest is checked by the kernel
        self._pending[key] = rules
        try:
            await self._change(add=rules)
        except BaseException:
            self._pending.pop(key, None)
            raise

    async def unpublish(self, key: str) -> None:
        """Undo `publish` of an attachment that was never committed."""
        rules = self._pending.pop(key, None)
        if rules is not None:
            await self._change(remove=rules)

    def committed(self, key: str) -> None:
        """The attachment is in the store now: its rules are no longer pending."""
        self._pending.pop(key, None)

    async def withdraw(self, keys: Sequence[str]) -> None:
        """Take the rules of committed attachments out (first step of a teardown);
        `forget` once their records are gone."""
        self._withdrawn.update(keys)
        rules: list[PortRule] = []
        if self._incremental:
            networks = {n.id: n for n in self._store.networks()}
            rules = [r for key in keys for a in self._store.attachments_by_host_interface(key)
                     if a.network_id in networks for r in rules_of(a, networks[a.network_id])]
        await self._change(remove=rules)

    def forget(self, keys: Sequence[str]) -> None:
        self._withdrawn.difference_update(keys)

    async def _change(self, *, add: Sequence[PortRule] = (),
                      remove: Sequence[PortRule] = ()) -> None:
        """Apply a change of port rules (the desired state already includes it)."""
        async with self._lock:
            claims = self._claims
            if not self._incremental or claims is None:
                await self._rebuild()
                return
            for rule in add:
                claims.check(rule)
            self._claims = None  # unknown until the kernel answers
            try:
                await self._fw.update_ports(add=add, remove=remove)
            except FirewallError as e:
                log.info("incremental firewall change failed, re-applying the table: %s", e)
                await self._rebuild()
                return
            except asyncio.CancelledError:
                # The transaction may still commit on the worker thread after we
                # stopped waiting: a rebuild makes the table what the state says.
                self.retry_later()
                raise
            for rule in remove:
                claims.remove(rule)
            for rule in add:
                claims.add(rule)
            self._claims = claims

    async def repair_if_broken(self) -> None:
        """Firewall monitor callback: restore the table if someone changed it."""
        async with self._lock:
            state = self.desired()
            if await self._fw.is_intact(state):
                return
            await self._rebuild()
        self._metrics.repairs.labels("firewall").inc()
        self._events.publish("firewall.repaired", attributes={"table": "inet sheep"})
        log.warning("firewall table inet sheep was changed from outside: restored")
