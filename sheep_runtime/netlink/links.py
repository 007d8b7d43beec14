"""Links of the daemon's own netns (the `Links` of ops): bridges, host veth ends,
bridge ports, routes and sysctls."""

from __future__ import annotations

import logging
from collections.abc import Sequence
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
from sheep_runtime.netlink import host_side
from sheep_runtime.netlink.container_netns import ContainerNetns, open_container_netns
from sheep_runtime.netlink.errors import LinkError, NamespaceError
from sheep_runtime.netlink.raw import RawRoute
from sheep_runtime.netlink.reaper import Reaper
from sheep_runtime.netlink.workers import NetlinkWorkers

log = logging.getLogger(__name__)


class LinkManager:
    """Links of the netns of the thread that calls `start` (normally the daemon's).

    Every request goes over a raw netlink socket on a worker thread (`raw.py`), never
    blocking the event loop; deletions (~20 ms each in the kernel) have their own pool
    so they cannot hold up attaches.
    """

    def __init__(self, *, delete_workers: int = 8, attach_workers: int = 4) -> None:
        self._deletes = NetlinkWorkers(size=delete_workers, name="sheep-nl-delete")
        self._fast = NetlinkWorkers(size=attach_workers, name="sheep-nl-attach")
        self.reaper = Reaper()

    async def start(self) -> None:
        """Start the worker threads (in the calling thread's netns)."""
        self._deletes.start()
        self._fast.start()
        self.reaper.start()

    async def close(self) -> None:
        """Stop the workers after the queued requests (and deletions) finish."""
        await self._fast.close()
        await self.reaper.close()
        await self._deletes.close()

    async def get_link(self, ifname: str) -> Link | None:
        """The link named `ifname`, or None if there is none."""
        return await self._fast.run(lambda sock: host_side.get_link(sock, ifname))

    async def list_links(self, prefix: str = "") -> list[Link]:
        """All links whose name starts with `prefix`. Decoded on the worker: with ~2000
        links a parser on the loop would hold it for a while."""
        return await self._fast.run(lambda sock: host_side.list_links(sock, prefix))

    async def has_address(self, ifname: str, address: IPv4Interface) -> bool:
        """True if the link `ifname` exists and holds `address` (with its prefix)."""
        return await self._fast.run(lambda sock: host_side.has_address(sock, ifname, address))

    async def route_destinations(self) -> list[IPv4Network]:
        """Destinations of the IPv4 unicast routes of every routing table except
        `local` (which holds only the host's own addresses); default: 0.0.0.0/0."""
        return await self._fast.run(host_side.route_destinations)

    async def route_destinations6(self) -> list[IPv6Network]:
        """Destinations of the IPv6 unicast routes of every table except `local`."""
        return await self._fast.run(host_side.route_destinations6)

    async def ensure_bridge(self, *, name: str, mac: str, gateway: IPv4Interface, mtu: int,
                            gateway6: IPv6Interface | None = None) -> int:
        """Converge the bridge `name` (MAC, MTU, gateway addresses, up); return its index.

        Idempotent and safe to race with itself. A non-bridge link with that name is
        an error (EEXIST).
        """
        return await self._fast.run(lambda sock: host_side.ensure_bridge(
            sock, name=name, mac=mac, gateway=gateway, mtu=mtu, gateway6=gateway6))

    async def create_veth(self, *, host_ifname: str, bridge_index: int, mtu: int, netns: Path,
                          peer_ifname: str, peer_mac: str,
                          entries: PortEntries | None = None) -> int:
        """Create a veth in one RTM_NEWLINK: the host end enslaved to the bridge and
        up, the peer (down) created directly in the netns pinned at `netns` (moving it
        there afterwards would cost 13-19 ms). With `entries`, the port gets them
        (`add_bridge_entries`) in the same worker round trip, all or nothing: if they
        fail, the veth is deleted. Return the host end's index.

        An existing name (host side or peer side) fails with errno EEXIST.
        """
        return await self._fast.run(lambda sock: host_side.create_veth(
            sock, host_ifname=host_ifname, bridge_index=bridge_index, mtu=mtu, netns=netns,
            peer_ifname=peer_ifname, peer_mac=peer_mac, entries=entries))

    async def add_bridge_entries(self, *, port_index: int, bridge_index: int,
                                 entries: PortEntries) -> None:
        """Make the container on `port_index` reachable without ARP floods, in one
        batch: the port's PROXYARP flag (the bridge answers ARP from its neighbour
        table and floods nothing to the port) and no IPv6 link-local on the host end,
        a static fdb entry for the container's MAC, and permanent bridge neighbours
        for its addresses. Idempotent (replace). Call it before the container end
        comes up. The fdb entry goes with the port; `remove_bridge_entries` removes
        the neighbours. The entries' `hairpin` and `isolated` are the port's other
        two flags.

        The kernel ignores bridge-port attributes in the veth creation message, hence
        a separate batch.
        """
        await self._fast.run(lambda sock: host_side.add_bridge_entries(
            sock, port_index=port_index, bridge_index=bridge_index, entries=entries))

    async def remove_bridge_entries(self, *, bridge_index: int,
                                    address: IPv4Address | IPv6Address) -> bool:
        """Remove the bridge's neighbour entry for `address`; False if there was none."""
        return await self._fast.run(lambda sock: host_side.remove_bridge_entries(
            sock, bridge_index=bridge_index, address=address))

    async def bridge_neighbours(self, bridge_index: int) -> list[IPv4Address | IPv6Address]:
        """The permanent IPv4 and IPv6 neighbours of the bridge `bridge_index`."""
        return await self._fast.run(lambda sock: host_side.bridge_neighbours(sock, bridge_index))

    async def set_port(self, ifname: str, *, master: int) -> int:
        """Enslave `ifname` to the bridge `master` and set it up; return its index."""
        return await self._fast.run(lambda sock: host_side.set_port(sock, ifname, master=master))

    async def open_container_netns(self, netns: Path) -> ContainerNetns:
        """A handle on the netns pinned at `netns` for the container-side steps; the
        caller closes it (one handle serves all the networks of a container)."""
        return open_container_netns(netns, self._fast)

    async def delete_link(self, ifname: str) -> bool:
        """Delete the link `ifname` on a deletion worker. True if deleted, False if it
        was already gone. Deleting one end of a veth deletes the other end too."""
        return await self._deletes.run(lambda sock: host_side.delete_link(sock, ifname))

    async def retire_veth(self, ifname: str, *, new_name: str, netns: Path | None = None,
                          peer_ifname: str = "", bridge_index: int | None = None,
                          neighbours: Sequence[IPv4Address | IPv6Address] = ()) -> bool:
        """Make the veth `ifname` answer for nothing at once and delete it in the
        background (`reaper.py`, within a few ms): the host end goes down, off its
        bridge and is renamed `new_name`; with `netns`, the peer `peer_ifname` in the
        netns pinned there goes down and takes `new_name` too, so both names are free
        for a new veth. Then, in the same worker round trip, the bridge `bridge_index`
        loses its neighbours `neighbours` (whether or not the veth was still there; a
        failure there raises, the veth retired all the same). False if `ifname` was
        already gone. `new_name` stays in `pending_deletions()` until the link is
        gone."""
        def job(sock: RawRoute) -> bool:
            retired = self._retire(sock, ifname, new_name=new_name, netns=netns,
                                   peer_ifname=peer_ifname)
            if bridge_index is not None:
                for address in neighbours:
                    host_side.remove_bridge_entries(sock, bridge_index=bridge_index,
                                                    address=address)
            return retired

        return await self._fast.run(job)

    def _retire(self, sock: RawRoute, ifname: str, *, new_name: str, netns: Path | None,
                peer_ifname: str) -> bool:
        """The retirement of `retire_veth`, blocking (on a worker)."""
        if netns is not None and peer_ifname:
            self._retire_peer(netns, peer_ifname, new_name)
        self.reaper.reserve(new_name)
        try:
            retired = host_side.retire_link(sock, ifname, new_name=new_name,
                                            group=self.reaper.group)
        except LinkError:
            # a rename that went through before a later failure is still ours
            self._settle(sock, new_name)
            raise
        if retired:
            self.reaper.queue(new_name)
        else:
            self.reaper.release(new_name)
        return retired

    def _retire_peer(self, netns: Path, peer_ifname: str, new_name: str) -> None:
        """Best effort: a netns that is gone took its links along, and a peer left
        with its name only delays a re-attach under the same name until the deletion
        (EEXIST); neither may keep the veth from being retired."""
        try:
            inner = self._fast.socket_in(netns)
        except NamespaceError as exc:
            log.debug("retire %s in netns %s: %s", peer_ifname, netns, exc)
            return
        try:
            host_side.retire_link(inner, peer_ifname, new_name=new_name)
        except LinkError as exc:
            log.warning("retire %s in netns %s: %s", peer_ifname, netns, exc)
        finally:
            inner.close()

    def _settle(self, sock: RawRoute, new_name: str) -> None:
        try:
            sock.ifindex(new_name, "look up")
        except LinkError:
            self.reaper.release(new_name)
        else:
            self.reaper.queue(new_name)

    def pending_deletions(self) -> frozenset[str]:
        """Names of retired links not deleted yet."""
        return self.reaper.pending()

    async def set_sysctl(self, name: str, value: str, *, ifname: str = "") -> None:
        """Write a net sysctl of the manager's netns (see `host_side.set_sysctl`)."""
        await self._fast.run(lambda _: host_side.set_sysctl(name, value, ifname=ifname))
