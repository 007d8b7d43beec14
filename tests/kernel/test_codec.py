"""Unit tests of the netlink codec on crafted messages: no root, no kernel.

The messages are packed here with `struct` field by field, as the kernel lays them
out, so the decoders are not checked against the builders they share a module with.
"""

from __future__ import annotations

import errno
import socket
import struct
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from sheep_runtime.model import AddressEvent, Link, LinkEvent
from sheep_runtime.netlink import codec as c
from sheep_runtime.netlink import messages as m
from sheep_runtime.netlink.monitor import decode


def _rta(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * (-size & 3)


def _msg(kind: int, body: bytes, *, flags: int = 0, seq: int = 0) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


def _newlink(index: int, name: str, *, kind: bytes | None = b"veth", family: int = 0,
             moved: bool = False, up: bool = True) -> bytes:
    body = struct.pack("=BxHiII", family, 1, index, 0x1 if up else 0, 0)
    body += _rta(3, name.encode() + b"\0")  # IFLA_IFNAME
    body += _rta(4, struct.pack("=I", 1400))  # IFLA_MTU
    body += _rta(10, struct.pack("=I", 7))  # IFLA_MASTER
    body += _rta(16, bytes([6]))  # IFLA_OPERSTATE: UP
    body += _rta(1, bytes.fromhex("025e0a4e0002"))  # IFLA_ADDRESS
    body += _rta(23, bytes(200))  # IFLA_STATS64: skipped
    if kind is not None:  # IFLA_LINKINFO (NLA_F_NESTED): kind + INFO_DATA nest
        info = _rta(1, kind + b"\0") + _rta(2 | 0x8000, _rta(1, b"\0" * 8))
        body += _rta(18 | 0x8000, info)
    if moved:
        body += _rta(45, struct.pack("=i", 3))  # IFLA_NEW_NETNSID
    return _msg(16, body)


def test_link_with_nested_linkinfo() -> None:
    msg = _newlink(12, "shp0a1b", kind=b"veth")
    ((kind, _, _, offset, end),) = c.headers(msg)
    assert (kind, offset, end) == (c.RTM_NEWLINK, 16, len(msg))
    decoded = c.decode_link(msg, offset, end)
    assert decoded == (Link(index=12, name="shp0a1b", kind="veth", master=7, operstate="UP",
                            mtu=1400, mac="02:5e:0a:4e:00:02", up=True), False)
    info = c.attributes(msg, offset + c.IFINFOMSG.size, end)[c.IFLA_LINKINFO]
    nested = c.attributes(info)
    assert bytes(nested[c.IFLA_INFO_KIND]) == b"veth\0"
    assert c.attributes(nested[c.IFLA_INFO_DATA]) == {1: b"\0" * 8}

    plain = _newlink(2, "lo", kind=None, up=False)
    link, moved = c.decode_link(plain, 16, len(plain)) or (None, None)
    assert link is not None and (link.kind, link.up, moved) == (None, False, False)
    # AF_BRIDGE messages describe bridge ports, not links of their own
    bridge_port = _newlink(12, "shp0a1b", family=socket.AF_BRIDGE)
    assert c.decode_link(bridge_port, 16, len(bridge_port)) is None


def test_monitor_decodes_a_datagram_into_model_events() -> None:
    deleted = bytearray(_newlink(12, "shp0a1b", moved=True))
    struct.pack_into("=H", deleted, 4, c.RTM_DELLINK)
    addr = _msg(c.RTM_NEWADDR, struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, 12)
                + _rta(1, bytes([10, 0, 0, 9])) + _rta(2, bytes([10, 0, 0, 2])))
    addr6 = _msg(c.RTM_NEWADDR, struct.pack("=BBBBI", socket.AF_INET6, 64, 0, 0, 12)
                 + _rta(1, bytes(16)))
    datagram = _newlink(12, "shp0a1b") + bytes(deleted) + addr + addr6
    events = decode(datagram, len(datagram), 5.0)
    assert [type(e) for e in events] == [LinkEvent, LinkEvent, AddressEvent]
    first, gone, new_addr = events
    assert isinstance(first, LinkEvent) and isinstance(gone, LinkEvent)
    assert (first.action, first.moved, gone.action, gone.moved) == ("new", False, "del", True)
    assert gone.link == first.link and gone.received_at == 5.0
    # IFA_LOCAL is the interface's own address; IFA_ADDRESS would be a p2p peer
    assert new_addr == AddressEvent(action="new", index=12,
                                    address=IPv4Interface("10.0.0.2/24"), received_at=5.0)


def test_skipped_link_events_are_counted_not_decoded() -> None:
    datagram = _newlink(12, "shp0a1b") + _newlink(13, "shp0a1c") + _newlink(
        12, "shp0a1b", family=socket.AF_BRIDGE)
    assert c.link_name(datagram, 16, len(datagram) // 3) == "shp0a1b"
    skipped: list[str] = []
    events = decode(datagram, len(datagram), 1.0, skip=lambda name: name == "shp0a1b",
                    on_skip=skipped.append)
    assert [e.link.name for e in events if isinstance(e, LinkEvent)] == ["shp0a1c"]
    assert skipped == ["link.new"]  # the AF_BRIDGE message has no name of its own


def _error(code: int, *, request: bytes, extack: str | None, capped: bool) -> bytes:
    flags = (c.NLM_F_CAPPED if capped else 0) | (c.NLM_F_ACK_TLVS if extack else 0)
    body = struct.pack("=i", -code) + (request[:16] if capped else request)
    if extack is not None:
        body += _rta(c.NLMSGERR_ATTR_MSG, extack.encode() + b"\0")
    return _msg(c.NLMSG_ERROR, body, flags=flags, seq=9)


def test_error_with_extack_text() -> None:
    request = _newlink(0, "shpx")
    for capped in (True, False):
        msg = _error(errno.ENETUNREACH, request=request, capped=capped,
                     extack="Nexthop has invalid gateway")
        ((kind, flags, seq, offset, end),) = c.headers(msg)
        assert (kind, seq) == (c.NLMSG_ERROR, 9)
        assert c.decode_error(msg, offset, end, flags) == (
            errno.ENETUNREACH, "Nexthop has invalid gateway")
    plain = _error(errno.EEXIST, request=request, capped=True, extack=None)
    assert c.decode_error(plain, 16, len(plain), 0) == (errno.EEXIST, None)
    ack = _error(0, request=request, capped=True, extack=None)
    assert c.decode_error(ack, 16, len(ack), c.NLM_F_CAPPED) == (0, None)


def test_truncated_input_is_dropped_not_misread() -> None:
    msg = _newlink(12, "shp0a1b")
    datagram = _msg(c.NLMSG_DONE, b"\0" * 4) + msg
    # a message cut short ends the walk; the complete one before it still comes out
    assert [h[0] for h in c.headers(datagram, len(datagram) - 3)] == [c.NLMSG_DONE]
    assert list(c.headers(datagram[:10])) == []
    bad_length = bytearray(msg)
    struct.pack_into("=I", bad_length, 0, 8)  # shorter than a header
    assert list(c.headers(bad_length)) == []
    # an attribute running past the end stops the attribute walk
    attrs = _rta(3, b"eth0\0") + struct.pack("=HH", 40, 4) + b"\0" * 4
    assert list(c.attributes(attrs)) == [3]
    assert c.decode_link(msg, 16, 16 + 10) is None  # shorter than an ifinfomsg
    assert c.decode_error(b"\0" * 18, 16, 18, 0) == (errno.EBADMSG, "truncated NLMSG_ERROR")
    assert decode(msg[:-40], len(msg) - 40, 0.0) == []


def _route(dst: bytes | None, dst_len: int, *, table: int, kind: int = c.RTN_UNICAST,
           rta_table: int | None = None, gateway: bytes | None = None) -> bytes:
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, dst_len, 0, 0, table, 3, 0, kind, 0)
    if dst is not None:
        body += _rta(c.RTA_DST, dst)
    if gateway is not None:
        body += _rta(c.RTA_GATEWAY, gateway)
    if rta_table is not None:
        body += _rta(c.RTA_TABLE, struct.pack("=I", rta_table))
    return _msg(c.RTM_NEWROUTE, body)


def test_routes_of_every_table_but_local() -> None:
    cases = [
        (_route(None, 0, table=254, gateway=bytes([10, 1, 0, 1])),
         (IPv4Network("0.0.0.0/0"), IPv4Address("10.1.0.1"))),
        (_route(bytes([10, 1, 0, 0]), 16, table=100), (IPv4Network("10.1.0.0/16"), None)),
        (_route(bytes([10, 2, 0, 0]), 16, table=252, rta_table=1000),
         (IPv4Network("10.2.0.0/16"), None)),
        (_route(bytes([10, 3, 0, 1]), 32, table=255, kind=2), None),  # local address
        (_route(bytes([10, 4, 0, 0]), 16, table=252, rta_table=255), None),
        (_route(bytes([10, 5, 0, 0]), 16, table=254, kind=6), None),  # blackhole
    ]
    for msg, expected in cases:
        assert c.decode_route(msg, 16, len(msg)) == expected


def test_requests_are_well_formed() -> None:
    msg = m.new_veth(ifname="shpx", mtu=1500, master=3, peer_ifname="eth0",
                     peer_mac="02:5e:0a:00:00:02", netns_fd=9, echo=True)
    ((kind, flags, _, offset, end),) = c.headers(msg)
    assert (kind, end) == (c.RTM_NEWLINK, len(msg)) and end % 4 == 0
    assert flags & c.NLM_F_ECHO and flags & c.NLM_F_EXCL
    top = c.attributes(msg, offset + c.IFINFOMSG.size, end)
    assert bytes(top[c.IFLA_IFNAME]) == b"shpx\0"
    assert c.number(top[c.IFLA_MASTER]) == 3
    info = c.attributes(top[c.IFLA_LINKINFO])
    assert bytes(info[c.IFLA_INFO_KIND]) == b"veth\0"
    peer = c.attributes(c.attributes(info[c.IFLA_INFO_DATA])[m.VETH_INFO_PEER],
                        c.IFINFOMSG.size)
    assert (c.text(peer[c.IFLA_IFNAME]), bytes(peer[c.IFLA_ADDRESS]).hex(":")) == (
        "eth0", "02:5e:0a:00:00:02")
    bridge = m.new_bridge(ifname="shpbr0", mac="02:5e:00:00:00:01", mtu=1400)
    link = c.decode_link(bridge, 16, len(bridge))
    assert link is not None
    assert (link[0].name, link[0].kind, link[0].mac, link[0].mtu, link[0].up) == (
        "shpbr0", "bridge", "02:5e:00:00:00:01", 1400, False)
    neigh = m.neighbour(4, IPv4Address("10.0.0.1"), "02:00:00:00:00:01")
    assert c.NDMSG.unpack_from(neigh, 16)[2] == c.NUD_PERMANENT
    fdb = m.static_fdb(4, "02:00:00:00:00:01")
    assert c.NDMSG.unpack_from(fdb, 16)[2:4] == (c.NUD_NOARP, m.NTF_MASTER)
