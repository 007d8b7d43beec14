"""The inside of a container netns, configured over a raw netlink socket opened there.

The steps are separate coroutines so the ops layer can sequence them and push undo
actions between them; each runs on a worker thread (never blocking the event loop)
and costs one thread round trip (~0.1-0.15 ms on an idle 2-vCPU VM, where waking a
thread is the expensive part) plus its kernel time (tens of microseconds): steps that
need nothing between them share a round trip (`configure_interface` options).
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface
from pathlib import Path
from typing import TypeVar

from sheep_runtime.model import InterfaceCounters, InterfaceState
from sheep_runtime.netlink import codec as c
from sheep_runtime.netlink import messages as m
from sheep_runtime.netlink.errors import LinkError, namespace_error
from sheep_runtime.netlink.host_side import addresses, get_link
from sheep_runtime.netlink.raw import RawRoute, Request
from sheep_runtime.netlink.workers import NetlinkWorkers

T = TypeVar("T")

_LO_UP = m.set_link(1, up=True)  # lo is ifindex 1 in every netns
_DEFAULT = IPv4Network("0.0.0.0/0")


def configure(sock: RawRoute, *, ifname: str, address: IPv4Interface, mtu: int | None,
              loopback: bool, neighbours: Sequence[tuple[IPv4Address | IPv6Address, str]],
              address6: IPv6Interface | None = None,
              default_routes: Sequence[IPv4Address | IPv6Address] = ()) -> None:
    """One batch: no IPv6 link-local, `address` (and `address6`, no DAD), up (with
    `mtu`), lo up if `loopback`, the permanent `neighbours` (address, mac) on
    `ifname`, then a default route via each of `default_routes` out of `ifname`."""
    what = f"configure {ifname} with {address}"
    index = sock.ifindex(ifname, what)
    # addr_gen_mode none goes in its own message while the link is still down. Sent in
    # the message that brings the link up, it only held when that message was alone in
    # its send: with any message after it in the same batch, eth0 got a link-local.
    requests = [
        Request(m.no_ipv6_link_local(index), f"{what}: disable IPv6 link-local"),
        Request(m.new_addr(index, address.ip, address.network.prefixlen),
                f"{what}: add address", ok=(errno.EEXIST,)),
    ]
    if address6 is not None:
        requests.append(Request(m.new_addr(index, address6.ip, address6.network.prefixlen),
                                f"{what}: add address {address6}", ok=(errno.EEXIST,)))
    requests.append(Request(m.set_link(index, up=True, mtu=mtu), f"{what}: set up"))
    if loopback:
        requests.append(Request(_LO_UP, "bring up lo"))
    # after the link is up: taking a link down drops its permanent neighbours
    requests += [Request(m.neighbour(index, ip, mac), f"add neighbour {ip} at {mac} on {ifname}")
                 for ip, mac in neighbours]
    requests += [Request(m.default_route(gateway, index), f"add default route via {gateway}")
                 for gateway in default_routes]
    sock.batch(requests)


def read(sock: RawRoute, ifname: str) -> InterfaceState | None:
    """`ifname`'s link and IPv4 addresses, and the netns' default gateway; None if
    there is no such interface."""
    link = get_link(sock, ifname)
    if link is None:
        return None
    what = f"read interface {ifname}"
    routes = sock.dump(m.dump_routes(), f"{what}: routes", c.decode_route)
    gateway = next((via for dst, via in routes if dst == _DEFAULT and via is not None), None)
    return InterfaceState(link=link, addresses=tuple(addresses(sock, link.index, what)),
                          default_gateway=gateway)


def counters(sock: RawRoute, ifname: str) -> InterfaceCounters | None:
    """`ifname`'s IFLA_STATS64 counters (an RTM_GETLINK without the skip-stats filter
    the other lookups send); None if there is no such interface."""
    what = f"read counters of {ifname}"
    request = c.message(c.RTM_GETLINK, c.NLM_F_REQUEST | c.NLM_F_ACK,
                        m.ifinfo() + c.string(c.IFLA_IFNAME, ifname))
    try:
        replies = sock.request(request, what)
    except LinkError as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise
    for reply in replies:
        if (found := c.decode_link_stats(reply, c.NLMSGHDR.size, len(reply))) is not None:
            return found
    return None


class ContainerNetns:
    """Configuration steps inside one container netns (the `ContainerLinks` of ops).
    Not for concurrent use: await each step before the next. `close` releases the
    socket.

    The socket is opened by the worker that runs the first step, in the same round
    trip (it joins the netns for ~30 us, then returns home).
    """

    def __init__(self, netns: Path, workers: NetlinkWorkers) -> None:
        self._netns = netns
        self._workers = workers
        self._lock = threading.Lock()  # held by a worker only while it opens the socket
        self._sock: RawRoute | None = None
        self._closed = False

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
                raise LinkError(f"netns {self._netns}: handle is closed", errno=errno.EBADF)
            if self._sock is None:
                self._sock = self._workers.socket_in(self._netns)
            return self._sock

    async def _run(self, step: Callable[[RawRoute], T]) -> T:
        return await self._workers.run(lambda _: step(self._socket()))

    async def configure_interface(
        self, *, ifname: str, address: IPv4Interface, mtu: int | None = None,
        loopback: bool = False,
        neighbours: Sequence[tuple[IPv4Address | IPv6Address, str]] = (),
        address6: IPv6Interface | None = None,
        default_routes: Sequence[IPv4Address | IPv6Address] = (),
    ) -> None:
        """Put `address` (with its prefix) on `ifname` and bring it up without an IPv6
        link-local address. Idempotent: an address already present is fine. In the same
        round trip, `loopback` also brings lo up, each (address, mac) of `neighbours`
        becomes a permanent neighbour on `ifname` (no ARP, and no slot in the host-wide
        table of ~1024 dynamic entries) and each of `default_routes` the gateway of its
        family's default route (replaced). `address6` is usable at once (no DAD)."""
        await self._run(lambda sock: configure(sock, ifname=ifname, address=address, mtu=mtu,
                                               loopback=loopback, neighbours=neighbours,
                                               address6=address6,
                                               default_routes=default_routes))

    async def read_interface(self, ifname: str) -> InterfaceState | None:
        """`ifname`'s link and IPv4 addresses, and the netns' default gateway (the first
        default route with one); None if there is no such interface."""
        return await self._run(lambda sock: read(sock, ifname))

    async def interface_counters(self, ifname: str) -> InterfaceCounters | None:
        """`ifname`'s link statistics as the kernel counts them on this side (rx is
        what the container received); None if there is no such interface."""
        return await self._run(lambda sock: counters(sock, ifname))


def open_container_netns(netns: Path, workers: NetlinkWorkers) -> ContainerNetns:
    """A `ContainerNetns` for the netns pinned at `netns`; NamespaceError if there is
    nothing at `netns` (anything else that cannot be entered fails the first step)."""
    try:
        os.stat(netns)
    except OSError as exc:
        raise namespace_error(f"open netlink socket in netns {netns}", exc) from exc
    return ContainerNetns(netns, workers)
