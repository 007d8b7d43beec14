"""Attach and detach: the only place that sequences the kernel steps of a network
attachment. An attach applies an `AttachPlan` step by step, pushing each step's undo
before the next, so a failure at any step leaves no veth, lease or record; the store
commit comes last. A detach runs in a stated order and keeps going past errors."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import partial
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from pathlib import Path
from typing import Any, TypeVar

from sheep_runtime.errors import AlreadyExists, InvalidArgument, ResourceExhausted
from sheep_runtime.ipam.base import OffsetPool
from sheep_runtime.metrics import Metrics
from sheep_runtime.model import Attachment, Container, Network, PortEntries
from sheep_runtime.names import container_mac
from sheep_runtime.ops.backends import ContainerLinks, Links, Store
from sheep_runtime.ops.events import EventBus
from sheep_runtime.ops.firewall import FirewallSync, rules_of
from sheep_runtime.ops.networks import NetworkRegistry
from sheep_runtime.ops.plans import AttachPlan
from sheep_runtime.ops.ports import PortTable
from sheep_runtime.ops.undo import Teardown, UndoStack

log = logging.getLogger(__name__)


A = TypeVar("A", IPv4Address, IPv6Address)


class Attacher:
    """Plugs containers into networks and unplugs them."""

    def __init__(self, *, store: Store, networks: NetworkRegistry, links: Links,
                 firewall: FirewallSync, ports: PortTable, metrics: Metrics,
                 events: EventBus) -> None:
        self._store = store
        self._networks = networks
        self._links = links
        self._firewall = firewall
        self._ports = ports
        self._metrics = metrics
        self._events = events
        # Host veths an attach or a detach is working on, their records changing: leak
        # collection must not take them for leftovers (an attach's are not recorded
        # yet), nor the healer their events for damage.
        self.in_flight: set[str] = set()

    @contextmanager
    def _phase(self, hist: str, net: Network, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        histogram = (self._metrics.setup_seconds if hist == "setup"
                     else self._metrics.teardown_seconds)
        histogram.labels(net.name, phase).observe(time.perf_counter() - t0)

    def _lease6(self, net: Network, plan: AttachPlan) -> IPv6Address | None:
        """The IPv6 lease of a dual-stack network (None for IPv4 only)."""
        pool6 = self._networks.pool6(net)
        if pool6 is None:
            return None
        return self._take(net, pool6, plan.ip6, plan.preferred6)

    def _lease(self, net: Network, ip: IPv4Address | None,
               preferred: IPv4Address | None = None) -> IPv4Address:
        return self._take(net, self._networks.pool(net), ip, preferred)

    def _take(self, net: Network, pool: OffsetPool[A, Any], ip: A | None,
              preferred: A | None) -> A:
        """Lease `ip` (static), or `preferred` if free, or the next free address."""
        if ip is None and preferred is not None:
            with suppress(AlreadyExists, InvalidArgument):
                pool.reserve(preferred)
                return preferred
        if ip is None:
            try:
                return pool.allocate()
            except ResourceExhausted as e:
                self._metrics.exhausted.labels(net.name).inc()
                raise ResourceExhausted(
                    f"network {net.name!r} ({pool.subnet}) has no free address: "
                    f"{pool.allocated} of {pool.capacity} leased",
                    reason="ADDRESS_POOL_EXHAUSTED", resource_type="network",
                    resource_name=net.name) from e
        try:
            pool.reserve(ip)
        except AlreadyExists as e:
            holder = self._store.lease_holder(net.id, ip)
            who = f"container {holder[:12]}" if holder else "a container being attached"
            raise AlreadyExists(f"address {ip} on network {net.name!r} is already leased "
                                f"to {who}", reason="ADDRESS_TAKEN", resource_type="address",
                                resource_name=str(ip)) from e
        except InvalidArgument as e:
            raise InvalidArgument(f"{e} (network {net.name!r})", field="ip") from e
        return ip

    async def attach(self, c: Container, plan: AttachPlan, *, inside: ContainerLinks
                     ) -> Attachment:
        """Apply `plan` to `c` (whose netns `inside` is a handle on); all or nothing."""
        net = plan.network
        undo = UndoStack(self._metrics)
        t_start = time.perf_counter()
        self.in_flight.add(plan.host_interface)
        try:
            with self._phase("setup", net, "ipam"):
                address = self._lease(net, plan.ip, plan.preferred)
                pool = self._networks.pool(net)
                undo.push(f"release {address}", lambda: pool.release(address))
                address6 = self._lease6(net, plan)
                if address6 is not None and (pool6 := self._networks.pool6(net)):
                    undo.push(f"release {address6}", partial(pool6.release, address6))
                self._ports.reserve(c.id, plan.ports)
                undo.push("release ports", lambda: self._ports.release(c.id, plan.ports))
            a = Attachment(
                container_id=c.id, network_id=net.id, interface_name=plan.interface_name,
                address=IPv4Interface(f"{address}/{net.subnet.prefixlen}"),
                gateway=net.gateway, mac=container_mac(address),
                host_interface=plan.host_interface, ports=plan.ports, seq=plan.seq,
                aliases=plan.aliases,
                address6=(IPv6Interface(f"{address6}/{net.subnet6.prefixlen}")
                          if address6 is not None and net.subnet6 else None),
                gateway6=net.gateway6 if address6 is not None else None)
            await self._plug(a, net, netns=Path(c.netns_path), inside=inside,
                             default_route=plan.default_route,
                             default_route6=plan.default_route6, undo=undo)
            if a.ports:
                with self._phase("setup", net, "firewall"):
                    await self._firewall.publish(a.host_interface, rules_of(a, net))
                    undo.push("withdraw port rules",
                              lambda: self._firewall.unpublish(a.host_interface))
            with self._phase("setup", net, "store"):
                self._store.add_attachment(a, dynamic=plan.ip is None,
                                           dynamic6=plan.ip6 is None)
                self._firewall.committed(a.host_interface)
        except BaseException:
            await undo.unwind()
            self._networks.update_gauges(net)
            raise
        finally:
            self.in_flight.discard(plan.host_interface)
        self._metrics.setup_seconds.labels(net.name, "total").observe(
            time.perf_counter() - t_start)
        self._metrics.allocations.labels(net.name).inc()
        self._networks.update_gauges(net)
        self._events.publish("lease.allocated", container_id=c.id, network=net.name,
                             attributes=_addresses(address, address6))
        self._events.publish("network.attached", container_id=c.id, network=net.name,
                             attributes={"address": str(a.address),
                                         "interface": a.interface_name,
                                         "host_interface": a.host_interface})
        return a

    async def _plug(self, a: Attachment, net: Network, *, netns: Path,
                    inside: ContainerLinks, default_route: bool, undo: UndoStack,
                    default_route6: bool = False) -> None:
        """The kernel steps of an attachment. Besides the veth, the bridge port gets
        PROXYARP, a static fdb entry and a permanent bridge neighbour, and the
        container a permanent neighbour for its gateway: no ARP broadcast and no
        dynamic neighbour entry on either side, so every container stays reachable
        with ~1000 ports on one bridge. Hairpin lets a container reach its own
        published port; isolated ports (icc false) cannot talk to each other. The
        veth and its port entries take one worker round trip."""
        bridge = self._networks.bridge_index(net)
        with self._phase("setup", net, "veth"):
            await self._links.create_veth(
                host_ifname=a.host_interface, bridge_index=bridge, mtu=net.mtu,
                netns=netns, peer_ifname=a.interface_name, peer_mac=a.mac,
                entries=_port_entries(a, net))
            undo.push(f"delete veth {a.host_interface}",
                      lambda: self._links.delete_link(a.host_interface))
            for ip in _ips(a):
                undo.push(f"remove bridge neighbour {ip}",
                          partial(self._links.remove_bridge_entries, bridge_index=bridge,
                                  address=ip))
        with self._phase("setup", net, "address"):
            # one round trip: addresses, up, lo up, permanent gateway neighbours, routes
            gateways: list[IPv4Address | IPv6Address] = [net.gateway]
            if a.gateway6 is not None:
                gateways.append(a.gateway6)
            routes = [gw for gw in gateways
                      if (default_route if gw.version == 4 else default_route6)]
            await inside.configure_interface(
                ifname=a.interface_name, address=a.address, mtu=net.mtu, loopback=True,
                neighbours=[(gw, net.bridge_mac) for gw in gateways], address6=a.address6,
                default_routes=routes)

    async def restore_bridge_entries(self, a: Attachment, net: Network, *,
                                     port_index: int) -> None:
        """Re-add a port's flags, fdb entry and bridge neighbour (lost when the bridge
        is re-made or set down)."""
        await self._links.add_bridge_entries(
            port_index=port_index, bridge_index=self._networks.bridge_index(net),
            entries=_port_entries(a, net))

    async def replug(self, c: Container, a: Attachment, net: Network) -> None:
        """Re-create the kernel side of a recorded attachment (same address and MAC),
        e.g. after someone deleted its veth; all or nothing."""
        others = self._store.attachments(container_id=c.id)
        first = min((x.seq for x in others), default=0)
        first6 = min((x.seq for x in others if x.address6), default=a.seq)
        undo = UndoStack(self._metrics)
        netns = Path(c.netns_path)
        inside = await self._links.open_container_netns(netns)
        try:
            await self._plug(a, net, netns=netns, inside=inside, default_route=a.seq == first,
                             default_route6=a.seq == first6, undo=undo)
        except BaseException:
            await undo.unwind()
            raise
        finally:
            inside.close()

    async def detach(self, attachments: Sequence[Attachment], *,
                     remove_records: Callable[[], object] | None = None) -> Teardown:
        """Tear `attachments` down in netavark's order: port rules first, then the veths
        (retired at once, deleted in the background with their peers; the fdb entries
        go as they leave the bridge) and bridge neighbours, then the records
        (`remove_records`, by default each attachment's), last the leases. Every step
        runs even if an earlier one failed; the returned Teardown holds the errors.

        An attachment whose veth could not be deleted keeps its record and lease (its
        address still answers in the kernel, so it must not be handed out again), and
        then `remove_records` is not called at all: a retry finishes the job."""
        t = Teardown("detach", self._metrics)
        t_start = time.perf_counter()
        whole_container = remove_records is not None
        keys = [a.host_interface for a in attachments if a.ports]
        if keys and not await t.step("firewall", lambda: self._firewall.withdraw(keys)):
            self._firewall.retry_later()
        names = {a.host_interface for a in attachments} - self.in_flight
        self.in_flight |= names
        try:
            unplugged = [a for a in attachments if await self._unplug(a, t)]
        finally:
            self.in_flight -= names
        if remove_records is None:
            remove_records = partial(self._remove_records, unplugged)
        elif len(unplugged) < len(attachments):
            remove_records = None  # the container's record stays with the kept attachment
        # A lease is free only once no record holds it (else a restart would see both).
        if remove_records is not None and await t.step("record", remove_records):
            self.release(unplugged)
        self._firewall.forget(keys)
        if len(unplugged) < len(attachments) and keys:
            self._firewall.retry_later()  # the rules of the kept ones come back
        for a in unplugged:
            net = self._networks.get_by_id(a.network_id)
            if not whole_container:  # the histogram times DetachNetwork calls
                self._metrics.teardown_seconds.labels(net.name, "total").observe(
                    time.perf_counter() - t_start)
            self._events.publish("network.detached", container_id=a.container_id,
                                 network=net.name, attributes={"address": str(a.address)})
        return t

    async def _unplug(self, a: Attachment, t: Teardown) -> bool:
        """Retire the veth (down, off the bridge, both ends renamed: it answers for
        nothing and its names are free; the ~20 ms deletion runs in the background)
        and remove the bridge neighbours, in one worker round trip; False if the veth
        or a neighbour remains (the address still answers: the lease stays)."""
        c = self._store.container(a.container_id)
        netns = Path(c.netns_path) if c is not None and c.netns_path else None
        return await t.step("veth", partial(
            self._links.retire_veth, a.host_interface, new_name=retired_veth_name(),
            netns=netns, peer_ifname=a.interface_name,
            bridge_index=self._networks.bridge_index_or_none(a.network_id),
            neighbours=_ips(a)))

    def _remove_records(self, attachments: Sequence[Attachment]) -> None:
        for a in attachments:
            self._store.remove_attachment(a.container_id, a.network_id)

    def release(self, attachments: Sequence[Attachment]) -> None:
        """Return the addresses and host ports of attachments whose records are gone."""
        for a in attachments:
            net = self._networks.get_by_id(a.network_id)
            self._ports.release(a.container_id, a.ports)
            released = self._networks.pool(net).release(a.address.ip)
            if a.address6 is not None and (pool6 := self._networks.pool6(net)):
                pool6.release(a.address6.ip)
            if released:
                self._metrics.releases.labels(net.name).inc()
                self._events.publish("lease.released", container_id=a.container_id,
                                     network=net.name, attributes=_addresses(
                                         a.address.ip, a.address6.ip if a.address6 else None))
            self._networks.update_gauges(net)


RETIRED_VETH_PREFIX = "shx"


def retired_veth_name() -> str:
    """A fresh name for a veth waiting for its deletion: 'shx' + 12 hex (random, so a
    veth retired twice in a row, or re-made and retired again, never clashes)."""
    return RETIRED_VETH_PREFIX + secrets.token_hex(6)


def _port_entries(a: Attachment, net: Network) -> PortEntries:
    """What the bridge port of `a` carries (see `Attacher._plug`)."""
    return PortEntries(mac=a.mac, address=a.address.ip,
                       address6=a.address6.ip if a.address6 else None,
                       hairpin=not net.internal, isolated=not net.icc)


def _ips(a: Attachment) -> list[IPv4Address | IPv6Address]:
    return [a.address.ip, *([a.address6.ip] if a.address6 else [])]


def _addresses(address: IPv4Address, address6: IPv6Address | None) -> dict[str, str]:
    return {"address": str(address), **({"address6": str(address6)} if address6 else {})}
