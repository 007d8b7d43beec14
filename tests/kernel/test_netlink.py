"""Kernel tests of the netlink backend, each inside its own throwaway sandbox netns.

Packets only ever go between namespaces created by the test itself.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest

from sheep_runtime.errors import KernelError
from sheep_runtime.netlink import (
    LinkError,
    LinkManager,
    NamespaceError,
    add_default_route,
    bring_up_loopback,
    configure_interface,
    create_pinned_netns,
    delete_pinned_netns,
    is_pinned_netns,
    open_route_socket,
    read_interface,
)
from sheep_runtime.netlink.workers import NetlinkWorkers
from tests.kernel.conftest import Heartbeat, NlRun

pytestmark = pytest.mark.kernel

BRIDGE = "shpbrtest0"
BRIDGE_MAC = "02:5e:00:00:00:01"

GATEWAY = IPv4Interface("10.77.0.1/24")
MTU = 1400


def _mounted_at(path: Path) -> bool:
    with open("/proc/self/mountinfo") as mountinfo:
        return any(line.split()[4] == str(path) for line in mountinfo)


def _netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _run(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def _ping(netns: Path, address: str) -> tuple[int, str]:
    return await _run("nsenter", f"--net={netns}", "ping", "-c1", "-W1", address)


async def _started_manager() -> LinkManager:
    manager = LinkManager()
    await manager.start()
    return manager


async def _attach(
    manager: LinkManager,
    *,
    bridge_index: int,
    netns: Path,
    host_ifname: str,
    address: str,
    mac: str,
) -> int:
    """The full attach path as ops will sequence it."""
    index = await manager.create_veth(
        host_ifname=host_ifname,
        bridge_index=bridge_index,
        mtu=MTU,
        netns=netns,
        peer_ifname="eth0",
        peer_mac=mac,
    )
    ipr = await open_route_socket(netns)
    try:
        await configure_interface(ipr, ifname="eth0", address=IPv4Interface(address))
        await bring_up_loopback(ipr)
        await add_default_route(ipr, gateway=GATEWAY.ip, ifname="eth0")
    finally:
        ipr.close()
    return index


def test_pinned_netns_lifecycle(tmp_path: Path) -> None:
    path = tmp_path / "ns1"
    create_pinned_netns(path)
    try:
        assert is_pinned_netns(path)
        assert _mounted_at(path)
        assert os.stat(path).st_ino != os.stat("/proc/self/ns/net").st_ino
        with pytest.raises(NamespaceError) as info:
            create_pinned_netns(path)
        assert info.value.errno == errno.EEXIST
    finally:
        delete_pinned_netns(path)
    assert not path.exists()
    assert not _mounted_at(path)
    assert not is_pinned_netns(path)
    delete_pinned_netns(path)  # already gone is success

    missing = tmp_path / "no-such-dir" / "ns2"
    with pytest.raises(NamespaceError) as info:
        create_pinned_netns(missing)
    assert info.value.errno == errno.ENOENT
    assert isinstance(info.value.__cause__, OSError)
    assert not _mounted_at(missing)

    stale = tmp_path / "stale"  # e.g. left by a crash between create and mount
    stale.write_text("")
    assert not is_pinned_netns(stale)
    create_pinned_netns(stale)
    try:
        assert is_pinned_netns(stale)
    finally:
        delete_pinned_netns(stale)
    assert not stale.exists() and not _mounted_at(stale)

    other = tmp_path / "other-mount"  # some other file mounted there: not ours to stack on
    other.write_text("")
    subprocess.run(["mount", "--bind", "/dev/null", str(other)], check=True)
    try:
        with pytest.raises(NamespaceError) as info:
            create_pinned_netns(other)
        assert info.value.errno == errno.EEXIST
    finally:
        subprocess.run(["umount", str(other)], check=True)
    assert not _mounted_at(other)


def test_threads_inherit_the_netns_of_their_creator(nl_run: NlRun, nl_sandbox: Path) -> None:
    sandbox = os.stat(nl_sandbox).st_ino

    async def body() -> None:
        assert _netns_inode() == sandbox
        seen: list[int] = []
        thread = threading.Thread(target=lambda: seen.append(_netns_inode()))
        thread.start()
        thread.join()
        with ThreadPoolExecutor(2) as pool:
            seen.append(pool.submit(_netns_inode).result())
        seen.append(await asyncio.to_thread(_netns_inode))
        workers = NetlinkWorkers(size=2)
        workers.start()
        try:
            seen.append(await workers.run(lambda ipr: _netns_inode()))
        finally:
            await workers.close()
        assert seen == [sandbox] * 4

    nl_run(body)
    assert _netns_inode() != sandbox


def test_ensure_bridge_is_idempotent_and_repairs(nl_run: NlRun) -> None:
    async def body() -> None:
        manager = await _started_manager()
        try:
            spec = {"name": BRIDGE, "mac": BRIDGE_MAC, "gateway": GATEWAY, "mtu": MTU}
            index = await manager.ensure_bridge(**spec)  # type: ignore[arg-type]
            again = await asyncio.gather(
                *(manager.ensure_bridge(**spec) for _ in range(5))  # type: ignore[arg-type]
            )
            assert set(again) == {index}
            info = await manager.get_link(BRIDGE)
            assert info is not None
            assert (info.kind, info.mac, info.mtu, info.up) == ("bridge", BRIDGE_MAC, MTU, True)

            ipr = await open_route_socket(None)
            try:
                await ipr.addr("del", index=index, address="10.77.0.1", prefixlen=24)
                await ipr.link("set", index=index, state="down", mtu=1300)
                assert str(GATEWAY) not in await _addresses(ipr, index)
                assert await manager.ensure_bridge(**spec) == index  # type: ignore[arg-type]
                assert str(GATEWAY) in await _addresses(ipr, index)
            finally:
                ipr.close()
            info = await manager.get_link(BRIDGE)
            assert info is not None and info.up and info.mtu == MTU

            await manager.delete_bridge(BRIDGE)
            await manager.delete_bridge(BRIDGE)  # already gone is success
            assert not await manager.link_exists(BRIDGE)
        finally:
            await manager.close()

    nl_run(body)


async def _addresses(ipr: object, index: int) -> list[str]:
    dump = await ipr.addr("dump", index=index)  # type: ignore[attr-defined]
    return [f"{a.get('address')}/{a.get('prefixlen')}" async for a in dump]


def test_ensure_bridge_refuses_a_name_clash(nl_run: NlRun) -> None:
    async def body() -> None:
        manager = await _started_manager()
        ipr = await open_route_socket(None)
        try:
            await ipr.link("add", ifname="shpclash0", kind="veth", peer="shpclash1")
            with pytest.raises(LinkError) as info:
                await manager.ensure_bridge(
                    name="shpclash0", mac=BRIDGE_MAC, gateway=GATEWAY, mtu=MTU
                )
            assert info.value.errno == errno.EEXIST
            assert "veth" in str(info.value)
        finally:
            ipr.close()
            await manager.close()

    nl_run(body)


def test_create_veth_puts_peer_in_container(
    nl_run: NlRun, nl_netns_dir: Path, nl_sandbox: Path
) -> None:
    container = nl_netns_dir / "c1"
    create_pinned_netns(container)

    async def body() -> None:
        manager = await _started_manager()
        try:
            bridge = await manager.ensure_bridge(
                name=BRIDGE, mac=BRIDGE_MAC, gateway=GATEWAY, mtu=MTU
            )
            fds = _fd_count()
            index = await manager.create_veth(
                host_ifname="shp0123456789ab",
                bridge_index=bridge,
                mtu=MTU,
                netns=container,
                peer_ifname="eth0",
                peer_mac="02:42:0a:4d:00:02",
            )
            assert _fd_count() == fds  # the netns fd was closed
            host = await manager.get_link("shp0123456789ab")
            assert host is not None
            assert (host.index, host.kind, host.master, host.up, host.mtu) == (
                index,
                "veth",
                bridge,
                True,
                MTU,
            )
            assert not await manager.link_exists("eth0")  # not in the sandbox
            assert [link.name for link in await manager.list_links("shp0")] == ["shp0123456789ab"]

            ipr = await open_route_socket(container)
            try:
                peer = await read_interface(ipr, "eth0")
            finally:
                ipr.close()
            assert (peer.mac, peer.mtu, peer.up) == ("02:42:0a:4d:00:02", MTU, False)
        finally:
            await manager.close()

    nl_run(body)


def test_duplicate_veth_is_eexist(nl_run: NlRun, nl_netns_dir: Path) -> None:
    container = nl_netns_dir / "c1"
    create_pinned_netns(container)

    async def body() -> None:
        manager = await _started_manager()
        try:
            bridge = await manager.ensure_bridge(
                name=BRIDGE, mac=BRIDGE_MAC, gateway=GATEWAY, mtu=MTU
            )
            spec = {
                "host_ifname": "shpdup",
                "bridge_index": bridge,
                "mtu": MTU,
                "netns": container,
                "peer_ifname": "eth0",
                "peer_mac": "02:42:0a:4d:00:02",
            }
            await manager.create_veth(**spec)  # type: ignore[arg-type]
            with pytest.raises(LinkError) as info:
                await manager.create_veth(**spec)  # type: ignore[arg-type]
            assert info.value.errno == errno.EEXIST
            assert isinstance(info.value, KernelError)
            assert info.value.__cause__ is not None
            message = str(info.value)
            assert "create veth shpdup" in message and str(container) in message
            assert "File exists" in message
            # the peer name is taken in the container netns: EEXIST too
            spec["host_ifname"] = "shpdup2"
            with pytest.raises(LinkError) as info:
                await manager.create_veth(**spec)  # type: ignore[arg-type]
            assert info.value.errno == errno.EEXIST
            assert not await manager.link_exists("shpdup2")
        finally:
            await manager.close()

    nl_run(body)


def test_attach_two_containers_and_ping(
    nl_run: NlRun, nl_netns_dir: Path, nl_sandbox: Path
) -> None:
    c1, c2 = nl_netns_dir / "c1", nl_netns_dir / "c2"
    create_pinned_netns(c1)
    create_pinned_netns(c2)

    async def body() -> None:
        manager = await _started_manager()
        try:
            bridge = await manager.ensure_bridge(
                name=BRIDGE, mac=BRIDGE_MAC, gateway=GATEWAY, mtu=MTU
            )
            for netns, name, addr, mac in (
                (c1, "shpc1", "10.77.0.2/24", "02:42:0a:4d:00:02"),
                (c2, "shpc2", "10.77.0.3/24", "02:42:0a:4d:00:03"),
            ):
                await _attach(
                    manager,
                    bridge_index=bridge,
                    netns=netns,
                    host_ifname=name,
                    address=addr,
                    mac=mac,
                )
            ipr = await open_route_socket(c1)
            try:
                # idempotent on a second run
                await configure_interface(ipr, ifname="eth0", address=IPv4Interface("10.77.0.2/24"))
                await add_default_route(ipr, gateway=IPv4Address("10.77.0.1"))
                await asyncio.sleep(0.3)  # addrconf would have acted by now
                state = await read_interface(ipr, "eth0")
            finally:
                ipr.close()
            assert state.up and state.operstate == "UP"
            # exactly one address: no IPv6 link-local (addr_gen_mode none)
            assert state.addresses == (IPv4Interface("10.77.0.2/24"),)

            for netns, target in ((c1, "10.77.0.3"), (c2, "10.77.0.2"), (c1, "10.77.0.1")):
                code, out = await _ping(netns, target)
                assert code == 0, out
            code, out = await _run("nsenter", f"--net={c1}", "ip", "-4", "route")
            assert "default via 10.77.0.1 dev eth0" in out
        finally:
            await manager.close()

    nl_run(body)


def test_bridge_port_flags(nl_run: NlRun, nl_netns_dir: Path, nl_sandbox: Path) -> None:
    container = nl_netns_dir / "c1"
    create_pinned_netns(container)

    async def body() -> None:
        manager = await _started_manager()
        try:
            bridge = await manager.ensure_bridge(
                name=BRIDGE, mac=BRIDGE_MAC, gateway=GATEWAY, mtu=MTU
            )
            index = await manager.create_veth(
                host_ifname="shpport",
                bridge_index=bridge,
                mtu=MTU,
                netns=container,
                peer_ifname="eth0",
                peer_mac="02:42:0a:4d:00:02",
            )
            await manager.set_bridge_port_flags(index, proxyarp=True, isolated=True)
            flags = await _port_flags(nl_sandbox, "shpport")
            assert (flags["proxy_arp"], flags["hairpin"], flags["isolated"]) == (
                True,
                False,
                True,
            )
            await manager.set_bridge_port_flags("shpport", hairpin=True)
            flags = await _port_flags(nl_sandbox, "shpport")
            assert (flags["proxy_arp"], flags["hairpin"], flags["isolated"]) == (
                False,
                True,
                False,
            )
            with pytest.raises(LinkError):
                await manager.set_bridge_port_flags("shpnosuch", proxyarp=True)
        finally:
            await manager.close()

    nl_run(body)


async def _port_flags(sandbox: Path, ifname: str) -> dict[str, object]:
    code, out = await _run("nsenter", f"--net={sandbox}", "ip", "-j", "-d", "link", "show", ifname)
    assert code == 0, out
    data: dict[str, object] = json.loads(out)[0]["linkinfo"]["info_slave_data"]
    return data


def test_delete_link_removes_both_ends(nl_run: NlRun, nl_netns_dir: Path) -> None:
    container = nl_netns_dir / "c1"
    create_pinned_netns(container)

    async def body() -> None:
        manager = await _started_manager()
        try:
            bridge = await manager.ensure_bridge(
                name=BRIDGE, mac=BRIDGE_MAC, gateway=GATEWAY, mtu=MTU
            )
            await _attach(
                manager,
                bridge_index=bridge,
                netns=container,
                host_ifname="shpdel",
                address="10.77.0.2/24",
                mac="02:42:0a:4d:00:02",
            )
            assert await manager.delete_link("shpdel") is True
            assert not await manager.link_exists("shpdel")
            ipr = await open_route_socket(container)
            try:
                with pytest.raises(LinkError) as info:
                    await read_interface(ipr, "eth0")
                assert info.value.errno == errno.ENODEV
            finally:
                ipr.close()
            assert await manager.delete_link("shpdel") is False
        finally:
            await manager.close()

    nl_run(body)


def test_parallel_deletions_keep_the_loop_ticking(nl_run: NlRun, nl_netns_dir: Path) -> None:
    container = nl_netns_dir / "c1"
    create_pinned_netns(container)
    count = 20

    async def body() -> None:
        manager = await _started_manager()
        try:
            bridge = await manager.ensure_bridge(
                name=BRIDGE, mac=BRIDGE_MAC, gateway=GATEWAY, mtu=MTU
            )
            for n in range(count):
                await manager.create_veth(
                    host_ifname=f"shppar{n}",
                    bridge_index=bridge,
                    mtu=MTU,
                    netns=container,
                    peer_ifname=f"eth{n}",
                    peer_mac=f"02:42:0a:4d:01:{n:02x}",
                )
            async with Heartbeat() as beat:
                started = time.perf_counter()
                results = await asyncio.gather(
                    *(manager.delete_link(f"shppar{n}") for n in range(count))
                )
                finished = time.perf_counter()
            assert results == [True] * count
            assert await manager.list_links("shppar") == []
            during = [t for t in beat.ticks if started <= t <= finished]
            gaps = beat.gaps
            # ~20 ms of kernel time per deletion: on the loop's socket 20 of them
            # would stall the loop for ~400 ms; off the loop it keeps ticking.
            assert finished - started > 0.02
            assert len(during) >= (finished - started) / 0.005
            assert max(gaps) < 0.015, f"max heartbeat gap {max(gaps) * 1e3:.1f} ms"
        finally:
            await manager.close()

    nl_run(body)


def test_errors_are_wrapped(nl_run: NlRun, nl_netns_dir: Path) -> None:
    container = nl_netns_dir / "c1"
    create_pinned_netns(container)

    async def body() -> None:
        manager = await _started_manager()
        ipr = await open_route_socket(container)
        try:
            assert await manager.get_link("shpnosuch") is None
            with pytest.raises(LinkError) as info:
                await configure_interface(ipr, ifname="eth9", address=IPv4Interface("10.77.0.2/24"))
            assert info.value.errno == errno.ENODEV
            assert "eth9" in str(info.value) and info.value.__cause__ is not None
            with pytest.raises(LinkError) as info:
                await manager.create_veth(
                    host_ifname="shpnobr",
                    bridge_index=99999,
                    mtu=MTU,
                    netns=container,
                    peer_ifname="eth0",
                    peer_mac="02:42:0a:4d:00:02",
                )
            assert info.value.errno is not None
            assert not await manager.link_exists("shpnobr")
            with pytest.raises(LinkError) as info:
                await manager.create_veth(
                    host_ifname="shpnons",
                    bridge_index=1,
                    mtu=MTU,
                    netns=nl_netns_dir / "missing",
                    peer_ifname="eth0",
                    peer_mac="02:42:0a:4d:00:02",
                )
            assert info.value.errno == errno.ENOENT
            with pytest.raises(NamespaceError):
                await open_route_socket(nl_netns_dir / "missing")
        finally:
            ipr.close()
            await manager.close()

    nl_run(body)


def test_sockets_and_sysctl(nl_run: NlRun, nl_netns_dir: Path) -> None:
    container = nl_netns_dir / "c1"
    create_pinned_netns(container)
    root_forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text()

    async def body() -> None:
        fds = _fd_count()
        for _ in range(30):
            ipr = await open_route_socket(container)
            await bring_up_loopback(ipr)
            ipr.close()
        manager = await _started_manager()
        # every worker opens its socket: all of them must be closed again
        assert (
            await asyncio.gather(*(manager.delete_link("shpnone") for _ in range(16)))
            == [False] * 16
        )
        await manager.close()
        assert _fd_count() == fds

        manager = await _started_manager()
        try:
            await manager.set_sysctl("net.ipv4.ip_forward", "1")
            assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"
            with pytest.raises(KernelError):
                await manager.set_sysctl("net.ipv4.no_such_knob", "1")
        finally:
            await manager.close()

    nl_run(body)
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == root_forwarding
