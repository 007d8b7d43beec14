"""Networks: their records, address pools and bridges.

The registry is the one owner of every network's AddressPool. A pool counts leases
that are still being set up, so a network is never removed under an attach in flight.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

from sheep_runtime.config import DEFAULT_NETWORK
from sheep_runtime.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from sheep_runtime.ipam import AddressPool, AddressPool6
from sheep_runtime.ipam.subnets import (
    default_gateway,
    find_overlap,
    parse_subnet,
    parse_subnet6,
    validate_gateway,
    validate_gateway6,
)
from sheep_runtime.metrics import Metrics
from sheep_runtime.model import Network
from sheep_runtime.names import bridge_mac, bridge_name, new_id, validate_bridge_name, validate_name
from sheep_runtime.ops.backends import Links, Store
from sheep_runtime.ops.events import EventBus
from sheep_runtime.ops.firewall import FirewallSync
from sheep_runtime.ops.locks import KeyedLocks
from sheep_runtime.ops.undo import Teardown, UndoStack
from sheep_runtime.ops.views import NetworkView

DEFAULT_MTU = 1500


@dataclass(frozen=True)
class NetworkSpec:
    """A CreateNetwork request as given; `plan_network` validates it."""

    name: str
    subnet: str
    gateway: str = ""
    bridge: str = ""
    mtu: int = 0
    internal: bool = False
    icc: bool = True
    dns: bool = True
    subnet6: str = ""  # "" = IPv4 only
    gateway6: str = ""


def plan_network(spec: NetworkSpec) -> Network:
    """The network a valid `spec` describes (fresh id), or InvalidArgument; what
    depends on other networks and the host is checked under the registry's lock."""
    name = validate_name(spec.name, what="network")
    subnet = parse_subnet(spec.subnet)
    gateway = (validate_gateway(subnet, spec.gateway) if spec.gateway
               else default_gateway(subnet))
    mtu = spec.mtu or DEFAULT_MTU
    if not 68 <= mtu <= 65535:
        raise InvalidArgument(f"mtu {mtu} is out of range 68-65535", field="mtu")
    if spec.gateway6 and not spec.subnet6:
        raise InvalidArgument("gateway6 needs a subnet6", field="gateway6")
    subnet6 = parse_subnet6(spec.subnet6) if spec.subnet6 else None
    gateway6 = None
    if subnet6 is not None:
        gateway6 = (validate_gateway6(subnet6, spec.gateway6) if spec.gateway6
                    else default_gateway(subnet6))
    nid = new_id()
    bridge = validate_bridge_name(spec.bridge) if spec.bridge else bridge_name(nid)
    return Network(id=nid, name=name, bridge=bridge, bridge_mac=bridge_mac(nid),
                   subnet=subnet, gateway=gateway, mtu=mtu, internal=spec.internal,
                   icc=spec.icc, created_at=time.time(), dns=spec.dns, subnet6=subnet6,
                   gateway6=gateway6)


class NetworkRegistry:
    """Networks, their pools and bridges."""

    def __init__(self, *, store: Store, links: Links, firewall: FirewallSync,
                 metrics: Metrics, events: EventBus) -> None:
        self._store = store
        self._links = links
        self._firewall = firewall
        self._metrics = metrics
        self._events = events
        self._networks: dict[str, Network] = {}
        self._pools: dict[str, AddressPool] = {}
        self._pools6: dict[str, AddressPool6] = {}
        self._bridge_index: dict[str, int] = {}
        self._locks = KeyedLocks()
        # Bridges between their creation and their record: not leaks.
        self.in_flight: set[str] = set()

    async def load(self, *, default_bridge: str, default_subnet: IPv4Network,
                   default_subnet6: IPv6Network | None = None,
                   default_mtu: int | None = None) -> None:
        """Read networks and leases from the store, create the default network on first
        start (dual stack with `default_subnet6`), and ensure every bridge exists with
        its gateway addresses and is up. `default_mtu` (cluster mode: the overlay's)
        is the default network's MTU, also over the one recorded: containers attached
        from now on get it, running ones keep theirs."""
        for net in self._store.networks():
            if default_mtu and net.name == DEFAULT_NETWORK and net.mtu != default_mtu:
                net = dataclasses.replace(net, mtu=default_mtu)
            self._add(net)
        if not self._by_name(DEFAULT_NETWORK):
            nid = new_id()
            net = Network(id=nid, name=DEFAULT_NETWORK, bridge=default_bridge,
                          bridge_mac=bridge_mac(nid), subnet=default_subnet,
                          gateway=default_gateway(default_subnet),
                          mtu=default_mtu or DEFAULT_MTU,
                          internal=False, icc=True, created_at=time.time(),
                          subnet6=default_subnet6,
                          gateway6=default_gateway(default_subnet6) if default_subnet6
                          else None)
            self._store.add_network(net)
            self._add(net)
        for net in self._networks.values():
            attachments = self._store.attachments(network_id=net.id)
            self._pools[net.id].restore([a.address.ip for a in attachments],
                                        cursor=self._store.ipam_cursor(net.id))
            if (pool6 := self._pools6.get(net.id)) is not None:
                pool6.restore([a.address6.ip for a in attachments if a.address6],
                              cursor=self._store.ipam_cursor6(net.id))
            await self.ensure_bridge(net)
            self._update_gauges(net)
        await self._links.set_sysctl("net.ipv4.ip_forward", "1")

    def _add(self, net: Network) -> None:
        self._networks[net.id] = net
        self._pools[net.id] = AddressPool(net.subnet, gateway=net.gateway)
        if net.subnet6 is not None and net.gateway6 is not None:
            self._pools6[net.id] = AddressPool6(net.subnet6, gateway=net.gateway6)
        self._metrics.networks.set(len(self._networks))

    def _forget(self, net: Network) -> None:
        self._pools6.pop(net.id, None)
        del self._networks[net.id], self._pools[net.id]
        self._bridge_index.pop(net.id, None)
        self._metrics.networks.set(len(self._networks))
        for gauge in (self._metrics.leases_allocated, self._metrics.leases_capacity):
            with contextlib.suppress(KeyError):
                gauge.remove(net.name)

    def _by_name(self, name: str) -> Network | None:
        return next((n for n in self._networks.values() if n.name == name), None)

    async def ensure_bridge(self, net: Network) -> int:
        """Converge the network's bridge; return its ifindex."""
        if net.subnet6 is not None:
            # Routing between a bridge and the outside; the host then ignores router
            # advertisements on its own interfaces unless they set accept_ra=2.
            await self._links.set_sysctl("net.ipv6.conf.all.forwarding", "1")
        index = await self._links.ensure_bridge(
            name=net.bridge, mac=net.bridge_mac, gateway=net.gateway_interface, mtu=net.mtu,
            gateway6=net.gateway6_interface)
        self._bridge_index[net.id] = index
        if not net.internal:
            # Lets DNAT of the host's own connections to 127.0.0.1 leave via the bridge;
            # the firewall drops packets from bridges to 127/8 (CVE-2020-8558).
            await self._links.set_sysctl("route_localnet", "1", ifname=net.bridge)
        return index

    def bridge_index(self, net: Network) -> int:
        return self._bridge_index[net.id]

    def bridge_index_or_none(self, network_id: str) -> int | None:
        """The bridge's ifindex as last ensured, None for an unknown network."""
        return self._bridge_index.get(network_id)

    def get(self, ref: str) -> Network:
        """A network by name, id or unique id prefix."""
        if not ref:
            raise InvalidArgument("a network name or id is required", field="network")
        net = self._by_name(ref) or self._networks.get(ref)
        if net:
            return net
        found = [n for n in self._networks.values() if n.id.startswith(ref)]
        if len(found) == 1:
            return found[0]
        if found:
            raise InvalidArgument(f"network id prefix {ref!r} is ambiguous: "
                                  + ", ".join(n.name for n in found))
        raise NotFound(f"no network named {ref!r}; see `sheepctl network ls`",
                       reason="NETWORK_NOT_FOUND", resource_type="network", resource_name=ref)

    def get_by_id(self, network_id: str) -> Network:
        return self._networks[network_id]

    def get_by_id_or_none(self, network_id: str) -> Network | None:
        return self._networks.get(network_id)

    def pool(self, net: Network) -> AddressPool:
        return self._pools[net.id]

    def pool6(self, net: Network) -> AddressPool6 | None:
        """The IPv6 pool of a dual-stack network; None for IPv4 only."""
        return self._pools6.get(net.id)

    def all(self) -> list[Network]:
        return sorted(self._networks.values(), key=lambda n: n.created_at)

    def view(self, net: Network) -> NetworkView:
        pool = self._pools[net.id]
        holders = tuple(a.container_id for a in self._store.attachments(network_id=net.id))
        pool6 = self._pools6.get(net.id)
        return NetworkView(network=net, leases_allocated=pool.allocated,
                           leases_capacity=pool.capacity, containers=holders,
                           leases6_allocated=pool6.allocated if pool6 else 0)

    def update_gauges(self, net: Network) -> None:
        self._update_gauges(net)

    def _update_gauges(self, net: Network) -> None:
        pool = self._pools[net.id]
        self._metrics.leases_allocated.labels(net.name).set(pool.allocated)
        self._metrics.leases_capacity.labels(net.name).set(pool.capacity)
        m = self._metrics
        for counter in (m.allocations, m.releases, m.exhausted, m.reclaimed):
            counter.labels(net.name)  # exported at 0, so increase() sees the first

    async def create(self, spec: NetworkSpec) -> Network:
        """Validate, make the bridge, record the network, open the firewall for it."""
        net = plan_network(spec)
        async with self._locks.hold("create"):
            await self._check_free(net)
            undo = UndoStack(self._metrics)
            self.in_flight.add(net.bridge)
            try:
                undo.push(f"delete bridge {net.bridge}",
                          lambda: self._links.delete_link(net.bridge))
                await self.ensure_bridge(net)
                self._store.add_network(net)
                undo.push("remove network record", lambda: self._store.remove_network(net.id))
                self._add(net)
                undo.push("forget network", lambda: self._forget(net))
                await self._firewall.sync()
            except BaseException:
                await undo.unwind()
                raise
            finally:
                self.in_flight.discard(net.bridge)
            self._update_gauges(net)
        self._events.publish("network.created", network=net.name,
                             attributes={"subnet": str(net.subnet), "bridge": net.bridge})
        return net

    async def _check_free(self, net: Network) -> None:
        """Name, bridge and subnet must not clash with other networks or the host."""
        if self._by_name(net.name):
            raise AlreadyExists(f"a network named {net.name!r} already exists",
                                reason="NAME_TAKEN", resource_type="network",
                                resource_name=net.name)
        if any(n.bridge == net.bridge for n in self._networks.values()):
            raise AlreadyExists(f"bridge {net.bridge!r} already belongs to another network",
                                reason="BRIDGE_TAKEN", resource_type="bridge",
                                resource_name=net.bridge)
        clash = find_overlap(net.subnet, {n.name: n.subnet for n in self._networks.values()})
        if clash:
            raise InvalidArgument(f"subnet {net.subnet} overlaps network {clash!r}",
                                  field="subnet")
        route = await self._host_route_overlap(net.subnet)
        if route:
            raise InvalidArgument(f"subnet {net.subnet} overlaps the host route {route}",
                                  field="subnet")
        if net.subnet6 is not None:
            await self._check_free6(net.subnet6)
        if await self._links.get_link(net.bridge) is not None:
            raise AlreadyExists(f"an interface named {net.bridge!r} already exists on the "
                                "host", reason="INTERFACE_TAKEN", resource_type="interface",
                                resource_name=net.bridge)

    async def _check_free6(self, subnet6: IPv6Network) -> None:
        clash = find_overlap(subnet6, {n.name: n.subnet6 for n in self._networks.values()
                                       if n.subnet6 is not None})
        if clash:
            raise InvalidArgument(f"subnet6 {subnet6} overlaps network {clash!r}",
                                  field="subnet6")
        for dst in await self._links.route_destinations6():
            # the default route and link-local (fe80::/64 on every link) are no clash
            if dst.prefixlen and not dst.is_link_local and dst.overlaps(subnet6):
                raise InvalidArgument(f"subnet6 {subnet6} overlaps the host route {dst}",
                                      field="subnet6")

    async def _host_route_overlap(self, subnet: IPv4Network) -> str | None:
        for dst in await self._links.route_destinations():
            if dst.prefixlen and dst.overlaps(subnet):
                return str(dst)
        return None

    async def remove(self, ref: str) -> Network:
        """Remove a network with no containers attached, and its bridge."""
        net = self.get(ref)
        if net.name == DEFAULT_NETWORK:
            raise FailedPrecondition(f"the default network {DEFAULT_NETWORK} cannot be removed",
                                     reason="DEFAULT_NETWORK", resource_type="network",
                                     resource_name=DEFAULT_NETWORK)
        async with self._locks.hold(net.id):
            holders = sorted({a.container_id[:12] for a in
                              self._store.attachments(network_id=net.id)})
            if holders or self._pools[net.id].allocated:
                raise FailedPrecondition(
                    f"network {net.name!r} still has containers attached: "
                    + (", ".join(holders) or "attach in progress")
                    + "; detach or remove them first",
                    reason="NETWORK_IN_USE", resource_type="network", resource_name=net.name)
            # netavark's order: records and firewall first, the bridge last
            self._store.remove_network(net.id)
            self._forget(net)
            t = Teardown(f"remove network {net.name}", self._metrics)
            if not await t.step("firewall", self._firewall.sync):
                self._firewall.retry_later()
            await t.step("bridge", lambda: self._links.delete_link(net.bridge))
        self._events.publish("network.removed", network=net.name)
        t.raise_if_failed(f"network {net.name} was removed")
        return net

