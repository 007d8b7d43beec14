"""Link and IPv4 address notifications of the daemon's netns, as a stream of typed events.

Raw NETLINK_ROUTE sockets read with `loop.add_reader` (uvloop and asyncio alike), decoded
with `struct` into only the fields the daemon needs: ~20x cheaper than pyroute2's parser
(bench/bench_monitor.py). One socket listens to RTMGRP_LINK | RTMGRP_IPV4_IFADDR, a second
one runs the full dumps behind `Resync` snapshots. Kernel facts that bite:
- A full receive queue drops notifications and the next recv fails with ENOBUFS; only a
  fresh dump repairs the picture, hence `Resync("overflow")`.
- Moving a link to another netns sends RTM_DELLINK in the source netns, tagged with
  IFLA_NEW_NETNSID / IFLA_NEW_IFINDEX, which a real deletion lacks (`LinkEvent.moved`).
- The bridge sends AF_BRIDGE RTM_NEWLINK/RTM_DELLINK for its ports too (a RTM_DELLINK
  when a port leaves it, not a deletion): only AF_UNSPEC link messages are decoded.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import os
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Interface
from typing import Literal

from sheep_runtime.netlink.errors import link_error
from sheep_runtime.netlink.links import LinkInfo
from sheep_runtime.poll import ErrorSafePoll

Action = Literal["new", "del"]
Buffer = bytes | bytearray

_RTMGRP_LINK, _RTMGRP_IPV4_IFADDR = 0x1, 0x10
_RTM_NEWLINK, _RTM_DELLINK, _RTM_GETLINK = 16, 17, 18
_RTM_NEWADDR, _RTM_DELADDR, _RTM_GETADDR = 20, 21, 22
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLM_F_REQUEST, _NLM_F_DUMP, _NLM_F_DUMP_INTR = 0x1, 0x300, 0x10
_IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_MTU, _IFLA_MASTER = 1, 3, 4, 10
_IFLA_OPERSTATE, _IFLA_LINKINFO, _IFLA_NEW_NETNSID, _IFLA_NEW_IFINDEX = 16, 18, 45, 49
_IFLA_INFO_KIND = 1
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_LINK_ATTRS = frozenset({_IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_MTU, _IFLA_MASTER,
                         _IFLA_OPERSTATE, _IFLA_LINKINFO, _IFLA_NEW_NETNSID, _IFLA_NEW_IFINDEX})
_ADDR_ATTRS, _INFO_ATTRS = frozenset({_IFA_ADDRESS, _IFA_LOCAL}), frozenset({_IFLA_INFO_KIND})
_IFF_UP = 0x1
_SO_RCVBUFFORCE = 33  # not exported by Python's socket module
_OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")
_NLMSGHDR, _RTATTR = struct.Struct("=IHHII"), struct.Struct("=HH")
_IFINFOMSG, _IFADDRMSG = struct.Struct("=BxHiII"), struct.Struct("=BBBBI")

_BUFFER = 1 << 17  # above any datagram the kernel sends (dump batches are <= 32 KiB)
_READ_BUDGET = 64  # datagrams per reader callback, so other tasks run during a burst
_YIELD_EVERY = 64  # events delivered between yields to the loop
_DUMP_RETRIES = 3  # a dump that raced with changes (NLM_F_DUMP_INTR) is redone


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """RTM_NEWLINK (sent for any change: flags, master, operstate, ...) or RTM_DELLINK.

    `moved`: a "del" because the link moved to another netns, not a deletion.
    `received_at`: `time.monotonic()` when the datagram was read from the socket.
    """

    action: Action
    index: int
    name: str
    kind: str | None
    master: int | None
    operstate: str
    up: bool
    mtu: int
    mac: str | None
    received_at: float
    moved: bool = False

    def info(self) -> LinkInfo:
        """The link's state as `LinkInfo` (the form of `Resync.links`)."""
        return LinkInfo(index=self.index, name=self.name, kind=self.kind, master=self.master,
                        operstate=self.operstate, mtu=self.mtu, mac=self.mac, up=self.up)


@dataclass(frozen=True, slots=True)
class AddressEvent:
    """RTM_NEWADDR / RTM_DELADDR of an IPv4 address."""

    action: Action
    index: int
    address: IPv4Interface
    received_at: float


@dataclass(frozen=True, slots=True)
class Resync:
    """A full snapshot of links and IPv4 addresses, at start and after the kernel dropped
    notifications ("overflow"). Replace the model with it; the events that follow are
    as new as or newer than it."""

    reason: Literal["start", "overflow"]
    links: tuple[LinkInfo, ...]
    addresses: tuple[tuple[int, IPv4Interface], ...]


Event = LinkEvent | AddressEvent
Handler = Callable[[LinkEvent | AddressEvent | Resync], Awaitable[None]]


@dataclass
class MonitorStats:
    """Counters for metrics: `events` by `event_type()`; `resyncs` counts overflow
    resyncs (not the start snapshot); lags are received_at -> handler start."""

    events: collections.Counter[str] = field(default_factory=collections.Counter)
    resyncs: int = 0
    discarded: int = 0  # decoded events superseded by an overflow resync
    rcvbuf: int = 0  # receive buffer the kernel granted (bytes)
    last_lag: float = 0.0
    max_lag: float = 0.0


def event_type(event: Event) -> str:
    """Metric label of an event: "link.new", "link.del", "address.new", "address.del"."""
    return f"{'link' if isinstance(event, LinkEvent) else 'address'}.{event.action}"


def _attrs(buf: Buffer, off: int, end: int, wanted: frozenset[int]) -> dict[int, Buffer]:
    """Payloads of the wanted rtattrs in buf[off:end]."""
    found: dict[int, Buffer] = {}
    unpack = _RTATTR.unpack_from
    while off + 4 <= end:
        length, kind = unpack(buf, off)
        if length < 4:
            break
        if (kind := kind & 0x3FFF) in wanted:  # without NLA_F_NESTED / NET_BYTEORDER
            found[kind] = buf[off + 4:off + length]
        off += (length + 3) & ~3
    return found


def _text(raw: Buffer | None) -> str | None:
    return None if raw is None else bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")


def _int(raw: Buffer | None) -> int:
    return int.from_bytes(raw, sys.byteorder) if raw else 0


def _link(buf: Buffer, off: int, end: int, action: Action, at: float) -> LinkEvent:
    _, _, index, flags, _ = _IFINFOMSG.unpack_from(buf, off)
    a = _attrs(buf, off + _IFINFOMSG.size, end, _LINK_ATTRS)
    info, mac = a.get(_IFLA_LINKINFO), a.get(_IFLA_ADDRESS)
    oper = _int(a.get(_IFLA_OPERSTATE))
    return LinkEvent(
        action=action, index=index, name=_text(a.get(_IFLA_IFNAME)) or "",
        kind=_text(_attrs(info, 0, len(info), _INFO_ATTRS).get(1)) if info else None,
        master=_int(a.get(_IFLA_MASTER)) or None,
        operstate=_OPERSTATES[oper] if oper < len(_OPERSTATES) else "UNKNOWN",
        up=bool(flags & _IFF_UP), mtu=_int(a.get(_IFLA_MTU)),
        mac=None if mac is None else bytes(mac).hex(":"), received_at=at,
        moved=action == "del" and (_IFLA_NEW_NETNSID in a or _IFLA_NEW_IFINDEX in a))


def _address(buf: Buffer, off: int, end: int, action: Action, at: float
             ) -> AddressEvent | None:
    family, prefixlen, _, _, index = _IFADDRMSG.unpack_from(buf, off)
    a = _attrs(buf, off + _IFADDRMSG.size, end, _ADDR_ATTRS)
    # IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on p2p links.
    raw = a.get(_IFA_LOCAL) or a.get(_IFA_ADDRESS)
    if family != socket.AF_INET or raw is None or len(raw) != 4:
        return None
    address = IPv4Interface((int.from_bytes(raw, "big"), prefixlen))
    return AddressEvent(action=action, index=index, address=address, received_at=at)


def _messages(buf: Buffer, size: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(type, flags, seq, payload start, message end) of each message in buf[:size]."""
    off = 0
    while off + _NLMSGHDR.size <= size:
        length, mtype, flags, seq, _ = _NLMSGHDR.unpack_from(buf, off)
        if length < _NLMSGHDR.size or off + length > size:
            return
        yield mtype, flags, seq, off + _NLMSGHDR.size, off + length
        off += (length + 3) & ~3


def _decode_one(buf: Buffer, mtype: int, off: int, end: int, at: float) -> Event | None:
    if mtype in (_RTM_NEWLINK, _RTM_DELLINK):
        if end - off >= _IFINFOMSG.size and buf[off] == socket.AF_UNSPEC:
            return _link(buf, off, end, "new" if mtype == _RTM_NEWLINK else "del", at)
    elif mtype in (_RTM_NEWADDR, _RTM_DELADDR) and end - off >= _IFADDRMSG.size:
        return _address(buf, off, end, "new" if mtype == _RTM_NEWADDR else "del", at)
    return None


def decode(buf: Buffer, size: int, received_at: float) -> list[Event]:
    """The link and IPv4 address events in the datagram buf[:size]; others are skipped."""
    events = (_decode_one(buf, mtype, off, end, received_at)
              for mtype, _, _, off, end in _messages(buf, size))
    return [event for event in events if event is not None]


class NetlinkMonitor:
    """Delivers the link and IPv4 address events of the calling thread's netns to one
    handler, in kernel order, after a `Resync("start")` snapshot. See `run`.

    A reader callback decodes into a bounded queue (`max_pending` events); when it is
    full the reader pauses and the kernel's buffer (`rcvbuf`) fills, then overflows: a
    slow handler costs a resync, never unbounded memory. `on_event(type, lag_seconds)`
    runs before each event is handled, `on_resync()` before each overflow resync.
    """

    def __init__(self, *, rcvbuf: int = 4 << 20, max_pending: int = 8192,
                 on_event: Callable[[str, float], None] | None = None,
                 on_resync: Callable[[], None] | None = None) -> None:
        self._rcvbuf = rcvbuf
        self._max_pending = max(1, max_pending)
        self._on_event = on_event
        self._on_resync = on_resync
        self.stats = MonitorStats()
        self._pending: collections.deque[Event] = collections.deque()
        self._ready = asyncio.Event()  # set by the reader: events, overflow or failure
        self._overflowed = False
        self._failure: OSError | None = None
        self._reading: socket.socket | None = None  # the socket while its reader is on
        self._poll: ErrorSafePoll | None = None
        self._buf = bytearray(_BUFFER)
        self._seq = 0

    async def run(self, handler: Handler) -> None:
        """Open the sockets in the calling thread's netns and deliver events to `handler`
        (awaited one at a time, in order) until cancelled. Errors of the handler
        propagate; socket failures raise `LinkError`. Run it once per instance."""
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
            dumps = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        except OSError as exc:
            raise link_error("open netlink monitor sockets", exc) from exc
        with sock, dumps:
            try:
                try:  # as root: beyond net.core.rmem_max
                    sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, self._rcvbuf)
                except PermissionError:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._rcvbuf)
                self.stats.rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
                sock.bind((0, _RTMGRP_LINK | _RTMGRP_IPV4_IFADDR))
                sock.setblocking(False)
                dumps.setblocking(False)
            except OSError as exc:
                raise link_error("set up netlink monitor sockets", exc) from exc
            self._reader(sock)  # subscribed before the first dump: no gap after it
            try:
                await handler(await self._snapshot(dumps, "start"))
                await self._deliver(handler, sock, dumps)
            finally:
                self._reader(None)

    def _reader(self, sock: socket.socket | None) -> None:
        """Register the reader on `sock`, or (None) unregister it."""
        loop = asyncio.get_running_loop()
        if self._poll is not None:
            loop.remove_reader(self._poll.fileno())
            self._poll.close()
            self._poll = None
        if sock is not None:
            self._poll = ErrorSafePoll(sock)
            loop.add_reader(self._poll.fileno(), self._on_readable, sock)
        self._reading = sock

    def _on_readable(self, sock: socket.socket) -> None:
        for _ in range(_READ_BUDGET):
            try:
                size = sock.recv_into(self._buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    self._failure = exc
                    self._reader(None)
                    break
                # Notifications were lost: a dump will supersede everything queued.
                self._overflowed = True
                self.stats.discarded += len(self._pending)
                self._pending.clear()
                continue
            self._pending.extend(decode(self._buf, size, time.monotonic()))
            if len(self._pending) >= self._max_pending:
                self._reader(None)  # resumed by _deliver at half the bound
                break
        self._ready.set()

    async def _deliver(self, handler: Handler, sock: socket.socket, dumps: socket.socket
                       ) -> None:
        delivered = 0
        while True:
            resync, self._overflowed = self._overflowed, False
            if resync:  # what is queued predates the dump about to be taken
                self.stats.discarded += len(self._pending)
                self._pending.clear()
            if self._failure is not None:
                raise link_error("receive netlink events", self._failure) from self._failure
            if self._reading is None and len(self._pending) <= self._max_pending // 2:
                self._reader(sock)
            if resync:
                self.stats.resyncs += 1
                if self._on_resync is not None:
                    self._on_resync()
                await handler(await self._snapshot(dumps, "overflow"))
            elif not self._pending:
                self._ready.clear()
                await self._ready.wait()
            else:
                event = self._pending.popleft()
                self.stats.last_lag = lag = time.monotonic() - event.received_at
                self.stats.max_lag = max(self.stats.max_lag, lag)
                self.stats.events[label := event_type(event)] += 1
                if self._on_event is not None:
                    self._on_event(label, lag)
                await handler(event)
                delivered += 1
                if delivered % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # a handler that never suspends must not hog

    async def _snapshot(self, sock: socket.socket, reason: Literal["start", "overflow"]
                        ) -> Resync:
        links = await self._dump(sock, _RTM_GETLINK, socket.AF_UNSPEC, _IFINFOMSG.size)
        addrs = await self._dump(sock, _RTM_GETADDR, socket.AF_INET, _IFADDRMSG.size)
        return Resync(reason=reason,
                      links=tuple(e.info() for e in links if isinstance(e, LinkEvent)),
                      addresses=tuple((e.index, e.address) for e in addrs
                                      if isinstance(e, AddressEvent)))

    async def _dump(self, sock: socket.socket, request: int, family: int, header: int
                    ) -> list[Event]:
        """One full dump, redone (up to _DUMP_RETRIES times) if it raced with changes."""
        loop = asyncio.get_running_loop()
        buf = bytearray(_BUFFER)
        for _ in range(_DUMP_RETRIES):
            self._seq += 1
            msg = _NLMSGHDR.pack(_NLMSGHDR.size + header, request, _NLM_F_REQUEST | _NLM_F_DUMP,
                                 self._seq, 0) + bytes([family]) + bytes(header - 1)
            events: list[Event] = []
            interrupted = done = False
            try:
                await loop.sock_sendall(sock, msg)
                while not done:
                    size = await loop.sock_recv_into(sock, buf)
                    for mtype, flags, seq, off, end in _messages(buf, size):
                        if seq != self._seq:
                            continue
                        interrupted |= bool(flags & _NLM_F_DUMP_INTR)
                        done |= mtype == _NLMSG_DONE
                        if mtype == _NLMSG_ERROR:
                            code = -struct.unpack_from("=i", buf, off)[0]
                            raise OSError(code, os.strerror(code))
                        if event := _decode_one(buf, mtype, off, end, 0.0):
                            events.append(event)
            except OSError as exc:
                what = "dump links" if request == _RTM_GETLINK else "dump addresses"
                raise link_error(what, exc) from exc
            if not interrupted:
                break
        return events
