"""The rtnetlink requests the backend sends, built with the codec (`codec.py`).

Each builder returns one complete message with sequence number 0; `RawRoute` stamps
the real one when it sends.
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address

from sheep_runtime.netlink import codec as c
from sheep_runtime.netlink.codec import attr, message, nest, string, u8, u32

VETH_INFO_PEER = 1
IFLA_BRPORT_MODE, IFLA_BRPORT_PROXYARP, IFLA_BRPORT_ISOLATED = 4, 10, 33
IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE = 8, 1
IFLA_BR_MCAST_SNOOPING = 23
RTEXT_FILTER_SKIP_STATS = 1 << 3
NTF_MASTER = 0x04
IFA_F_NODAD = 0x02

IPAddress = IPv4Address | IPv6Address


def family(address: IPAddress) -> int:
    return socket.AF_INET if address.version == 4 else socket.AF_INET6

_ACK = c.NLM_F_REQUEST | c.NLM_F_ACK
_CREATE = _ACK | c.NLM_F_CREATE
_REPLACE = _CREATE | c.NLM_F_REPLACE
_DUMP = c.NLM_F_REQUEST | c.NLM_F_DUMP


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def ifinfo(index: int = 0, *, up: bool | None = None) -> bytes:
    """An ifinfomsg; `up` None leaves IFF_UP alone, True/False sets or clears it."""
    change = 0 if up is None else c.IFF_UP
    return c.IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, c.IFF_UP if up else 0, change)


# Constant parts, built once.
_VETH_KIND = attr(c.IFLA_INFO_KIND, b"veth\0")
_BRIDGE_KIND = attr(c.IFLA_INFO_KIND, b"bridge\0")
_BRIDGE_SLAVE_KIND = attr(c.IFLA_INFO_SLAVE_KIND, b"bridge\0")
_NO_IPV6_LINK_LOCAL = nest(
    c.IFLA_AF_SPEC, nest(socket.AF_INET6, u8(IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE))
)
_IFINFO_UP = ifinfo(up=True)
# Multicast snooping off: with it, every new port re-arms the multicast timers of all
# ports (br_port_state_selection), ~1.5 ms per attach at 1000 ports; and our networks
# run no querier, without which a snooping bridge floods multicast to every port too.
_BRIDGE_DATA = nest(c.IFLA_LINKINFO, _BRIDGE_KIND,
                    nest(c.IFLA_INFO_DATA, u8(IFLA_BR_MCAST_SNOOPING, 0)))
# veth defaults to one queue pair per CPU; extra queues only serve XDP/NAPI mode, and
# each is a sysfs object to create and tear down: one saves ~20% (75 us) per veth.
_ONE_QUEUE = u32(c.IFLA_NUM_TX_QUEUES, 1) + u32(c.IFLA_NUM_RX_QUEUES, 1)
_SKIP_STATS = u32(c.IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)


def new_veth(*, ifname: str, mtu: int, master: int, peer_ifname: str, peer_mac: str,
             netns_fd: int, echo: bool) -> bytes:
    """Create a veth, this end enslaved to `master` and up, the peer (down) directly in
    the netns of `netns_fd`. EXCL: an existing name on either side is EEXIST."""
    peer = (ifinfo() + string(c.IFLA_IFNAME, peer_ifname)
            + attr(c.IFLA_ADDRESS, mac_bytes(peer_mac)) + u32(c.IFLA_MTU, mtu)
            + u32(c.IFLA_NET_NS_FD, netns_fd) + _ONE_QUEUE)
    body = (_IFINFO_UP + string(c.IFLA_IFNAME, ifname) + u32(c.IFLA_MTU, mtu)
            + u32(c.IFLA_MASTER, master) + _ONE_QUEUE
            + nest(c.IFLA_LINKINFO, _VETH_KIND,
                   nest(c.IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer))))
    flags = _CREATE | c.NLM_F_EXCL | (c.NLM_F_ECHO if echo else 0)
    return message(c.RTM_NEWLINK, flags, body)


def new_bridge(*, ifname: str, mac: str, mtu: int) -> bytes:
    """Create a bridge (down) with a fixed MAC; EEXIST if the name is taken."""
    body = (ifinfo() + string(c.IFLA_IFNAME, ifname) + attr(c.IFLA_ADDRESS, mac_bytes(mac))
            + u32(c.IFLA_MTU, mtu) + _BRIDGE_DATA)
    return message(c.RTM_NEWLINK, _CREATE | c.NLM_F_EXCL, body)


def bridge_settings(index: int) -> bytes:
    """The bridge options `new_bridge` sets, on an existing bridge (a no-op if set)."""
    return message(c.RTM_NEWLINK, _ACK, ifinfo(index) + _BRIDGE_DATA)


def set_link(index: int, *, up: bool | None = None, mtu: int | None = None,
             mac: str | None = None, master: int | None = None) -> bytes:
    """Change a link; None leaves a property as it is."""
    body = ifinfo(index, up=up)
    if mtu is not None:
        body += u32(c.IFLA_MTU, mtu)
    if mac is not None:
        body += attr(c.IFLA_ADDRESS, mac_bytes(mac))
    if master is not None:
        body += u32(c.IFLA_MASTER, master)
    return message(c.RTM_NEWLINK, _ACK, body)


def port_settings(index: int, *, hairpin: bool, isolated: bool, proxyarp: bool = True
                  ) -> bytes:
    """Bridge-port flags of an enslaved link (IFLA_INFO_SLAVE_DATA): PROXYARP (the
    bridge answers ARP from its neighbour table and floods nothing to the port, not
    even IPv6 neighbour solicitations: off on dual-stack networks), the two others as
    given; and addr_gen_mode none, so it never gets an IPv6 link-local."""
    flags = (u8(IFLA_BRPORT_PROXYARP, int(proxyarp)) + u8(IFLA_BRPORT_MODE, int(hairpin))
             + u8(IFLA_BRPORT_ISOLATED, int(isolated)))
    body = (ifinfo(index) + nest(c.IFLA_LINKINFO, _BRIDGE_SLAVE_KIND,
                                 nest(c.IFLA_INFO_SLAVE_DATA, flags)) + _NO_IPV6_LINK_LOCAL)
    return message(c.RTM_NEWLINK, _ACK, body)


def no_ipv6_link_local(index: int) -> bytes:
    """addr_gen_mode none: the link never gets an IPv6 link-local address (no DAD, no
    MLD reports flooding the bridge). Ignored at creation; send it before the link
    comes up (see container_netns.py)."""
    return message(c.RTM_NEWLINK, _ACK, ifinfo(index) + _NO_IPV6_LINK_LOCAL)


def del_link(ifname: str) -> bytes:
    return message(c.RTM_DELLINK, _ACK, ifinfo() + string(c.IFLA_IFNAME, ifname))


def get_link(ifname: str) -> bytes:
    return message(c.RTM_GETLINK, _ACK, ifinfo() + string(c.IFLA_IFNAME, ifname) + _SKIP_STATS)


def new_addr(index: int, address: IPAddress, prefixlen: int) -> bytes:
    """Add an address (IFA_LOCAL and IFA_ADDRESS, as `ip addr add` sends); an IPv6 one
    without duplicate address detection (usable at once, never "tentative")."""
    packed = address.packed
    flags = IFA_F_NODAD if address.version == 6 else 0
    body = (c.IFADDRMSG.pack(family(address), prefixlen, flags, c.RT_SCOPE_UNIVERSE, index)
            + attr(c.IFA_LOCAL, packed) + attr(c.IFA_ADDRESS, packed))
    return message(c.RTM_NEWADDR, _CREATE | c.NLM_F_EXCL, body)


def dump_links() -> bytes:
    return message(c.RTM_GETLINK, _DUMP, ifinfo() + _SKIP_STATS)


def dump_addrs(af: int = socket.AF_INET) -> bytes:
    """Every address of family `af` (the kernel ignores an ifindex filter in a dump)."""
    return message(c.RTM_GETADDR, _DUMP, c.IFADDRMSG.pack(af, 0, 0, 0, 0))


def dump_neighbours(index: int, af: int = socket.AF_INET) -> bytes:
    """The neighbours of family `af` of the link `index` (NDA_IFINDEX filters the
    dump)."""
    return message(c.RTM_GETNEIGH, _DUMP, c.NDMSG.pack(af, 0, 0, 0, 0)
                   + c.u32(c.NDA_IFINDEX, index))


def dump_routes(af: int = socket.AF_INET) -> bytes:
    """Every route of family `af` of every table (rtm_table 0: all of them)."""
    return message(c.RTM_GETROUTE, _DUMP, c.RTMSG.pack(af, 0, 0, 0, 0, 0, 0, 0, 0))


def default_route(gateway: IPAddress, oif: int | None) -> bytes:
    """Replace the default route of `gateway`'s family in the main table (like `ip
    route replace`)."""
    body = (c.RTMSG.pack(family(gateway), 0, 0, 0, c.RT_TABLE_MAIN, c.RTPROT_BOOT,
                         c.RT_SCOPE_UNIVERSE, c.RTN_UNICAST, 0)
            + attr(c.RTA_GATEWAY, gateway.packed))
    if oif is not None:
        body += u32(c.RTA_OIF, oif)
    return message(c.RTM_NEWROUTE, _REPLACE, body)


def neighbour(index: int, address: IPAddress, mac: str) -> bytes:
    """A permanent neighbour entry (create or replace). Permanent entries do not count
    against the host-wide gc_thresh3 limit; a link going down drops them."""
    body = (c.NDMSG.pack(family(address), index, c.NUD_PERMANENT, 0, 0)
            + attr(c.NDA_DST, address.packed) + attr(c.NDA_LLADDR, mac_bytes(mac)))
    return message(c.RTM_NEWNEIGH, _REPLACE, body)


def del_neighbour(index: int, address: IPAddress) -> bytes:
    body = c.NDMSG.pack(family(address), index, 0, 0, 0) + attr(c.NDA_DST, address.packed)
    return message(c.RTM_DELNEIGH, _ACK, body)


def static_fdb(port: int, mac: str) -> bytes:
    """`bridge fdb replace MAC dev PORT master static`. c.NUD_NOARP is "static";
    c.NUD_PERMANENT would be "local": frames to the MAC would stop at the bridge."""
    body = c.NDMSG.pack(socket.AF_BRIDGE, port, c.NUD_NOARP, NTF_MASTER, 0) + attr(
        c.NDA_LLADDR, mac_bytes(mac))
    return message(c.RTM_NEWNEIGH, _REPLACE, body)



# -- retiring a link (see host_side.retire_link) ----------------------------------

IFLA_GROUP = 27


def set_down(index: int, *, nomaster: bool = False) -> bytes:
    """Set the link `index` down, with `nomaster` also off its bridge."""
    body = ifinfo(index, up=False)
    if nomaster:
        body += u32(c.IFLA_MASTER, 0)
    return message(c.RTM_NEWLINK, _ACK, body)


def rename_link(index: int, ifname: str, *, group: int | None = None) -> bytes:
    """Rename the link `index` (EBUSY while it is up), with `group` into that group."""
    body = ifinfo(index) + string(c.IFLA_IFNAME, ifname)
    if group is not None:
        body += u32(IFLA_GROUP, group)
    return message(c.RTM_NEWLINK, _ACK, body)


def del_group(group: int) -> bytes:
    """Delete every link of `group` at once: one unregister, one set of RCU grace
    periods for all of them. ENODEV if the group is empty."""
    return message(c.RTM_DELLINK, _ACK, ifinfo() + u32(IFLA_GROUP, group))
