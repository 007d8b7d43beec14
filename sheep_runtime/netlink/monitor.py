"""Link and IPv4 address notifications of the daemon's netns, as a stream of typed events.

One non-blocking socket joined to the link and IPv4 address groups is read with
`loop.add_reader` (uvloop and asyncio alike) and decoded by the codec into only the
fields the daemon needs; a `RawRoute` on a thread runs the full dumps behind `Resync`
snapshots. Kernel facts that bite:
- A full receive queue drops notifications and the next recv fails with ENOBUFS; only a
  fresh dump repairs the picture, hence `Resync("overflow")`.
- Moving a link to another netns sends RTM_DELLINK in the source netns, tagged with
  IFLA_NEW_NETNSID / IFLA_NEW_IFINDEX, which a real deletion lacks (`LinkEvent.moved`).
- The bridge sends AF_BRIDGE RTM_NEWLINK/RTM_DELLINK for its ports too (a RTM_DELLINK
  when a port leaves it, not a deletion): the codec decodes only AF_UNSPEC links.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from sheep_runtime.model import AddressEvent, KernelEvent, LinkAction, LinkEvent, Resync
from sheep_runtime.netlink import codec as c
from sheep_runtime.netlink import messages as m
from sheep_runtime.netlink.errors import link_error
from sheep_runtime.netlink.raw import RECV_BUFFER, RawRoute, subscribe
from sheep_runtime.poll import ErrorSafePoll

Event = LinkEvent | AddressEvent
Handler = Callable[[KernelEvent], Awaitable[None]]

# Drops the AF_BRIDGE link messages (ifi_family, byte 16: right after the nlmsghdr)
# in the kernel: the bridge sends them for its ports, ~45% of what an attach and a
# detach make the monitor receive, and the codec skips them anyway. IPv4 address
# messages carry AF_INET there and pass.
NO_BRIDGE_PORT_MESSAGES = (
    (0x30, 0, 0, 16),  # ldb [16]
    (0x15, 0, 1, socket.AF_BRIDGE),  # jeq #AF_BRIDGE, drop, accept
    (0x06, 0, 0, 0),  # drop
    (0x06, 0, 0, 0xFFFFFFFF),  # accept
)
_READ_BUDGET = 64  # datagrams per reader callback, so other tasks run during a burst
_YIELD_EVERY = 64  # events delivered between yields to the loop
_ACTIONS: dict[int, LinkAction] = {c.RTM_NEWLINK: "new", c.RTM_DELLINK: "del",
                                   c.RTM_NEWADDR: "new", c.RTM_DELADDR: "del"}
_LINK_MESSAGES = frozenset((c.RTM_NEWLINK, c.RTM_DELLINK))


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


def _event(buf: c.Buffer, kind: int, offset: int, end: int, at: float) -> Event | None:
    action = _ACTIONS.get(kind)
    if action is None:
        return None
    if kind in (c.RTM_NEWLINK, c.RTM_DELLINK):
        if (link := c.decode_link(buf, offset, end)) is None:
            return None
        return LinkEvent(action=action, link=link[0], received_at=at,
                         moved=action == "del" and link[1])
    if (address := c.decode_address(buf, offset, end)) is None:
        return None
    return AddressEvent(action=action, index=address[0], address=address[1], received_at=at)


def decode(buf: c.Buffer, size: int, received_at: float, *,
           skip: Callable[[str], bool] | None = None,
           on_skip: Callable[[str], None] | None = None) -> list[Event]:
    """The link and IPv4 address events in the datagram buf[:size]; others are
    dropped, and so are the link events whose name `skip` accepts: those are told to
    `on_skip` by event type without being decoded (a link message costs ~35 us to
    decode, its name ~2 us)."""
    events = []
    for kind, _, _, offset, end in c.headers(buf, size):
        if skip is not None and kind in _LINK_MESSAGES:
            name = c.link_name(buf, offset, end)
            if name is not None and skip(name):
                if on_skip is not None:
                    on_skip(f"link.{_ACTIONS[kind]}")
                continue
        if (event := _event(buf, kind, offset, end, received_at)) is not None:
            events.append(event)
    return events


def _snapshot(dumps: RawRoute, reason: Literal["start", "overflow"]) -> Resync:
    """Blocking: a full dump of links and IPv4 addresses."""
    links = dumps.dump(m.dump_links(), "dump links", c.decode_link)
    addresses = dumps.dump(m.dump_addrs(), "dump addresses", c.decode_address)
    return Resync(reason=reason, links=tuple(link for link, _ in links),
                  addresses=tuple(addresses))


class NetlinkMonitor:
    """Delivers the link and IPv4 address events of the calling thread's netns to one
    handler, in kernel order, after a `Resync("start")` snapshot. See `run`.

    A reader callback decodes into a bounded queue (`max_pending` events); when it is
    full the reader pauses and the kernel's buffer (`rcvbuf`) fills, then overflows: a
    slow handler costs a resync, never unbounded memory. `on_event(type, lag_seconds)`
    runs before each event is handled, `on_resync()` before each overflow resync.
    Link events whose name `skip(name)` accepts when they arrive are neither decoded
    nor handled, only counted (`on_skip(type)`).
    """

    def __init__(self, *, rcvbuf: int = 4 << 20, max_pending: int = 8192,
                 on_event: Callable[[str, float], None] | None = None,
                 on_resync: Callable[[], None] | None = None,
                 skip: Callable[[str], bool] | None = None,
                 on_skip: Callable[[str], None] | None = None) -> None:
        self._rcvbuf = rcvbuf
        self._max_pending = max(1, max_pending)
        self._on_event = on_event
        self._on_resync = on_resync
        self._skip = skip
        self._on_skip = on_skip
        self.stats = MonitorStats()
        self._pending: collections.deque[Event] = collections.deque()
        self._ready = asyncio.Event()  # set by the reader: events, overflow or failure
        self._overflowed = False
        self._failure: OSError | None = None
        self._reading: socket.socket | None = None  # the socket while its reader is on
        self._poll: ErrorSafePoll | None = None
        self._buf = bytearray(RECV_BUFFER)

    async def run(self, handler: Handler) -> None:
        """Open the sockets in the calling thread's netns and deliver events to `handler`
        (awaited one at a time, in order) until cancelled. Errors of the handler
        propagate; socket failures raise `LinkError`. Run it once per instance."""
        try:
            dumps = RawRoute()
        except OSError as exc:
            raise link_error("open netlink monitor sockets", exc) from exc
        try:
            sock = subscribe(socket.NETLINK_ROUTE, (c.RTNLGRP_LINK, c.RTNLGRP_IPV4_IFADDR),
                             rcvbuf=self._rcvbuf, program=NO_BRIDGE_PORT_MESSAGES)
            self.stats.rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        except OSError as exc:
            dumps.close()
            raise link_error("set up netlink monitor sockets", exc) from exc
        with sock:
            self._reader(sock)  # subscribed before the first dump: no gap after it
            try:
                await handler(await asyncio.to_thread(_snapshot, dumps, "start"))
                await self._deliver(handler, sock, dumps)
            finally:
                self._reader(None)
                dumps.close()  # deferred by the socket while a dump still runs

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
            self._pending.extend(decode(self._buf, size, time.monotonic(), skip=self._skip,
                                        on_skip=self._on_skip))
            if len(self._pending) >= self._max_pending:
                self._reader(None)  # resumed by _deliver at half the bound
                break
        self._ready.set()

    async def _deliver(self, handler: Handler, sock: socket.socket, dumps: RawRoute) -> None:
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
                await handler(await asyncio.to_thread(_snapshot, dumps, "overflow"))
            elif not self._pending:
                self._ready.clear()
                await self._ready.wait()
            else:
                await self._handle(handler, self._pending.popleft())
                delivered += 1
                if delivered % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # a handler that never suspends must not hog

    async def _handle(self, handler: Handler, event: Event) -> None:
        self.stats.last_lag = lag = time.monotonic() - event.received_at
        self.stats.max_lag = max(self.stats.max_lag, lag)
        self.stats.events[label := event_type(event)] += 1
        if self._on_event is not None:
            self._on_event(label, lag)
        await handler(event)
