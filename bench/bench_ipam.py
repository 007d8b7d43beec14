"""Benchmark of the IPAM pools: fill a /16 and a /8, then churn at 99% full; fill
100,000 addresses of an IPv6 /64 and churn there.

Run as ``python bench/bench_ipam.py``. A naive allocator (a Python set of used
offsets and a linear next-fit scan from the cursor) runs the /16 cases in the same
process as a baseline. Seeded, so the churn positions are the same on every run.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sheep_runtime.ipam import AddressPool, AddressPool6, SparseBitmap

PAIRS = 1000  # release+allocate pairs per churn case
SEED = 42
V6_FILL = 100_000  # addresses leased in the /64 before its churn


class NaiveAllocator:
    """Baseline: next-fit by scanning offsets one by one, skipping a set of used ones."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = {0, 1, size - 1}  # network, gateway, broadcast
        self.cursor = 0

    def allocate(self) -> int:
        size, used = self.size, self.used
        i = self.cursor
        for _ in range(size):
            i += 1
            if i == size:
                i = 0
            if i not in used:
                used.add(i)
                self.cursor = i
                return i
        raise RuntimeError("full")

    def release(self, i: int) -> None:
        self.used.discard(i)


def fill(allocate: Callable[[], object], count: int) -> float:
    """Seconds to call ``allocate`` ``count`` times."""
    t0 = time.perf_counter()
    for _ in range(count):
        allocate()
    return time.perf_counter() - t0


def churn(
    *,
    size: int,
    free: int,
    release: Callable[[int], object],
    is_used: Callable[[int], bool],
    allocate: Callable[[], object],
) -> float:
    """Free ``free`` random offsets, then PAIRS times release a random lease and
    allocate. Only allocate() is timed; returns its median in microseconds, so a
    noisy neighbour on a shared machine does not skew the figure."""
    rng = random.Random(SEED)  # the same positions for the pool and the baseline
    for off in rng.sample(range(2, size - 1), free):
        release(off)
    samples = []
    for _ in range(PAIRS):
        while True:
            victim = rng.randrange(2, size - 1)
            if is_used(victim):
                break
        release(victim)
        t0 = time.perf_counter_ns()
        allocate()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1e3


Row = tuple[str, int, float | None, float, float | None]  # name, ops, total s, us/op, naive


def bench_prefix(prefix: int, *, with_naive: bool) -> list[Row]:
    subnet = IPv4Network(f"10.0.0.0/{prefix}")
    pool = AddressPool(subnet, gateway=subnet.network_address + 1)
    size, n, base = subnet.num_addresses, pool.capacity, int(subnet.network_address)
    naive = NaiveAllocator(size)
    secs = fill(pool.allocate, n)
    assert pool.available == 0
    naive_us = fill(naive.allocate, n) / n * 1e6 if with_naive else None
    rows: list[Row] = [
        (f"/{prefix} fill: allocate() x capacity", n, secs, secs / n * 1e6, naive_us)
    ]
    if with_naive:  # the same fill without building an IPv4Address per call
        ints = AddressPool(subnet, gateway=subnet.network_address + 1)
        secs = fill(ints.allocate_int, n)
        rows.append(
            (f"/{prefix} fill: allocate_int() x capacity", n, secs, secs / n * 1e6, naive_us)
        )
    # At 100% the one free address is wherever the last release was.
    for label, free in (("100% full", 0), ("99% full", n // 100)):
        us = churn(
            size=size,
            free=free,
            release=lambda off: pool.release(IPv4Address(base + off)),
            is_used=lambda off: pool.is_allocated(IPv4Address(base + off)),
            allocate=pool.allocate,
        )
        naive_us = None
        if with_naive:
            naive_us = churn(
                size=size,
                free=free,
                release=naive.release,
                is_used=naive.used.__contains__,
                allocate=naive.allocate,
            )
        rows.append((f"/{prefix} {label}: allocate after release", PAIRS, None, us, naive_us))
    return rows


def bench_slash64() -> list[Row]:
    """Fill V6_FILL addresses of a /64 by allocate(); allocate from just below that
    full run; churn at random among them (each release leaves a hole behind the
    cursor, so allocate() goes on upwards); churn again with V6_FILL static leases
    scattered over the whole /64 too."""
    subnet = IPv6Network("fd00:30::/64")
    pool = AddressPool6(subnet, gateway=subnet.network_address + 1)
    base = int(subnet.network_address)
    secs = fill(pool.allocate, V6_FILL)
    rows: list[Row] = [(f"/64 fill: allocate() x {V6_FILL}", V6_FILL, secs,
                        secs / V6_FILL * 1e6, None)]
    # Next-fit from just below the full run: allocate() skips it through the summaries.
    samples = []
    for _ in range(PAIRS):
        pool.restore([], cursor=subnet.network_address + 1)
        start_ns = time.perf_counter_ns()
        pool.allocate()
        samples.append(time.perf_counter_ns() - start_ns)
    rows.append((f"/64 skip {V6_FILL} leases: allocate", PAIRS, None,
                 statistics.median(samples) / 1e3, None))
    def release(off: int) -> bool:
        return pool.release(IPv6Address(base + off))

    def is_used(off: int) -> bool:
        return pool.is_allocated(IPv6Address(base + off))

    us = churn(size=V6_FILL + 2, free=0, release=release, is_used=is_used,
               allocate=pool.allocate)
    rows.append(("/64 churn: allocate after release", PAIRS, None, us, None))
    rng = random.Random(SEED)
    t0 = time.perf_counter()
    for _ in range(V6_FILL):
        off = rng.randrange(2**32, 2**64)  # clear of the dynamic leases
        if not is_used(off):
            pool.reserve(IPv6Address(base + off))
    secs = time.perf_counter() - t0
    rows.append((f"/64 scattered: reserve() x {V6_FILL}", V6_FILL, secs,
                 secs / V6_FILL * 1e6, None))
    us = churn(size=V6_FILL + 2, free=0, release=release, is_used=is_used,
               allocate=pool.allocate)
    rows.append(("/64 scattered: allocate after release", PAIRS, None, us, None))
    bits = pool._bits
    assert isinstance(bits, SparseBitmap)
    print(f"/64 with {pool.allocated} leases holds {bits.nodes} words and summary nodes")
    return rows


def main() -> None:
    rows = (bench_prefix(16, with_naive=True) + bench_prefix(8, with_naive=False)
            + bench_slash64())
    print(f"{'case':<38} {'ops':>9} {'total s':>8} {'us/op':>7} {'naive us/op':>12} {'ratio':>7}")
    for name, ops, secs, us, naive_us in rows:
        total = "-" if secs is None else f"{secs:.3f}"
        naive = "-" if naive_us is None else f"{naive_us:.2f}"
        ratio = "-" if naive_us is None else f"{naive_us / us:.1f}x"
        print(f"{name:<38} {ops:>9} {total:>8} {us:>7.2f} {naive:>12} {ratio:>7}")
    print("us/op of the churn rows is the median of", PAIRS, "allocate() calls;")
    print("ratio = naive us/op / pool us/op (above 1x the pool is faster)")


if __name__ == "__main__":
    main()
