"""Benchmark of the netlink event monitor (root; touches only a sandbox netns it creates).

Inside a throwaway sandbox netns standing in for the host:
1. decode: the raw datagrams of a burst, decoded by the monitor (the codec) and by
   pyroute2's parser (+ `link_info` of bench/pyroute2_baseline.py), in microseconds
   per message;
2. live: the monitor running on the loop while `ip -batch` creates N veth pairs, then
   deletes them: events, wall time, lag (received_at -> handler start) p50/p99/max,
   the largest gap of a 2 ms heartbeat on the same loop;
3. drain: a burst queued while the handler is stuck (small in-process queue, so the
   events wait in the kernel's buffer), then released: read + decode + delivery rate.
Everything is removed at the end.

    PYTHONPATH=. python bench/bench_monitor.py [--pairs 500] [--loop uvloop|asyncio|both]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from bench.pyroute2_baseline import link_info
from sheep_runtime.model import LinkEvent, Resync
from sheep_runtime.netlink import (
    NetlinkMonitor,
    create_pinned_netns,
    delete_pinned_netns,
    run_in_netns,
)
from sheep_runtime.netlink.monitor import decode

Event = object


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else 0


def ip_batch(netns: Path, tmp: Path, name: str, lines: list[str]) -> None:
    path = tmp / name
    path.write_text("".join(f"{line}\n" for line in lines))
    subprocess.run(["nsenter", f"--net={netns}", "ip", "-batch", str(path)], check=True)


def pairs(prefix: str, n: int, verb: str) -> list[str]:
    if verb == "add":
        return [f"link add {prefix}{i}a type veth peer name {prefix}{i}b" for i in range(n)]
    return [f"link del {prefix}{i}a" for i in range(n)]


def bench_decode(netns: Path, tmp: Path, n: int) -> None:
    """Capture the datagrams of a burst on a raw socket, then time both decoders."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    sock.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE
    sock.bind((0, 0x1 | 0x10))
    ip_batch(netns, tmp, "dec-add", pairs("bd", n, "add"))
    ip_batch(netns, tmp, "dec-del", pairs("bd", n, "del"))
    sock.setblocking(False)
    datagrams: list[bytes] = []
    with sock, contextlib.suppress(BlockingIOError):
        while True:
            datagrams.append(sock.recv(1 << 17))
    marshal = MarshalRtnl()
    rows = []
    for name, fn in (
        ("codec (monitor.decode)", lambda d: decode(d, len(d), 0.0)),
        ("pyroute2 parse+link_info", lambda d: [link_info(m) for m in marshal.parse(d)
                                                if m["header"]["type"] in (16, 17)]),
    ):
        start = time.perf_counter()
        for _ in range(3):
            for datagram in datagrams:
                fn(datagram)
        per = (time.perf_counter() - start) / (3 * len(datagrams))
        rows.append((name, per))
    print(f"decode: {len(datagrams)} datagrams of a {n}-pair create+delete burst")
    for name, per in rows:
        print(f"  {name:<26} {per * 1e6:7.1f} us/msg  {1 / per:9.0f} msg/s")


async def live(netns: Path, tmp: Path, n: int) -> None:
    lags: list[float] = []
    gaps: list[float] = []
    seen: dict[str, set[str]] = {"new": set(), "del": set()}
    progress = asyncio.Event()

    async def handler(event: LinkEvent | object) -> None:
        if isinstance(event, LinkEvent):
            lags.append(time.monotonic() - event.received_at)
            seen[event.action].add(event.link.name)
            progress.set()

    async def heartbeat() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.002)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async def until(action: str, names: set[str]) -> None:
        while not names <= seen[action]:
            progress.clear()
            await asyncio.wait_for(progress.wait(), 30)

    monitor = NetlinkMonitor()
    task = asyncio.create_task(monitor.run(handler))
    beat = asyncio.create_task(heartbeat())
    names = {f"bl{i}{end}" for i in range(n) for end in "ab"}
    try:
        await asyncio.sleep(0.05)
        for verb, action in (("add", "new"), ("del", "del")):
            lags.clear()
            gaps.clear()
            start = time.monotonic()
            await asyncio.to_thread(ip_batch, netns, tmp, f"live-{verb}", pairs("bl", n, verb))
            await until(action, names)
            wall = time.monotonic() - start
            print(f"  live {verb:<3}: {len(lags):5d} link events in {wall:6.2f} s"
                  f" ({len(lags) / wall:7.0f}/s, kernel-bound), lag p50"
                  f" {pct(lags, 50) * 1e3:6.3f} ms p99 {pct(lags, 99) * 1e3:6.3f} ms max"
                  f" {max(lags) * 1e3:6.2f} ms; loop max gap {max(gaps) * 1e3:5.1f} ms")
    finally:
        beat.cancel()
        task.cancel()
        await asyncio.gather(beat, task, return_exceptions=True)
    print(f"  resyncs {monitor.stats.resyncs}, events {dict(monitor.stats.events)}")


async def drain(netns: Path, tmp: Path, n: int) -> None:
    gate = asyncio.Event()
    delivered: list[float] = []
    expected = {f"bq{i}{end}" for i in range(n) for end in "ab"}
    seen: set[str] = set()
    done = asyncio.Event()
    resynced: list[Resync] = []

    async def handler(event: object) -> None:
        if isinstance(event, Resync) and event.reason == "overflow":
            resynced.append(event)
            done.set()
        if isinstance(event, LinkEvent):
            await gate.wait()
            delivered.append(time.monotonic())
            seen.add(event.link.name)
            if expected <= seen:
                done.set()

    monitor = NetlinkMonitor(max_pending=64)
    task = asyncio.create_task(monitor.run(handler))
    try:
        await asyncio.sleep(0.05)
        await asyncio.to_thread(ip_batch, netns, tmp, "drain-add", pairs("bq", n, "add"))
        await asyncio.sleep(0.1)
        start = time.monotonic()
        gate.set()
        await asyncio.wait_for(done.wait(), 30)
        wall = time.monotonic() - start
        if resynced:
            print(f"  drain: overflowed; resync after {wall * 1e3:.1f} ms")
        else:
            print(f"  drain: {len(delivered)} queued link events read, decoded and delivered"
                  f" in {wall * 1e3:.1f} ms = {len(delivered) / wall:.0f} events/s")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def run_loop(kind: str, fn: Callable[[], Awaitable[None]]) -> None:
    factory = uvloop.new_event_loop if kind == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(fn())  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=500, help="veth pairs per burst")
    parser.add_argument("--loop", choices=["uvloop", "asyncio", "both"], default="both")
    args = parser.parse_args()
    loops = ["uvloop", "asyncio"] if args.loop == "both" else [args.loop]
    with tempfile.TemporaryDirectory(prefix="sheep-bench-mon-") as tmpdir:
        tmp = Path(tmpdir)
        sandbox = tmp / "sandbox"
        create_pinned_netns(sandbox)
        try:
            run_in_netns(sandbox, lambda: bench_decode(sandbox, tmp, args.pairs))
            for kind in loops:
                print(f"{kind}:")
                run_in_netns(sandbox, lambda k=kind: run_loop(  # type: ignore[misc]
                    k, lambda: live(sandbox, tmp, args.pairs)))
                run_in_netns(sandbox, lambda k=kind: run_loop(  # type: ignore[misc]
                    k, lambda: drain(sandbox, tmp, args.pairs)))
                subprocess.run(["nsenter", f"--net={sandbox}", "ip", "-batch", "-"],
                               input="".join(f"{x}\n" for x in pairs("bq", args.pairs, "del")),
                               text=True, check=True)
        finally:
            delete_pinned_netns(sandbox)


if __name__ == "__main__":
    main()
