"""Blocking steps on the links of the daemon's own netns over a `RawRoute`, run by
worker threads (`LinkManager` wraps them in coroutines). The lookups (`get_link`,
`addresses`) serve container netns sockets too."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from pathlib import Path

from sheep_runtime.model import Link, PortEntries
from sheep_runtime.netlink import codec as c
from sheep_runtime.netlink import messages as m
from sheep_runtime.netlink.errors import LinkError, NetlinkBackendError, link_error
from sheep_runtime.netlink.raw import RawRoute, Request


def _link(buf: bytearray, offset: int, end: int) -> Link | None:
    decoded = c.decode_link(buf, offset, end)
    return None if decoded is None else decoded[0]


def get_link(sock: RawRoute, ifname: str) -> Link | None:
    """The link named `ifname`, or None if there is none."""
    try:
        replies = sock.request(m.get_link(ifname), f"get link {ifname}")
    except LinkError as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise
    for reply in replies:
        if (decoded := c.decode_link(reply, c.NLMSGHDR.size, len(reply))) is not None:
            return decoded[0]
    return None


def list_links(sock: RawRoute, prefix: str) -> list[Link]:
    """The links whose name starts with `prefix`, from one dump."""
    return [link for link in sock.dump(m.dump_links(), "list links", _link)
            if link.name.startswith(prefix)]


def addresses(sock: RawRoute, index: int, what: str) -> list[IPv4Interface]:
    """The IPv4 addresses of the link `index`."""
    found = sock.dump(m.dump_addrs(), what, c.decode_address)
    return [address for owner, address in found if owner == index]


def addresses6(sock: RawRoute, index: int, what: str) -> list[IPv6Interface]:
    """The IPv6 addresses of the link `index`."""
    found = sock.dump(m.dump_addrs(socket.AF_INET6), what, c.decode_address6)
    return [address for owner, address in found if owner == index]


def has_address(sock: RawRoute, ifname: str, address: IPv4Interface) -> bool:
    """True if the link `ifname` exists and holds `address` (with its prefix)."""
    what = f"list addresses of {ifname}"
    try:
        index = sock.ifindex(ifname, what)
    except LinkError as exc:
        if exc.errno == errno.ENODEV:
            return False
        raise
    return address in addresses(sock, index, what)


def bridge_neighbours(sock: RawRoute, bridge_index: int) -> list[IPv4Address | IPv6Address]:
    """The permanent IPv4 and IPv6 neighbours of the bridge `bridge_index` (ours: one
    per attached container address)."""
    found = [n for af in (socket.AF_INET, socket.AF_INET6)
             for n in sock.dump(m.dump_neighbours(bridge_index, af),
                                "list bridge neighbours", c.decode_neighbour)]
    return [address for index, address, permanent in found
            if index == bridge_index and permanent]


def route_destinations(sock: RawRoute) -> list[IPv4Network]:
    """Destinations of the IPv4 unicast routes of every table but `local`."""
    return [dst for dst, _ in sock.dump(m.dump_routes(), "list routes", c.decode_route)]


def route_destinations6(sock: RawRoute) -> list[IPv6Network]:
    """Destinations of the IPv6 unicast routes of every table but `local`."""
    return sock.dump(m.dump_routes(socket.AF_INET6), "list IPv6 routes", c.decode_route6)


def ensure_bridge(sock: RawRoute, *, name: str, mac: str, gateway: IPv4Interface,
                  mtu: int, gateway6: IPv6Interface | None = None) -> int:
    """Converge the bridge `name` (MAC, MTU, multicast snooping off, gateway addresses,
    up); return its index. An EEXIST from a concurrent creation is answered by
    re-reading."""
    what = f"ensure bridge {name}"
    link = get_link(sock, name)
    existed = link is not None
    if link is None:
        # The MAC is fixed at creation: a bridge without one takes the lowest MAC
        # of its ports, and every change of it wipes its neighbour table.
        sock.request(m.new_bridge(ifname=name, mac=mac, mtu=mtu), f"{what}: create",
                     ok=(errno.EEXIST,))
        link = get_link(sock, name)
        if link is None:
            raise LinkError(f"{what}: vanished after creation", errno=errno.ENODEV)
    if link.kind != "bridge":
        raise LinkError(f"{what}: a link of kind {link.kind or 'unknown'} (index"
                        f" {link.index}) already has that name", errno=errno.EEXIST)
    if existed:  # made by an older sheepd or by hand: snooping off as in new_bridge
        sock.request(m.bridge_settings(link.index), f"{what}: multicast snooping off")
    if gateway not in addresses(sock, link.index, f"{what}: list addresses"):
        sock.request(m.new_addr(link.index, gateway.ip, gateway.network.prefixlen),
                     f"{what}: add address {gateway}", ok=(errno.EEXIST,))
    if gateway6 is not None and gateway6 not in addresses6(sock, link.index, what):
        sock.request(m.new_addr(link.index, gateway6.ip, gateway6.network.prefixlen),
                     f"{what}: add address {gateway6}", ok=(errno.EEXIST,))
    new_mtu = mtu if link.mtu != mtu else None
    new_mac = mac if (link.mac or "").lower() != mac.lower() else None
    up = None if link.up else True
    changed = [key for key, value in (("mtu", new_mtu), ("mac", new_mac), ("up", up))
               if value is not None]
    if changed:
        sock.request(m.set_link(link.index, up=up, mtu=new_mtu, mac=new_mac),
                     f"{what}: set {', '.join(changed)}")
    return link.index


def create_veth(sock: RawRoute, *, host_ifname: str, bridge_index: int, mtu: int,
                netns: Path, peer_ifname: str, peer_mac: str,
                entries: PortEntries | None = None) -> int:
    """One RTM_NEWLINK: the host end enslaved and up, the peer (down) created directly
    in the netns pinned at `netns`; then, with `entries`, the port's entries
    (`add_bridge_entries`) on the same socket: if they fail, the veth and any bridge
    neighbour added are removed before the error is raised. Returns the host end's
    ifindex, taken from the echoed message (NLM_F_ECHO costs ~5 us; a GETLINK round
    trip ~55 us)."""
    what = f"create veth {host_ifname} (peer {peer_ifname} in netns {netns})"
    try:
        netns_fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise link_error(f"{what}: open netns", exc) from exc
    try:
        msg = m.new_veth(ifname=host_ifname, mtu=mtu, master=bridge_index,
                         peer_ifname=peer_ifname, peer_mac=peer_mac, netns_fd=netns_fd,
                         echo=True)
        replies = sock.request(msg, what)
    finally:
        os.close(netns_fd)
    port = next((c.ifindex_of(reply) for reply in replies
                 if c.NLMSGHDR.unpack_from(reply)[1] == c.RTM_NEWLINK), None)
    if port is None:  # kernels before 6.3 do not echo a link creation
        port = sock.ifindex(host_ifname, what)
    if entries is not None:
        try:
            add_bridge_entries(sock, port_index=port, bridge_index=bridge_index,
                               entries=entries)
        except LinkError:
            # the entries' error is the one to report; leak collection takes what stays
            with contextlib.suppress(LinkError):
                delete_link(sock, host_ifname)
            for address in (entries.address, entries.address6):
                if address is not None:
                    with contextlib.suppress(LinkError):
                        remove_bridge_entries(sock, bridge_index=bridge_index,
                                              address=address)
            raise
    return port


def set_port(sock: RawRoute, ifname: str, *, master: int) -> int:
    """Enslave `ifname` to the bridge `master` and set it up; return its index."""
    what = f"enslave {ifname} to bridge {master}"
    index = sock.ifindex(ifname, what)
    sock.request(m.set_link(index, master=master, up=True), what)
    return index


def add_bridge_entries(sock: RawRoute, *, port_index: int, bridge_index: int,
                       entries: PortEntries) -> None:
    """One batch: the port's flags with PROXYARP (+ no IPv6 link-local on the host
    end), the static fdb entry and the permanent bridge neighbours of `entries`.

    The host end is up but has no carrier until the container end comes up, so its
    addrconf has not run yet and addr_gen_mode none still takes effect here.
    """
    mac, address, address6 = entries.mac, entries.address, entries.address6
    what = f"add bridge entries for {address} ({mac}) on port {port_index}"
    requests = [
        # PROXYARP stops the multicast of IPv6 neighbour discovery at the port too
        Request(m.port_settings(port_index, hairpin=entries.hairpin,
                                isolated=entries.isolated, proxyarp=address6 is None),
                f"{what}: port flags"),
        Request(m.static_fdb(port_index, mac), f"{what}: fdb entry"),
        Request(m.neighbour(bridge_index, address, mac), f"{what}: bridge neighbour"),
    ]
    if address6 is not None:
        requests.append(Request(m.neighbour(bridge_index, address6, mac),
                                f"{what}: bridge neighbour {address6}"))
    sock.batch(requests)


def remove_bridge_entries(sock: RawRoute, *, bridge_index: int,
                          address: IPv4Address | IPv6Address) -> bool:
    """Delete the bridge's neighbour entry for `address` (the fdb entry goes with the
    port). False if there was none."""
    try:
        sock.request(m.del_neighbour(bridge_index, address),
                     f"remove bridge neighbour {address}")
    except LinkError as exc:
        if exc.errno in (errno.ENOENT, errno.ENODEV):
            return False
        raise
    return True


def delete_link(sock: RawRoute, ifname: str) -> bool:
    """Delete `ifname` (~20 ms in the kernel); False if it was already gone."""
    try:
        sock.request(m.del_link(ifname), f"delete link {ifname}")
    except LinkError as exc:
        if exc.errno == errno.ENODEV:
            return False
        raise
    return True


def retire_link(sock: RawRoute, ifname: str, *, new_name: str, group: int | None = None
                ) -> bool:
    """One batch that makes the link `ifname` answer for nothing and frees its name at
    once, leaving the slow RTM_DELLINK (~20 ms of RCU grace periods) for later: down,
    off its bridge (which drops its fdb entries), renamed `new_name` (a link must be
    down to be renamed, hence two messages), with `group` into that link group.
    False if `ifname` is gone."""
    what = f"retire link {ifname} as {new_name}"
    try:
        index = sock.ifindex(ifname, what)
    except LinkError as exc:
        if exc.errno == errno.ENODEV:
            return False
        raise
    sock.batch([Request(m.set_down(index, nomaster=True), f"{what}: down, off the bridge"),
                Request(m.rename_link(index, new_name, group=group), f"{what}: rename")])
    return True


def delete_group(sock: RawRoute, group: int) -> bool:
    """Delete every link of `group` in one call; False if it had none."""
    try:
        sock.request(m.del_group(group), f"delete link group {group}")
    except LinkError as exc:
        if exc.errno == errno.ENODEV:
            return False
        raise
    return True


def set_sysctl(name: str, value: str, *, ifname: str = "") -> None:
    """Write `value` to the sysctl `name` (e.g. "net.ipv4.ip_forward"), or with `ifname`
    to the IPv4 sysctl `name` of that interface (e.g. "route_localnet"; interface
    names may hold dots, so they are not part of `name`). Acts on the netns of the
    calling thread."""
    path = (Path("/proc/sys/net/ipv4/conf", ifname, name) if ifname
            else Path("/proc/sys", *name.split(".")))
    try:
        path.write_text(value)
    except OSError as exc:
        raise NetlinkBackendError(
            f"set sysctl {name}={value}: {os.strerror(exc.errno or 0)}", errno=exc.errno
        ) from exc
