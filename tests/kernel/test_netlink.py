"""Kernel tests of the netlink backend's host side (`LinkManager`), each inside its
own throwaway sandbox netns.

What the kernel holds is checked (and changed behind the manager's back) with
`nsenter --net=<pin> ip ...`. Packets only go between namespaces the test created.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import threading
import time
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from sheep_runtime.errors import KernelError
from sheep_runtime.model import PortEntries
from sheep_runtime.netlink import (
    LinkError,
    LinkManager,
    NamespaceError,
    create_pinned_netns,
    host_side,
)
from tests.kernel.conftest import Heartbeat, NlRun

pytestmark = pytest.mark.kernel

BRIDGE = "shpbrtest0"
BRIDGE_MAC = "02:5e:00:00:00:01"
GATEWAY = IPv4Interface("10.77.0.1/24")
MTU = 1400


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _ip(netns: Path, *argv: str) -> Any:
    """`ip -j ...` in `netns`; its JSON output (None if it printed nothing)."""
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net={netns}", "ip", "-j", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, f"ip {' '.join(argv)}: {err.decode()}"
    return json.loads(out) if out.strip() else None


async def _started_manager() -> LinkManager:
    manager = LinkManager(delete_workers=4, attach_workers=2)
    await manager.start()
    return manager


async def _bridge(manager: LinkManager) -> int:
    return await manager.ensure_bridge(name=BRIDGE, mac=BRIDGE_MAC, gateway=GATEWAY, mtu=MTU)


async def _snooping(netns: Path) -> int:
    (link,) = await _ip(netns, "-d", "link", "show", BRIDGE)
    return int(link["linkinfo"]["info_data"]["mcast_snooping"])


async def _veth(manager: LinkManager, bridge: int, netns: Path, host: str) -> int:
    return await manager.create_veth(host_ifname=host, bridge_index=bridge, mtu=MTU,
                                     netns=netns, peer_ifname="eth0",
                                     peer_mac="02:42:0a:4d:00:02")


def test_ensure_bridge_is_idempotent_and_repairs(nl_run: NlRun, nl_sandbox: Path) -> None:
    async def body() -> None:
        manager = await _started_manager()
        try:
            index = await _bridge(manager)
            again = await asyncio.gather(*(_bridge(manager) for _ in range(5)))
            assert set(again) == {index}
            info = await manager.get_link(BRIDGE)
            assert info is not None
            assert (info.kind, info.mac, info.mtu, info.up) == ("bridge", BRIDGE_MAC, MTU, True)
            assert await manager.has_address(BRIDGE, GATEWAY)
            assert await _snooping(nl_sandbox) == 0

            await _ip(nl_sandbox, "addr", "del", str(GATEWAY), "dev", BRIDGE)
            await _ip(nl_sandbox, "link", "set", BRIDGE, "down", "mtu", "1300",
                      "address", "02:5e:00:00:00:99", "type", "bridge", "mcast_snooping", "1")
            assert not await manager.has_address(BRIDGE, GATEWAY)
            assert await _bridge(manager) == index
            assert await manager.has_address(BRIDGE, GATEWAY)
            assert await _snooping(nl_sandbox) == 0
            info = await manager.get_link(BRIDGE)
            assert info is not None
            assert (info.mac, info.mtu, info.up) == (BRIDGE_MAC, MTU, True)

            assert await manager.delete_link(BRIDGE)
            assert not await manager.delete_link(BRIDGE)  # already gone
            assert await manager.get_link(BRIDGE) is None
            assert not await manager.has_address(BRIDGE, GATEWAY)
        finally:
            await manager.close()

    nl_run(body)


def test_ensure_bridge_refuses_a_name_clash(nl_run: NlRun, nl_sandbox: Path) -> None:
    async def body() -> None:
        manager = await _started_manager()
        try:
            await _ip(nl_sandbox, "link", "add", "shpclash0", "type", "veth",
                      "peer", "name", "shpclash1")
            with pytest.raises(LinkError) as info:
                await manager.ensure_bridge(name="shpclash0", mac=BRIDGE_MAC, gateway=GATEWAY,
                                            mtu=MTU)
            assert info.value.errno == errno.EEXIST
            assert "veth" in str(info.value)
        finally:
            await manager.close()

    nl_run(body)


def test_create_veth_puts_peer_in_container(nl_run: NlRun, nl_netns_dir: Path) -> None:
    container = nl_netns_dir / "c1"
    create_pinned_netns(container)

    async def body() -> None:
        manager = await _started_manager()
        try:
            bridge = await _bridge(manager)
            fds = _fd_count()
            index = await _veth(manager, bridge, container, "shp0123456789ab")
            assert _fd_count() == fds  # the netns fd was closed
            host = await manager.get_link("shp0123456789ab")
            assert host is not None
            assert (host.index, host.kind, host.master, host.up, host.mtu) == (
                index, "veth", bridge, True, MTU)
            assert await manager.get_link("eth0") is None  # not in the sandbox
            assert [link.name for link in await manager.list_links("shp0")] == [
                "shp0123456789ab"]
            (peer,) = await _ip(container, "link", "show", "eth0")
            assert (peer["address"], peer["mtu"], "UP" in peer["flags"]) == (
                "02:42:0a:4d:00:02", MTU, False)
        finally:
            await manager.close()

    nl_run(body)


def test_duplicate_veth_is_eexist(nl_run: NlRun, nl_netns_dir: Path) -> None:
    container = nl_netns_dir / "c1"
    create_pinned_netns(container)

    async def body() -> None:
        manager = await _started_manager()
        try:
            bridge = await _bridge(manager)
            await _veth(manager, bridge, container, "shpdup")
            with pytest.raises(LinkError) as info:
                await _veth(manager, bridge, container, "shpdup")
            assert info.value.errno == errno.EEXIST
            assert isinstance(info.value, KernelError)
            assert isinstance(info.value.__cause__, OSError)
            assert str(info.value).startswith(
                f"create veth shpdup (peer eth0 in netns {container}): File exists")
            # the peer name is taken in the container netns: EEXIST too
            with pytest.raises(LinkError) as info:
                await _veth(manager, bridge, container, "shpdup2")
            assert info.value.errno == errno.EEXIST
            assert await manager.get_link("shpdup2") is None
        finally:
            await manager.close()

    nl_run(body)


async def _port(sandbox: Path, ifname: str) -> dict[str, Any]:
    (link,) = await _ip(sandbox, "-d", "link", "show", ifname)
    data: dict[str, Any] = link["linkinfo"]["info_slave_data"]
    return data


def test_bridge_entries_and_port_flags(nl_run: NlRun, nl_netns_dir: Path,
                                       nl_sandbox: Path) -> None:
    container = nl_netns_dir / "c1"
    create_pinned_netns(container)
    mac, address = "02:42:0a:4d:00:02", IPv4Address("10.77.0.2")

    async def body() -> None:
        manager = await _started_manager()
        try:
            bridge = await _bridge(manager)
            port = await _veth(manager, bridge, container, "shpport")
            await manager.add_bridge_entries(port_index=port, bridge_index=bridge,
                                             entries=PortEntries(mac, address, isolated=True))
            flags = await _port(nl_sandbox, "shpport")
            assert (flags["proxy_arp"], flags["hairpin"], flags["isolated"]) == (
                True, False, True)
            await manager.add_bridge_entries(  # idempotent
                port_index=port, bridge_index=bridge,
                entries=PortEntries(mac, address, hairpin=True))
            flags = await _port(nl_sandbox, "shpport")
            assert (flags["proxy_arp"], flags["hairpin"], flags["isolated"]) == (
                True, True, False)
            neighbours = await _ip(nl_sandbox, "neigh", "show", "dev", BRIDGE, "nud",
                                   "permanent")
            assert [(n["dst"], n["lladdr"]) for n in neighbours] == [(str(address), mac)]
            assert await manager.remove_bridge_entries(bridge_index=bridge, address=address)
            assert not await manager.remove_bridge_entries(bridge_index=bridge, address=address)
            assert await _ip(nl_sandbox, "neigh", "show", "dev", BRIDGE, "nud",
                             "permanent") == []
            with pytest.raises(LinkError) as info:
                await manager.add_bridge_entries(port_index=99999, bridge_index=bridge,
                                                 entries=PortEntries(mac, address))
            assert info.value.errno == errno.ENODEV
        finally:
            await manager.close()

    nl_run(body)


def test_set_port_and_addresses(nl_run: NlRun, nl_sandbox: Path) -> None:
    async def body() -> None:
        manager = await _started_manager()
        try:
            bridge = await _bridge(manager)
            await _ip(nl_sandbox, "link", "add", "shpsp0", "type", "veth", "peer", "name",
                      "shpsp1")
            index = await manager.set_port("shpsp0", master=bridge)
            link = await manager.get_link("shpsp0")
            assert link is not None and (link.index, link.master, link.up) == (
                index, bridge, True)
            assert await manager.has_address(BRIDGE, GATEWAY)
            assert not await manager.has_address(BRIDGE, IPv4Interface("10.77.0.1/16"))
            assert not await manager.has_address("shpsp0", GATEWAY)
            assert not await manager.has_address("shpnosuch", GATEWAY)
            with pytest.raises(LinkError) as info:
                await manager.set_port("shpnosuch", master=bridge)
            assert info.value.errno == errno.ENODEV and "shpnosuch" in str(info.value)
        finally:
            await manager.close()

    nl_run(body)


def test_route_destinations_of_every_table(nl_run: NlRun, nl_sandbox: Path) -> None:
    async def body() -> None:
        manager = await _started_manager()
        try:
            await _bridge(manager)
            for route in (("10.91.0.0/16", "table", "100"), ("10.92.0.0/16", "table", "1000"),
                          ("default", "via", "10.77.0.254")):
                await _ip(nl_sandbox, "route", "add", route[0], "dev", BRIDGE, *route[1:])
            await _ip(nl_sandbox, "route", "add", "blackhole", "10.93.0.0/16")
            found = await manager.route_destinations()
            # the local table (the bridge's own 10.77.0.1, its broadcast) is left out
            assert sorted(found) == sorted(IPv4Network(n) for n in (
                "0.0.0.0/0", "10.77.0.0/24", "10.91.0.0/16", "10.92.0.0/16"))
        finally:
            await manager.close()

    nl_run(body)


def test_delete_link_removes_both_ends(nl_run: NlRun, nl_netns_dir: Path) -> None:
    container = nl_netns_dir / "c1"
    create_pinned_netns(container)

    async def body() -> None:
        manager = await _started_manager()
        try:
            bridge = await _bridge(manager)
            await _veth(manager, bridge, container, "shpdel")
            assert await manager.delete_link("shpdel") is True
            assert await manager.get_link("shpdel") is None
            assert await _ip(container, "link", "show", "type", "veth") == []
            assert await manager.delete_link("shpdel") is False
        finally:
            await manager.close()

    nl_run(body)


def test_parallel_deletions_keep_the_loop_ticking(nl_run: NlRun, nl_netns_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """~20 ms of kernel time per deletion: on the loop's own socket 20 of them would
    stall the loop for ~400 ms. They must run on worker threads, overlapping, while the
    loop keeps ticking. (Asserted by where the requests run and by tick counts, not by
    a gap threshold a loaded CI machine can miss.)"""
    container = nl_netns_dir / "c1"
    create_pinned_netns(container)
    count = 20
    threads: set[int] = set()
    real_delete = host_side.delete_link

    def delete_link(sock: Any, ifname: str) -> bool:
        threads.add(threading.get_ident())
        return real_delete(sock, ifname)

    monkeypatch.setattr(host_side, "delete_link", delete_link)

    async def body() -> None:
        manager = LinkManager()
        await manager.start()
        try:
            bridge = await _bridge(manager)
            for n in range(count):
                await manager.create_veth(
                    host_ifname=f"shppar{n}", bridge_index=bridge, mtu=MTU, netns=container,
                    peer_ifname=f"eth{n}", peer_mac=f"02:42:0a:4d:01:{n:02x}")
            async with Heartbeat() as beat:
                started = time.perf_counter()
                results = await asyncio.gather(
                    *(manager.delete_link(f"shppar{n}") for n in range(count)))
                finished = time.perf_counter()
            assert results == [True] * count
            assert await manager.list_links("shppar") == []
            assert threading.get_ident() not in threads, "a deletion ran on the loop"
            assert len(threads) > 1, "deletions did not overlap on several workers"
            during = [t for t in beat.ticks if started <= t <= finished]
            assert len(during) > 1, "the loop did not tick while the kernel deleted"
        finally:
            await manager.close()

    nl_run(body)


def test_errors_are_wrapped(nl_run: NlRun, nl_netns_dir: Path) -> None:
    container = nl_netns_dir / "c1"
    create_pinned_netns(container)

    async def body() -> None:
        manager = await _started_manager()
        try:
            assert await manager.get_link("shpnosuch") is None
            with pytest.raises(LinkError) as info:
                await _veth(manager, 99999, container, "shpnobr")
            assert info.value.errno is not None and info.value.__cause__ is not None
            assert await manager.get_link("shpnobr") is None
            with pytest.raises(LinkError) as info:
                await _veth(manager, 1, nl_netns_dir / "missing", "shpnons")
            assert info.value.errno == errno.ENOENT
            with pytest.raises(NamespaceError) as ns_info:
                await manager.open_container_netns(nl_netns_dir / "missing")
            assert ns_info.value.errno == errno.ENOENT
        finally:
            await manager.close()

    nl_run(body)


def test_workers_close_their_sockets_and_sysctl(nl_run: NlRun) -> None:
    root_forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text()

    async def body() -> None:
        fds = _fd_count()
        manager = await _started_manager()
        # every worker opens its socket: all of them must be closed again
        assert (await asyncio.gather(*(manager.delete_link("shpnone") for _ in range(16)))
                == [False] * 16)
        await manager.close()
        assert _fd_count() == fds

        manager = await _started_manager()
        try:
            await manager.set_sysctl("net.ipv4.ip_forward", "1")
            assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"
            await _bridge(manager)
            await manager.set_sysctl("route_localnet", "1", ifname=BRIDGE)
            assert Path(f"/proc/sys/net/ipv4/conf/{BRIDGE}/route_localnet").read_text() == "1\n"
            with pytest.raises(KernelError) as info:
                await manager.set_sysctl("net.ipv4.no_such_knob", "1")
            assert "no_such_knob" in str(info.value)
        finally:
            await manager.close()

    nl_run(body)
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == root_forwarding
