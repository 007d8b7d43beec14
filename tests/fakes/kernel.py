"""An in-memory model of the kernel objects the daemon touches: links of the host
netns (bridges, host veth ends, bridge ports with flags, fdb and neighbour entries,
sysctls, routes) and one model per pinned container netns.

It keeps the kernel's rules that bite: names are unique per netns, a veth's two ends
live and die together, deleting a bridge frees its ports, a port that leaves its
bridge loses its flags and fdb entries, routes via a link go with it. Tests change it
directly to play "someone else" (e.g. `delete_host_link` of a container's veth).
"""

from __future__ import annotations

import errno
import hashlib
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from pathlib import Path
from typing import Any

from sheep_runtime.model import InterfaceCounters, Link
from tests.fakes.errors import FakeNamespaceError, link_error

# dev_valid_name(); "all" and "default" too get EINVAL (measured on this kernel).
_RESERVED_IFNAMES = ("", ".", "..", "all", "default")
IFNAMSIZ = 16


def check_ifname(name: str, what: str) -> None:
    """EINVAL for a name the kernel would refuse."""
    if (name in _RESERVED_IFNAMES or len(name.encode()) >= IFNAMSIZ
            or any(ch in "/:\0" or ch.isspace() for ch in name)):
        raise link_error(what, errno.EINVAL)


def fake_mac(seed: str) -> str:
    """A stable, locally administered MAC for a link the kernel would give a random one."""
    digest = hashlib.sha256(seed.encode()).digest()
    return "0a:" + ":".join(f"{b:02x}" for b in digest[:5])


@dataclass
class HostLink:
    """A link of the daemon's netns."""

    index: int
    name: str
    kind: str | None
    mtu: int
    mac: str
    up: bool = False
    master: int | None = None
    addresses: set[IPv4Interface | IPv6Interface] = field(default_factory=set)
    peer: tuple[Path, str] | None = None  # veth: (netns pin, peer name)
    port_flags: frozenset[str] = frozenset()
    fdb: set[str] = field(default_factory=set)
    neighbours: dict[IPv4Address | IPv6Address, str] = field(default_factory=dict)


@dataclass
class NsLink:
    """A link inside a container netns."""

    index: int
    name: str
    kind: str
    mtu: int
    mac: str
    up: bool = False
    addresses: set[IPv4Interface | IPv6Interface] = field(default_factory=set)
    neighbours: dict[IPv4Address | IPv6Address, str] = field(default_factory=dict)
    peer: str | None = None  # veth: the host end's name
    counters: InterfaceCounters = field(default_factory=InterfaceCounters)  # set by tests


@dataclass
class Netns:
    """One container netns: its links and its default route (gateway, ifname)."""

    links: dict[str, NsLink] = field(default_factory=lambda: {
        "lo": NsLink(index=1, name="lo", kind="loopback", mtu=65536,
                     mac="00:00:00:00:00:00")})
    default_route: tuple[IPv4Address, str] | None = None
    default_route6: tuple[IPv6Address, str] | None = None
    next_index: int = 2


class FakeKernel:
    """The host netns and every pinned container netns."""

    def __init__(self) -> None:
        self.links: dict[str, HostLink] = {}
        self.netns: dict[Path, Netns] = {}
        self.sysctls: dict[tuple[str, str], str] = {}
        self.routes: list[IPv4Network] = [IPv4Network("0.0.0.0/0")]
        self.open_handles = 0
        self._next_index = 1
        self.add_host_link("lo", kind=None, mtu=65536, mac="00:00:00:00:00:00")
        eth0 = self.add_host_link("eth0", kind=None, mtu=1500, mac=fake_mac("eth0"))
        eth0.addresses.add(IPv4Interface("192.168.77.2/24"))

    # -- host links -------------------------------------------------------------

    def add_host_link(self, name: str, *, kind: str | None, mtu: int, mac: str,
                      up: bool = True) -> HostLink:
        """Create a link in the host netns (EEXIST if the name is taken)."""
        check_ifname(name, f"create link {name}")
        if name in self.links:
            raise link_error(f"create link {name}", errno.EEXIST)
        link = HostLink(index=self._next_index, name=name, kind=kind, mtu=mtu, mac=mac, up=up)
        self._next_index += 1
        self.links[name] = link
        return link

    def by_index(self, index: int) -> HostLink | None:
        return next((x for x in self.links.values() if x.index == index), None)

    def bridge(self, index: int, what: str) -> HostLink:
        """The bridge with `index`; ENODEV if none, EOPNOTSUPP if not a bridge."""
        link = self.by_index(index)
        if link is None:
            raise link_error(what, errno.ENODEV)
        if link.kind != "bridge":
            raise link_error(what, errno.EOPNOTSUPP)
        return link

    def host_link(self, name: str, what: str) -> HostLink:
        link = self.links.get(name)
        if link is None:
            raise link_error(what, errno.ENODEV)
        return link

    def enslave(self, link: HostLink, master: int | None) -> None:
        """Set `link`'s bridge; leaving a bridge drops the port's flags and fdb."""
        if link.master != master:
            link.port_flags, link.fdb = frozenset(), set()
        link.master = master

    def delete_host_link(self, name: str) -> bool:
        """Delete a host link like the kernel does; False if there is none."""
        link = self.links.pop(name, None)
        if link is None:
            return False
        for other in self.links.values():
            if other.master == link.index:
                self.enslave(other, None)
        self.sysctls = {k: v for k, v in self.sysctls.items() if k[1] != name}
        if link.peer is not None:
            pin, peer = link.peer
            ns = self.netns.get(pin)
            if ns is not None:
                self._drop_ns_link(ns, peer)
        return True

    def link_info(self, name: str) -> Link | None:
        """The host link `name` as the netlink backend reports it."""
        x = self.links.get(name)
        if x is None:
            return None
        return Link(index=x.index, name=x.name, kind=x.kind, master=x.master,
                    operstate=self._operstate(x), mtu=x.mtu, mac=x.mac, up=x.up)

    def _operstate(self, x: HostLink) -> str:
        if not x.up:
            return "DOWN"
        if x.peer is not None:
            ns = self.netns.get(x.peer[0])
            peer = ns.links.get(x.peer[1]) if ns else None
            return "UP" if peer is not None and peer.up else "LOWERLAYERDOWN"
        return "UP"

    def connected_routes(self) -> list[IPv4Network | IPv6Network]:
        """The prefix route of each address on an up link."""
        return [a.network for x in self.links.values() if x.up for a in x.addresses]

    # -- container netns ----------------------------------------------------------

    def add_netns(self, path: Path) -> None:
        if path in self.netns:
            raise FakeNamespaceError(f"create netns {path}: already mounted", errno=errno.EEXIST)
        self.netns[path] = Netns()

    def drop_netns(self, path: Path) -> None:
        """The netns goes away: so do both ends of every veth with an end in it."""
        ns = self.netns.pop(path, None)
        if ns is None:
            return
        for link in ns.links.values():
            if link.peer is not None:
                self.delete_host_link(link.peer)

    def ns(self, path: Path, what: str) -> Netns:
        ns = self.netns.get(path)
        if ns is None:
            raise FakeNamespaceError(f"{what}: netns {path} is gone", errno=errno.ENOENT)
        return ns

    def delete_ns_link(self, path: Path, name: str) -> bool:
        """Delete a link inside a container netns (a veth takes its host end along)."""
        ns = self.ns(path, f"delete link {name}")
        link = ns.links.get(name)
        if link is None or link.kind == "loopback":
            return False
        self._drop_ns_link(ns, name)
        if link.peer is not None:
            self.delete_host_link(link.peer)
        return True

    @staticmethod
    def _drop_ns_link(ns: Netns, name: str) -> None:
        ns.links.pop(name, None)
        if ns.default_route is not None and ns.default_route[1] == name:
            ns.default_route = None
        if ns.default_route6 is not None and ns.default_route6[1] == name:
            ns.default_route6 = None

    # -- what tests compare -------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything observable, without ifindexes (a re-made link gets a new one):
        masters by name, netns by the name of their pin."""
        names = {x.index: x.name for x in self.links.values()}
        links = {x.name: {
            "kind": x.kind, "mtu": x.mtu, "mac": x.mac, "up": x.up,
            "master": names.get(x.master) if x.master else None,
            "addresses": sorted(map(str, x.addresses)),
            "peer": (x.peer[0].name, x.peer[1]) if x.peer else None,
            "port_flags": sorted(x.port_flags), "fdb": sorted(x.fdb),
            "neighbours": {str(k): v for k, v in sorted(x.neighbours.items(), key=_by_str)},
        } for x in self.links.values()}
        netns = {p.name: {
            "default_route": (str(ns.default_route[0]), ns.default_route[1])
            if ns.default_route else None,
            "default_route6": (str(ns.default_route6[0]), ns.default_route6[1])
            if ns.default_route6 else None,
            "links": {x.name: {
                "kind": x.kind, "mtu": x.mtu, "mac": x.mac, "up": x.up, "peer": x.peer,
                "addresses": sorted(map(str, x.addresses)),
                "neighbours": {str(k): v for k, v in sorted(x.neighbours.items(), key=_by_str)},
            } for x in ns.links.values()},
        } for p, ns in sorted(self.netns.items())}
        return {"links": links, "netns": netns, "sysctls": dict(sorted(self.sysctls.items())),
                "open_netns_handles": self.open_handles}


def _by_str(item: tuple[object, object]) -> str:
    return str(item[0])
