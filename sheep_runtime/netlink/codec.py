"""The netlink wire format, for every socket of the backend (rtnetlink and nfnetlink).

Pure and I/O free: building blocks of requests (`attr`, `nest`, `message`, ...), the
walk over the messages of a datagram (`headers`) and over the attributes of a message
or a nest (`attributes`), NLMSG_ERROR decoding with the kernel's extack text, and the
decoders of links (`model.Link`, their IFLA_STATS64 counters), IPv4 addresses and
IPv4 routes. Everything is done with `struct` on the receive buffer: pyroute2's
generic parser costs ~15x more per message (bench/bench_monitor.py). Constants are
the kernel's (linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h, neighbour.h).
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
from collections.abc import Iterator
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)

from sheep_runtime.model import InterfaceCounters, Link

Buffer = bytes | bytearray | memoryview
Header = tuple[int, int, int, int, int]
"""(type, flags, seq, payload offset, message end) of one message in a datagram."""

# netlink header flags and types
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_ECHO, NLM_F_DUMP_INTR = 0x1, 0x2, 0x4, 0x8, 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200  # in NLMSG_ERROR replies
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLMSGERR_ATTR_MSG = 1
NLA_F_NESTED, NLA_TYPE_MASK = 0x8000, 0x3FFF

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR = 1, 5

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_AF_SPEC, IFLA_NET_NS_FD, IFLA_EXT_MASK = 16, 18, 26, 28, 29
IFLA_NUM_TX_QUEUES, IFLA_NUM_RX_QUEUES, IFLA_NEW_NETNSID, IFLA_NEW_IFINDEX = 31, 32, 45, 49
IFLA_STATS64 = 23
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
RT_TABLE_MAIN, RT_TABLE_LOCAL = 254, 255
NDA_DST, NDA_LLADDR, NDA_IFINDEX = 1, 2, 8
NUD_NOARP, NUD_PERMANENT = 0x40, 0x80
RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 3, 0, 1
IFF_UP = 0x1
OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
NLATTR = struct.Struct("=HH")  # len, type
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst/src len, tos, table, proto, scope, type, flags
NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
_U32, _I32 = struct.Struct("=I"), struct.Struct("=i")
# The first eight u64 of struct rtnl_link_stats64 (if_link.h): rx/tx packets, rx/tx
# bytes, rx/tx errors, rx/tx dropped; the kernel appends fields, never reorders them.
LINK_STATS64 = struct.Struct("=8Q")
_STATS_ATTRS = frozenset({IFLA_STATS64})
_LINK_ATTRS = frozenset({IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_OPERSTATE,
                         IFLA_LINKINFO, IFLA_NEW_NETNSID, IFLA_NEW_IFINDEX})
_KIND_ATTR = frozenset({IFLA_INFO_KIND})
_ROUTE_ATTRS = frozenset({RTA_DST, RTA_GATEWAY, RTA_TABLE})


# -- building ---------------------------------------------------------------------

def attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes."""
    size = NLATTR.size + len(payload)
    return NLATTR.pack(size, kind) + payload + b"\0" * (-size & 3)


def nest(kind: int, *attrs: bytes) -> bytes:
    """A nested attribute holding `attrs` (flagged NLA_F_NESTED, as iproute2 sends)."""
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def u32(kind: int, value: int) -> bytes:
    return NLATTR.pack(8, kind) + _U32.pack(value)


def u8(kind: int, value: int) -> bytes:
    return NLATTR.pack(5, kind) + bytes((value, 0, 0, 0))


def string(kind: int, text: str) -> bytes:
    """A NUL-terminated string attribute."""
    return attr(kind, text.encode() + b"\0")


def message(kind: int, flags: int, body: bytes) -> bytes:
    """A complete message with sequence number 0 (the sender stamps the real one)."""
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, 0, 0) + body


# -- walking ----------------------------------------------------------------------

def headers(buf: Buffer, size: int | None = None) -> Iterator[Header]:
    """Each complete message in buf[:size]; a truncated one ends the walk."""
    end = len(buf) if size is None else size
    offset = 0
    unpack = NLMSGHDR.unpack_from
    while offset + 16 <= end:
        length, kind, flags, seq, _ = unpack(buf, offset)
        if length < 16 or offset + length > end:
            return
        yield kind, flags, seq, offset + 16, offset + length
        offset += (length + 3) & ~3


def attributes(buf: Buffer, offset: int = 0, end: int | None = None, *,
               wanted: frozenset[int] | None = None) -> dict[int, Buffer]:
    """Payloads of the attributes in buf[offset:end] by type (without the NLA_F_NESTED
    and byte-order flags), only those in `wanted` if given (the hot paths skip the
    rest: a link notification has ~40); pass a payload back in to walk a nest. A
    truncated attribute ends the walk."""
    stop = len(buf) if end is None else end
    found: dict[int, Buffer] = {}
    unpack = NLATTR.unpack_from
    while offset + 4 <= stop:
        size, kind = unpack(buf, offset)
        if size < 4 or offset + size > stop:
            break
        kind &= NLA_TYPE_MASK
        if wanted is None or kind in wanted:
            found[kind] = buf[offset + 4:offset + size]
        offset += (size + 3) & ~3
    return found


def text(payload: Buffer | None) -> str | None:
    """A NUL-terminated string attribute, or None if absent."""
    if payload is None:
        return None
    return bytes(payload).split(b"\0", 1)[0].decode("utf-8", "replace")


def number(payload: Buffer | None) -> int:
    """An unsigned attribute in host byte order (u8/u16/u32/u64); 0 if absent."""
    return int.from_bytes(payload, sys.byteorder) if payload else 0


# -- decoding ---------------------------------------------------------------------

def decode_error(buf: Buffer, offset: int, end: int, flags: int) -> tuple[int, str | None]:
    """(positive errno or 0 for an ACK, the kernel's extack message if any) of the
    NLMSG_ERROR whose payload is buf[offset:end]."""
    if end - offset < 4:
        return errno.EBADMSG, "truncated NLMSG_ERROR"
    (code,) = _I32.unpack_from(buf, offset)
    if not code or not flags & NLM_F_ACK_TLVS or end - offset < 20:
        return -code, None
    # TLVs follow the echoed request: only its header when capped (NETLINK_CAP_ACK).
    (echoed,) = _U32.unpack_from(buf, offset + 4)
    start = offset + 4 + (16 if flags & NLM_F_CAPPED else (echoed + 3) & ~3)
    return -code, text(attributes(buf, start, end).get(NLMSGERR_ATTR_MSG))


def decode_link(buf: Buffer, offset: int, end: int) -> tuple[Link, bool] | None:
    """The link of an RTM_NEWLINK/RTM_DELLINK payload, and whether it is tagged as
    moved to another netns (IFLA_NEW_NETNSID / IFLA_NEW_IFINDEX, which a deletion
    lacks). None for AF_BRIDGE messages: the bridge sends those for its ports (a
    RTM_DELLINK when a port leaves it), they describe no link of their own."""
    if end - offset < IFINFOMSG.size or buf[offset] != socket.AF_UNSPEC:
        return None
    _, _, index, flags, _ = IFINFOMSG.unpack_from(buf, offset)
    a = attributes(buf, offset + IFINFOMSG.size, end, wanted=_LINK_ATTRS)
    info, mac = a.get(IFLA_LINKINFO), a.get(IFLA_ADDRESS)
    kind = None if info is None else attributes(info, wanted=_KIND_ATTR).get(IFLA_INFO_KIND)
    oper = number(a.get(IFLA_OPERSTATE))
    link = Link(
        index=index, name=text(a.get(IFLA_IFNAME)) or "", kind=text(kind),
        master=number(a.get(IFLA_MASTER)) or None,
        operstate=OPERSTATES[oper] if oper < len(OPERSTATES) else "UNKNOWN",
        mtu=number(a.get(IFLA_MTU)), mac=None if mac is None else bytes(mac).hex(":"),
        up=bool(flags & IFF_UP))
    return link, IFLA_NEW_NETNSID in a or IFLA_NEW_IFINDEX in a


def link_name(buf: Buffer, offset: int, end: int) -> str | None:
    """The IFLA_IFNAME of an AF_UNSPEC RTM_NEWLINK/RTM_DELLINK payload, found without
    decoding the rest (the kernel puts it first of ~40 attributes); None if absent
    or for another family."""
    if end - offset < IFINFOMSG.size or buf[offset] != socket.AF_UNSPEC:
        return None
    offset += IFINFOMSG.size
    unpack = NLATTR.unpack_from
    while offset + 4 <= end:
        size, kind = unpack(buf, offset)
        if size < 4 or offset + size > end:
            return None
        if kind & NLA_TYPE_MASK == IFLA_IFNAME:
            return text(buf[offset + 4:offset + size])
        offset += (size + 3) & ~3
    return None


def decode_link_stats(buf: Buffer, offset: int, end: int) -> InterfaceCounters | None:
    """The IFLA_STATS64 counters of an RTM_NEWLINK payload; None if it has none (a
    request with RTEXT_FILTER_SKIP_STATS, or an AF_BRIDGE message)."""
    if end - offset < IFINFOMSG.size or buf[offset] != socket.AF_UNSPEC:
        return None
    raw = attributes(buf, offset + IFINFOMSG.size, end, wanted=_STATS_ATTRS).get(IFLA_STATS64)
    if raw is None or len(raw) < LINK_STATS64.size:
        return None
    rx_packets, tx_packets, rx_bytes, tx_bytes, rx_errors, tx_errors, rx_dropped, tx_dropped = (
        LINK_STATS64.unpack_from(raw))
    return InterfaceCounters(
        rx_bytes=rx_bytes, rx_packets=rx_packets, rx_errors=rx_errors, rx_dropped=rx_dropped,
        tx_bytes=tx_bytes, tx_packets=tx_packets, tx_errors=tx_errors, tx_dropped=tx_dropped)


def decode_address(buf: Buffer, offset: int, end: int) -> tuple[int, IPv4Interface] | None:
    """(ifindex, address with prefix) of an RTM_NEWADDR/RTM_DELADDR payload; None if
    it is not IPv4."""
    if end - offset < IFADDRMSG.size:
        return None
    family, prefixlen, _, _, index = IFADDRMSG.unpack_from(buf, offset)
    a = attributes(buf, offset + IFADDRMSG.size, end)
    # IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on p2p links.
    raw = a.get(IFA_LOCAL) or a.get(IFA_ADDRESS)
    if family != socket.AF_INET or raw is None or len(raw) != 4:
        return None
    return index, IPv4Interface((int.from_bytes(raw, "big"), prefixlen))


def decode_address6(buf: Buffer, offset: int, end: int) -> tuple[int, IPv6Interface] | None:
    """(ifindex, address with prefix) of an IPv6 RTM_NEWADDR payload; None otherwise."""
    if end - offset < IFADDRMSG.size:
        return None
    family, prefixlen, _, _, index = IFADDRMSG.unpack_from(buf, offset)
    a = attributes(buf, offset + IFADDRMSG.size, end)
    raw = a.get(IFA_LOCAL) or a.get(IFA_ADDRESS)
    if family != socket.AF_INET6 or raw is None or len(raw) != 16:
        return None
    return index, IPv6Interface((int.from_bytes(raw, "big"), prefixlen))


def decode_neighbour(buf: Buffer, offset: int, end: int
                     ) -> tuple[int, IPv4Address | IPv6Address, bool] | None:
    """(ifindex, address, permanent) of an IPv4 or IPv6 RTM_NEWNEIGH payload; None
    for other families (bridge fdb entries are AF_BRIDGE)."""
    if end - offset < NDMSG.size:
        return None
    family, index, state, _, _ = NDMSG.unpack_from(buf, offset)
    dst = attributes(buf, offset + NDMSG.size, end).get(NDA_DST)
    if dst is None:
        return None
    if family == socket.AF_INET and len(dst) == 4:
        return index, IPv4Address(bytes(dst)), bool(state & NUD_PERMANENT)
    if family == socket.AF_INET6 and len(dst) == 16:
        return index, IPv6Address(bytes(dst)), bool(state & NUD_PERMANENT)
    return None


def decode_route(buf: Buffer, offset: int, end: int
                 ) -> tuple[IPv4Network, IPv4Address | None] | None:
    """(destination, gateway if any) of an IPv4 unicast route (default route:
    0.0.0.0/0); None for other families and types, and for the `local` table (the
    host's own addresses)."""
    if end - offset < RTMSG.size:
        return None
    family, dst_len, _, _, table, _, _, kind, _ = RTMSG.unpack_from(buf, offset)
    if family != socket.AF_INET or kind != RTN_UNICAST:
        return None
    a = attributes(buf, offset + RTMSG.size, end, wanted=_ROUTE_ATTRS)
    # rtm_table is a u8: ids above 255 are only in RTA_TABLE.
    if RTA_TABLE in a:
        table = number(a[RTA_TABLE])
    if table == RT_TABLE_LOCAL:
        return None
    dst, gateway = a.get(RTA_DST), a.get(RTA_GATEWAY)
    packed = int.from_bytes(dst, "big") if dst is not None and len(dst) == 4 else 0
    return (IPv4Network((packed, dst_len), strict=False),
            IPv4Address(bytes(gateway)) if gateway is not None and len(gateway) == 4 else None)


def decode_route6(buf: Buffer, offset: int, end: int) -> IPv6Network | None:
    """The destination of an IPv6 unicast route outside the `local` table."""
    if end - offset < RTMSG.size:
        return None
    family, dst_len, _, _, table, _, _, kind, _ = RTMSG.unpack_from(buf, offset)
    if family != socket.AF_INET6 or kind != RTN_UNICAST:
        return None
    a = attributes(buf, offset + RTMSG.size, end, wanted=_ROUTE_ATTRS)
    if RTA_TABLE in a:
        table = number(a[RTA_TABLE])
    if table == RT_TABLE_LOCAL:
        return None
    dst = a.get(RTA_DST)
    packed = int.from_bytes(dst, "big") if dst is not None and len(dst) == 16 else 0
    return IPv6Network((packed, dst_len), strict=False)


def ifindex_of(reply: Buffer) -> int:
    """The ifi_index of a complete RTM_NEWLINK message."""
    return int(IFINFOMSG.unpack_from(reply, NLMSGHDR.size)[2])
