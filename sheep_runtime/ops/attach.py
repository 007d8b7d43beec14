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

from sheep_runtime.errors import AlreadyExists, InvalidArgument, ResourceExhausted
from sheep_runtime.metrics import Metrics
from sheep_runtime.model import Attachment, Container, Network, PortMapping
from sheep_runtime.names import container_mac, host_veth_name
from sheep_runtime.netlink import (
    LinkManager,
    RouteSocket,
    add_default_route,
    bring_up_loopback,
    configure_interface,
)
from sheep_runtime.ops.events import EventBus
from sheep_runtime.ops.faults import Faults
from sheep_runtime.ops.networks import NetworkRegistry
from sheep_runtime.ops.undo import UndoStack
from sheep_runtime.store import Store

log = logging.getLogger(__name__)


class Attacher:
    """Plugs containers into networks and unplugs them."""

    def __init__(self, *, store: Store, networks: NetworkRegistry, links: LinkManager,
                 metrics: Metrics, events: EventBus, faults: Faults) -> None:
        self._store = store
        self._networks = networks
        self._links = links
        self._metrics = metrics
        self._events = events
        self._faults = faults

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
                    f"{pool.allocated} of {pool.capacity} leased") from e
        try:
            pool.reserve(ip)
        except AlreadyExists as e:
            holder = self._networks.lease_holder(net, ip)
            who = f"container {holder[:12]}" if holder else "a container being attached"
            raise AlreadyExists(f"address {ip} on network {net.name!r} is already leased "
                                f"to {who}") from e
        except InvalidArgument as e:
            raise InvalidArgument(f"{e} (network {net.name!r})", field="ip") from e
        return ip

    async def attach(self, c: Container, net: Network, *, ipr: RouteSocket,
                     ip: IPv4Address | None, interface_name: str, default_route: bool,
                     ports: Sequence[PortMapping] = (), seq: int = 0) -> Attachment:
        """Connect `c` (whose netns `ipr` is a socket in) to `net`; all or nothing."""
        undo = UndoStack()
        t_start = time.perf_counter()
        pool = self._networks.pool(net)
        try:
            with self._phase("setup", net, "ipam"):
                address = self._lease(net, ip)
                undo.push(f"release {address}", lambda: pool.release(address))
            self._faults.check("ipam")
            host_ifname = host_veth_name(c.id, net.id)
            mac = container_mac(address)
            with self._phase("setup", net, "veth"):
                await self._links.create_veth(
                    host_ifname=host_ifname, bridge_index=self._networks.bridge_index(net),
                    mtu=net.mtu, netns=Path(c.netns_path), peer_ifname=interface_name,
                    peer_mac=mac)
                undo.push(f"delete veth {host_ifname}",
                          lambda: self._links.delete_link(host_ifname))
            self._faults.check("veth")
            iface = IPv4Interface(f"{address}/{net.subnet.prefixlen}")
            with self._phase("setup", net, "address"):
                await configure_interface(ipr, ifname=interface_name, address=iface,
                                          mtu=net.mtu)
                await bring_up_loopback(ipr)
            self._faults.check("address")
            if default_route:
                with self._phase("setup", net, "route"):
                    await add_default_route(ipr, gateway=net.gateway, ifname=interface_name)
            self._faults.check("route")
            attachment = Attachment(
                container_id=c.id, network_id=net.id, interface_name=interface_name,
                address=iface, gateway=net.gateway, mac=mac, host_interface=host_ifname,
                ports=tuple(ports), seq=seq)
            with self._phase("setup", net, "store"):
                self._store.add_attachment(attachment)
                undo.push("remove attachment record",
                          lambda: self._store.remove_attachment(c.id, net.id))
            self._faults.check("store")
        except BaseException:
            await undo.unwind()
            self._networks.update_gauges(net)
            raise
        undo.discard()
        self._metrics.setup_seconds.labels(net.name, "total").observe(
            time.perf_counter() - t_start)
        self._metrics.allocations.labels(net.name).inc()
        self._networks.update_gauges(net)
        self._events.publish("lease.allocated", container_id=c.id, network=net.name,
                             attributes={"address": str(address)})
        self._events.publish("network.attached", container_id=c.id, network=net.name,
                             attributes={"address": str(iface), "interface": interface_name,
                                         "host_interface": host_ifname})
        return attachment

    async def detach(self, a: Attachment, net: Network) -> None:
        """Delete the host veth (its peer goes with it), the record and the lease."""
        t_start = time.perf_counter()
        with self._phase("teardown", net, "veth"):
            await self._links.delete_link(a.host_interface)
        with self._phase("teardown", net, "store"):
            self._store.remove_attachment(a.container_id, a.network_id)
        self.release_lease(a, net)
        self._metrics.teardown_seconds.labels(net.name, "total").observe(
            time.perf_counter() - t_start)
        self._events.publish("network.detached", container_id=a.container_id,
                             network=net.name, attributes={"address": str(a.address)})

    def release_lease(self, a: Attachment, net: Network) -> None:
        """Return the attachment's address to the pool (its record is already gone)."""
        if self._networks.pool(net).release(a.address.ip):
            self._metrics.releases.labels(net.name).inc()
            self._events.publish("lease.released", container_id=a.container_id,
                                 network=net.name, attributes={"address": str(a.address.ip)})
        self._networks.update_gauges(net)
