"""The former pyroute2 path of the netlink backend, kept only as the baseline the
benchmarks compare the raw codec with (bench_netlink.py, bench_monitor.py).

pyroute2 receives through `loop.create_datagram_endpoint(sock=...)`, which uvloop
refuses for AF_NETLINK ("invalid family 16"); `RouteSocket` reads with
`loop.add_reader` instead. Sockets in a container netns come from a thread that
joined it (`run_in_netns`), never from pyroute2's forking `netns=`.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.core import CoreDatagramProtocol

from sheep_runtime.model import Link
from sheep_runtime.netlink import run_in_netns
from sheep_runtime.poll import ErrorSafePoll

_NO_IPV6_LINK_LOCAL = {"attrs": [("AF_INET6", {"attrs": [("IFLA_INET6_ADDR_GEN_MODE", 1)]})]}


class _ReaderTransport(asyncio.DatagramTransport):
    """Reads datagrams from a non-blocking socket into a DatagramProtocol."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol: asyncio.DatagramProtocol) -> None:
        super().__init__()
        self._loop, self._sock, self._protocol = loop, sock, protocol
        self._closed = False
        sock.setblocking(False)
        self._poll = ErrorSafePoll(sock)
        loop.add_reader(self._poll.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        while not self._closed:
            try:
                data, addr = self._sock.recvfrom(1 << 17)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._protocol.error_received(exc)
                if exc.errno != errno.ENOBUFS:
                    return
                continue
            self._protocol.datagram_received(data, addr)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self._poll.fileno())
            self._poll.close()
            self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self._closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._sock if name == "socket" else default


class RouteSocket(AsyncIPRoute):  # type: ignore[misc]
    """`AsyncIPRoute` that works on uvloop as well as on the default loop."""

    async def setup_endpoint(self) -> None:
        if getattr(self.local, "transport", None) is not None:
            return
        protocol = CoreDatagramProtocol(self.connection_lost, self.enqueue,
                                        self._error_event, self.status)
        transport = _ReaderTransport(self.event_loop, self.socket, protocol)
        protocol.connection_made(transport)
        self.local.transport, self.local.protocol = transport, protocol


def _route_fd() -> int:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE).detach()


async def open_route_socket(netns: Path | None) -> RouteSocket:
    """A RouteSocket in `netns` (None: the caller's); the caller closes it."""
    fd = _route_fd() if netns is None else await asyncio.to_thread(run_in_netns, netns,
                                                                    _route_fd)
    ipr = RouteSocket(fileno=fd, ext_ack=True)
    await ipr.setup_endpoint()
    return ipr


def link_info(msg: Any) -> Link:
    """A pyroute2 RTM_NEWLINK message as a `Link`."""
    master = msg.get("master")
    return Link(index=int(msg["index"]), name=str(msg.get("ifname")),
                kind=msg.get(("linkinfo", "kind")), master=int(master) if master else None,
                operstate=str(msg.get("operstate") or "UNKNOWN"), mtu=int(msg.get("mtu") or 0),
                mac=msg.get("address"), up=bool(msg["flags"] & 1))


async def configure_container(ipr: RouteSocket, *, ifname: str, address: IPv4Interface,
                              mtu: int, gateway: IPv4Address) -> None:
    """Address, up without IPv6 link-local, lo up, default route: the former steps."""
    index = int((await ipr.link("get", ifname=ifname))[0]["index"])
    try:
        await ipr.addr("add", index=index, address=str(address.ip),
                       prefixlen=address.network.prefixlen)
    except Exception as exc:
        if getattr(exc, "code", None) != errno.EEXIST:
            raise
    await ipr.link("set", index=index, state="up", mtu=mtu, af_spec=_NO_IPV6_LINK_LOCAL)
    await ipr.link("set", ifname="lo", state="up")
    await ipr.route("replace", dst="0.0.0.0/0", gateway=str(gateway), oif=index)
