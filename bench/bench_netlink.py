"""Micro-benchmark of the netlink backend (root; touches only namespaces it creates).

Inside a throwaway sandbox netns standing in for the host, over N container netns:

- pyroute2: the former attach path (AsyncIPRoute on the loop: veth, a socket opened
  in the container netns by a fresh thread, address, up, lo, default route; its code
  lives on in bench/pyroute2_baseline.py);
- raw: the attach path ops runs now (`LinkManager` raw sockets on worker threads, two
  round trips: veth + bridge entries; socket in the container netns + address, up,
  lo, gateway neighbour, route), and as it ran before in three (bridge entries apart);
- raw, inline: the same raw messages sent from one thread with no event loop, i.e.
  the kernel's cost plus message building, without thread round trips.

Each at concurrency 1 and 8 (p50/p90/p99 per attach, rate, max event-loop gap), then
veth deletion throughput one at a time vs 8 in flight. Everything is removed at the end.

    PYTHONPATH=. python bench/bench_netlink.py [--containers 200] [--floor]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Interface
from pathlib import Path

import uvloop

from bench.pyroute2_baseline import RouteSocket, configure_container, open_route_socket
from sheep_runtime.model import PortEntries
from sheep_runtime.netlink import (
    LinkManager,
    create_pinned_netns,
    delete_pinned_netns,
    run_in_netns,
)
from sheep_runtime.netlink.container_netns import configure
from sheep_runtime.netlink.host_side import create_veth
from sheep_runtime.netlink.raw import RawRoute
from sheep_runtime.netlink.workers import NetlinkWorkers

GATEWAY = IPv4Interface("10.88.0.1/16")
BRIDGE_MAC = "02:42:0a:58:00:01"
MTU = 1500
Attach = Callable[[int, Path], Awaitable[None]]


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def row(name: str, samples: list[float], extra: str = "") -> str:
    ms = [s * 1e3 for s in samples]
    return (f"{name:<34} {len(ms):>4} {pct(ms, 50):>7.2f} {pct(ms, 90):>7.2f}"
            f" {pct(ms, 99):>7.2f} {max(ms):>7.2f} {extra}")


def names(n: int) -> tuple[str, str, IPv4Interface]:
    address = IPv4Interface(f"{GATEWAY.network[n + 2]}/{GATEWAY.network.prefixlen}")
    return f"shpb{n:011x}", "02:5e:" + ":".join(f"{b:02x}" for b in address.ip.packed), address


class Heartbeat:
    """Ticks every ms on the loop; `gap` is the longest stall seen."""

    def __init__(self) -> None:
        self.ticks: list[float] = []
        self._done = asyncio.Event()
        self._task = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        while not self._done.is_set():
            self.ticks.append(time.perf_counter())
            await asyncio.sleep(0.001)

    async def gap(self) -> float:
        self._done.set()
        await self._task
        return max((b - a for a, b in itertools.pairwise(self.ticks)), default=0.0)


async def timed(attach: Attach, netns: list[Path], in_flight: int
                ) -> tuple[list[float], float, float]:
    """Per-attach latencies, the rate per second and the longest loop stall."""
    gate = asyncio.Semaphore(in_flight)
    samples: list[float] = []

    async def one(n: int, path: Path) -> None:
        async with gate:
            t0 = time.perf_counter()
            await attach(n, path)
            samples.append(time.perf_counter() - t0)

    beat = Heartbeat()
    start = time.perf_counter()
    await asyncio.gather(*(one(n, path) for n, path in enumerate(netns)))
    wall = time.perf_counter() - start
    return samples, len(samples) / wall, await beat.gap()


def pyroute2_path(ipr: RouteSocket, bridge: int) -> Attach:
    async def attach(n: int, netns: Path) -> None:
        host, mac, address = names(n)
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            await ipr.link("add", ifname=host, kind="veth", mtu=MTU, master=bridge,
                           state="up", peer={"ifname": "eth0", "address": mac, "mtu": MTU,
                                             "net_ns_fd": fd})
        finally:
            os.close(fd)
        (await ipr.link("get", ifname=host))[0].get("index")
        inside = await open_route_socket(netns)
        try:
            await configure_container(inside, ifname="eth0", address=address, mtu=MTU,
                                      gateway=GATEWAY.ip)
        finally:
            inside.close()
    return attach


PHASES = ("veth + bridge entries", "address, up, lo, gateway neighbour, route")


def raw_path(manager: LinkManager, bridge: int,
             phases: dict[str, list[float]] | None = None) -> Attach:
    async def attach(n: int, netns: Path) -> None:
        host, mac, address = names(n)
        marks = [time.perf_counter()]
        await manager.create_veth(host_ifname=host, bridge_index=bridge, mtu=MTU,
                                  netns=netns, peer_ifname="eth0", peer_mac=mac,
                                  entries=PortEntries(mac, address.ip))
        marks.append(time.perf_counter())
        await configure_inside(manager, netns, address)
        marks.append(time.perf_counter())
        if phases is not None:
            for phase, (a, b) in zip(PHASES, itertools.pairwise(marks), strict=True):
                phases.setdefault(phase, []).append(b - a)
    return attach


def three_trips_path(manager: LinkManager, bridge: int) -> Attach:
    """`raw_path` as ops ran it before the port entries joined the veth's round trip."""
    async def attach(n: int, netns: Path) -> None:
        host, mac, address = names(n)
        port = await manager.create_veth(host_ifname=host, bridge_index=bridge, mtu=MTU,
                                         netns=netns, peer_ifname="eth0", peer_mac=mac)
        await manager.add_bridge_entries(port_index=port, bridge_index=bridge,
                                         entries=PortEntries(mac, address.ip))
        await configure_inside(manager, netns, address)
    return attach


async def configure_inside(manager: LinkManager, netns: Path, address: IPv4Interface) -> None:
    inside = await manager.open_container_netns(netns)
    try:
        await inside.configure_interface(ifname="eth0", address=address, mtu=MTU,
                                         loopback=True, neighbours=((GATEWAY.ip, BRIDGE_MAC),),
                                         default_routes=(GATEWAY.ip,))
    finally:
        inside.close()


def inline_path(workers: NetlinkWorkers, bridge: int) -> Attach:
    """Every step of `raw_path` in one worker job: no thread round trips."""
    def steps(sock: RawRoute, n: int, netns: Path) -> None:
        host, mac, address = names(n)
        create_veth(sock, host_ifname=host, bridge_index=bridge, mtu=MTU, netns=netns,
                    peer_ifname="eth0", peer_mac=mac, entries=PortEntries(mac, address.ip))
        inside = workers.socket_in(netns)
        try:
            configure(inside, ifname="eth0", address=address, mtu=MTU, loopback=True,
                      neighbours=((GATEWAY.ip, BRIDGE_MAC),), default_routes=(GATEWAY.ip,))
        finally:
            inside.close()

    async def attach(n: int, netns: Path) -> None:
        await workers.run(lambda sock: steps(sock, n, netns))
    return attach


async def delete_all(manager: LinkManager) -> None:
    links = await manager.list_links("shpb0")
    await asyncio.gather(*(manager.delete_link(link.name) for link in links))


async def bench(containers: list[Path], *, floor_only: bool = False) -> None:
    manager = LinkManager()
    await manager.start()
    ipr = await open_route_socket(None)
    inline = NetlinkWorkers(size=8, name="bench-inline")
    inline.start()
    try:
        bridge = await manager.ensure_bridge(name="shpbrbench", mac=BRIDGE_MAC,
                                             gateway=GATEWAY, mtu=MTU)
        if floor_only:  # the line bench_attach.py reads
            samples, _, _ = await timed(inline_path(inline, bridge), containers, 1)
            await delete_all(manager)
            await manager.delete_link("shpbrbench")
            print(f"floor p50 {pct(samples, 50) * 1e3:.3f} ms")
            return
        print(f"{'attach path':<34} {'n':>4} {'p50 ms':>7} {'p90':>7} {'p99':>7}"
              f" {'max':>7} rate, max loop gap")
        phases: dict[str, list[float]] = {}
        at_c1: dict[str, list[float]] = {}
        paths = (("pyroute2 (before)", pyroute2_path(ipr, bridge)),
                 ("raw, 3 round trips (before)", three_trips_path(manager, bridge)),
                 ("raw, worker threads (ops now)", raw_path(manager, bridge, phases)),
                 ("raw, inline in one thread", inline_path(inline, bridge)))
        for label, attach in paths:
            for in_flight in (1, 8):
                samples, rate, gap = await timed(attach, containers, in_flight)
                print(row(f"{label}, c={in_flight}", samples,
                          f"{rate:6.0f}/s, {gap * 1e3:4.1f} ms"), flush=True)
                await delete_all(manager)
                if in_flight == 1 and phases and not at_c1:
                    at_c1 = {phase: list(samples) for phase, samples in phases.items()}
        print("\nraw path (worker threads) by step, c=1:")
        for phase in PHASES:
            print(row(f"  {phase}", at_c1[phase]))

        await raw_path(manager, bridge)(0, containers[0])
        code = os.system(f"nsenter --net={containers[0]} ping -q -c1 -W1 {GATEWAY.ip} >/dev/null")
        print(f"\nraw path: container reaches its gateway: {code == 0}")
        await delete_all(manager)

        for n, netns in enumerate(containers):
            await raw_path(manager, bridge)(n, netns)
        names_ = [link.name for link in await manager.list_links("shpb0")]
        half = len(names_) // 2
        for label, batch, in_flight in (("sequential", names_[:half], 1),
                                        ("8 in flight", names_[half:], 8)):
            gate = asyncio.Semaphore(in_flight)

            async def one(name: str, gate: asyncio.Semaphore = gate) -> None:
                async with gate:
                    assert await manager.delete_link(name)

            beat = Heartbeat()
            start = time.perf_counter()
            await asyncio.gather(*(one(name) for name in batch))
            elapsed = time.perf_counter() - start
            gap = await beat.gap()
            print(f"delete {label:<12} {len(batch):>4} veths in {elapsed * 1e3:7.1f} ms"
                  f" = {len(batch) / elapsed:6.1f}/s; max event-loop gap {gap * 1e3:.1f} ms")
        await manager.delete_link("shpbrbench")
    finally:
        await inline.close()
        ipr.close()
        await manager.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--floor", action="store_true",
                        help="only the inline path at concurrency 1: the kernel floor")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="sheep-bench-") as tmp:
        sandbox = Path(tmp) / "sandbox"
        containers = [Path(tmp) / f"c{n}" for n in range(args.containers)]
        created: list[Path] = []
        try:
            create_pinned_netns(sandbox)
            created.append(sandbox)
            for path in containers:
                create_pinned_netns(path)
                created.append(path)
            run_in_netns(sandbox, lambda: uvloop.run(bench(containers, floor_only=args.floor)))
        finally:
            for path in reversed(created):
                delete_pinned_netns(path)
    print(f"load average: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
