"""AttachNetwork / DetachNetwork latency and throughput of a real sheepd, against the
shell-out baseline of the original Sheep runtime, measured in the same run.

Everything runs inside a throwaway sandbox netns (sheepd, bridge, containers); the only
packets sent are pings from containers to their own gateway. Prints a table and ratios.
Usage: python bench/bench_attach.py [--containers 200] [--scale 1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sheep.runtime.v1 import runtime_pb2 as pb

from tests.sandbox import Sandbox, in_netns, sandbox, sh


def pct(samples: Sequence[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def timed(fn: Callable[[int], None], items: Sequence[int], concurrency: int
          ) -> tuple[list[float], float]:
    """Per-call latencies (s) and the wall time of the whole run."""
    def one(i: int) -> float:
        t0 = time.perf_counter()
        fn(i)
        return time.perf_counter() - t0
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        lat = list(pool.map(one, items))
    return lat, time.perf_counter() - t0


def row(name: str, lat: Sequence[float], wall: float) -> dict[str, float]:
    r = {"p50": pct(lat, 0.5) * 1e3, "p90": pct(lat, 0.9) * 1e3, "p99": pct(lat, 0.99) * 1e3,
         "rate": len(lat) / wall}
    print(f"{name:<34} p50 {r['p50']:7.2f} ms  p90 {r['p90']:7.2f} ms  "
          f"p99 {r['p99']:7.2f} ms  {r['rate']:8.1f}/s", flush=True)
    return r


def make_containers(box: Sandbox, n: int) -> list[pb.Container]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda i: box.run("/bin/sleep", "3600", network_mode="none"),
                             range(n)))


def bench_sheepd(box: Sandbox, n: int, concurrency: int) -> tuple[dict[str, float], ...]:
    ids = [c.id for c in make_containers(box, n)]
    api = box.api

    def attach(i: int) -> None:
        api.AttachNetwork(pb.AttachNetworkRequest(container_id=ids[i], network="sheep0"))

    def detach(i: int) -> None:
        api.DetachNetwork(pb.DetachNetworkRequest(container_id=ids[i], network="sheep0"))

    a = row(f"sheepd attach  (concurrency {concurrency})", *timed(attach, range(n), concurrency))
    d = row(f"sheepd detach  (concurrency {concurrency})", *timed(detach, range(n), concurrency))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda c: api.RemoveContainer(pb.RemoveContainerRequest(id=c, force=True)),
                      ids))
    return a, d


def bench_baseline(box: Sandbox, n: int, concurrency: int) -> tuple[dict[str, float], ...]:
    """The original runtime's sequence: one `ip`/`nsenter` exec per step."""
    names = [f"bl{box.tag}{i}" for i in range(n)]
    for name in names:
        sh("ip", "netns", "add", name)
    sbx = box.name

    def attach(i: int) -> None:
        v, ns, addr = f"blv{i}", names[i], f"10.20.{200 + i // 250}.{1 + i % 250}/16"
        for argv in (
            ["ip", "-n", sbx, "link", "add", v, "type", "veth", "peer", "name", f"{v}p"],
            ["ip", "-n", sbx, "link", "set", v, "master", box.bridge, "up"],
            ["ip", "-n", sbx, "link", "set", f"{v}p", "netns", ns],
            ["nsenter", f"--net=/run/netns/{ns}", "ip", "link", "set", f"{v}p", "name", "eth0"],
            ["nsenter", f"--net=/run/netns/{ns}", "ip", "addr", "add", addr, "dev", "eth0"],
            ["nsenter", f"--net=/run/netns/{ns}", "ip", "link", "set", "eth0", "up"],
            ["nsenter", f"--net=/run/netns/{ns}", "ip", "link", "set", "lo", "up"],
            ["nsenter", f"--net=/run/netns/{ns}", "ip", "route", "add", "default",
             "via", "10.20.0.1"],
        ):
            subprocess.run(argv, check=True, capture_output=True)

    def detach(i: int) -> None:
        subprocess.run(["ip", "-n", sbx, "link", "del", f"blv{i}"], check=True,
                       capture_output=True)

    try:
        a = row(f"baseline attach (concurrency {concurrency})",
                *timed(attach, range(n), concurrency))
        d = row(f"baseline detach (concurrency {concurrency})",
                *timed(detach, range(n), concurrency))
    finally:
        for name in names:
            sh("ip", "netns", "del", name, check=False)
    return a, d


NETAVARK = Path("/usr/lib/podman/netavark")  # Debian package netavark
DETACH_P50_TARGET, DETACH_RATE_TARGET = 0.1, 5.0  # issue #16, against netavark


def bench_netavark(box: Sandbox, tmp: Path, n: int, concurrency: int
                   ) -> tuple[dict[str, float], ...]:
    """netavark setup / teardown of one bridge network as podman drives it (options
    JSON on stdin, the container netns as argument), inside the sandbox netns."""
    names = [f"nv{box.tag}{i}" for i in range(n)]
    for name in names:
        sh("ip", "netns", "add", name)
    config = tmp / f"netavark-{concurrency}"
    net_id = "b" * 64

    def options(i: int) -> str:
        return json.dumps({
            "container_id": f"{i:064x}", "container_name": f"nv{i}",
            "networks": {"nvbench": {"interface_name": "eth0",
                                     "static_ips": [f"10.89.{i // 250}.{2 + i % 250}"]}},
            "network_info": {"nvbench": {
                "dns_enabled": False, "driver": "bridge", "id": net_id, "internal": False,
                "ipv6_enabled": False, "name": "nvbench", "network_interface": "nvbr0",
                "subnets": [{"gateway": "10.89.255.254", "subnet": "10.89.0.0/16"}]}}})

    def call(command: str) -> Callable[[int], None]:
        def one(i: int) -> None:
            p = subprocess.run(["nsenter", f"--net=/run/netns/{box.name}", str(NETAVARK),
                                "--config", str(config), command, f"/run/netns/{names[i]}"],
                               input=options(i), text=True, capture_output=True)
            if p.returncode:
                raise RuntimeError(f"netavark {command} {i}: {p.stderr.strip()}")
        return one

    # Container 0 makes the bridge before and removes it after the timed calls, as
    # sheep0 exists before and after sheepd's.
    try:
        call("setup")(0)
        a = row(f"netavark setup (concurrency {concurrency})",
                *timed(call("setup"), range(1, n), concurrency))
        d = row(f"netavark teardown (concurrency {concurrency})",
                *timed(call("teardown"), range(1, n), concurrency))
        call("teardown")(0)
    finally:
        for name in names:
            sh("ip", "netns", "del", name, check=False)
    return a, d


def report_detach(results: dict[tuple[str, int], tuple[dict[str, float], ...]]) -> None:
    """Detach p50 and rate against the baseline and, if it ran, netavark."""
    (_, s1), (_, s8) = results[("sheepd", 1)], results[("sheepd", 8)]
    (_, b1), (_, b8) = results[("baseline", 1)], results[("baseline", 8)]
    print(f"detach p50 {s1['p50']:.2f} ms = {s1['p50'] / b1['p50']:.3f}x baseline's "
          f"({b1['p50']:.2f} ms); rate at concurrency 8 {s8['rate']:.0f}/s = "
          f"{s8['rate'] / b8['rate']:.1f}x baseline's")
    if ("netavark", 1) not in results:
        print(f"target detach p50 <= {DETACH_P50_TARGET} of netavark teardown: not measured "
              f"({NETAVARK} not installed)")
        print(f"target detach rate >= {DETACH_RATE_TARGET}x netavark at concurrency 8: "
              "not measured")
        return
    (_, n1), (_, n8) = results[("netavark", 1)], results[("netavark", 8)]
    ratio, rate = s1["p50"] / n1["p50"], s8["rate"] / n8["rate"]
    print(f"target detach p50 <= {DETACH_P50_TARGET} of netavark teardown: measured "
          f"{ratio:.3f} ({s1['p50']:.2f} vs {n1['p50']:.2f} ms) "
          f"{'ok' if ratio <= DETACH_P50_TARGET else 'MISSED'}")
    print(f"target detach rate >= {DETACH_RATE_TARGET}x netavark at concurrency 8: measured "
          f"{rate:.1f}x ({s8['rate']:.0f} vs {n8['rate']:.0f}/s) "
          f"{'ok' if rate >= DETACH_RATE_TARGET else 'MISSED'}")


DUAL_TARGET = 1.3  # issue #14: dual-stack attach p50 at most 1.3x IPv4-only


def attach_p50(box: Sandbox, ids: Sequence[str], network: str) -> float:
    """Attach p50 (ms) of `ids` to `network` at concurrency 1, then detach them."""
    lat, _ = timed(lambda i: box.api.AttachNetwork(pb.AttachNetworkRequest(
        container_id=ids[i], network=network)), range(len(ids)), 1)
    for cid in ids:
        box.api.DetachNetwork(pb.DetachNetworkRequest(container_id=cid, network=network))
    return pct(lat, 0.5) * 1e3


def bench_dual_stack(box: Sandbox, n: int, rounds: int = 3) -> None:
    """Attach p50 on an IPv4-only and on a dual-stack network, rounds interleaved."""
    box.api.CreateNetwork(pb.CreateNetworkRequest(name="v4only", subnet="10.41.0.0/16"))
    box.api.CreateNetwork(pb.CreateNetworkRequest(name="dual", subnet="10.42.0.0/16",
                                                  subnet6="fd00:42::/64"))
    ids = [c.id for c in make_containers(box, n)]
    v4, dual = [], []
    for _ in range(rounds):
        v4.append(attach_p50(box, ids, "v4only"))
        dual.append(attach_p50(box, ids, "dual"))
    p4, p6 = statistics.median(v4), statistics.median(dual)
    ratio = p6 / p4
    print(f"dual stack: attach p50 IPv4-only {p4:.2f} ms, dual-stack {p6:.2f} ms "
          f"(median of {rounds} rounds of {n})")
    print(f"target dual-stack attach p50 <= {DUAL_TARGET}x IPv4-only: measured "
          f"{ratio:.2f}x {'ok' if ratio <= DUAL_TARGET else 'MISSED'}")
    for cid in ids:
        box.api.RemoveContainer(pb.RemoveContainerRequest(id=cid, force=True))


def bench_scale(box: Sandbox, total: int) -> None:
    """Attach p50 for the first and last hundred of `total` containers on one bridge."""
    containers = make_containers(box, total)
    lat: list[float] = []
    for c in containers:
        t0 = time.perf_counter()
        box.api.AttachNetwork(pb.AttachNetworkRequest(container_id=c.id, network="sheep0"))
        lat.append(time.perf_counter() - t0)
    print(f"scale: attach p50 containers 1-100: {statistics.median(lat[:100]) * 1e3:.2f} ms, "
          f"{total - 99}-{total}: {statistics.median(lat[-100:]) * 1e3:.2f} ms")
    with ThreadPoolExecutor(8) as pool:
        ok = sum(pool.map(lambda c: in_netns(c.netns_path, "ping", "-c1", "-W2", "10.20.0.1")
                          .returncode == 0, containers))
    print(f"scale: {ok} of {total} containers reach the gateway")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--containers", type=int, default=200)
    p.add_argument("--scale", type=int, default=1000)
    p.add_argument("--dual", type=int, default=100, help="containers of the dual-stack run")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sandbox(Path(tmp)) as box:
        box.start(extra=["--log-level", "warning"])
        results = {}
        for c in (1, 8):
            results[("sheepd", c)] = bench_sheepd(box, a.containers, c)
            results[("baseline", c)] = bench_baseline(box, a.containers, c)
            if NETAVARK.exists():
                results[("netavark", c)] = bench_netavark(box, Path(tmp), a.containers, c)
        print()
        for c in (1, 8):
            (sa, sd), (ba, bd) = results[("sheepd", c)], results[("baseline", c)]
            print(f"concurrency {c}: attach p50 {ba['p50'] / sa['p50']:.1f}x faster than "
                  f"baseline, {sa['rate'] / ba['rate']:.1f}x the rate; detach "
                  f"{sd['rate'] / bd['rate']:.1f}x the rate")
        d1, d8 = results[("sheepd", 1)][1], results[("sheepd", 8)][1]
        print(f"detach throughput, concurrency 8 vs 1: {d8['rate'] / d1['rate']:.1f}x")
        report_detach(results)
        if a.dual:
            print()
            bench_dual_stack(box, a.dual)
        if a.scale:
            print()
            bench_scale(box, a.scale)


if __name__ == "__main__":
    main()
