"""Cluster mode as ops sees it: the membership's changes become events and firewall
rules (VXLAN accepted from the peers only, no masquerade inside the cluster network),
and GetCluster / LeaveCluster.

The membership itself (etcd, the overlay) is the `ClusterMember` backend; ops only
decides when it may leave: not while any container or CNI sandbox is attached to the
default network, whose subnet is the slice the node would give back.
"""

from __future__ import annotations

import asyncio
import logging
from ipaddress import IPv4Network

from sheep_runtime.config import DEFAULT_NETWORK
from sheep_runtime.errors import FailedPrecondition, SheepError
from sheep_runtime.firewall.rules import ClusterRules
from sheep_runtime.model import ClusterChange, ClusterNode, ClusterStatus
from sheep_runtime.ops.backends import ClusterMember, Store
from sheep_runtime.ops.events import EventBus
from sheep_runtime.ops.firewall import FirewallSync
from sheep_runtime.ops.networks import NetworkRegistry
from sheep_runtime.ops.tasks import TaskSupervisor

log = logging.getLogger(__name__)

NOT_IN_CLUSTER = ("this node is not in cluster mode (sheepd runs without --cluster-etcd, "
                  "or it left the cluster: restart it to join again)")


def _node_attributes(node: ClusterNode) -> dict[str, str]:
    return {"node": node.name, "subnet": str(node.subnet),
            "underlay_address": str(node.underlay_address)}


class ClusterService:
    """Follows the membership (a supervised service) and answers for it."""

    def __init__(self, *, member: ClusterMember | None, store: Store,
                 networks: NetworkRegistry, firewall: FirewallSync, tasks: TaskSupervisor,
                 events: EventBus) -> None:
        self._member = member
        self._store = store
        self._networks = networks
        self._firewall = firewall
        self._tasks = tasks
        self._events = events
        self._lock = asyncio.Lock()
        self._follow: asyncio.Task[None] | None = None
        self._syncing: asyncio.Task[None] | None = None
        self._sync_again = False

    @property
    def enabled(self) -> bool:
        return self._member is not None

    def prime(self) -> None:
        """Put the cluster's firewall rules (peers known from the join) into the
        desired state, before the runtime's first firewall sync."""
        if self._member is not None:
            self._firewall.cluster = self._rules(self._member.view())

    def start(self) -> None:
        """Follow etcd: the watch, the reconcile and the lease renewal."""
        member = self._member
        if member is not None:
            self._follow = self._tasks.service("cluster", lambda: member.run(self._changed))

    async def status(self) -> ClusterStatus | None:
        """The cluster as etcd records it now (Unavailable if etcd does not answer);
        None on a single host."""
        return None if self._member is None else await self._member.fetch()

    async def leave(self) -> IPv4Network:
        """Give this node's subnet back to the cluster and go on as a single host.
        FailedPrecondition when not in cluster mode or while anything is attached to
        the default network."""
        async with self._lock:
            member = self._member
            if member is None:
                raise FailedPrecondition(NOT_IN_CLUSTER, reason="NOT_IN_CLUSTER")
            self._check_unused()
            me = member.view().node
            subnet = await member.leave()
            self._member = None
            if self._follow is not None:
                self._follow.cancel()
            self._firewall.cluster = None
            try:
                await self._firewall.sync()
            except SheepError:  # the subnet is released already: retry the table
                log.exception("cluster: firewall sync after leaving failed; retrying")
                self._firewall.retry_later()
        self._events.publish("node.left", network=DEFAULT_NETWORK,
                             attributes={**_node_attributes(me), "self": "true"})
        return subnet

    def _check_unused(self) -> None:
        net = self._networks.get(DEFAULT_NETWORK)
        users = []
        for a in self._store.attachments(network_id=net.id):
            c = self._store.container(a.container_id)
            if c is None:
                users.append(a.container_id[:12])
            elif c.owner == "cni":
                users.append(f"CNI sandbox {c.cni_container_id[:12]}/{c.cni_ifname}")
            else:
                users.append(f"{c.name} ({c.id[:12]})")
        if users or self._networks.pool(net).allocated:
            raise FailedPrecondition(
                f"cannot leave the cluster: attached to {DEFAULT_NETWORK}, whose subnet "
                f"{net.subnet} would be released: "
                + (", ".join(sorted(users)) or "an attach in progress")
                + "; remove or detach them first",
                reason="NETWORK_IN_USE", resource_type="network", resource_name=net.name)

    def _rules(self, view: ClusterStatus) -> ClusterRules:
        return ClusterRules(network=view.network, device=view.device, port=view.port,
                            peers=tuple(n.underlay_address for n in view.nodes
                                        if n.state != "self"))

    def _refresh_firewall(self) -> None:
        if self._member is None:
            return
        rules = self._rules(self._member.view())
        if rules == self._firewall.cluster:
            return
        self._firewall.cluster = rules
        if self._syncing is None or self._syncing.done():
            self._syncing = self._tasks.spawn("cluster-firewall", self._sync_firewall())
        else:
            self._sync_again = True  # many peers at once: one more sync covers them all

    async def _sync_firewall(self) -> None:
        while True:
            self._sync_again = False
            await self._firewall.sync()
            if not self._sync_again:
                return

    def _changed(self, change: ClusterChange) -> None:
        node = change.node
        if change.kind == "synced" or node is None:
            self._refresh_firewall()
            return
        attrs = _node_attributes(node)
        if change.kind == "programmed":
            attrs["latency_ms"] = f"{change.latency * 1e3:.3f}"
            if change.repaired:
                attrs["repaired"] = "true"
            self._events.publish("route.programmed", network=DEFAULT_NETWORK, attributes=attrs)
            return
        self._events.publish(f"node.{change.kind}", network=DEFAULT_NETWORK, attributes=attrs)
        self._refresh_firewall()
