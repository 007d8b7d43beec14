"""The DNS listeners: one UDP socket and one TCP listener per network on its gateway
address (and two more on its IPv6 gateway on a dual-stack network), served from the
daemon's event loop.

A question about a container is answered at once from the network's name table;
anything else is forwarded (in a task, so a slow upstream holds up no one else) unless
the network may not reach the outside. Only askers inside the network's subnets get an
answer at all: the listener is no open resolver for whatever can route to the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
from prometheus_client import Counter

from sheep_runtime.dns.answer import local_answer, status_response, type_label
from sheep_runtime.dns.cache import ttl_of as cache_ttl
from sheep_runtime.dns.forward import Forwarder
from sheep_runtime.errors import KernelError
from sheep_runtime.metrics import Metrics
from sheep_runtime.model import NameTable

log = logging.getLogger(__name__)

DNS_PORT = 53
UDP_MIN_PAYLOAD = 512
TCP_MAX = 65535
TCP_IDLE_SECONDS = 10.0
IP_FREEBIND = 15  # linux/in.h; not in Python's socket module
IPV6_FREEBIND = 78  # linux/in6.h (Linux 4.15)
MEMO_ENTRIES = 10_000
FORWARDED_MEMO_SECONDS = 1.0

IPAddress = IPv4Address | IPv6Address


@dataclass(frozen=True)
class _Memo:
    """A reply as sent, past its id, and the counter of its type and result; until
    `expires` (loop time): forever for our own names, a second at most for forwarded
    ones (their TTLs count down)."""

    reply: bytes
    counter: Counter
    expires: float = math.inf


@dataclass
class _Listener:
    network_id: str
    subnets: tuple[IPv4Network | IPv6Network, ...]
    names: NameTable
    forward: bool
    udp: list[asyncio.DatagramTransport] = field(default_factory=list)
    tcp: list[asyncio.Server] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # (asker's address text, query bytes past the id) -> a reply, valid while
    # `names.version` is `version`: a repeated question skips dnspython.
    replies: dict[tuple[str, bytes], _Memo] = field(default_factory=dict)
    version: int = -1
    writers: set[asyncio.StreamWriter] = field(default_factory=set)


class DnsServer:
    """Answers DNS for every network it serves (implements ops' `Resolver`)."""

    def __init__(self, *, forwarder: Forwarder, metrics: Metrics, port: int = DNS_PORT
                 ) -> None:
        self._forwarder = forwarder
        self._metrics = metrics
        self._port = port
        self._listeners: dict[str, _Listener] = {}

    async def serve(self, *, network_id: str, address: IPv4Address, subnet: IPv4Network,
                    names: NameTable, forward: bool, address6: IPv6Address | None = None,
                    subnet6: IPv6Network | None = None) -> None:
        """Listen on `address` (UDP and TCP) for askers in `subnet`, and with `address6`
        and `subnet6` also on `address6` for askers in `subnet6`; all or none
        (KernelError). A second call for the same network first stops the old
        listeners."""
        await self.stop(network_id)
        dual = address6 is not None and subnet6 is not None
        listener = _Listener(network_id=network_id, names=names, forward=forward,
                             subnets=(subnet, *([subnet6] if dual and subnet6 else [])))
        loop = asyncio.get_running_loop()
        addresses: list[IPAddress] = [address, *([address6] if dual and address6 else [])]
        for where in addresses:
            try:
                udp, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(self, listener),
                    sock=_bind(where, self._port, socket.SOCK_DGRAM))
                listener.udp.append(udp)
                listener.tcp.append(await asyncio.start_server(
                    lambda r, w: self._tcp_client(listener, r, w),
                    sock=_bind(where, self._port, socket.SOCK_STREAM)))
            except OSError as e:
                _close(listener)
                raise KernelError(f"listen for DNS on {_where(where, self._port)}: {e}"
                                  ) from e
        self._listeners[network_id] = listener

    async def stop(self, network_id: str) -> None:
        """Stop the network's listeners and its queries in flight (none: no-op)."""
        listener = self._listeners.pop(network_id, None)
        if listener is None:
            return
        _close(listener)
        for task in list(listener.tasks):
            task.cancel()
        for server in listener.tcp:
            await server.wait_closed()

    async def close(self) -> None:
        """Stop every listener."""
        for network_id in list(self._listeners):
            await self.stop(network_id)

    def serving(self) -> list[str]:
        """The ids of the networks being served."""
        return list(self._listeners)

    # -- one query ------------------------------------------------------------------

    def answer_now(self, listener: _Listener, wire: bytes, source: IPAddress
                   ) -> tuple[dns.message.Message | None, dns.message.Message | None]:
        """(query, response) if answered without waiting; (query, None) if it must be
        forwarded; (None, None) for a datagram that is no DNS query (dropped)."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None, None
        if query.flags & dns.flags.QR:
            return None, None
        label = type_label(query.question[0].rdtype) if query.question else "other"
        if not any(source in subnet for subnet in listener.subnets):
            return query, self._status(query, dns.rcode.REFUSED, label, "refused")
        if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
            return query, self._status(query, dns.rcode.NOTIMP if query.question
                                       else dns.rcode.FORMERR, label, "refused")
        local = local_answer(query, listener.names, source)
        if local is not None:
            response, result = local
            self._metrics.dns_queries.labels(label, result).inc()
            return query, response
        if not listener.forward:  # an internal network reaches nothing outside
            return query, self._status(query, dns.rcode.NXDOMAIN, label, "nxdomain")
        return query, None

    async def forward(self, query: dns.message.Message) -> dns.message.Message:
        """The upstream answer, or SERVFAIL when no upstream gave one."""
        label = type_label(query.question[0].rdtype)
        response = await self._forwarder.resolve(query)
        if response is None:
            return self._status(query, dns.rcode.SERVFAIL, label, "servfail")
        self._metrics.dns_queries.labels(label, "forwarded").inc()
        return response

    def _status(self, query: dns.message.Message, rcode: dns.rcode.Rcode, label: str,
                result: str) -> dns.message.Message:
        self._metrics.dns_queries.labels(label, result).inc()
        return status_response(query, rcode)

    async def _forward_udp(self, listener: _Listener, udp: asyncio.DatagramTransport,
                           query: dns.message.Message, addr: tuple[str, int]) -> None:
        response = await self.forward(query)
        if not udp.is_closing():
            udp.sendto(encode(response, _udp_limit(query)), addr)

    def _sent_forwarded(self, query: dns.message.Message, response: dns.message.Message,
                        udp: asyncio.DatagramTransport, addr: tuple[str, int]) -> bytes:
        self._metrics.dns_queries.labels(type_label(query.question[0].rdtype),
                                         "forwarded").inc()
        wire = encode(response, _udp_limit(query))
        udp.sendto(wire, addr)
        return wire

    def _memo(self, listener: _Listener, key: tuple[str, bytes], query: dns.message.Message,
              wire: bytes, result: str, expires: float) -> None:
        if len(listener.replies) < MEMO_ENTRIES and expires > self._now():
            counter = self._metrics.dns_queries.labels(
                type_label(query.question[0].rdtype), result)
            listener.replies[key] = _Memo(wire[2:], counter, expires)

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def on_datagram(self, listener: _Listener, udp: asyncio.DatagramTransport,
                    data: bytes, addr: tuple[str, int]) -> None:
        """Answer one datagram that arrived on `udp` from `addr`."""
        if listener.version != listener.names.version:
            listener.replies.clear()
            listener.version = listener.names.version
        key = (str(addr[0]), data[2:])
        hit = listener.replies.get(key)
        if hit is not None:
            if hit.expires > self._now():
                hit.counter.inc()
                udp.sendto(data[:2] + hit.reply, addr)
                return
            del listener.replies[key]
        query, response = self.answer_now(listener, data, _peer(addr))
        if query is None:
            return
        if response is not None:
            wire = encode(response, _udp_limit(query))
            udp.sendto(wire, addr)
            if response.flags & dns.flags.AA:
                result = "nxdomain" if response.rcode() == dns.rcode.NXDOMAIN else "answered"
                self._memo(listener, key, query, wire, result, math.inf)
            return
        cached = self._forwarder.cached(query)
        if cached is not None:  # no task for what the cache holds
            wire = self._sent_forwarded(query, cached, udp, addr)
            self._memo(listener, key, query, wire, "forwarded",
                       self._now() + min(FORWARDED_MEMO_SECONDS, cache_ttl(cached)))
            return
        task = asyncio.create_task(self._forward_udp(listener, udp, query, addr),
                                   name=f"dns-forward-{listener.network_id[:12]}")
        listener.tasks.add(task)
        task.add_done_callback(listener.tasks.discard)

    async def _tcp_client(self, listener: _Listener, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        source = _peer(writer.get_extra_info("peername"))
        listener.writers.add(writer)
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_SECONDS)
                wire = await asyncio.wait_for(reader.readexactly(int.from_bytes(head, "big")),
                                              TCP_IDLE_SECONDS)
                query, response = self.answer_now(listener, wire, source)
                if query is None:
                    return
                if response is None:
                    response = await self.forward(query)
                reply = encode(response, TCP_MAX)
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            listener.writers.discard(writer)
            writer.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer, listener: _Listener) -> None:
        self._server = server
        self._listener = listener
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector datagram transport does not subclass DatagramTransport
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._transport is not None:
            self._server.on_datagram(self._listener, self._transport, data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("DNS socket of network %s: %r", self._listener.network_id[:12], exc)


def encode(response: dns.message.Message, limit: int) -> bytes:
    """`response` in at most `limit` bytes: if it does not fit, empty with TC set (the
    client then asks again over TCP)."""
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        response.answer.clear()
        response.authority.clear()
        response.additional.clear()
        response.flags |= dns.flags.TC
        return response.to_wire(max_size=limit)


def _udp_limit(query: dns.message.Message) -> int:
    return max(UDP_MIN_PAYLOAD, query.payload) if query.edns >= 0 else UDP_MIN_PAYLOAD


def _peer(addr: tuple[object, ...]) -> IPAddress:
    # an IPv6 peer is (host, port, flowinfo, scope id), a link-local host "fe80::1%br"
    return ip_address(str(addr[0]).partition("%")[0])


def _where(address: IPAddress, port: int) -> str:
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def _bind(address: IPAddress, port: int, kind: socket.SocketKind) -> socket.socket:
    # FREEBIND: the bind holds even while the bridge lacks its gateway address (it is
    # re-added by the healer after someone removed it), and the socket keeps working.
    v6 = address.version == 6
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, kind)
    try:
        if v6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        else:
            sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((str(address), port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _close(listener: _Listener) -> None:
    for udp in listener.udp:
        udp.close()
    for server in listener.tcp:
        server.close()
    for writer in list(listener.writers):
        with contextlib.suppress(Exception):
            writer.close()
