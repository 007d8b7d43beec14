"""Notices changes to our nftables table from the kernel's nftables notifications.

A NETLINK_NETFILTER socket joined to NFNLGRP_NFTABLES receives one message per object
a commit added or removed, then NFT_MSG_NEWGEN naming the generation and the thread
that committed it. A commit is "ours" when that thread is the Firewall's worker: such
commits are ignored, which breaks the apply -> notification -> apply loop. Anything
else that names our table (or a lost message: ENOBUFS) triggers `on_change`, which
should check `Firewall.is_intact` and re-apply only if broken: a spurious wakeup costs
one `list table`. (NFTA_GEN_PROC_PID is a pid of the initial pid namespace; in a
daemon inside a pid namespace it never matches and every own apply wakes the monitor
once, which that check absorbs.)
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from sheep_runtime.errors import FirewallError
from sheep_runtime.firewall.nft import Firewall
from sheep_runtime.netlink import codec
from sheep_runtime.netlink.raw import subscribe
from sheep_runtime.poll import ErrorSafePoll

NETLINK_NETFILTER = 12
NFNLGRP_NFTABLES = 7
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWGEN = 15
NFT_MSG_TRACE = 17
NFPROTO_INET = 1
_TABLE_ATTR = 1  # NFTA_{TABLE_NAME,CHAIN_TABLE,RULE_TABLE,SET_TABLE,...}: always 1
_GEN_PROC_PID = 2  # NFTA_GEN_PROC_PID, big endian
_NFGENMSG_SIZE = 4  # family, version, res_id: after the nlmsghdr of every message
_RCVBUF = 4 << 20


@dataclass(frozen=True)
class Notification:
    """One nftables message: `table` for object messages, `pid` for NEWGEN."""

    msg_type: int
    family: int
    table: str = ""
    pid: int = 0


def parse(data: bytes) -> Iterator[Notification]:
    """The nftables messages in one netlink datagram (others are skipped)."""
    for kind, _, _, offset, end in codec.headers(data):
        if kind >> 8 != NFNL_SUBSYS_NFTABLES or end - offset < _NFGENMSG_SIZE:
            continue
        msg_type = kind & 0xFF
        attrs = codec.attributes(data, offset + _NFGENMSG_SIZE, end)
        pid = attrs.get(_GEN_PROC_PID)
        yield Notification(
            msg_type=msg_type, family=data[offset],
            table="" if msg_type == NFT_MSG_NEWGEN else codec.text(attrs.get(_TABLE_ATTR)) or "",
            pid=int.from_bytes(pid, "big") if pid is not None and len(pid) == 4 else 0)


class CommitFilter:
    """Follows the notification stream commit by commit: `feed` is True at the end
    (NEWGEN) of a commit that touched our table and was not made by `own_pid()`."""

    def __init__(self, table: str, own_pid: Callable[[], int | None]) -> None:
        self._table = table
        self._own_pid = own_pid
        self._touched = False

    def feed(self, note: Notification) -> bool:
        if note.msg_type == NFT_MSG_NEWGEN:
            touched, self._touched = self._touched, False
            return touched and note.pid != self._own_pid()
        if note.msg_type != NFT_MSG_TRACE and note.family == NFPROTO_INET and (
                note.table == self._table):
            self._touched = True
        return False

    def reset(self) -> None:
        """Forget the commit in progress (its messages were lost)."""
        self._touched = False


class FirewallMonitor:
    """Calls `on_change` when something outside the firewall may have changed our table.

    Pass the Firewall so its own commits are told apart (else every commit touching
    the table, ours included, wakes it up once).
    """

    def __init__(self, *, firewall: Firewall | None = None, table: str = "sheep",
                 debounce: float = 0.05) -> None:
        self._debounce = debounce
        self._changed = asyncio.Event()
        if firewall is not None:
            self._filter = CommitFilter(firewall.table, lambda: firewall.thread_id)
        else:
            self._filter = CommitFilter(table, lambda: None)
        self._error: OSError | None = None
        self.ready = asyncio.Event()
        """Set once subscribed: changes from then on are seen."""

    async def run(self, on_change: Callable[[], Awaitable[None]]) -> None:
        """Watch the calling thread's netns until cancelled. `on_change` runs at most
        once at a time, `debounce` seconds after the first change it covers."""
        loop = asyncio.get_running_loop()
        sock = _subscribe()
        inner = ErrorSafePoll(sock)
        try:
            loop.add_reader(inner.fileno(), self._on_readable, sock)
            try:
                self.ready.set()
                while True:
                    await self._changed.wait()
                    await asyncio.sleep(self._debounce)
                    self._changed.clear()
                    if self._error is not None:
                        raise FirewallError(f"nftables monitor: {self._error}") from self._error
                    await on_change()
            finally:
                loop.remove_reader(inner.fileno())
        finally:
            self.ready.clear()
            inner.close()
            sock.close()

    def _on_readable(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    self._error = exc
                    self._changed.set()
                    return
                self._filter.reset()  # the kernel dropped notifications: assume the worst
                self._changed.set()
                continue
            if any([self._filter.feed(note) for note in parse(data)]):
                self._changed.set()


def _subscribe() -> socket.socket:
    return subscribe(NETLINK_NETFILTER, (NFNLGRP_NFTABLES,), rcvbuf=_RCVBUF)
