"""Blocking host-side steps of an attach over a `RawRoute`, run by worker threads
(`LinkManager` wraps them in coroutines)."""

from __future__ import annotations

import errno
import os
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING

from sheep_runtime.netlink import messages as m
from sheep_runtime.netlink.errors import LinkError, link_error
from sheep_runtime.netlink.raw import RawRoute, Request, ifindex_of

if TYPE_CHECKING:
    from sheep_runtime.netlink.links import LinkInfo


def create_veth(sock: RawRoute, *, host_ifname: str, bridge_index: int, mtu: int,
                netns: Path, peer_ifname: str, peer_mac: str) -> int:
    """One RTM_NEWLINK: the host end enslaved and up, the peer (down) created directly
    in the netns pinned at `netns`. Returns the host end's ifindex, taken from the
    echoed message (NLM_F_ECHO costs ~5 us; a GETLINK round trip ~55 us)."""
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
    for reply in replies:
        if m.NLMSGHDR.unpack_from(reply)[1] == m.RTM_NEWLINK:
            return ifindex_of(reply)
    # kernels before 6.3 do not echo a link creation
    return sock.ifindex(host_ifname, what)


def set_port_flags(sock: RawRoute, link: str | int, *, proxyarp: bool, hairpin: bool,
                   isolated: bool) -> None:
    what = f"set bridge port flags of {link}"
    index = link if isinstance(link, int) else sock.ifindex(link, what)
    flags = m.port_flags(proxyarp=proxyarp, hairpin=hairpin, isolated=isolated)
    sock.request(m.set_port(index, flags), what)


def add_bridge_entries(sock: RawRoute, *, port_index: int, bridge_index: int, mac: str,
                       address: IPv4Address, proxyarp: bool, hairpin: bool = False,
                       isolated: bool = False) -> None:
    """One batch: PROXYARP (+ no IPv6 link-local on the host end), static fdb entry
    for `mac` on the port, permanent neighbour `address` -> `mac` on the bridge.

    The host end is up but has no carrier until the container end comes up, so its
    addrconf has not run yet and addr_gen_mode none still takes effect here.
    """
    what = f"add bridge entries for {address} ({mac}) on port {port_index}"
    sock.batch((
        Request(m.set_port(port_index, m.port_flags(proxyarp=proxyarp, hairpin=hairpin,
                                                    isolated=isolated), no_ipv6=True),
                f"{what}: port flags"),
        Request(m.static_fdb(port_index, mac), f"{what}: fdb entry"),
        Request(m.neighbour(bridge_index, address, mac), f"{what}: bridge neighbour"),
    ))


def remove_bridge_entries(sock: RawRoute, *, bridge_index: int, address: IPv4Address) -> bool:
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


def list_links(sock: RawRoute, prefix: str) -> list[LinkInfo]:
    """The links whose name starts with `prefix`, from one dump decoded with struct."""
    # Imported here: the monitor imports LinkInfo from links, which imports this module.
    from sheep_runtime.netlink.monitor import LinkEvent, decode

    events = [e for msg in sock.dump(m.dump_links(), "list links")
              for e in decode(msg, len(msg), 0.0)]
    return [e.info() for e in events if isinstance(e, LinkEvent) and e.name.startswith(prefix)]


def delete_link(sock: RawRoute, ifname: str) -> bool:
    """Delete `ifname` (~20 ms in the kernel); False if it was already gone."""
    try:
        sock.request(m.del_link(ifname), f"delete link {ifname}")
    except LinkError as exc:
        if exc.errno == errno.ENODEV:
            return False
        raise
    return True
