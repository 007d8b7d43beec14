"""The etcd agent: agree on the cluster config, hold this node's subnet, and keep the
overlay equal to the other nodes' subnet leases.

A subnet lease is a reservation, not a liveness signal: its etcd lease has a TTL of
hours and is renewed every TTL/3; a crashed agent leaves its peers' routes in place
(the spike measured a data-plane outage 5.8 s after an agent crash with a 6 s TTL).
Only `leave` (or the lease expiring after a long absence) frees a subnet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Protocol

from aetcd.exceptions import (  # type: ignore[import-untyped]
    ClientError,
    RevisionCompactedError,
    WatchTimeoutError,
)

from sheep_runtime.cluster.claims import Claims
from sheep_runtime.cluster.etcd import Counted, client
from sheep_runtime.cluster.model import SUBNETS, NodeSettings, SubnetLease, parse_key, vtep_mac
from sheep_runtime.errors import FailedPrecondition, SheepError, Unavailable
from sheep_runtime.metrics import Metrics
from sheep_runtime.model import ClusterChange, ClusterNode, ClusterNodeState, ClusterStatus

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0

Peer = tuple[IPv4Network, IPv4Address, str]
OnChange = Callable[[ClusterChange], None]


class DataPlane(Protocol):
    """The overlay's kernel side (netlink's `Overlay`)."""

    async def ensure_device(self, *, name: str, mac: str, vni: int, port: int,
                            local: IPv4Address, subnet: IPv4Network) -> tuple[str, int]: ...
    async def add_peer(self, peer: Peer) -> None: ...
    async def remove_peer(self, peer: Peer) -> None: ...
    async def reconcile(self, peers: Sequence[Peer]) -> Sequence[IPv4Network]: ...
    async def teardown(self) -> None: ...


class EtcdUnavailable(Unavailable):
    """etcd did not answer."""


def _peer(lease: SubnetLease) -> Peer:
    return lease.subnet, lease.public_ip, lease.vtep_mac


class ClusterAgent:
    """This node's membership: `join` before the runtime is built (it yields the
    default network's subnet), `start_overlay` (the container MTU), then `run` as a
    service until `leave` or the daemon stops."""

    def __init__(self, settings: NodeSettings, *, dataplane: DataPlane, metrics: Metrics,
                 on_close: Callable[[], Any] | None = None) -> None:
        self.settings = settings
        self._on_close = on_close
        self._dp = dataplane
        self._metrics = metrics
        self._etcd = client(settings.endpoints, tls=settings.tls)
        self._call = Counted(metrics)
        self._claims = Claims(settings, etcd=self._etcd, call=self._call)
        self.lease: SubnetLease | None = None
        self.peers: dict[IPv4Network, SubnetLease] = {}
        self._programmed: set[IPv4Network] = set()
        self._revision = 0  # of the last change applied (list or watch event)
        self._dp_lock = asyncio.Lock()  # one view of the peers reaches the kernel at a time
        self._kick = asyncio.Event()  # reconcile now (a peer failed to program)
        self._loops: list[asyncio.Task[None]] = []
        self._leaving = False
        self.left = False
        self.device = ""
        self.mtu = 0

    @property
    def subnet(self) -> IPv4Network:
        if self.lease is None:
            raise RuntimeError("ClusterAgent.join not called")
        return self.lease.subnet

    async def close(self) -> None:
        """Close the etcd connection (and `on_close`, the data plane's); the subnet
        lease stays (a reservation)."""
        await self._etcd.close()
        if self._on_close is not None:
            await self._on_close()

    # -- joining ------------------------------------------------------------------

    async def join(self, previous: IPv4Network | None) -> IPv4Network:
        """Agree on /sheep/config, then hold a subnet: `previous` (the one the local
        store records) if etcd shows it as ours or free, any subnet etcd records for
        this node name, or a new random one. FailedPrecondition if another node holds
        `previous` or the flags disagree with the cluster."""
        s = self.settings
        if previous is not None and not (previous.subnet_of(s.config.network)
                                         and previous.prefixlen == s.config.subnet_len):
            raise FailedPrecondition(
                f"the stored default network has subnet {previous}, which is not a "
                f"/{s.config.subnet_len} of the cluster network {s.config.network}: this "
                "state dir belongs to a single-host sheepd or another cluster")
        try:
            await self._claims.agree_config()
            self.lease = await self._claims.acquire(previous)
            # The peers as etcd has them now: the firewall opens to them before the
            # first sync; the watch loop programs them.
            _, leases = await self._claims.list_subnets()
        except ClientError as e:
            raise EtcdUnavailable(f"etcd {','.join(s.endpoints)}: {e}") from e
        self.peers = {sub: lease for sub, (lease, _) in leases.items()
                      if lease.node != s.name and sub != self.lease.subnet}
        self._metrics.cluster_peers.set(len(self.peers))
        log.info("cluster: node %s holds %s", s.name, self.lease.subnet)
        return self.lease.subnet

    async def start_overlay(self) -> tuple[str, int]:
        """Converge the overlay device for our subnet; return (device, container MTU)."""
        s = self.settings
        self.device, self.mtu = await self._dp.ensure_device(
            name=s.device, mac=vtep_mac(s.name), vni=s.config.vni, port=s.config.port,
            local=s.underlay, subnet=self.subnet)
        return self.device, self.mtu

    # -- what this node knows -------------------------------------------------------

    def _node(self, lease: SubnetLease) -> ClusterNode:
        state: ClusterNodeState
        if lease.node == self.settings.name and lease.subnet == self.subnet:
            state = "self"
        elif lease.subnet in self._programmed and self.peers.get(lease.subnet) == lease:
            state = "programmed"
        else:
            state = "pending"
        return ClusterNode(name=lease.node, underlay_address=lease.public_ip,
                           subnet=lease.subnet, vtep_mac=lease.vtep_mac, state=state)

    def _status(self, leases: Sequence[SubnetLease]) -> ClusterStatus:
        s = self.settings
        me = self._node(self.lease or self._claims.mine(self.subnet))
        nodes = sorted((self._node(lease) for lease in leases), key=lambda n: n.subnet)
        return ClusterStatus(backend=s.config.backend, network=s.config.network,
                             subnet_len=s.config.subnet_len, vni=s.config.vni,
                             port=s.config.port, node=me, nodes=tuple(nodes),
                             etcd_endpoints=s.endpoints, device=self.device)

    def view(self) -> ClusterStatus:
        """The cluster as last seen from etcd (no request)."""
        return self._status([self._claims.mine(self.subnet), *self.peers.values()])

    async def fetch(self) -> ClusterStatus:
        """The cluster as etcd records it now; EtcdUnavailable if it does not answer."""
        try:
            _, leases = await self._claims.list_subnets()
        except ClientError as e:
            raise EtcdUnavailable(f"etcd {','.join(self.settings.endpoints)}: {e}") from e
        return self._status([lease for lease, _ in leases.values()])

    # -- following etcd -------------------------------------------------------------

    async def run(self, on_change: OnChange) -> None:
        """Follow etcd (watch, periodic reconcile, lease renewal), reporting changes
        to `on_change`, until cancelled; after `leave`, only wait."""
        if not self.left:
            async with asyncio.TaskGroup() as tg:
                self._loops = [tg.create_task(self._watch_loop(on_change), name="cluster-watch"),
                               tg.create_task(self._reconcile_loop(on_change),
                                              name="cluster-reconcile"),
                               tg.create_task(self._renew_loop(), name="cluster-renew")]
        await asyncio.Event().wait()  # left the cluster: nothing more to follow

    async def _watch_loop(self, on_change: OnChange) -> None:
        """List, then watch from the next revision; a broken stream resumes from the
        last revision applied, a compacted one (or a failed list) re-lists."""
        listed = False
        while True:
            try:
                if not listed:
                    await self.resync(on_change)
                    listed = True
                await self._follow(self._revision + 1, on_change)
                # the stream ended without an error (the client closed it): resume
                await asyncio.sleep(RETRY_SECONDS)
            except (RevisionCompactedError, WatchTimeoutError) as e:
                log.warning("cluster: the watch fell behind a compaction or could not be "
                            "created (%s): re-listing", e)
                self._call.error("watch")
                listed = False
            except ClientError as e:
                log.warning("cluster: etcd watch broken (%s): resuming in %.0fs", e,
                            RETRY_SECONDS)
                self._call.error("watch")
                await asyncio.sleep(RETRY_SECONDS)

    async def resync(self, on_change: OnChange) -> None:
        """Re-list the subnet leases and make the kernel match; a peer that appeared
        or went since the last view is reported as joined or left."""
        revision, leases = await self._claims.list_subnets()
        if self.subnet not in leases and not self._leaving:
            log.warning("cluster: our subnet record %s is gone from etcd: claiming it again",
                        self.subnet)
            await self._claims.reclaim(self.subnet)
        async with self._dp_lock:
            if revision < self._revision:
                return  # the watch has applied newer changes meanwhile
            self._revision = revision
            listed = time.monotonic()
            new = {sub: lease for sub, (lease, _) in leases.items()
                   if lease.node != self.settings.name and sub != self.subnet}
            old, self.peers = self.peers, new
            for sub in old.keys() - new.keys():
                self._programmed.discard(sub)
            programmed = await self._program(since=listed)
        for sub in old.keys() - new.keys():
            on_change(ClusterChange("left", self._node(old[sub])))
        for sub in new.keys() - old.keys():
            on_change(ClusterChange("joined", self._node(new[sub])))
        for change in programmed:
            on_change(change)
        self._metrics.cluster_peers.set(len(self.peers))
        on_change(ClusterChange("synced"))

    async def _program(self, *, since: float) -> list[ClusterChange]:
        """Reconcile the kernel with `peers` (the caller holds the lock); return the
        peers it had to program."""
        try:
            done = await self._dp.reconcile([_peer(p) for p in self.peers.values()])
        except SheepError as e:
            log.warning("cluster: reconciling the overlay failed: %s", e)
            return []
        repaired = [sub for sub in done if sub in self._programmed]
        if repaired:
            log.info("cluster: reconcile repaired %d peer(s): %s", len(repaired),
                     ", ".join(map(str, repaired)))
            self._metrics.repairs.labels("overlay").inc(len(repaired))
        self._programmed = set(self.peers)
        latency = time.monotonic() - since
        return [self._programmed_change(self.peers[sub], latency=latency,
                                        repaired=sub in repaired) for sub in done]

    def _programmed_change(self, lease: SubnetLease, *, latency: float,
                           repaired: bool = False) -> ClusterChange:
        self._metrics.route_programming_seconds.observe(latency)
        return ClusterChange("programmed", self._node(lease), latency=latency,
                             repaired=repaired)

    async def _follow(self, start: int, on_change: OnChange) -> None:
        watch = await self._call("watch", self._etcd.watch_prefix(
            SUBNETS, start_revision=start, prev_kv=True))
        try:
            async for event in watch:
                await self._apply(event, on_change)
        finally:
            with contextlib.suppress(ClientError):
                await watch.cancel()

    async def _apply(self, event: Any, on_change: OnChange) -> None:
        received = time.monotonic()
        subnet = parse_key(event.kv.key)
        if event.kind == "DELETE" and subnet == self.subnet:
            self._revision = max(self._revision, event.kv.mod_revision)
            if not self._leaving:
                log.warning("cluster: our subnet record %s vanished: claiming it again",
                            subnet)
                await self._claims.reclaim(self.subnet)
            return
        async with self._dp_lock:
            self._revision = max(self._revision, event.kv.mod_revision)
            if event.kind == "PUT":
                await self._put(event, on_change, received=received)
            else:
                await self._delete(subnet, on_change)
        self._metrics.cluster_peers.set(len(self.peers))

    async def _put(self, event: Any, on_change: OnChange, *, received: float) -> None:
        try:
            lease = SubnetLease.decode(event.kv.key, event.kv.value)
        except (ValueError, KeyError) as e:
            log.warning("cluster: ignoring bad record %r: %s", event.kv.key, e)
            return
        if lease.subnet == self.subnet:
            if lease.node != self.settings.name:
                log.error("cluster: node %s wrote a record on our subnet %s", lease.node,
                          lease.subnet)
            return
        old = self.peers.get(lease.subnet)
        if old == lease and lease.subnet in self._programmed:
            return
        self.peers[lease.subnet] = lease
        if old is None:
            log.info("cluster: peer %s joined with %s via %s", lease.node, lease.subnet,
                     lease.public_ip)
        try:
            if old is not None and old != lease:
                await self._dp.remove_peer(_peer(old))
            await self._dp.add_peer(_peer(lease))
        except SheepError as e:
            log.warning("cluster: programming peer %s failed (the reconcile retries): %s",
                        lease.node, e)
            self._programmed.discard(lease.subnet)
            self._kick.set()
        else:
            self._programmed.add(lease.subnet)
        done = time.monotonic()
        # Reported once the kernel is done: the listeners (events, the firewall's
        # peer set) must not delay the data plane.
        if old is None:
            on_change(ClusterChange("joined", self._node(lease)))
        if lease.subnet in self._programmed:
            on_change(self._programmed_change(lease, latency=done - received))

    async def _delete(self, subnet: IPv4Network, on_change: OnChange) -> None:
        gone = self.peers.pop(subnet, None)
        if gone is None:
            return
        node = self._node(gone)
        self._programmed.discard(subnet)
        try:
            await self._dp.remove_peer(_peer(gone))
        except SheepError as e:
            log.warning("cluster: removing peer %s failed (the reconcile retries): %s",
                        gone.node, e)
            self._kick.set()
        log.info("cluster: peer %s left (%s)", gone.node, subnet)
        on_change(ClusterChange("left", node))

    async def _reconcile_loop(self, on_change: OnChange) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.settings.reconcile_seconds)
            self._kick.clear()
            try:
                await self.resync(on_change)
            except ClientError as e:  # etcd away: keep the last known peers programmed
                log.warning("cluster: etcd unreachable for the reconcile (%s)", e)
                async with self._dp_lock:
                    programmed = await self._program(since=time.monotonic())
                for change in programmed:
                    on_change(change)

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(max(self.settings.lease_ttl / 3, 1))
            try:
                if not await self._claims.renew():
                    log.warning("cluster: our etcd lease expired: claiming %s again",
                                self.subnet)
                    await self._claims.reclaim(self.subnet)
            except ClientError as e:
                log.warning("cluster: renewing the subnet lease failed (%s)", e)

    # -- leaving --------------------------------------------------------------------

    async def leave(self) -> IPv4Network:
        """Release our subnet in etcd (the record, then the lease), stop following
        etcd, and remove the overlay (peers' entries, the VXLAN device). The caller
        checks that no container uses the subnet. EtcdUnavailable leaves all as it was."""
        self._leaving = True
        try:
            await self._claims.release(self.subnet)
        except ClientError as e:
            self._leaving = False
            raise EtcdUnavailable(f"etcd {','.join(self.settings.endpoints)}: {e}") from e
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        async with self._dp_lock:
            await self._dp.teardown()
            self.peers.clear()
            self._programmed.clear()
        self.left = True
        self._metrics.cluster_peers.set(0)
        log.info("cluster: node %s left the cluster and released %s", self.settings.name,
                 self.subnet)
        return self.subnet
