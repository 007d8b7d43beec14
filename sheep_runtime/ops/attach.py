"""Attach and detach: the only place that sequences the kernel steps of a network
attachment. Each step pushes its undo before the next, so a failure at any step
leaves no veth, no lease and no record; the store commit comes last."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

from sheep_runtime.errors import AlreadyExists, InvalidArgument, KernelError, ResourceExhausted
from sheep_runtime.metrics import Metrics
from sheep_runtime.model import Attachment, Container, Network, PortMapping
from sheep_runtime.names import container_mac, host_veth_name
from sheep_runtime.netlink import ContainerNetns, LinkManager
from sheep_runtime.ops.events import EventBus
from sheep_runtime.ops.faults import Faults
from sheep_runtime.ops.firewall import FirewallSync
from sheep_runtime.ops.networks import NetworkRegistry
from sheep_runtime.ops.ports import PortTable
from sheep_runtime.ops.undo import UndoStack
from sheep_runtime.store import Store

log = logging.getLogger(__name__)


class Attacher:
    """Plugs containers into networks and unplugs them."""

    def __init__(self, *, store: Store, networks: NetworkRegistry, links: LinkManager,
                 firewall: FirewallSync, ports: PortTable, metrics: Metrics,
                 events: EventBus, faults: Faults) -> None:
        self._store = store
        self._networks = networks
        self._links = links
        self._firewall = firewall
        self._ports = ports
        self._metrics = metrics
        self._events = events
        self._faults = faults
        # Host veths between their creation and their store commit: leak collection
        # must not take them for leftovers.
        self.in_flight: set[str] = set()

    @contextmanager
    def _phase(self, hist: str, net: Network, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        histogram = (self._metrics.setup_seconds if hist == "setup"
                     else self._metrics.teardown_seconds)
        histogram.labels(net.name, phase).observe(time.perf_counter() - t0)

    def _lease(self, net: Network, ip: IPv4Address | None) -> IPv4Address:
        pool = self._networks.pool(net)
        if ip is None:
            try:
                return pool.allocate()
            except ResourceExhausted as e:
                self._metrics.exhausted.labels(net.name).inc()
                raise ResourceExhausted(
                    f"network {net.name!r} ({net.subnet}) has no free address: "
                    f"{pool.allocated} of {pool.capacity} leased",
                    reason="ADDRESS_POOL_EXHAUSTED", resource_type="network",
                    resource_name=net.name) from e
        try:
            pool.reserve(ip)
        except AlreadyExists as e:
            holder = self._networks.lease_holder(net, ip)
            who = f"container {holder[:12]}" if holder else "a container being attached"
            raise AlreadyExists(f"address {ip} on network {net.name!r} is already leased "
                                f"to {who}", reason="ADDRESS_TAKEN", resource_type="address",
                                resource_name=str(ip)) from e
        except InvalidArgument as e:
            raise InvalidArgument(f"{e} (network {net.name!r})", field="ip") from e
        return ip

    async def attach(self, c: Container, net: Network, *, inside: ContainerNetns,
                     ip: IPv4Address | None, interface_name: str, default_route: bool,
                     ports: Sequence[PortMapping] = (), seq: int = 0) -> Attachment:
        """Connect `c` (whose netns `inside` is a handle on) to `net`; all or nothing."""
        if ports and net.internal:
            raise InvalidArgument(f"network {net.name!r} is internal: it cannot publish "
                                  "ports", field="ports")
        undo = UndoStack()
        t_start = time.perf_counter()
        pool = self._networks.pool(net)
        host_ifname = host_veth_name(c.id, net.id)
        self.in_flight.add(host_ifname)
        try:
            with self._phase("setup", net, "ipam"):
                address = self._lease(net, ip)
                undo.push(f"release {address}", lambda: pool.release(address))
                self._ports.reserve(c.id, ports)
                undo.push("release ports", lambda: self._ports.release(c.id, ports))
            self._faults.check("ipam")
            a = Attachment(
                container_id=c.id, network_id=net.id, interface_name=interface_name,
                address=IPv4Interface(f"{address}/{net.subnet.prefixlen}"),
                gateway=net.gateway, mac=container_mac(address), host_interface=host_ifname,
                ports=tuple(ports), seq=seq)
            await self._plug(a, net, inside=inside, default_route=default_route, undo=undo)
            if ports:
                with self._phase("setup", net, "firewall"):
                    await self._firewall.publish(host_ifname, self._firewall.rules_of(a))
                    undo.push("withdraw port rules", lambda: self._firewall.withdraw(host_ifname))
            self._faults.check("firewall")
            with self._phase("setup", net, "store"):
                self._store.add_attachment(a)
                self._firewall.committed(host_ifname)
                undo.push("remove attachment record",
                          lambda: self._store.remove_attachment(c.id, net.id))
            self._faults.check("store")
        except BaseException:
            await undo.unwind()
            self._networks.update_gauges(net)
            raise
        finally:
            self.in_flight.discard(host_ifname)
        undo.discard()
        self._metrics.setup_seconds.labels(net.name, "total").observe(
            time.perf_counter() - t_start)
        self._metrics.allocations.labels(net.name).inc()
        self._networks.update_gauges(net)
        self._events.publish("lease.allocated", container_id=c.id, network=net.name,
                             attributes={"address": str(address)})
        self._events.publish("network.attached", container_id=c.id, network=net.name,
                             attributes={"address": str(a.address),
                                         "interface": interface_name,
                                         "host_interface": host_ifname})
        return a

    async def _plug(self, a: Attachment, net: Network, *, inside: ContainerNetns,
                    default_route: bool, undo: UndoStack) -> None:
        """The kernel steps of an attachment. Besides the veth, the bridge port gets
        PROXYARP, a static fdb entry and a permanent bridge neighbour, and the
        container a permanent neighbour for its gateway: no ARP broadcast and no
        dynamic neighbour entry on either side, so every container stays reachable
        with ~1000 ports on one bridge. Hairpin lets a container reach its own
        published port; isolated ports (icc false) cannot talk to each other."""
        bridge = self._networks.bridge_index(net)
        with self._phase("setup", net, "veth"):
            port = await self._links.create_veth(
                host_ifname=a.host_interface, bridge_index=bridge, mtu=net.mtu,
                netns=inside.netns,
                peer_ifname=a.interface_name, peer_mac=a.mac)
            undo.push(f"delete veth {a.host_interface}",
                      lambda: self._links.delete_link(a.host_interface))
            await self._links.add_bridge_entries(
                port_index=port, bridge_index=bridge, mac=a.mac, address=a.address.ip,
                hairpin=not net.internal, isolated=not net.icc)
            undo.push(f"remove bridge neighbour {a.address.ip}",
                      lambda: self._links.remove_bridge_entries(bridge_index=bridge,
                                                                address=a.address.ip))
        self._faults.check("veth")
        with self._phase("setup", net, "address"):
            # one round trip: address, up, lo up, permanent gateway neighbour
            await inside.configure_interface(
                ifname=a.interface_name, address=a.address, mtu=net.mtu, loopback=True,
                neighbours=((net.gateway, net.bridge_mac),))
        self._faults.check("address")
        if default_route:
            with self._phase("setup", net, "route"):
                await inside.add_default_route(gateway=net.gateway, ifname=a.interface_name)
        self._faults.check("route")

    async def restore_bridge_entries(self, a: Attachment, net: Network, *,
                                     port_index: int) -> None:
        """Re-add a port's flags, fdb entry and bridge neighbour (lost when the bridge
        is re-made or set down)."""
        await self._links.add_bridge_entries(
            port_index=port_index, bridge_index=self._networks.bridge_index(net), mac=a.mac,
            address=a.address.ip, hairpin=not net.internal, isolated=not net.icc)

    async def replug(self, c: Container, a: Attachment, net: Network) -> None:
        """Re-create the kernel side of a recorded attachment (same address and MAC),
        e.g. after someone deleted its veth; all or nothing."""
        first = min((x.seq for x in self._store.attachments(container_id=c.id)), default=0)
        undo = UndoStack()
        async with await self._links.open_container_netns(Path(c.netns_path)) as inside:
            try:
                await self._plug(a, net, inside=inside, default_route=a.seq == first,
                                 undo=undo)
            except BaseException:
                await undo.unwind()
                raise

    async def detach(self, a: Attachment, net: Network) -> None:
        """Delete the host veth (its peer goes with it), the record, the lease and the
        port rules."""
        t_start = time.perf_counter()
        with self._phase("teardown", net, "veth"):
            await self.unplug(a, net)
        with self._phase("teardown", net, "store"):
            self._store.remove_attachment(a.container_id, a.network_id)
        self.release(a, net)
        if a.ports:
            with self._phase("teardown", net, "firewall"):
                await self._firewall.sync()
        self._metrics.teardown_seconds.labels(net.name, "total").observe(
            time.perf_counter() - t_start)
        self._events.publish("network.detached", container_id=a.container_id,
                             network=net.name, attributes={"address": str(a.address)})

    async def unplug(self, a: Attachment, net: Network) -> None:
        """Delete the host veth (its peer and fdb entry go with it) and the bridge's
        neighbour entry for the address (a leftover is only logged: it is replaced by
        the next attach of that address, whose MAC derives from it)."""
        await self._links.delete_link(a.host_interface)
        try:
            await self._links.remove_bridge_entries(
                bridge_index=self._networks.bridge_index(net), address=a.address.ip)
        except (KernelError, KeyError) as e:
            log.warning("remove bridge neighbour %s of %s: %s", a.address.ip, net.name, e)

    async def release_all(self, attachments: Sequence[Attachment]) -> None:
        """`release` each (their records are gone), then drop their port rules."""
        for a in attachments:
            self.release(a, self._networks.get_by_id(a.network_id))
        if any(a.ports for a in attachments):
            await self._firewall.sync()

    def release(self, a: Attachment, net: Network) -> None:
        """Return the attachment's address and host ports (its record is already gone;
        the caller syncs the firewall if it published ports)."""
        self._ports.release(a.container_id, a.ports)
        if self._networks.pool(net).release(a.address.ip):
            self._metrics.releases.labels(net.name).inc()
            self._events.publish("lease.released", container_id=a.container_id,
                                 network=net.name, attributes={"address": str(a.address.ip)})
        self._networks.update_gauges(net)
