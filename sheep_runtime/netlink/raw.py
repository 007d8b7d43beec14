"""The backend's netlink sockets: a synchronous rtnetlink request client, and
subscriptions to multicast groups for the monitors.

Why not pyroute2: the kernel's own cost of a whole attach (veth, port flags, fdb,
neighbours, address, up, lo, route) is about 0.5 ms, while the same steps through
pyroute2 cost ~3 ms p50 on a quiet 2-core box (7.3 ms at load 1.7, 13.9 ms at load
6.4), almost all of it Python-side message building and parsing. With the codec's
`struct` messages the whole attach costs ~1 ms p50 at load 6.4, worker round trips
included (bench/bench_netlink.py).

A `RawRoute` is blocking: use it from worker threads (`workers.py`) or
`asyncio.to_thread`, never on the event loop (a veth deletion spends ~20 ms inside the
send call, and any request can wait that long for the RTNL lock). One thread at a
time: a second concurrent user gets RuntimeError instead of interleaved replies.
Several messages can go out in one send (`batch`): the kernel runs them in order and
ACKs each one.
"""

from __future__ import annotations

import ctypes
import errno as errnos
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from sheep_runtime.netlink import codec as c
from sheep_runtime.netlink.errors import LinkError, link_error

T = TypeVar("T")
Decoder = Callable[[bytearray, int, int], T | None]
"""Decodes one dump reply from (buffer, payload offset, message end); None skips it."""

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP, NETLINK_CAP_ACK, NETLINK_EXT_ACK = 1, 10, 11
SO_RCVBUFFORCE, SO_ATTACH_FILTER = 33, 26  # not exported by Python's socket module
RECV_BUFFER = 1 << 17  # above any datagram the kernel sends (dump batches are <= 32 KiB)
_TIMEOUT = struct.pack("=qq", 30, 0)  # SO_RCVTIMEO: a lost reply must not hang a worker
_DUMP_RETRIES = 3  # a dump that raced with changes (NLM_F_DUMP_INTR) is redone
_MAX_SEQ = 0x7FFFFFFF
SIOCGIFINDEX = 0x8933
_IFREQ = struct.Struct("16si20x")  # struct ifreq: name, ifindex, rest of the union


class Request:
    """One message of a batch: what to say if it fails, and errnos that are fine."""

    __slots__ = ("msg", "ok", "what")

    def __init__(self, msg: bytes, what: str, ok: tuple[int, ...] = ()) -> None:
        self.msg, self.what, self.ok = msg, what, ok


_SOCK_FILTER = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k
_SOCK_FPROG = struct.Struct("HP")  # struct sock_fprog: length, pointer (native layout)
BpfInsn = tuple[int, int, int, int]


def attach_filter(sock: socket.socket, program: Sequence[BpfInsn]) -> None:
    """Attach the classic BPF `program` ((code, jt, jf, k) instructions) to `sock`:
    the kernel runs it on each message before queueing it, and drops those for which
    it returns 0 (they cost no wakeup, no receive and no room in the buffer). On a
    netlink socket the program sees the message from its nlmsghdr on."""
    code = ctypes.create_string_buffer(b"".join(_SOCK_FILTER.pack(*i) for i in program))
    # the kernel copies the program during the call: `code` only has to outlive it
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                    _SOCK_FPROG.pack(len(program), ctypes.addressof(code)))


def subscribe(protocol: int, groups: Sequence[int], *, rcvbuf: int,
              program: Sequence[BpfInsn] = ()) -> socket.socket:
    """A non-blocking netlink socket of `protocol` in the calling thread's netns,
    joined to the multicast `groups` (group numbers, not masks), with a receive
    buffer of `rcvbuf` bytes (beyond net.core.rmem_max when allowed: as root) and
    the socket filter `program` if given (`attach_filter`)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
    try:
        if program:
            attach_filter(sock, program)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((0, 0))
        for group in groups:
            sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class RawRoute:
    """A NETLINK_ROUTE socket in the netns of the thread that created it."""

    def __init__(self) -> None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             socket.NETLINK_ROUTE)
        try:
            sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)  # error text from the kernel
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)  # errors don't echo requests
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEOUT)
            sock.bind((0, 0))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._buffer = bytearray(RECV_BUFFER)
        self._seq = 0
        self._state = threading.Lock()  # guards _busy/_closing, held only briefly
        self._busy = False
        self._closing = False

    def fileno(self) -> int:
        return self._sock.fileno()

    @property
    def closed(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Close now, or as soon as the request in flight (in another thread) ends:
        closing an fd under a blocked recv could let a reused fd number be read."""
        with self._state:
            self._closing = True
            if self._busy:
                return
        self._sock.close()

    def _enter(self) -> None:
        with self._state:
            if self._closing:
                raise LinkError("netlink socket is closed", errno=errnos.EBADF)
            if self._busy:
                raise RuntimeError("RawRoute used by two threads at once")
            self._busy = True

    def _leave(self) -> None:
        with self._state:
            self._busy = False
            closing = self._closing
        if closing:
            self._sock.close()

    def _next_seqs(self, count: int) -> int:
        """Reserve `count` sequence numbers; return the first."""
        if self._seq + count >= _MAX_SEQ:
            self._seq = 0
        first = self._seq + 1
        self._seq += count
        return first

    def ifindex(self, ifname: str, what: str) -> int:
        """The index of `ifname` in the socket's netns: SIOCGIFINDEX on the netlink socket
        itself (~10 us, no RTNL) instead of an RTM_GETLINK round trip (~55 us)."""
        self._enter()
        try:
            reply = fcntl.ioctl(self._sock.fileno(), SIOCGIFINDEX,
                                _IFREQ.pack(ifname.encode(), 0))
        except OSError as exc:
            raise link_error(f"{what}: look up {ifname}", exc) from exc
        finally:
            self._leave()
        return int(_IFREQ.unpack(reply)[1])

    def request(self, msg: bytes, what: str, ok: tuple[int, ...] = ()) -> list[bytes]:
        """Send one message, wait for its ACK; return the other replies (echo)."""
        return self.batch((Request(msg, what, ok),))[0]

    def batch(self, requests: Sequence[Request]) -> list[list[bytes]]:
        """Send all `requests` in one datagram and wait for every ACK. Raises
        `LinkError` for the first one (in order) that failed with an errno not in its
        `ok`; the kernel still ran the others. Returns each request's replies."""
        self._enter()
        try:
            replies, errors = self._exchange(requests)
        except BlockingIOError as exc:  # SO_RCVTIMEO expired
            err = OSError(errnos.ETIMEDOUT, "no reply from the kernel")
            raise link_error(requests[0].what, err) from exc
        except OSError as exc:
            raise link_error(requests[0].what, exc) from exc
        finally:
            self._leave()
        for req, (code, text) in zip(requests, errors, strict=True):
            if code and code not in req.ok:
                err = OSError(code, text or os.strerror(code))
                raise link_error(req.what, err) from err
        return replies

    def _exchange(self, requests: Sequence[Request]
                  ) -> tuple[list[list[bytes]], list[tuple[int, str | None]]]:
        out = bytearray()
        first = self._next_seqs(len(requests))
        for seq, req in enumerate(requests, first):
            start = len(out)
            out += req.msg
            struct.pack_into("=I", out, start + 8, seq)
        replies: list[list[bytes]] = [[] for _ in requests]
        errors: list[tuple[int, str | None]] = [(0, None)] * len(requests)
        pending = len(requests)
        self._sock.send(out)
        while pending:
            for kind, flags, seq, offset, end in self._receive():
                slot = seq - first
                if not 0 <= slot < len(requests):
                    continue  # a stale reply
                if kind == c.NLMSG_ERROR:
                    errors[slot] = c.decode_error(self._buffer, offset, end, flags)
                    pending -= 1
                else:
                    replies[slot].append(bytes(self._buffer[offset - 16:end]))
        return replies, errors

    def _receive(self) -> Iterator[c.Header]:
        """One recv; the messages it brought."""
        return c.headers(self._buffer, self._sock.recv_into(self._buffer))

    def dump(self, msg: bytes, what: str, decode: Decoder[T]) -> list[T]:
        """Send a dump request; return what `decode` made of each reply up to
        NLMSG_DONE. A dump the kernel flags as interrupted by changes is redone."""
        self._enter()
        try:
            for _ in range(_DUMP_RETRIES - 1):
                found, interrupted = self._dump_once(msg, decode)
                if not interrupted:
                    return found
            return self._dump_once(msg, decode)[0]
        except BlockingIOError as exc:
            raise link_error(what, OSError(errnos.ETIMEDOUT, "no reply")) from exc
        except OSError as exc:
            raise link_error(what, exc) from exc
        finally:
            self._leave()

    def _dump_once(self, msg: bytes, decode: Decoder[T]) -> tuple[list[T], bool]:
        seq = self._next_seqs(1)
        data = bytearray(msg)
        struct.pack_into("=I", data, 8, seq)
        found: list[T] = []
        interrupted = False
        self._sock.send(data)
        while True:
            for kind, flags, got, offset, end in self._receive():
                if got != seq:
                    continue
                interrupted |= bool(flags & c.NLM_F_DUMP_INTR)
                if kind == c.NLMSG_DONE:
                    return found, interrupted
                if kind == c.NLMSG_ERROR:
                    code, text = c.decode_error(self._buffer, offset, end, flags)
                    if code:
                        raise OSError(code, text or os.strerror(code))
                elif (item := decode(self._buffer, offset, end)) is not None:
                    found.append(item)
