"""The inside of a container netns, configured over a raw netlink socket opened there.

`ContainerNetns` replaces a pyroute2 `RouteSocket` on the attach path. Its steps are
separate coroutines so the ops layer can sequence them, push undo actions and inject
faults between them; each runs on a worker thread (never blocking the event loop) and
costs one thread round trip (~0.1-0.15 ms on an idle 2-vCPU VM, where waking a thread
is the expensive part) plus its kernel time (tens of microseconds): steps that need no
fault point between them can share a round trip (`configure_interface` options).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface, ip_interface
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from sheep_runtime.netlink import messages as m
from sheep_runtime.netlink.container_side import InterfaceState
from sheep_runtime.netlink.errors import LinkError, namespace_error
from sheep_runtime.netlink.raw import RawRoute, Request
from sheep_runtime.netlink.workers import NetlinkWorkers

T = TypeVar("T")

_LO_UP = m.link_up(1)  # lo is ifindex 1 in every netns


def _configure(sock: RawRoute, ifname: str, address: IPv4Interface, mtu: int | None,
               loopback: bool, neighbours: Sequence[tuple[IPv4Address, str]]) -> None:
    what = f"configure {ifname} with {address}"
    index = sock.ifindex(ifname, what)
    # addr_gen_mode none goes in its own message while the link is still down. Sent in
    # the message that brings the link up, it only held when that message was alone in
    # its send: with any message after it in the same batch, eth0 got a link-local.
    requests = [
        Request(m.no_ipv6_link_local(index), f"{what}: disable IPv6 link-local"),
        Request(m.new_addr(index, address.ip, address.network.prefixlen),
                f"{what}: add address", ok=(errno.EEXIST,)),
        Request(m.link_up(index, mtu=mtu), f"{what}: set up"),
    ]
    if loopback:
        requests.append(Request(_LO_UP, "bring up lo"))
    # after the link is up: taking a link down drops its permanent neighbours
    requests += [Request(m.neighbour(index, ip, mac), f"add neighbour {ip} at {mac} on {ifname}")
                 for ip, mac in neighbours]
    sock.batch(requests)


def _route(sock: RawRoute, gateway: IPv4Address, ifname: str | None) -> None:
    what = f"add default route via {gateway}"
    oif = None if ifname is None else sock.ifindex(ifname, what)
    sock.request(m.default_route(gateway, oif), what)


def _neighbour(sock: RawRoute, ifname: str, address: IPv4Address, mac: str) -> None:
    what = f"add neighbour {address} at {mac} on {ifname}"
    sock.request(m.neighbour(sock.ifindex(ifname, what), address, mac), what)


def _read(sock: RawRoute, ifname: str) -> InterfaceState:
    what = f"read interface {ifname}"
    index = sock.ifindex(ifname, what)
    (link,) = sock.request(m.get_link(ifname), what)
    _, _, _, flags, _ = m.IFINFOMSG.unpack_from(link, 16)
    mac, mtu, operstate = None, 0, "UNKNOWN"
    for kind, value in m.attrs(link, 32, len(link)):
        if kind == m.IFLA_ADDRESS:
            mac = ":".join(f"{b:02x}" for b in value)
        elif kind == m.IFLA_MTU:
            mtu = struct.unpack("=I", value)[0]
        elif kind == m.IFLA_OPERSTATE:
            operstate = m.OPERSTATES[value[0]] if value[0] < len(m.OPERSTATES) else "UNKNOWN"
    addresses: list[IPv4Interface | IPv6Interface] = []
    for msg in sock.dump(m.dump_addrs(), f"{what}: addresses"):
        family, prefixlen, _, _, owner = m.IFADDRMSG.unpack_from(msg, 16)
        if owner != index:
            continue
        found = dict(m.attrs(msg, 24, len(msg)))
        raw = found.get(m.IFA_LOCAL) or found.get(m.IFA_ADDRESS)
        if raw is not None:
            text = socket.inet_ntop(family, bytes(raw))
            addresses.append(ip_interface(f"{text}/{prefixlen}"))
    return InterfaceState(index=index, name=ifname, mac=mac, operstate=operstate,
                          up=bool(flags & m.IFF_UP), mtu=mtu, addresses=tuple(addresses))


class ContainerNetns:
    """Configuration steps inside one container netns. Not for concurrent use: await
    each step before the next. `close` (or `async with`) releases the socket.

    The socket is opened by the worker that runs the first step, in the same round
    trip (it joins the netns for ~30 us, then returns home).
    """

    def __init__(self, netns: Path, workers: NetlinkWorkers) -> None:
        self.netns = netns
        self._workers = workers
        self._lock = threading.Lock()  # held by a worker only while it opens the socket
        self._sock: RawRoute | None = None
        self._closed = False

    async def __aenter__(self) -> ContainerNetns:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket (deferred to the end of a step still running in a worker)."""
        with self._lock:
            self._closed, sock = True, self._sock
        if sock is not None:
            sock.close()

    def _socket(self) -> RawRoute:
        """The socket, opened on first use; called in a worker thread."""
        with self._lock:
            if self._closed:
                raise LinkError(f"netns {self.netns}: handle is closed", errno=errno.EBADF)
            if self._sock is None:
                self._sock = self._workers.socket_in(self.netns)
            return self._sock

    async def _run(self, step: Callable[[RawRoute], T]) -> T:
        return await self._workers.run(lambda _: step(self._socket()))

    async def configure_interface(
        self, *, ifname: str, address: IPv4Interface, mtu: int | None = None,
        loopback: bool = False, neighbours: Sequence[tuple[IPv4Address, str]] = (),
    ) -> None:
        """Put `address` (with its prefix) on `ifname` and bring it up without an IPv6
        link-local address. Idempotent: an address already present is fine. In the same
        round trip, `loopback` also brings lo up and each (address, mac) of `neighbours`
        becomes a permanent neighbour on `ifname` (see `add_neighbour`)."""
        await self._run(lambda sock: _configure(sock, ifname, address, mtu, loopback,
                                                neighbours))

    async def bring_up_loopback(self) -> None:
        """Bring `lo` up (a fresh netns has it down)."""
        await self._run(lambda sock: sock.request(_LO_UP, "bring up lo"))

    async def add_default_route(self, *, gateway: IPv4Address, ifname: str | None = None
                                ) -> None:
        """Set the IPv4 default route via `gateway` (replacing any previous one)."""
        await self._run(lambda sock: _route(sock, gateway, ifname))

    async def add_neighbour(self, *, ifname: str, address: IPv4Address, mac: str) -> None:
        """A permanent neighbour entry (e.g. the gateway at the bridge MAC): no ARP, and
        no slot in the host-wide table of ~1024 dynamic entries. The link must be up:
        taking it down drops the entry."""
        await self._run(lambda sock: _neighbour(sock, ifname, address, mac))

    async def read_interface(self, ifname: str) -> InterfaceState:
        """The state of `ifname`: MAC, operstate, MTU and all its addresses."""
        return await self._run(lambda sock: _read(sock, ifname))


async def open_container_netns(netns: Path, workers: NetlinkWorkers) -> ContainerNetns:
    """A `ContainerNetns` for the netns pinned at `netns`; NamespaceError if there is
    nothing at `netns` (anything else that cannot be entered fails the first step)."""
    try:
        os.stat(netns)
    except OSError as exc:
        raise namespace_error(f"open netlink socket in netns {netns}", exc) from exc
    return ContainerNetns(netns, workers)
