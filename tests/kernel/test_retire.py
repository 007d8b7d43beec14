"""Kernel tests of retiring veths (`LinkManager.retire_veth`) and their deletion in
the background, each inside its own throwaway sandbox netns."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from sheep_runtime.model import PortEntries
from sheep_runtime.netlink import LinkManager, create_pinned_netns
from tests.kernel.conftest import NlRun
from tests.kernel.test_netlink import _bridge, _ip, _started_manager

pytestmark = pytest.mark.kernel

HANG_GUARD = 30


async def _gone(manager: LinkManager) -> None:
    async with asyncio.timeout(HANG_GUARD):
        while manager.pending_deletions():
            await asyncio.sleep(0.005)


async def _veth(manager: LinkManager, bridge: int, netns: Path, n: int) -> int:
    return await manager.create_veth(host_ifname=f"shpret{n}", bridge_index=bridge, mtu=1400,
                                     netns=netns, peer_ifname=f"eth{n}",
                                     peer_mac=f"02:42:0a:4d:02:{n:02x}")


def test_retire_frees_both_names_at_once(nl_run: NlRun, nl_sandbox: Path,
                                         nl_netns_dir: Path) -> None:
    container = nl_netns_dir / "c1"
    create_pinned_netns(container)

    async def body() -> None:
        manager = await _started_manager()
        try:
            bridge = await _bridge(manager)
            await _veth(manager, bridge, container, 0)
            await _ip(container, "link", "set", "eth0", "up")
            assert await manager.retire_veth("shpret0", new_name="shx0000000000aa",
                                             netns=container, peer_ifname="eth0")
            # the names are free although the deletion may not have run yet
            await _veth(manager, bridge, container, 0)
            (fresh,) = await _ip(nl_sandbox, "link", "show", "shpret0")
            assert fresh["master"] == "shpbrtest0"
            await _gone(manager)
            assert await manager.list_links("shx") == []
            names = {x["ifname"] for x in await _ip(container, "link", "show")}
            assert names == {"lo", "eth0"}
            assert not await manager.retire_veth("shpnosuch", new_name="shx0000000000ab")
            assert manager.pending_deletions() == set()
        finally:
            await manager.close()

    nl_run(body)


def test_retire_removes_the_bridge_neighbours_even_of_a_gone_veth(
        nl_run: NlRun, nl_netns_dir: Path) -> None:
    container = nl_netns_dir / "c1"
    create_pinned_netns(container)
    mac, ip, ip6 = "02:42:0a:4d:02:05", IPv4Address("10.77.0.5"), IPv6Address("fd77::5")

    async def body() -> None:
        manager = await _started_manager()
        try:
            bridge = await _bridge(manager)
            await manager.create_veth(host_ifname="shpret5", bridge_index=bridge, mtu=1400,
                                      netns=container, peer_ifname="eth5", peer_mac=mac,
                                      entries=PortEntries(mac, ip, address6=ip6))
            assert set(await manager.bridge_neighbours(bridge)) == {ip, ip6}
            assert await manager.retire_veth("shpret5", new_name="shx0000000000e5",
                                             netns=container, peer_ifname="eth5",
                                             bridge_index=bridge, neighbours=(ip, ip6))
            assert await manager.bridge_neighbours(bridge) == []
            # what a teardown cut short leaves: a neighbour without its veth
            port = await _veth(manager, bridge, container, 6)
            await manager.add_bridge_entries(port_index=port, bridge_index=bridge,
                                             entries=PortEntries(mac, ip))
            await manager.delete_link("shpret6")
            assert await manager.bridge_neighbours(bridge) == [ip]
            assert not await manager.retire_veth("shpret6", new_name="shx0000000000e6",
                                                 bridge_index=bridge, neighbours=(ip, ip6))
            assert await manager.bridge_neighbours(bridge) == []
            await _gone(manager)
        finally:
            await manager.close()

    nl_run(body)


def test_a_retired_veth_is_down_and_off_the_bridge(nl_run: NlRun, nl_sandbox: Path,
                                                   nl_netns_dir: Path) -> None:
    container = nl_netns_dir / "c1"
    create_pinned_netns(container)

    async def body() -> None:
        manager = await _started_manager()
        await manager.reaper.close()  # hold the deletion back to look at the link
        try:
            bridge = await _bridge(manager)
            await _veth(manager, bridge, container, 1)
            await _ip(container, "link", "set", "eth1", "up")
            assert await manager.retire_veth("shpret1", new_name="shx0000000000b1",
                                             netns=container, peer_ifname="eth1")
            (host,) = await _ip(nl_sandbox, "link", "show", "shx0000000000b1")
            assert "master" not in host and "UP" not in host["flags"]
            (peer,) = await _ip(container, "link", "show", "shx0000000000b1")
            assert "UP" not in peer["flags"]
            assert manager.pending_deletions() == {"shx0000000000b1"}
            manager.reaper.start()
            await _gone(manager)
            assert await _ip(container, "link", "show", "type", "veth") == []
        finally:
            await manager.close()

    nl_run(body)


def test_many_retirements_share_few_deletions(nl_run: NlRun, nl_sandbox: Path,
                                              nl_netns_dir: Path) -> None:
    container = nl_netns_dir / "c1"
    create_pinned_netns(container)
    count = 20

    async def body() -> None:
        manager = await _started_manager()
        try:
            bridge = await _bridge(manager)
            for n in range(count):
                await _veth(manager, bridge, container, n)
            await manager.reaper.close()
            assert all(await asyncio.gather(*(
                manager.retire_veth(f"shpret{n}", new_name=f"shx{n:012x}", netns=container,
                                    peer_ifname=f"eth{n}") for n in range(count))))
            manager.reaper.start()
            await _gone(manager)
            assert manager.reaper.rounds == 1, "one group deletion for all of them"
            assert await manager.list_links("shpret") == []
            assert await manager.list_links("shx") == []
        finally:
            await manager.close()

    nl_run(body)


def test_close_deletes_what_is_pending(nl_run: NlRun, nl_sandbox: Path,
                                       nl_netns_dir: Path) -> None:
    container = nl_netns_dir / "c1"
    create_pinned_netns(container)

    async def body() -> None:
        manager = await _started_manager()
        bridge = await _bridge(manager)
        await _veth(manager, bridge, container, 2)
        await manager.reaper.close()
        manager.reaper.start()
        assert await manager.retire_veth("shpret2", new_name="shx0000000000c2")
        assert await manager.delete_link("shpbrtest0")
        await manager.close()
        assert await _ip(nl_sandbox, "link", "show", "type", "veth") == []

    nl_run(body)
