"""Kernel tests of the raw-netlink client, the workers and the container side
(`ContainerNetns`): the whole attach path, each inside its own throwaway sandbox
netns. Packets only go between namespaces the test created; what the kernel holds is
checked with `nsenter --net=<pin> ip -j ...`.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

import pytest

from sheep_runtime.model import PortEntries
from sheep_runtime.netlink import LinkError, LinkManager, NamespaceError, create_pinned_netns
from sheep_runtime.netlink import codec as c
from sheep_runtime.netlink import messages as m
from sheep_runtime.netlink.host_side import get_link
from sheep_runtime.netlink.raw import RawRoute, Request
from tests.kernel.conftest import Heartbeat, NlRun

pytestmark = pytest.mark.kernel

BRIDGE = "shpbrraw0"
BRIDGE_MAC = "02:5e:00:00:00:01"
GATEWAY = IPv4Interface("10.78.0.1/24")
MTU = 1400
_LO = IPv4Interface("127.0.0.1/8")  # configuring lo: a step that works in any netns


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


async def _ip(netns: Path, *argv: str) -> Any:
    """`ip -j ...` (or `bridge -j ...` when argv starts with "bridge") in `netns`."""
    tool = ["bridge", "-j", *argv[1:]] if argv[0] == "bridge" else ["ip", "-j", *argv]
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net={netns}", *tool,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return json.loads(out or b"[]")


async def _ping(netns: Path, address: object) -> bool:
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net={netns}", "ping", "-c1", "-W1", str(address),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    return await proc.wait() == 0


def _address(n: int) -> IPv4Interface:
    return IPv4Interface(f"{GATEWAY.network[n + 2]}/{GATEWAY.network.prefixlen}")


def _mac(address: IPv4Interface) -> str:
    return "02:5e:" + ":".join(f"{b:02x}" for b in address.ip.packed)


async def _manager() -> tuple[LinkManager, int]:
    manager = LinkManager(delete_workers=2, attach_workers=2)
    await manager.start()
    bridge = await manager.ensure_bridge(name=BRIDGE, mac=BRIDGE_MAC, gateway=GATEWAY, mtu=MTU)
    return manager, bridge


async def _attach(manager: LinkManager, bridge: int, netns: Path, n: int) -> int:
    """The attach sequence ops runs, all raw."""
    address = _address(n)
    port = await manager.create_veth(host_ifname=f"shpraw{n}", bridge_index=bridge, mtu=MTU,
                                     netns=netns, peer_ifname="eth0", peer_mac=_mac(address),
                                     entries=PortEntries(_mac(address), address.ip))
    inside = await manager.open_container_netns(netns)
    try:
        if n % 2:  # configured first without lo and neighbour: the second run is idempotent
            await inside.configure_interface(ifname="eth0", address=address, mtu=MTU)
        await inside.configure_interface(ifname="eth0", address=address, mtu=MTU,
                                         loopback=True, neighbours=((GATEWAY.ip, BRIDGE_MAC),),
                                         default_routes=(GATEWAY.ip,))
    finally:
        inside.close()
    return port


@pytest.fixture
def containers(nl_netns_dir: Path) -> list[Path]:
    paths = [nl_netns_dir / f"c{n}" for n in range(2)]
    for path in paths:
        create_pinned_netns(path)
    return paths


def test_full_attach_is_visible_to_ip(nl_run: NlRun, nl_sandbox: Path,
                                      containers: list[Path]) -> None:
    c1, c2 = containers

    async def body() -> None:
        manager, bridge = await _manager()
        try:
            port = await _attach(manager, bridge, c1, 0)
            await _attach(manager, bridge, c2, 1)
            host = await manager.get_link("shpraw0")
            assert host is not None
            assert (host.index, host.kind, host.master, host.up, host.mtu) == (
                port, "veth", bridge, True, MTU)
            assert await manager.get_link("eth0") is None  # the peer is in c1 only

            await asyncio.sleep(0.3)  # addrconf would have acted by now
            (eth0,) = await _ip(c1, "addr", "show", "dev", "eth0")
            assert (eth0["address"], eth0["mtu"], eth0["operstate"]) == (
                _mac(_address(0)), MTU, "UP")
            (link,) = await _ip(c1, "-d", "link", "show", "dev", "eth0")
            assert link["inet6_addr_gen_mode"] == "none"
            assert [(a["family"], a["local"], a["prefixlen"]) for a in eth0["addr_info"]] == [
                ("inet", "10.78.0.2", 24)]  # no IPv6 link-local
            (lo,) = await _ip(c1, "link", "show", "lo")
            assert "UP" in lo["flags"]
            routes = await _ip(c1, "route", "show", "default")
            assert [(r["gateway"], r["dev"]) for r in routes] == [("10.78.0.1", "eth0")]
            neighbours = await _ip(c1, "neigh", "show", "nud", "permanent")
            assert [(n["dst"], n["dev"], n["lladdr"]) for n in neighbours] == [
                ("10.78.0.1", "eth0", BRIDGE_MAC)]

            (info,) = await _ip(nl_sandbox, "-d", "link", "show", "shpraw0")
            assert info["linkinfo"]["info_slave_data"]["proxy_arp"] is True
            assert info["inet6_addr_gen_mode"] == "none"
            assert (info["num_tx_queues"], info["num_rx_queues"]) == (1, 1)
            assert await _ip(nl_sandbox, "-6", "addr", "show", "dev", "shpraw0") == []
            fdb = await _ip(nl_sandbox, "bridge", "fdb", "show", "dev", "shpraw0")
            assert {"mac": _mac(_address(0)), "master": BRIDGE, "state": "static"}.items() \
                <= next(e for e in fdb if e["mac"] == _mac(_address(0))).items()
            on_bridge = await _ip(nl_sandbox, "neigh", "show", "dev", BRIDGE, "nud", "permanent")
            assert sorted((n["dst"], n["lladdr"]) for n in on_bridge) == [
                ("10.78.0.2", _mac(_address(0))), ("10.78.0.3", _mac(_address(1)))]

            assert await _ping(c1, GATEWAY.ip)
            assert await _ping(c1, "10.78.0.3") and await _ping(c2, "10.78.0.2")
            # The gateway resolved nobody by ARP, the containers never ARPed it.
            dynamic = await _ip(nl_sandbox, "neigh", "show", "dev", BRIDGE)
            assert all("PERMANENT" in n["state"] for n in dynamic), dynamic
        finally:
            await manager.close()

    nl_run(body)


def test_rerun_read_back_and_teardown(nl_run: NlRun, containers: list[Path]) -> None:
    c1, _ = containers

    async def body() -> None:
        manager, bridge = await _manager()
        try:
            await _attach(manager, bridge, c1, 0)
            inside = await manager.open_container_netns(c1)
            try:  # idempotent on a second run
                await inside.configure_interface(ifname="eth0", address=_address(0), mtu=MTU,
                                                 default_routes=(GATEWAY.ip,))
                state = await inside.read_interface("eth0")
                assert await inside.read_interface("eth9") is None
            finally:
                inside.close()
            assert state is not None
            assert (state.link.mac, state.link.mtu, state.link.up, state.link.operstate,
                    state.link.kind) == (_mac(_address(0)), MTU, True, "UP", "veth")
            assert (state.addresses, state.default_gateway) == ((_address(0),), GATEWAY.ip)
            (eth0,) = await _ip(c1, "addr", "show", "dev", "eth0")
            assert [(a["local"], a["prefixlen"]) for a in eth0["addr_info"]] == [
                ("10.78.0.2", 24)]
            routes = await _ip(c1, "route", "show", "default")
            assert [(r["gateway"], r.get("dev")) for r in routes] == [("10.78.0.1", "eth0")]

            assert await manager.remove_bridge_entries(bridge_index=bridge,
                                                       address=_address(0).ip)
            assert not await manager.remove_bridge_entries(bridge_index=bridge,
                                                           address=_address(0).ip)
            assert await manager.delete_link("shpraw0")
            assert not await manager.delete_link("shpraw0")
            assert await _ip(c1, "link", "show", "type", "veth") == []
        finally:
            await manager.close()

    nl_run(body)


def test_errors_carry_errno_context_and_kernel_text(nl_run: NlRun, nl_netns_dir: Path,
                                                    containers: list[Path]) -> None:
    c1, _ = containers

    async def body() -> None:
        manager, bridge = await _manager()
        try:
            await manager.create_veth(host_ifname="shperr", bridge_index=bridge, mtu=MTU,
                                      netns=c1, peer_ifname="eth0",
                                      peer_mac="02:5e:0a:4e:00:02")
            inside = await manager.open_container_netns(c1)
            try:
                state = await inside.read_interface("eth0")
                assert state is not None and not state.link.up
                assert (state.addresses, state.default_gateway) == ((), None)
                # a gateway off eth0's subnet: the kernel says why in its extack message
                with pytest.raises(LinkError) as info:
                    await inside.configure_interface(
                        ifname="eth0", address=IPv4Interface("192.0.2.2/24"),
                        default_routes=(GATEWAY.ip,))
                assert info.value.errno == errno.ENETUNREACH
                assert str(info.value) == (f"add default route via {GATEWAY.ip}: Network is"
                                           " unreachable (Nexthop has invalid gateway)")
                assert isinstance(info.value.__cause__, OSError)
                with pytest.raises(LinkError) as info:
                    await inside.configure_interface(ifname="eth9", address=_address(0))
                assert info.value.errno == errno.ENODEV and "eth9" in str(info.value)
            finally:
                inside.close()
            plain = nl_netns_dir / "plain"  # not a netns: the first step says so
            plain.write_text("")
            inside = await manager.open_container_netns(plain)
            with pytest.raises(NamespaceError) as ns_info:
                await inside.configure_interface(ifname="lo", address=_LO)
            inside.close()
            assert ns_info.value.errno == errno.EINVAL
            assert str(plain) in str(ns_info.value)
        finally:
            await manager.close()

    nl_run(body)


def test_a_veth_whose_port_entries_fail_is_removed_with_them(
        nl_run: NlRun, containers: list[Path]) -> None:
    c1, _ = containers

    async def body() -> None:
        manager, bridge = await _manager()
        try:
            # the bridge refuses a static fdb entry for the zero MAC (EINVAL) after the
            # port flags and before the neighbour: the batch still adds the neighbour
            with pytest.raises(LinkError) as info:
                await manager.create_veth(
                    host_ifname="shpbad", bridge_index=bridge, mtu=MTU, netns=c1,
                    peer_ifname="eth0", peer_mac="02:5e:0a:4e:00:02",
                    entries=PortEntries("00:00:00:00:00:00", _address(0).ip))
            assert info.value.errno == errno.EINVAL and "fdb entry" in str(info.value)
            assert await manager.get_link("shpbad") is None
            assert await manager.bridge_neighbours(bridge) == []
            assert [link["ifname"] for link in await _ip(c1, "link", "show")] == ["lo"]
        finally:
            await manager.close()

    nl_run(body)


def test_batch_runs_every_message_and_reports_the_first_failure(nl_run: NlRun) -> None:
    async def body() -> None:
        sock = RawRoute()
        try:
            lo = Request(m.set_link(1, up=True), "lo up")
            missing = Request(m.del_link("shpnosuch"), "delete shpnosuch")
            tolerated = Request(m.del_link("shpnosuch"), "delete again", ok=(errno.ENODEV,))
            assert sock.batch((lo, tolerated, lo)) == [[], [], []]
            with pytest.raises(LinkError) as info:
                sock.batch((missing, lo))
            assert info.value.errno == errno.ENODEV
            assert str(info.value).startswith("delete shpnosuch: No such device")
            sock.request(lo.msg, "lo up")  # the socket is still in step
            link = get_link(sock, "lo")
            assert link is not None and (link.index, link.up) == (1, True)
            links = sock.dump(m.dump_links(), "dump", c.decode_link)
            assert [(link.name, moved) for link, moved in links] == [("lo", False)]
        finally:
            sock.close()
        with pytest.raises(LinkError) as info:
            sock.request(lo.msg, "lo up")
        assert info.value.errno == errno.EBADF

    nl_run(body)


def test_workers_stay_home_and_leak_no_fds(nl_run: NlRun, nl_sandbox: Path,
                                           containers: list[Path]) -> None:
    c1, _ = containers
    sandbox, container = os.stat(nl_sandbox).st_ino, os.stat(c1).st_ino

    async def body() -> None:
        fds = _fd_count()
        manager, bridge = await _manager()
        await _attach(manager, bridge, c1, 0)
        for _ in range(30):
            inside = await manager.open_container_netns(c1)
            await inside.configure_interface(ifname="lo", address=_LO)
            inside.close()
        # every worker, after entering c1 for a socket, is back in the sandbox
        seen = await asyncio.gather(*(manager._fast.run(lambda _: _netns_inode())
                                      for _ in range(16)))
        assert set(seen) == {sandbox}
        inside = await manager.open_container_netns(c1)
        await inside.configure_interface(ifname="lo", address=_LO)
        sock = inside._sock
        assert sock is not None
        assert await manager._fast.run(lambda _: os.fstat(sock.fileno()).st_ino) != container
        inside.close()
        assert sock.closed
        assert await manager.delete_link("shpraw0")
        assert await manager.delete_link(BRIDGE)
        await manager.close()
        assert _fd_count() == fds

    nl_run(body)


def test_attaches_and_deletions_never_block_the_loop(nl_run: NlRun, nl_netns_dir: Path) -> None:
    count = 16
    paths = [nl_netns_dir / f"c{n}" for n in range(count)]
    for path in paths:
        create_pinned_netns(path)

    async def body() -> None:
        manager, bridge = await _manager()
        try:
            async with Heartbeat() as beat:
                await asyncio.gather(*(_attach(manager, bridge, path, n)
                                       for n, path in enumerate(paths[: count // 2])))
                # attaches while ~20 ms deletions hold the kernel in other workers
                await asyncio.gather(
                    *(manager.delete_link(f"shpraw{n}") for n in range(count // 2)),
                    *(_attach(manager, bridge, path, n + count // 2)
                      for n, path in enumerate(paths[count // 2:])))
            gaps = beat.gaps
            # On the loop, each ~20 ms deletion would stall it (8 long gaps at least).
            # Allow one, from other load on the machine (a worker descheduled while
            # holding the GIL stalls the loop too).
            long = [round(g * 1e3, 1) for g in gaps if g > 0.015]
            assert len(long) <= 1, f"heartbeat gaps (ms): {long}"
            links = await manager.list_links("shpraw")
            assert len(links) == count // 2
            assert {(li.kind, li.master, li.up) for li in links} == {("veth", bridge, True)}
            assert await _ping(paths[-1], GATEWAY.ip)
        finally:
            await manager.close()

    nl_run(body)


def test_a_cancelled_step_closes_its_socket_when_done(nl_run: NlRun,
                                                      containers: list[Path]) -> None:
    c1, _ = containers

    async def body() -> None:
        manager, _bridge = await _manager()
        try:
            inside = await manager.open_container_netns(c1)
            await inside.configure_interface(ifname="lo", address=_LO)  # opens the socket
            sock = inside._sock
            assert sock is not None
            step = asyncio.ensure_future(inside.configure_interface(ifname="lo", address=_LO))
            await asyncio.sleep(0)
            inside.close()  # maybe while a worker is using the socket: deferred
            try:
                await step
            except LinkError as exc:  # closed before the worker got to it
                assert exc.errno == errno.EBADF
            assert sock.closed
            with pytest.raises(LinkError) as info:
                await inside.configure_interface(ifname="lo", address=_LO)
            assert info.value.errno == errno.EBADF
            assert await manager._fast.run(lambda _: True)  # the pool is fine
        finally:
            await manager.close()

    nl_run(body)
