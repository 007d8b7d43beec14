"""A minimal synchronous rtnetlink client for the attach hot path.

Why not pyroute2 here: the kernel's own cost of a whole attach (veth, port flags, fdb,
neighbours, address, up, lo, route) is about 0.5 ms, while the fewer steps the former
path sent through pyroute2 cost ~3 ms p50 on a quiet 2-core box (7.3 ms at load 1.7,
13.9 ms at load 6.4), almost all of it Python-side message building and parsing. With
messages built by `struct` (`messages.py`) and only ACKs (and one echoed ifindex)
parsed, the whole attach costs 0.95 ms p50 at load 6.4, worker round trips included
(bench/bench_netlink.py). pyroute2 stays the project's netlink library for everything
that is not hot (bridges, dumps, events).

A `RawRoute` is blocking: use it from worker threads (`workers.py`), never on the
event loop (a veth deletion spends ~20 ms inside the send call, and any request can
wait that long for the RTNL lock). One thread at a time: a second concurrent user
gets RuntimeError instead of interleaved replies. Several messages can go out in one
send (`batch`): the kernel runs them in order and ACKs each one.
"""

from __future__ import annotations

import errno as errnos
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Iterator, Sequence

from sheep_runtime.netlink import messages as m
from sheep_runtime.netlink.errors import LinkError, link_error

SOL_NETLINK = 270
NETLINK_CAP_ACK, NETLINK_EXT_ACK = 10, 11
_RECV_BUFFER = 1 << 16
_TIMEOUT = struct.pack("=qq", 30, 0)  # SO_RCVTIMEO: a lost reply must not hang a worker
_ERROR = struct.Struct("=i")
SIOCGIFINDEX = 0x8933
_IFREQ = struct.Struct("16si20x")  # struct ifreq: name, ifindex, rest of the union


class Request:
    """One message of a batch: what to say if it fails, and errnos that are fine."""

    __slots__ = ("msg", "ok", "what")

    def __init__(self, msg: bytes, what: str, ok: tuple[int, ...] = ()) -> None:
        self.msg, self.what, self.ok = msg, what, ok


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
        self._buffer = bytearray(_RECV_BUFFER)
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
            return self._exchange(requests)
        finally:
            self._leave()

    def _exchange(self, requests: Sequence[Request]) -> list[list[bytes]]:
        out = bytearray()
        if self._seq + len(requests) >= 0x7FFFFFFF:
            self._seq = 0
        first = self._seq + 1
        for req in requests:
            self._seq += 1
            start = len(out)
            out += req.msg
            struct.pack_into("=I", out, start + 8, self._seq)
        replies: list[list[bytes]] = [[] for _ in requests]
        errors: list[int] = [0] * len(requests)
        texts: list[str | None] = [None] * len(requests)
        pending = len(requests)
        try:
            self._sock.send(out)
            while pending:
                for offset, length, kind, flags, seq in self._receive():
                    slot = seq - first
                    if 0 <= slot < len(requests):  # else a stale reply: skip it
                        if kind == m.NLMSG_ERROR:
                            errors[slot], texts[slot] = _decode_error(
                                self._buffer, offset, length, flags)
                            pending -= 1
                        else:
                            replies[slot].append(bytes(self._buffer[offset:offset + length]))
        except BlockingIOError as exc:  # SO_RCVTIMEO expired
            err = OSError(errnos.ETIMEDOUT, "no reply from the kernel")
            raise link_error(requests[0].what, err) from exc
        except OSError as exc:
            raise link_error(requests[0].what, exc) from exc
        for req, code, text in zip(requests, errors, texts, strict=True):
            if code and code not in req.ok:
                err = OSError(code, text or os.strerror(code))
                raise link_error(req.what, err) from err
        return replies

    def _receive(self) -> Iterator[tuple[int, int, int, int, int]]:
        """One recv; (offset, length, type, flags, seq) of each message it brought."""
        size = self._sock.recv_into(self._buffer)
        offset = 0
        while offset + 16 <= size:
            length, kind, flags, seq, _ = m.NLMSGHDR.unpack_from(self._buffer, offset)
            if length < 16:
                return
            yield offset, length, kind, flags, seq
            offset += (length + 3) & ~3

    def dump(self, msg: bytes, what: str) -> list[bytes]:
        """Send a dump request; return every reply message up to NLMSG_DONE."""
        self._enter()
        try:
            self._seq = self._seq + 1 if self._seq < 0x7FFFFFFF else 1
            seq = self._seq
            data = bytearray(msg)
            struct.pack_into("=I", data, 8, seq)
            out: list[bytes] = []
            self._sock.send(data)
            while True:
                for offset, length, kind, flags, got in self._receive():
                    if got != seq:
                        continue
                    if kind == m.NLMSG_DONE:
                        return out
                    if kind == m.NLMSG_ERROR:
                        code, text = _decode_error(self._buffer, offset, length, flags)
                        if code:
                            err = OSError(code, text or os.strerror(code))
                            raise link_error(what, err) from err
                    else:
                        out.append(bytes(self._buffer[offset:offset + length]))
        except BlockingIOError as exc:
            raise link_error(what, OSError(errnos.ETIMEDOUT, "no reply")) from exc
        except OSError as exc:
            raise link_error(what, exc) from exc
        finally:
            self._leave()


def _decode_error(buf: bytearray, offset: int, length: int, flags: int) -> tuple[int, str | None]:
    """(positive errno or 0, the kernel's extack message if any) of an NLMSG_ERROR."""
    (code,) = _ERROR.unpack_from(buf, offset + 16)
    if not code or not flags & m.NLM_F_ACK_TLVS:
        return -code, None
    # TLVs follow the echoed request: only its header when capped (NETLINK_CAP_ACK).
    (echoed,) = struct.unpack_from("=I", buf, offset + 20)
    start = offset + 20 + (16 if flags & m.NLM_F_CAPPED else (echoed + 3) & ~3)
    for kind, payload in m.attrs(buf, start, offset + length):
        if kind == m.NLMSGERR_ATTR_MSG:
            return -code, bytes(payload).rstrip(b"\0").decode(errors="replace")
    return -code, None


def ifindex_of(reply: bytes) -> int:
    """The ifi_index of an RTM_NEWLINK message."""
    (index,) = struct.unpack_from("=i", reply, 16 + 4)
    return int(index)

