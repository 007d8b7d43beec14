"""Cost of publishing and withdrawing one port as the number of published ports grows
(issue #16): FirewallSync over the real nftables backend and a real SQLite store,
incremental (map elements only) against the full rebuild it replaced (the whole table
re-applied for every change: `incremental=False`), both measured in the same run.

One cycle is what an attach and a detach do to the firewall: publish (pending), the
store commit, withdraw, the record removed; cycles at 1 and at 1,000 ports alternate.
Everything runs inside a throwaway netns (nftables tables of its own, no interfaces,
no packet sent).
Usage: python bench/bench_firewall.py [--ports 1000] [--rounds 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sheep_runtime.firewall import Firewall
from sheep_runtime.metrics import Metrics
from sheep_runtime.model import Attachment, Container, ContainerState, Network, PortMapping
from sheep_runtime.netlink import create_pinned_netns, delete_pinned_netns, run_in_netns
from sheep_runtime.ops.events import EventBus
from sheep_runtime.ops.firewall import FirewallSync, rules_of
from sheep_runtime.ops.tasks import TaskSupervisor
from sheep_runtime.store import Store as SqliteStore

TARGET = 1.5  # issue #16: a change at 1,000 published ports <= 1.5x one at 1
NET = Network(id="n" * 64, name="bench", bridge="shpbench", bridge_mac="02:00:00:00:00:01",
              subnet=IPv4Network("10.64.0.0/16"), gateway=IPv4Address("10.64.0.1"),
              mtu=1500, internal=False, icc=True, created_at=0.0,
              subnet6=IPv6Network("fd00:64::/64"), gateway6=IPv6Network("fd00:64::/64")[1])


def container(i: int) -> Container:
    return Container(id=f"{i:064x}", name=f"c{i}", command=("sleep",), env={}, hostname="",
                     network_mode="", state=ContainerState.RUNNING, created_at=0.0, netns_path="")


def attachment(i: int) -> Attachment:
    """Container i publishes host port 10000+i (every other one shifted to port 80),
    over both families."""
    port = 10000 + i
    return Attachment(
        container_id=container(i).id, network_id=NET.id, interface_name="eth0",
        address=IPv4Interface(f"{NET.subnet[2 + i]}/16"), gateway=NET.gateway,
        mac="02:00:00:00:00:02", host_interface=f"shpb{i}",
        ports=(PortMapping(protocol="tcp", host_ip="", host_port=port,
                           container_port=80 if i % 2 else port),),
        address6=IPv6Interface(f"{NET.subnet6[2 + i]}/64"),  # type: ignore[index]
        gateway6=NET.gateway6)


async def cycle(sync: FirewallSync, store: SqliteStore, a: Attachment
                ) -> tuple[float, float]:
    """Seconds to publish and to withdraw attachment `a`'s ports."""
    t0 = time.perf_counter()
    await sync.publish(a.host_interface, rules_of(a, NET))
    publish = time.perf_counter() - t0
    store.add_attachment(a, dynamic=False)
    sync.committed(a.host_interface)
    t0 = time.perf_counter()
    await sync.withdraw([a.host_interface])
    withdraw = time.perf_counter() - t0
    store.remove_attachment(a.container_id, a.network_id)
    sync.forget([a.host_interface])
    return publish, withdraw


async def run(state_dir: Path, total: int, rounds: int) -> None:
    """Two worlds side by side, each a store and a table of its own: one with a single
    published port, one with `total`. Cycles alternate between them, so both see the
    same machine load."""
    probe = attachment(total)
    metrics = Metrics()
    tasks = TaskSupervisor(metrics)
    worlds: dict[int, tuple[SqliteStore, Firewall]] = {}
    try:
        for size in (1, total):
            store = SqliteStore(state_dir / f"state{size}.db")
            store.add_network(NET)
            for i in range(total + 1):
                store.add_container(container(i))
            for i in range(size):
                store.add_attachment(attachment(i), dynamic=False)
            fw = Firewall(table=f"sheep{size}")
            await fw.start()
            worlds[size] = (store, fw)
        medians: dict[tuple[bool, int], tuple[float, float]] = {}
        for incremental in (True, False):
            syncs = {size: FirewallSync(firewall=fw, store=store, tasks=tasks,
                                        metrics=metrics, events=EventBus(),
                                        incremental=incremental)
                     for size, (store, fw) in worlds.items()}
            for sync in syncs.values():
                await sync.sync()  # start-up: the whole table
            n = rounds if incremental else max(10, rounds // 10)
            samples: dict[int, list[tuple[float, float]]] = {size: [] for size in syncs}
            for _ in range(n):
                for size, sync in syncs.items():
                    samples[size].append(await cycle(sync, worlds[size][0], probe))
            for size, got in samples.items():
                pub, wd = (statistics.median(x[k] for x in got) * 1e3 for k in (0, 1))
                medians[(incremental, size)] = pub, wd
                print(f"{'incremental' if incremental else 'full rebuild':<12} at {size:>5} "
                      f"published ports: publish p50 {pub:7.2f} ms, withdraw p50 "
                      f"{wd:7.2f} ms ({n} cycles)", flush=True)
    finally:
        for store, fw in worlds.values():
            await fw.close()
            store.close()
    (p1, w1), (pn, wn) = medians[(True, 1)], medians[(True, total)]
    (r1, _), (rn, _) = medians[(False, 1)], medians[(False, total)]
    print(f"\nfull rebuild: publish at {total} ports is {rn / r1:.1f}x publish at 1; "
          f"incremental is {rn / pn:.0f}x faster than it at {total}")
    for what, one, many in (("publish", p1, pn), ("withdraw", w1, wn)):
        ratio = many / one
        print(f"target {what} at {total} ports <= {TARGET}x {what} at 1: measured "
              f"{ratio:.2f}x {'ok' if ratio <= TARGET else 'MISSED'}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ports", type=int, default=1000, help="published ports of the big case")
    p.add_argument("--rounds", type=int, default=200, help="incremental cycles per case")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        netns = Path(tmp) / "netns"
        create_pinned_netns(netns)
        try:
            run_in_netns(netns, lambda: asyncio.run(run(Path(tmp), a.ports, a.rounds)))
        finally:
            delete_pinned_netns(netns)


if __name__ == "__main__":
    main()
