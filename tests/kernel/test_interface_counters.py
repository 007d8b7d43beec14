"""IFLA_STATS64 counters of an interface inside a container netns, read through our own
codec (`ContainerNetns.interface_counters`), against what iproute2 reports and what
was sent. The host side is a sandbox netns (a bridge with the gateway), the container
a throwaway netns; the pings go from one to the other only."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

import pytest

from sheep_runtime.netlink import LinkManager, create_pinned_netns
from tests.kernel.conftest import NlRun

pytestmark = pytest.mark.kernel

GATEWAY = IPv4Interface("10.78.0.1/24")
ADDRESS = IPv4Interface("10.78.0.2/24")
PINGS = 5


async def _in(netns: Path, *argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net={netns}", *argv, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, f"{' '.join(argv)}: {err.decode()}"
    return out.decode()


async def _ip_stats(netns: Path, ifname: str) -> dict[str, int]:
    (link,) = json.loads(await _in(netns, "ip", "-j", "-s", "link", "show", ifname))
    s: dict[str, Any] = link["stats64"]
    return {f"{side}_{key}": s[side][key] for side in ("rx", "tx")
            for key in ("bytes", "packets", "errors", "dropped")}


def test_counters_match_iproute2_and_count_the_pings(nl_run: NlRun, nl_netns_dir: Path
                                                     ) -> None:
    container = nl_netns_dir / "c1"
    create_pinned_netns(container)

    async def body() -> None:
        manager = LinkManager()
        await manager.start()
        try:
            bridge = await manager.ensure_bridge(name="shpbrcnt0", mac="02:5e:00:00:01:01",
                                                 gateway=GATEWAY, mtu=1500)
            await manager.create_veth(host_ifname="shpcnt0123456", bridge_index=bridge,
                                      mtu=1500, netns=container, peer_ifname="eth0",
                                      peer_mac="02:42:0a:4e:00:02")
            inside = await manager.open_container_netns(container)
            try:
                await inside.configure_interface(ifname="eth0", address=ADDRESS,
                                                 loopback=True)
                before = await inside.interface_counters("eth0")
                assert before is not None
                await _in(container, "ping", "-c", str(PINGS), "-i", "0.2", "-W", "2",
                          str(GATEWAY.ip))
                # a stray packet (the host end's IPv6 neighbour discovery) may arrive
                # between two reads: ours must lie between iproute2's before and after
                low = await _ip_stats(container, "eth0")
                after = await inside.interface_counters("eth0")
                assert after is not None
                high = await _ip_stats(container, "eth0")
                assert all(low[k] <= v <= high[k] for k, v in asdict(after).items()), (
                    low, asdict(after), high)
                # echo requests, and an ARP request unless the gateway asked first
                assert after.tx_packets - before.tx_packets >= PINGS
                assert after.rx_packets - before.rx_packets >= PINGS  # the replies
                assert after.tx_bytes - before.tx_bytes >= PINGS * 98  # 84 B IP + 14 B
                assert after.tx_errors == after.rx_errors == 0
                lo = await inside.interface_counters("lo")
                assert lo is not None and lo.tx_packets == lo.rx_packets
                assert await inside.interface_counters("nope0") is None
            finally:
                inside.close()
        finally:
            await manager.close()

    nl_run(body)
