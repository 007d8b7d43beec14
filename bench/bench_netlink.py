"""Micro-benchmark of the netlink backend (root; touches only namespaces it creates).

Inside a throwaway sandbox netns standing in for the host: create N container netns,
time the full attach path per container (socket opened in the container netns,
create_veth, configure_interface, loopback, default route), then veth deletion
throughput one at a time vs 8 in flight. Everything is removed at the end.

    PYTHONPATH=. python bench/bench_netlink.py [--containers 200]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
import time
from ipaddress import IPv4Interface
from pathlib import Path

from sheep_runtime.netlink import (
    LinkManager,
    add_default_route,
    bring_up_loopback,
    configure_interface,
    create_pinned_netns,
    delete_pinned_netns,
    open_route_socket,
    run_in_netns,
)

GATEWAY = IPv4Interface("10.88.0.1/16")
MTU = 1500


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def row(name: str, samples: list[float]) -> str:
    ms = [s * 1e3 for s in samples]
    return (
        f"{name:<28} {len(ms):>5} {pct(ms, 50):>8.2f} {pct(ms, 90):>8.2f}"
        f" {pct(ms, 99):>8.2f} {max(ms):>8.2f}"
    )


async def attach(manager: LinkManager, bridge: int, netns: Path, n: int) -> list[float]:
    """The attach path of one container; returns [total, veth, inside] seconds."""
    start = time.perf_counter()
    await manager.create_veth(
        host_ifname=f"shpb{n:011x}",
        bridge_index=bridge,
        mtu=MTU,
        netns=netns,
        peer_ifname="eth0",
        peer_mac=f"02:42:0a:58:{n >> 8:02x}:{n & 0xFF:02x}",
    )
    veth = time.perf_counter()
    ipr = await open_route_socket(netns)
    try:
        address = IPv4Interface(f"{GATEWAY.network[n + 2]}/{GATEWAY.network.prefixlen}")
        await configure_interface(ipr, ifname="eth0", address=address)
        await bring_up_loopback(ipr)
        await add_default_route(ipr, gateway=GATEWAY.ip, ifname="eth0")
    finally:
        ipr.close()
    end = time.perf_counter()
    return [end - start, veth - start, end - veth]


async def timed_deletions(
    manager: LinkManager, names: list[str], in_flight: int
) -> tuple[float, float]:
    """Delete `names` with at most `in_flight` at once; (seconds, max loop gap)."""
    gate = asyncio.Semaphore(in_flight)
    ticks: list[float] = []
    done = asyncio.Event()

    async def heartbeat() -> None:
        while not done.is_set():
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.001)

    async def one(name: str) -> None:
        async with gate:
            assert await manager.delete_link(name)

    beat = asyncio.create_task(heartbeat())
    start = time.perf_counter()
    await asyncio.gather(*(one(name) for name in names))
    elapsed = time.perf_counter() - start
    done.set()
    await beat
    gaps = [b - a for a, b in itertools.pairwise(ticks)] or [0.0]
    return elapsed, max(gaps)


async def bench(containers: list[Path]) -> None:
    manager = LinkManager()
    await manager.start()
    try:
        bridge = await manager.ensure_bridge(
            name="shpbrbench", mac="02:42:0a:58:00:01", gateway=GATEWAY, mtu=MTU
        )
        totals: list[float] = []
        veths: list[float] = []
        insides: list[float] = []
        for n, netns in enumerate(containers):
            total, veth, inside = await attach(manager, bridge, netns, n)
            totals.append(total)
            veths.append(veth)
            insides.append(inside)
        header = f"{'phase':<28} {'n':>5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max':>8}"
        print(header)
        print("-" * len(header))
        print(row("attach (full path)", totals))
        print(row("  create_veth", veths))
        print(row("  socket+addr+up+lo+route", insides))

        names = [link.name for link in await manager.list_links("shpb0")]
        half = len(names) // 2
        print()
        for label, batch, in_flight in (
            ("sequential", names[:half], 1),
            ("8 in flight", names[half:], 8),
        ):
            elapsed, gap = await timed_deletions(manager, batch, in_flight)
            print(
                f"delete {label:<12} {len(batch):>4} veths in {elapsed * 1e3:7.1f} ms"
                f" = {len(batch) / elapsed:6.1f}/s, {elapsed / len(batch) * 1e3:5.1f} ms"
                f" each; max event-loop gap {gap * 1e3:.1f} ms"
            )
        await manager.delete_bridge("shpbrbench")
    finally:
        await manager.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--containers", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sheep-bench-") as tmp:
        sandbox = Path(tmp) / "sandbox"
        containers = [Path(tmp) / f"c{n}" for n in range(args.containers)]
        created: list[Path] = []
        try:
            create_pinned_netns(sandbox)
            created.append(sandbox)
            start = time.perf_counter()
            for path in containers:
                create_pinned_netns(path)
                created.append(path)
            per_ns = (time.perf_counter() - start) / len(containers)
            print(f"create pinned netns: {per_ns * 1e3:.2f} ms each ({len(containers)})\n")
            run_in_netns(sandbox, lambda: asyncio.run(bench(containers)))
        finally:
            for path in reversed(created):
                delete_pinned_netns(path)


if __name__ == "__main__":
    main()
