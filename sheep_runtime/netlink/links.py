"""Links of the daemon's own netns: bridges, host veth ends, bridge ports, sysctls."""

from __future__ import annotations

import asyncio
import errno
import os
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from socket import AF_INET
from typing import Any

from sheep_runtime.netlink import host_side
from sheep_runtime.netlink.container_netns import ContainerNetns, open_container_netns
from sheep_runtime.netlink.errors import (
    LinkError,
    NetlinkBackendError,
    is_errno,
    link_error,
)
from sheep_runtime.netlink.namespaces import open_route_socket
from sheep_runtime.netlink.transport import RouteSocket
from sheep_runtime.netlink.workers import NetlinkWorkers

_IFF_UP = 0x1


@dataclass(frozen=True)
class LinkInfo:
    """One link as the kernel reports it."""

    index: int
    name: str
    kind: str | None
    master: int | None
    operstate: str
    mtu: int
    mac: str | None
    up: bool


def link_info(msg: Any) -> LinkInfo:
    """Decode a pyroute2 RTM_NEWLINK message."""
    master = msg.get("master")
    return LinkInfo(
        index=int(msg["index"]),
        name=str(msg.get("ifname")),
        kind=msg.get(("linkinfo", "kind")),
        master=int(master) if master else None,
        operstate=str(msg.get("operstate") or "UNKNOWN"),
        mtu=int(msg.get("mtu") or 0),
        mac=msg.get("address"),
        up=bool(msg["flags"] & _IFF_UP),
    )


def set_sysctl(name: str, value: str, *, ifname: str = "") -> None:
    """Write `value` to the sysctl `name` (e.g. "net.ipv4.ip_forward"), or with `ifname`
    to the IPv4 sysctl `name` of that interface (e.g. "route_localnet"; interface
    names may hold dots, so they are not part of `name`).

    Net sysctls act on the netns of the calling thread.
    """
    path = (Path("/proc/sys/net/ipv4/conf", ifname, name) if ifname
            else Path("/proc/sys", *name.split(".")))
    try:
        path.write_text(value)
    except OSError as exc:
        raise NetlinkBackendError(
            f"set sysctl {name}={value}: {os.strerror(exc.errno or 0)}", errno=exc.errno
        ) from exc


class LinkManager:
    """Links of the daemon's own netns.

    The attach hot path (veth, bridge port, container netns) and deletions use raw
    netlink sockets on worker threads (`raw.py`), never blocking the event loop;
    deletions (~20 ms each in the kernel) have their own pool so they cannot hold up
    attaches. The rest (bridges, dumps) uses pyroute2 on the loop's socket. `start`
    binds the netns of the calling thread.
    """

    def __init__(self, *, delete_workers: int = 8, attach_workers: int = 4) -> None:
        self._ipr: RouteSocket | None = None
        # The kernel runs one dump at a time per socket; a second one gets EBUSY.
        self._dump_lock = asyncio.Lock()
        self._workers = NetlinkWorkers(size=delete_workers, name="sheep-nl-delete")
        self._fast = NetlinkWorkers(size=attach_workers, name="sheep-nl-attach")

    async def start(self) -> None:
        """Open the netlink socket and start the worker threads."""
        if self._ipr is None:
            self._ipr = await open_route_socket(None)
        self._workers.start()
        self._fast.start()

    async def close(self) -> None:
        """Stop the workers (after queued requests finish) and close the socket."""
        await self._fast.close()
        await self._workers.close()
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    @property
    def _nl(self) -> RouteSocket:
        if self._ipr is None:
            raise RuntimeError("LinkManager not started")
        return self._ipr

    async def _get_msg(self, link: str | int) -> Any | None:
        key: dict[str, Any] = {"index": link} if isinstance(link, int) else {"ifname": link}
        try:
            return (await self._nl.link("get", **key))[0]
        except Exception as exc:
            if is_errno(exc, errno.ENODEV):
                return None
            raise link_error(f"get link {link}", exc) from exc

    async def get_link(self, ifname: str) -> LinkInfo | None:
        """The link named `ifname`, or None if there is none."""
        msg = await self._get_msg(ifname)
        return None if msg is None else link_info(msg)

    async def link_exists(self, ifname: str) -> bool:
        """True if a link named `ifname` exists."""
        return await self._get_msg(ifname) is not None

    async def list_links(self, prefix: str = "") -> list[LinkInfo]:
        """All links whose name starts with `prefix`. A raw dump decoded with struct on
        a worker: with ~2000 links pyroute2's parser would hold the loop ~0.5 s."""
        return await self._fast.run(lambda sock: host_side.list_links(sock, prefix))

    async def route_destinations(self) -> list[IPv4Network]:
        """Destinations of the IPv4 routes in the main table (default route: 0.0.0.0/0)."""
        try:
            async with self._dump_lock:
                dump = await self._nl.route("dump", family=AF_INET, table=254)
                msgs = [msg async for msg in dump]
        except Exception as exc:
            raise link_error("list routes", exc) from exc
        return [IPv4Network(f"{msg.get('dst') or '0.0.0.0'}/{msg['dst_len']}", strict=False)
                for msg in msgs]

    async def ensure_bridge(self, *, name: str, mac: str, gateway: IPv4Interface, mtu: int) -> int:
        """Converge the bridge `name` (MAC, MTU, gateway address, up); return its index.

        Idempotent and safe to race with itself: an EEXIST from a concurrent creation
        is answered by re-reading. A non-bridge link with that name is an error.
        """
        what = f"ensure bridge {name}"
        msg = await self._get_msg(name)
        if msg is None:
            # The MAC is fixed at creation: a bridge without one takes the lowest MAC
            # of its ports, and every change of it wipes its neighbour table.
            try:
                await self._nl.link("add", ifname=name, kind="bridge", address=mac, mtu=mtu)
            except Exception as exc:
                if not is_errno(exc, errno.EEXIST):
                    raise link_error(f"{what}: create", exc) from exc
            msg = await self._get_msg(name)
            if msg is None:
                raise LinkError(f"{what}: vanished after creation", errno=errno.ENODEV)
        info = link_info(msg)
        if info.kind != "bridge":
            raise LinkError(
                f"{what}: a link of kind {info.kind or 'unknown'} (index {info.index})"
                " already has that name",
                errno=errno.EEXIST,
            )
        changes: dict[str, Any] = {}
        if info.mtu != mtu:
            changes["mtu"] = mtu
        if (info.mac or "").lower() != mac.lower():
            changes["address"] = mac
        if not info.up:
            changes["state"] = "up"
        await self._ensure_address(what, info.index, gateway)
        if changes:
            try:
                await self._nl.link("set", index=info.index, **changes)
            except Exception as exc:
                raise link_error(f"{what}: set {sorted(changes)}", exc) from exc
        return info.index

    async def _ensure_address(self, what: str, index: int, address: IPv4Interface) -> None:
        prefixlen = address.network.prefixlen
        try:
            async with self._dump_lock:
                dump = await self._nl.addr("dump", index=index, family=AF_INET)
                present = [(a.get("address"), a.get("prefixlen")) async for a in dump]
            if (str(address.ip), prefixlen) in present:
                return
            await self._nl.addr("add", index=index, address=str(address.ip), prefixlen=prefixlen)
        except Exception as exc:
            if not is_errno(exc, errno.EEXIST):
                raise link_error(f"{what}: add address {address}", exc) from exc

    async def delete_bridge(self, name: str) -> None:
        """Delete the bridge `name`; already gone is success."""
        await self.delete_link(name)

    async def create_veth(
        self,
        *,
        host_ifname: str,
        bridge_index: int,
        mtu: int,
        netns: Path,
        peer_ifname: str,
        peer_mac: str,
    ) -> int:
        """Create a veth in one RTM_NEWLINK: the host end enslaved to the bridge and
        up, the peer (down) created directly in the netns pinned at `netns` (moving it
        there afterwards would cost 13-19 ms). Return the host end's index.

        An existing name (host side or peer side) fails with errno EEXIST.
        """
        return await self._fast.run(lambda sock: host_side.create_veth(
            sock, host_ifname=host_ifname, bridge_index=bridge_index, mtu=mtu, netns=netns,
            peer_ifname=peer_ifname, peer_mac=peer_mac))

    async def set_bridge_port_flags(
        self,
        link: str | int,
        *,
        proxyarp: bool = False,
        hairpin: bool = False,
        isolated: bool = False,
    ) -> None:
        """Set all three bridge-port flags of an enslaved link (by name or index).

        The kernel ignores IFLA_INFO_SLAVE_DATA in the veth creation message, hence
        this separate RTM_NEWLINK.
        """
        await self._fast.run(lambda sock: host_side.set_port_flags(
            sock, link, proxyarp=proxyarp, hairpin=hairpin, isolated=isolated))

    async def add_bridge_entries(self, *, port_index: int, bridge_index: int, mac: str,
                                 address: IPv4Address, proxyarp: bool = True,
                                 hairpin: bool = False, isolated: bool = False) -> None:
        """Make a container on `port_index` reachable without ARP floods, in one batch:
        the port's PROXYARP flag (the bridge answers ARP from its neighbour table and
        floods nothing to the port) and no IPv6 link-local on the host end, a static
        fdb entry for the container `mac`, and a permanent neighbour `address` ->
        `mac` on the bridge. Idempotent (replace). Call it before the container end
        comes up. The fdb entry goes with the port; `remove_bridge_entries` removes
        the neighbour. `hairpin` and `isolated` are the port's other two flags.
        """
        await self._fast.run(lambda sock: host_side.add_bridge_entries(
            sock, port_index=port_index, bridge_index=bridge_index, mac=mac,
            address=address, proxyarp=proxyarp, hairpin=hairpin, isolated=isolated))

    async def remove_bridge_entries(self, *, bridge_index: int, address: IPv4Address
                                    ) -> bool:
        """Remove the bridge's neighbour entry for `address`; False if there was none."""
        return await self._fast.run(lambda sock: host_side.remove_bridge_entries(
            sock, bridge_index=bridge_index, address=address))

    async def open_container_netns(self, netns: Path) -> ContainerNetns:
        """A handle on the netns pinned at `netns` for the container-side steps; the
        caller closes it (one handle serves all the networks of a container)."""
        return await open_container_netns(netns, self._fast)

    async def delete_link(self, ifname: str) -> bool:
        """Delete the link `ifname` on a deletion worker (never on the event loop's
        socket). True if deleted, False if it was already gone. Deleting one end of a
        veth deletes the other end too.
        """
        return await self._workers.run(lambda sock: host_side.delete_link(sock, ifname))

    async def set_port(self, ifname: str, *, master: int) -> int:
        """Enslave `ifname` to the bridge `master` and set it up; return its index."""
        try:
            await self._nl.link("set", ifname=ifname, master=master, state="up")
            index = (await self._nl.link_lookup(ifname=ifname))[0]
        except Exception as exc:
            raise link_error(f"enslave {ifname} to bridge {master}", exc) from exc
        return int(index)

    async def has_address(self, ifname: str, address: IPv4Interface) -> bool:
        """True if the link `ifname` exists and holds `address` (with its prefix)."""
        msg = await self._get_msg(ifname)
        if msg is None:
            return False
        try:
            async with self._dump_lock:
                dump = await self._nl.addr("dump", index=msg["index"], family=AF_INET)
                present = [(a.get("address"), a.get("prefixlen")) async for a in dump]
        except Exception as exc:
            raise link_error(f"list addresses of {ifname}", exc) from exc
        return (str(address.ip), address.network.prefixlen) in present

    async def set_sysctl(self, name: str, value: str, *, ifname: str = "") -> None:
        """`set_sysctl` in the calling thread's netns (normally the daemon's)."""
        set_sysctl(name, value, ifname=ifname)
