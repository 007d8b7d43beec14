"""`Links` and `ContainerLinks` over the `FakeKernel` model, with the netlink
backend's verbs and errors (a KernelError with the kernel's errno)."""

from __future__ import annotations

import errno
from collections.abc import Sequence
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from pathlib import Path

from sheep_runtime.model import InterfaceCounters, InterfaceState, Link, PortEntries
from tests.fakes.calls import CallLog
from tests.fakes.errors import FakeKernelError, FakeLinkError, link_error
from tests.fakes.kernel import FakeKernel, HostLink, NsLink, check_ifname, fake_mac


def _injected(message: str) -> FakeLinkError:
    return FakeLinkError(message, errno=errno.EIO)


class FakeContainerLinks:
    """The steps inside one container netns."""

    def __init__(self, kernel: FakeKernel, calls: CallLog, netns: Path) -> None:
        self._kernel = kernel
        self._calls = calls
        self.netns = netns
        self._closed = False

    def _link(self, name: str, what: str) -> NsLink:
        if self._closed:
            raise FakeLinkError(f"netns {self.netns}: handle is closed", errno=errno.EBADF)
        link = self._kernel.ns(self.netns, what).links.get(name)
        if link is None:
            raise link_error(what, errno.ENODEV)
        return link

    async def configure_interface(
        self, *, ifname: str, address: IPv4Interface, mtu: int | None = None,
        loopback: bool = False,
        neighbours: Sequence[tuple[IPv4Address | IPv6Address, str]] = (),
        address6: IPv6Interface | None = None,
        default_routes: Sequence[IPv4Address | IPv6Address] = (),
    ) -> None:
        self._calls.record("netns.configure_interface", mutating=True, error=_injected)
        link = self._link(ifname, f"configure {ifname} with {address}")
        link.addresses.add(address)
        if address6 is not None:
            link.addresses.add(address6)
        link.mtu = mtu or link.mtu
        link.up = True
        if loopback:
            self._link("lo", "bring up lo").up = True
        for ip, mac in neighbours:
            link.neighbours[ip] = mac
        for gateway in default_routes:
            what = f"add default route via {gateway}"
            if not any(a.version == gateway.version and gateway in a.network
                       for a in link.addresses):
                raise link_error(what, errno.ENETUNREACH)
            ns = self._kernel.ns(self.netns, what)
            if isinstance(gateway, IPv6Address):
                ns.default_route6 = (gateway, ifname)
            else:
                ns.default_route = (gateway, ifname)

    async def read_interface(self, ifname: str) -> InterfaceState | None:
        self._calls.record("netns.read_interface", mutating=False)
        ns = self._kernel.ns(self.netns, f"read interface {ifname}")
        x = ns.links.get(ifname)
        if x is None:
            return None
        operstate = "UP" if x.up else "DOWN"
        link = Link(index=x.index, name=x.name, kind=x.kind, master=None,
                    operstate=operstate, mtu=x.mtu, mac=x.mac, up=x.up)
        return InterfaceState(link=link, addresses=tuple(sorted(
            a for a in x.addresses if isinstance(a, IPv4Interface))),
                              default_gateway=ns.default_route[0] if ns.default_route
                              else None)

    async def interface_counters(self, ifname: str) -> InterfaceCounters | None:
        self._calls.record("netns.interface_counters", mutating=False)
        if self._closed:
            raise FakeLinkError(f"netns {self.netns}: handle is closed", errno=errno.EBADF)
        x = self._kernel.ns(self.netns, f"read counters of {ifname}").links.get(ifname)
        return None if x is None else x.counters

    def close(self) -> None:
        self._calls.record("netns.close", mutating=False)
        if not self._closed:
            self._closed = True
            self._kernel.open_handles -= 1


class FakeLinks:
    """The daemon's own netns."""

    def __init__(self, kernel: FakeKernel, calls: CallLog) -> None:
        self._kernel = kernel
        self._calls = calls
        # Retired veths wait for `reap()` with `deferred`; else they go at once, as if
        # the backend's background deleter were instant.
        self.deferred = False
        self.pending: set[str] = set()

    def _record(self, name: str, *, mutating: bool) -> None:
        self._calls.record(f"links.{name}", mutating=mutating, error=_injected)

    async def ensure_bridge(self, *, name: str, mac: str, gateway: IPv4Interface,
                            mtu: int, gateway6: IPv6Interface | None = None) -> int:
        self._record("ensure_bridge", mutating=True)
        what = f"ensure bridge {name}"
        link = self._kernel.links.get(name)
        if link is None:
            link = self._kernel.add_host_link(name, kind="bridge", mtu=mtu, mac=mac, up=False)
        if link.kind != "bridge":
            raise link_error(f"{what}: a link of kind {link.kind} has that name", errno.EEXIST)
        if link.mac != mac:
            link.neighbours.clear()  # a bridge MAC change wipes its neighbour table
        link.mtu, link.mac, link.up = mtu, mac, True
        link.addresses.add(gateway)
        if gateway6 is not None:
            link.addresses.add(gateway6)
        return link.index

    async def delete_link(self, ifname: str) -> bool:
        self._record("delete_link", mutating=True)
        return self._kernel.delete_host_link(ifname)

    async def retire_veth(self, ifname: str, *, new_name: str, netns: Path | None = None,
                          peer_ifname: str = "", bridge_index: int | None = None,
                          neighbours: Sequence[IPv4Address | IPv6Address] = ()) -> bool:
        retired = self._retire(ifname, new_name=new_name, netns=netns,
                               peer_ifname=peer_ifname)
        if bridge_index is not None:
            for address in neighbours:
                await self.remove_bridge_entries(bridge_index=bridge_index, address=address)
        return retired

    def _retire(self, ifname: str, *, new_name: str, netns: Path | None,
                peer_ifname: str) -> bool:
        self._record("retire_veth", mutating=True)
        k = self._kernel
        link = k.links.get(ifname)
        if link is None:
            return False
        check_ifname(new_name, f"retire {ifname}")
        if new_name in k.links:
            raise link_error(f"retire link {ifname} as {new_name}: rename", errno.EEXIST)
        ns = k.netns.get(netns) if netns is not None else None
        if ns is not None and link.peer is not None and peer_ifname in ns.links:
            peer = ns.links.pop(peer_ifname)
            peer.name, peer.up, peer.peer = new_name, False, new_name
            ns.links[new_name] = peer
            link.peer = (link.peer[0], new_name)
        k.enslave(link, None)
        del k.links[ifname]
        link.name, link.up = new_name, False
        k.links[new_name] = link
        self.pending.add(new_name)
        if not self.deferred:
            self.reap()
        return True

    def pending_deletions(self) -> frozenset[str]:
        return frozenset(self.pending)

    def reap(self) -> None:
        """Delete the retired veths (the backend's background deletion)."""
        for name in sorted(self.pending):
            self._kernel.delete_host_link(name)
        self.pending.clear()

    async def get_link(self, ifname: str) -> Link | None:
        self._record("get_link", mutating=False)
        return self._kernel.link_info(ifname)

    async def list_links(self, prefix: str = "") -> list[Link]:
        self._record("list_links", mutating=False)
        found = (self._kernel.link_info(n) for n in self._kernel.links if n.startswith(prefix))
        return [x for x in found if x is not None]

    async def has_address(self, ifname: str, address: IPv4Interface) -> bool:
        self._record("has_address", mutating=False)
        link = self._kernel.links.get(ifname)
        return link is not None and address in link.addresses

    async def route_destinations(self) -> list[IPv4Network]:
        self._record("route_destinations", mutating=False)
        return [*self._kernel.routes, *(n for n in self._kernel.connected_routes()
                                        if isinstance(n, IPv4Network))]

    async def route_destinations6(self) -> list[IPv6Network]:
        self._record("route_destinations6", mutating=False)
        return [n for n in self._kernel.connected_routes() if isinstance(n, IPv6Network)]

    async def create_veth(self, *, host_ifname: str, bridge_index: int, mtu: int,
                          netns: Path, peer_ifname: str, peer_mac: str,
                          entries: PortEntries | None = None) -> int:
        self._record("create_veth", mutating=True)
        what = f"create veth {host_ifname} (peer {peer_ifname} in netns {netns})"
        ns = self._kernel.netns.get(netns)
        if ns is None:
            raise link_error(f"{what}: open netns", errno.ENOENT)
        check_ifname(host_ifname, what)
        check_ifname(peer_ifname, what)
        bridge = self._kernel.bridge(bridge_index, what)
        if host_ifname in self._kernel.links or peer_ifname in ns.links:
            raise link_error(what, errno.EEXIST)
        host = self._kernel.add_host_link(host_ifname, kind="veth", mtu=mtu,
                                          mac=fake_mac(host_ifname))
        host.master, host.peer = bridge.index, (netns, peer_ifname)
        ns.links[peer_ifname] = NsLink(index=ns.next_index, name=peer_ifname, kind="veth",
                                       mtu=mtu, mac=peer_mac, peer=host_ifname)
        ns.next_index += 1
        if entries is not None:
            try:  # as the backend: a fault here leaves neither veth nor neighbour
                await self.add_bridge_entries(port_index=host.index,
                                              bridge_index=bridge_index, entries=entries)
            except FakeKernelError:
                self._kernel.delete_host_link(host_ifname)
                for ip in (entries.address, entries.address6):
                    bridge.neighbours.pop(ip, None)
                raise
        return host.index

    def _port(self, index: int, bridge_index: int, what: str) -> HostLink:
        port = self._kernel.by_index(index)
        if port is None:
            raise link_error(what, errno.ENODEV)
        if port.master != bridge_index:
            raise link_error(what, errno.EINVAL)
        return port

    async def add_bridge_entries(self, *, port_index: int, bridge_index: int,
                                 entries: PortEntries) -> None:
        self._record("add_bridge_entries", mutating=True)
        mac, address, address6 = entries.mac, entries.address, entries.address6
        hairpin, isolated = entries.hairpin, entries.isolated
        what = f"add bridge entries for {address} ({mac}) on port {port_index}"
        bridge = self._kernel.bridge(bridge_index, what)
        port = self._port(port_index, bridge_index, what)
        # as the kernel port: no PROXYARP on a dual-stack network (it would stop ND)
        flags = ({"proxyarp"} if address6 is None else set()) | (
            {"hairpin"} if hairpin else set()) | (
            {"isolated"} if isolated else set())
        port.port_flags = frozenset(flags)
        port.fdb.add(mac)
        bridge.neighbours[address] = mac
        if address6 is not None:
            bridge.neighbours[address6] = mac

    async def remove_bridge_entries(self, *, bridge_index: int,
                                    address: IPv4Address | IPv6Address) -> bool:
        self._record("remove_bridge_entries", mutating=True)
        bridge = self._kernel.by_index(bridge_index)
        if bridge is None:
            return False
        return bridge.neighbours.pop(address, None) is not None

    async def bridge_neighbours(self, bridge_index: int) -> list[IPv4Address | IPv6Address]:
        self._record("bridge_neighbours", mutating=False)
        bridge = self._kernel.by_index(bridge_index)
        return [] if bridge is None else list(bridge.neighbours)

    async def set_port(self, ifname: str, *, master: int) -> int:
        self._record("set_port", mutating=True)
        what = f"enslave {ifname} to bridge {master}"
        link = self._kernel.host_link(ifname, what)
        self._kernel.bridge(master, what)
        self._kernel.enslave(link, master)
        link.up = True
        return link.index

    async def set_sysctl(self, name: str, value: str, *, ifname: str = "") -> None:
        self._record("set_sysctl", mutating=True)
        if ifname and ifname not in self._kernel.links:
            raise FakeKernelError(f"set sysctl {name}={value}: No such file or directory",
                                      errno=errno.ENOENT)
        self._kernel.sysctls[(name, ifname)] = value

    async def open_container_netns(self, netns: Path) -> FakeContainerLinks:
        self._record("open_container_netns", mutating=False)
        self._kernel.ns(netns, "open netlink socket in netns")
        self._kernel.open_handles += 1
        return FakeContainerLinks(self._kernel, self._calls, netns)
