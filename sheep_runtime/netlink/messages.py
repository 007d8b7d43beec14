"""rtnetlink messages of the attach hot path, built with `struct` (see `raw.py` for why).

Each builder returns one complete message with sequence number 0; `RawRoute` stamps
the real one when it sends. Constants are the kernel's (linux/rtnetlink.h, if_link.h,
neighbour.h, if_addr.h). Attribute nests carry NLA_F_NESTED, as iproute2 sends them.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from ipaddress import IPv4Address

# netlink header flags and types
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_ECHO = 0x1, 0x2, 0x4, 0x8
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200  # in NLMSG_ERROR replies
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLMSGERR_ATTR_MSG = 1

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE = 24
RTM_NEWNEIGH, RTM_DELNEIGH = 28, 29

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_AF_SPEC, IFLA_NET_NS_FD, IFLA_EXT_MASK = 16, 18, 26, 28, 29
IFLA_NUM_TX_QUEUES, IFLA_NUM_RX_QUEUES = 31, 32
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE, IFLA_BRPORT_PROXYARP, IFLA_BRPORT_ISOLATED = 4, 10, 33
IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE = 8, 1
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1
NDA_DST, NDA_LLADDR = 1, 2
NUD_NOARP, NUD_PERMANENT = 0x40, 0x80
NTF_MASTER = 0x04
IFF_UP = 0x1
NLA_F_NESTED = 0x8000
OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst/src len, tos, table, proto, scope, type, flags
NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
NLATTR = struct.Struct("=HH")  # len, type
_U32 = struct.Struct("=I")

_CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE
_REPLACE = _CREATE | NLM_F_REPLACE


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes."""
    size = NLATTR.size + len(payload)
    return NLATTR.pack(size, kind) + payload + b"\0" * (-size & 3)


def nest(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def u32(kind: int, value: int) -> bytes:
    return NLATTR.pack(8, kind) + _U32.pack(value)


def u8(kind: int, value: int) -> bytes:
    return NLATTR.pack(5, kind) + bytes((value, 0, 0, 0))


def name(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def message(kind: int, flags: int, body: bytes) -> bytes:
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, 0, 0) + body


def ifinfo(index: int = 0, *, up: bool | None = None, family: int = 0) -> bytes:
    """An ifinfomsg; `up` None leaves IFF_UP alone, True/False sets or clears it."""
    change = 0 if up is None else IFF_UP
    return IFINFOMSG.pack(family, 0, index, IFF_UP if up else 0, change)


# Constant parts, built once.
_VETH_KIND = attr(IFLA_INFO_KIND, b"veth\0")
_BRIDGE_SLAVE_KIND = attr(IFLA_INFO_SLAVE_KIND, b"bridge\0")
_NO_IPV6_LINK_LOCAL = nest(
    IFLA_AF_SPEC, nest(socket.AF_INET6, u8(IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE))
)
_IFINFO_UP = ifinfo(up=True)
# veth defaults to one queue pair per CPU; extra queues only serve XDP/NAPI mode, and
# each is a sysfs object to create and tear down: one saves ~20% (75 us) per veth.
_ONE_QUEUE = u32(IFLA_NUM_TX_QUEUES, 1) + u32(IFLA_NUM_RX_QUEUES, 1)
_SKIP_STATS = u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)


def new_veth(*, ifname: str, mtu: int, master: int, peer_ifname: str, peer_mac: str,
             netns_fd: int, echo: bool) -> bytes:
    """Create a veth, this end enslaved to `master` and up, the peer (down) directly in
    the netns of `netns_fd`. EXCL: an existing name on either side is EEXIST."""
    peer = (ifinfo() + name(IFLA_IFNAME, peer_ifname)
            + attr(IFLA_ADDRESS, mac_bytes(peer_mac)) + u32(IFLA_MTU, mtu)
            + u32(IFLA_NET_NS_FD, netns_fd) + _ONE_QUEUE)
    body = (_IFINFO_UP + name(IFLA_IFNAME, ifname) + u32(IFLA_MTU, mtu)
            + u32(IFLA_MASTER, master) + _ONE_QUEUE
            + nest(IFLA_LINKINFO, _VETH_KIND,
                   nest(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer))))
    flags = _CREATE | NLM_F_EXCL | (NLM_F_ECHO if echo else 0)
    return message(RTM_NEWLINK, flags, body)


def set_port(index: int, port_attrs: bytes, *, no_ipv6: bool = False) -> bytes:
    """Set bridge-port attributes of an enslaved link (IFLA_INFO_SLAVE_DATA); with
    `no_ipv6` also addr_gen_mode none, so the link never gets an IPv6 link-local."""
    body = (ifinfo(index) + nest(IFLA_LINKINFO, _BRIDGE_SLAVE_KIND,
                                 nest(IFLA_INFO_SLAVE_DATA, port_attrs)))
    if no_ipv6:
        body += _NO_IPV6_LINK_LOCAL
    return message(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, body)


def port_flags(*, proxyarp: bool | None = None, hairpin: bool | None = None,
               isolated: bool | None = None) -> bytes:
    """IFLA_BRPORT_* attributes; None leaves a flag as it is."""
    out = b""
    for kind, value in ((IFLA_BRPORT_PROXYARP, proxyarp), (IFLA_BRPORT_MODE, hairpin),
                        (IFLA_BRPORT_ISOLATED, isolated)):
        if value is not None:
            out += u8(kind, int(value))
    return out


def link_up(index: int, *, mtu: int | None = None) -> bytes:
    body = ifinfo(index, up=True)
    if mtu is not None:
        body += u32(IFLA_MTU, mtu)
    return message(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, body)


def no_ipv6_link_local(index: int) -> bytes:
    """addr_gen_mode none: the link never gets an IPv6 link-local address (no DAD, no
    MLD reports flooding the bridge). Ignored at creation; send it before the link
    comes up (see container_netns.py)."""
    return message(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, ifinfo(index) + _NO_IPV6_LINK_LOCAL)


def del_link(ifname: str) -> bytes:
    return message(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, ifinfo() + name(IFLA_IFNAME, ifname))


def get_link(ifname: str) -> bytes:
    return message(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK,
                   ifinfo() + name(IFLA_IFNAME, ifname) + _SKIP_STATS)


def new_addr(index: int, address: IPv4Address, prefixlen: int) -> bytes:
    """Add an IPv4 address (IFA_LOCAL and IFA_ADDRESS, as `ip addr add` sends)."""
    packed = address.packed
    body = (IFADDRMSG.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
            + attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed))
    return message(RTM_NEWADDR, _CREATE | NLM_F_EXCL, body)


def dump_links() -> bytes:
    return message(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, ifinfo() + _SKIP_STATS)


def dump_addrs() -> bytes:
    return message(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, IFADDRMSG.pack(0, 0, 0, 0, 0))


def default_route(gateway: IPv4Address, oif: int | None) -> bytes:
    """Replace the IPv4 default route in the main table (like `ip route replace`)."""
    body = (RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT,
                       RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
            + attr(RTA_GATEWAY, gateway.packed))
    if oif is not None:
        body += u32(RTA_OIF, oif)
    return message(RTM_NEWROUTE, _REPLACE, body)


def neighbour(index: int, address: IPv4Address, mac: str) -> bytes:
    """A permanent IPv4 neighbour entry (create or replace). Permanent entries do not
    count against the host-wide gc_thresh3 limit; a link going down drops them."""
    body = (NDMSG.pack(socket.AF_INET, index, NUD_PERMANENT, 0, 0)
            + attr(NDA_DST, address.packed) + attr(NDA_LLADDR, mac_bytes(mac)))
    return message(RTM_NEWNEIGH, _REPLACE, body)


def del_neighbour(index: int, address: IPv4Address) -> bytes:
    body = NDMSG.pack(socket.AF_INET, index, 0, 0, 0) + attr(NDA_DST, address.packed)
    return message(RTM_DELNEIGH, NLM_F_REQUEST | NLM_F_ACK, body)


def static_fdb(port: int, mac: str) -> bytes:
    """`bridge fdb replace MAC dev PORT master static`. NUD_NOARP is "static";
    NUD_PERMANENT would be "local": frames to the MAC would stop at the bridge."""
    body = NDMSG.pack(socket.AF_BRIDGE, port, NUD_NOARP, NTF_MASTER, 0) + attr(
        NDA_LLADDR, mac_bytes(mac))
    return message(RTM_NEWNEIGH, _REPLACE, body)


def attrs(data: bytes | bytearray | memoryview, offset: int, end: int
          ) -> Iterator[tuple[int, memoryview]]:
    """(type without flags, payload) of the attributes in data[offset:end]."""
    view = memoryview(data)
    while offset + 4 <= end:
        size, kind = NLATTR.unpack_from(view, offset)
        if size < 4:
            return
        yield kind & 0x3FFF, view[offset + 4:offset + size]
        offset += (size + 3) & ~3
