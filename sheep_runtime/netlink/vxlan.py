"""The cluster's data plane in the daemon's netns: one VXLAN device and, per peer, a
permanent neighbour, an FDB entry and an onlink route (flannel's layout); or for the
host-gw backend one route per peer via its underlay address.

Every step is idempotent (replace), so programming a peer twice is harmless, and a
full `reconcile` compares the kernel with the wanted peers: it re-programs what is
missing or wrong and removes what belongs to no peer. Our routes carry protocol
`RTPROT_SHEEP` (that is how stale ones are found without touching anybody else's);
every neighbour and FDB entry on the VXLAN device is ours.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from sheep_runtime.netlink import codec as c
from sheep_runtime.netlink import host_side
from sheep_runtime.netlink import messages as m
from sheep_runtime.netlink.errors import LinkError
from sheep_runtime.netlink.raw import RawRoute, Request
from sheep_runtime.netlink.workers import NetlinkWorkers

RTPROT_SHEEP = 83
VXLAN_OVERHEAD = 50  # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
IFLA_VXLAN_ID, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL = 1, 3, 4
IFLA_VXLAN_LEARNING, IFLA_VXLAN_PORT = 7, 15
NTF_SELF = 0x02
RTNH_F_ONLINK = 0x04
RTM_DELROUTE = 25

Peer = tuple[IPv4Network, IPv4Address, str]
"""(subnet, underlay address, VTEP MAC) of a remote node."""

_ROUTE = struct.Struct("=BBBBBBBBI")


@dataclass(frozen=True)
class Device:
    """The overlay's view of this host: the device (vxlan) or underlay link (host-gw)
    that carries peer traffic, and the MTU containers should use."""

    name: str
    index: int
    mtu: int


@dataclass(frozen=True)
class Actual:
    """What the kernel holds for the overlay: our routes (destination -> gateway),
    the neighbours (address -> MAC) and FDB entries (MAC -> underlay address) on
    the VXLAN device."""

    routes: dict[IPv4Network, IPv4Address | None]
    neighbours: dict[IPv4Address, str]
    fdb: dict[str, IPv4Address | None]


@dataclass(frozen=True)
class VxlanSpec:
    """What the VXLAN device is made from (kept to converge it again)."""

    name: str
    mac: str
    vni: int
    port: int
    local: IPv4Address
    subnet: IPv4Network


def underlay_link(sock: RawRoute, address: IPv4Address) -> tuple[int, int, str]:
    """(ifindex, MTU, name) of the link holding `address`."""
    found = sock.dump(m.dump_addrs(), "list addresses", c.decode_address)
    index = next((i for i, a in found if a.ip == address), None)
    if index is None:
        raise LinkError(f"no link holds the underlay address {address}", errno=errno.EADDRNOTAVAIL)
    link = next(lk for lk in host_side.list_links(sock, "") if lk.index == index)
    return index, link.mtu, link.name


def _new_vxlan(*, name: str, mac: str, mtu: int, vni: int, port: int, local: IPv4Address,
               link: int) -> bytes:
    data = (c.u32(IFLA_VXLAN_ID, vni) + c.u32(IFLA_VXLAN_LINK, link)
            + c.attr(IFLA_VXLAN_LOCAL, local.packed) + c.u8(IFLA_VXLAN_LEARNING, 0)
            + c.attr(IFLA_VXLAN_PORT, struct.pack(">H", port)))
    body = (m.ifinfo() + c.string(c.IFLA_IFNAME, name) + c.attr(c.IFLA_ADDRESS, m.mac_bytes(mac))
            + c.u32(c.IFLA_MTU, mtu)
            + c.nest(c.IFLA_LINKINFO, c.attr(c.IFLA_INFO_KIND, b"vxlan\0"),
                     c.nest(c.IFLA_INFO_DATA, data)))
    return c.message(c.RTM_NEWLINK, c.NLM_F_REQUEST | c.NLM_F_ACK | c.NLM_F_CREATE
                     | c.NLM_F_EXCL, body)


def ensure_vxlan(sock: RawRoute, *, name: str, mac: str, vni: int, port: int,
                 local: IPv4Address, subnet: IPv4Network) -> Device:
    """Converge the VXLAN device: nolearning, `port`, `local`, MAC `mac` (set at
    creation and re-set if something rewrote it), MTU underlay - 50, address
    subnet.0/32, up."""
    what = f"ensure vxlan {name}"
    link_index, link_mtu, _ = underlay_link(sock, local)
    mtu = link_mtu - VXLAN_OVERHEAD
    link = host_side.get_link(sock, name)
    if link is None:
        sock.request(_new_vxlan(name=name, mac=mac, mtu=mtu, vni=vni, port=port, local=local,
                                link=link_index), f"{what}: create", ok=(errno.EEXIST,))
        link = host_side.get_link(sock, name)
        if link is None:
            raise LinkError(f"{what}: vanished after creation", errno=errno.ENODEV)
    if link.kind != "vxlan":
        raise LinkError(f"{what}: a link of kind {link.kind or 'unknown'} has that name",
                        errno=errno.EEXIST)
    own = IPv4Interface((subnet.network_address, 32))
    if own not in host_side.addresses(sock, link.index, what):
        sock.request(m.new_addr(link.index, own.ip, 32), f"{what}: add {own}",
                     ok=(errno.EEXIST,))
    new_mac = mac if (link.mac or "").lower() != mac.lower() else None
    if new_mac is not None or link.mtu != mtu or not link.up:
        sock.request(m.set_link(link.index, up=True, mtu=mtu if link.mtu != mtu else None,
                                mac=new_mac), f"{what}: set up")
    return Device(name=name, index=link.index, mtu=mtu)


def _fdb(kind: int, flags: int, index: int, mac: str, dst: IPv4Address) -> bytes:
    body = (c.NDMSG.pack(socket.AF_BRIDGE, index, c.NUD_PERMANENT | c.NUD_NOARP, NTF_SELF, 0)
            + c.attr(c.NDA_LLADDR, m.mac_bytes(mac)) + c.attr(c.NDA_DST, dst.packed))
    return c.message(kind, flags, body)


def _del_fdb(index: int, mac: str) -> bytes:
    body = (c.NDMSG.pack(socket.AF_BRIDGE, index, 0, NTF_SELF, 0)
            + c.attr(c.NDA_LLADDR, m.mac_bytes(mac)))
    return c.message(c.RTM_DELNEIGH, _DELETE, body)


def _route(kind: int, flags: int, dst: IPv4Network, *, gateway: IPv4Address | None,
           oif: int | None, onlink: bool) -> bytes:
    body = (_ROUTE.pack(socket.AF_INET, dst.prefixlen, 0, 0, c.RT_TABLE_MAIN, RTPROT_SHEEP,
                        c.RT_SCOPE_UNIVERSE, c.RTN_UNICAST, RTNH_F_ONLINK if onlink else 0)
            + c.attr(c.RTA_DST, dst.network_address.packed))
    if gateway is not None:
        body += c.attr(c.RTA_GATEWAY, gateway.packed)
    if oif is not None:
        body += c.u32(c.RTA_OIF, oif)
    return c.message(kind, flags, body)


_REPLACE = c.NLM_F_REQUEST | c.NLM_F_ACK | c.NLM_F_CREATE | c.NLM_F_REPLACE
_DELETE = c.NLM_F_REQUEST | c.NLM_F_ACK
_DUMP = c.NLM_F_REQUEST | c.NLM_F_DUMP
_GONE = (errno.ENOENT, errno.ESRCH, errno.ENODEV)


def peer_requests(device: Device, peer: Peer, *, vxlan: bool) -> list[Request]:
    """vxlan: neighbour subnet.0 -> VTEP MAC, FDB VTEP MAC -> underlay address, then
    the onlink route via subnet.0 (in that order: with the route first the kernel
    would ARP for the gateway over the overlay). host-gw: a route via the address."""
    subnet, public, mac = peer
    what = f"program peer {subnet} ({public})"
    if not vxlan:
        return [Request(_route(c.RTM_NEWROUTE, _REPLACE, subnet, gateway=public, oif=None,
                               onlink=False), f"{what}: route")]
    gateway = subnet.network_address
    return [
        Request(m.neighbour(device.index, gateway, mac), f"{what}: neighbour"),
        Request(_fdb(c.RTM_NEWNEIGH, _REPLACE, device.index, mac, public), f"{what}: fdb"),
        Request(_route(c.RTM_NEWROUTE, _REPLACE, subnet, gateway=gateway, oif=device.index,
                       onlink=True), f"{what}: route"),
    ]


def remove_requests(device: Device, peer: Peer, *, vxlan: bool) -> list[Request]:
    """The reverse of `peer_requests`; what is already gone is fine."""
    subnet, public, mac = peer
    what = f"remove peer {subnet} ({public})"
    gateway = subnet.network_address if vxlan else public
    out = [Request(_route(RTM_DELROUTE, _DELETE, subnet, gateway=gateway,
                          oif=device.index if vxlan else None, onlink=vxlan),
                   f"{what}: route", _GONE)]
    if vxlan:
        out += [Request(_del_fdb(device.index, mac), f"{what}: fdb", _GONE),
                Request(m.del_neighbour(device.index, gateway), f"{what}: neighbour", _GONE)]
    return out


def _our_route(buf: bytearray, offset: int, end: int
               ) -> tuple[IPv4Network, IPv4Address | None] | None:
    if end - offset < _ROUTE.size or buf[offset + 5] != RTPROT_SHEEP:
        return None
    return c.decode_route(buf, offset, end)


def _mac(raw: bytes | bytearray | memoryview | None) -> str | None:
    return bytes(raw).hex(":") if raw is not None and len(raw) == 6 else None


def _neighbour(buf: bytearray, offset: int, end: int
               ) -> tuple[int, IPv4Address, str] | None:
    """(ifindex, address, MAC) of an IPv4 neighbour."""
    if end - offset < c.NDMSG.size:
        return None
    family, index, _, _, _ = c.NDMSG.unpack_from(buf, offset)
    a = c.attributes(buf, offset + c.NDMSG.size, end)
    dst, mac = a.get(c.NDA_DST), _mac(a.get(c.NDA_LLADDR))
    if family != socket.AF_INET or dst is None or len(dst) != 4 or mac is None:
        return None
    return index, IPv4Address(bytes(dst)), mac


def _fdb_entry(buf: bytearray, offset: int, end: int
               ) -> tuple[int, str, IPv4Address | None] | None:
    """(ifindex, MAC, remote underlay address if any) of an AF_BRIDGE FDB entry."""
    if end - offset < c.NDMSG.size:
        return None
    family, index, _, _, _ = c.NDMSG.unpack_from(buf, offset)
    a = c.attributes(buf, offset + c.NDMSG.size, end)
    mac, dst = _mac(a.get(c.NDA_LLADDR)), a.get(c.NDA_DST)
    if family != socket.AF_BRIDGE or mac is None:
        return None
    return index, mac, IPv4Address(bytes(dst)) if dst is not None and len(dst) == 4 else None


def dump_fdb(index: int) -> bytes:
    """The FDB entries of the port or device `index` (the kernel reads an ifinfomsg
    here: its ifi_index filters the dump)."""
    return c.message(c.RTM_GETNEIGH, _DUMP, c.IFINFOMSG.pack(socket.AF_BRIDGE, 0, index, 0, 0))


def actual(sock: RawRoute, device: Device, *, vxlan: bool) -> Actual:
    """The overlay's entries as the kernel holds them now."""
    routes = dict(sock.dump(m.dump_routes(), "list routes", _our_route))
    if not vxlan:
        return Actual(routes=routes, neighbours={}, fdb={})
    neigh = sock.dump(m.dump_neighbours(device.index), "list overlay neighbours", _neighbour)
    fdb = sock.dump(dump_fdb(device.index), "list overlay fdb", _fdb_entry)
    return Actual(routes=routes,
                  neighbours={ip: mac for i, ip, mac in neigh if i == device.index},
                  fdb={mac: dst for i, mac, dst in fdb if i == device.index})


def _in_place(have: Actual, peer: Peer, *, vxlan: bool) -> bool:
    subnet, public, mac = peer
    if not vxlan:
        return have.routes.get(subnet) == public
    gateway = subnet.network_address
    return (have.routes.get(subnet) == gateway and have.neighbours.get(gateway) == mac.lower()
            and have.fdb.get(mac.lower()) == public)


def reconcile(sock: RawRoute, device: Device, peers: Sequence[Peer], *, vxlan: bool
              ) -> list[IPv4Network]:
    """Make the kernel hold exactly `peers`: each peer whose route, neighbour or FDB
    entry is missing or wrong is programmed again, and our routes, neighbours and
    FDB entries that belong to no peer are removed. Returns the subnets programmed."""
    have = actual(sock, device, vxlan=vxlan)
    wanted = {p[0]: p for p in peers}
    programmed = [s for s, p in wanted.items() if not _in_place(have, p, vxlan=vxlan)]
    requests = [r for s in programmed for r in peer_requests(device, wanted[s], vxlan=vxlan)]
    for subnet, via in have.routes.items():
        if subnet not in wanted:
            requests.append(Request(_route(RTM_DELROUTE, _DELETE, subnet, gateway=via,
                                           oif=None, onlink=False),
                                    f"remove stale route {subnet}", _GONE))
    gateways = {s.network_address for s in wanted}
    requests += [Request(m.del_neighbour(device.index, ip), f"remove stale neighbour {ip}",
                         _GONE) for ip in have.neighbours if ip not in gateways]
    macs = {p[2].lower() for p in wanted.values()}
    requests += [Request(_del_fdb(device.index, mac), f"remove stale fdb entry {mac}", _GONE)
                 for mac in have.fdb if mac not in macs]
    if requests:
        sock.batch(requests)
    return programmed


class Overlay:
    """The data plane of cluster mode, on one worker thread of the daemon's netns."""

    def __init__(self, *, backend: str) -> None:
        self._vxlan = backend == "vxlan"
        self._workers = NetlinkWorkers(size=1, name="sheep-nl-overlay")
        self._device: Device | None = None
        self._spec: VxlanSpec | None = None

    async def start(self) -> None:
        self._workers.start()

    async def close(self) -> None:
        await self._workers.close()

    async def ensure_device(self, *, name: str, mac: str, vni: int, port: int,
                            local: IPv4Address, subnet: IPv4Network) -> tuple[str, int]:
        """Converge the VXLAN device (vxlan) or find the underlay link (host-gw);
        return (its name, the MTU containers should use)."""
        self._spec = VxlanSpec(name=name, mac=mac, vni=vni, port=port, local=local,
                               subnet=subnet)
        if self._vxlan:
            device = await self._ensure_vxlan(self._spec)
        else:
            index, mtu, ifname = await self._workers.run(lambda s: underlay_link(s, local))
            device = Device(name=ifname, index=index, mtu=mtu)
        self._device = device
        return device.name, device.mtu

    async def _ensure_vxlan(self, v: VxlanSpec) -> Device:
        return await self._workers.run(lambda s: ensure_vxlan(
            s, name=v.name, mac=v.mac, vni=v.vni, port=v.port, local=v.local, subnet=v.subnet))

    def _need_device(self) -> Device:
        if self._device is None:
            raise RuntimeError("Overlay.ensure_device not called")
        return self._device

    async def add_peer(self, peer: Peer) -> None:
        device = self._need_device()
        await self._workers.run(lambda s: s.batch(peer_requests(device, peer,
                                                                vxlan=self._vxlan)))

    async def remove_peer(self, peer: Peer) -> None:
        device = self._need_device()
        await self._workers.run(lambda s: s.batch(remove_requests(device, peer,
                                                                  vxlan=self._vxlan)))

    async def reconcile(self, peers: Sequence[Peer]) -> list[IPv4Network]:
        """Converge the device again (recreated if deleted, its MAC re-set), then see
        `reconcile`; returns the subnets that had to be programmed."""
        device = self._need_device()
        if self._vxlan and self._spec is not None:
            device = self._device = await self._ensure_vxlan(self._spec)
        return await self._workers.run(lambda s: reconcile(s, device, peers,
                                                           vxlan=self._vxlan))

    async def teardown(self) -> None:
        """Remove every peer's entries and (vxlan) the device itself."""
        device = self._need_device()
        await self._workers.run(lambda s: reconcile(s, device, [], vxlan=self._vxlan))
        if self._vxlan:
            await self._workers.run(lambda s: s.request(
                m.del_link(device.name), f"delete vxlan {device.name}", ok=_GONE))
        self._device = None
