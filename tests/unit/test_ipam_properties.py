"""Property tests: Bitmap and AddressPool against plain Python set models."""

from __future__ import annotations

import bisect
from ipaddress import IPv4Address, IPv4Network

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from sheep_runtime.errors import AlreadyExists, InvalidArgument, ResourceExhausted
from sheep_runtime.ipam import AddressPool, Bitmap

# Sizes around byte and 4096-bit block boundaries, incl. a partial last block.
BITMAP_SIZES = st.sampled_from([1, 7, 8, 9, 64, 4095, 4096, 4097, 3 * 4096 + 13, 4 * 4096])
_EDGES = sorted({e + d for e in (0, 8, 4096, 8192, 12288) for d in (-2, -1, 0, 1, 2) if e + d >= 0})
INDEX = st.one_of(st.integers(min_value=0, max_value=3 * 4096 + 20), st.sampled_from(_EDGES))


def model_find_clear(used: set[int], n: int, start: int) -> int | None:
    start %= n
    return next((i for i in (*range(start, n), *range(start)) if i not in used), None)


class BitmapMachine(RuleBasedStateMachine):
    """Bitmap vs a set of ints, with bulk fills so blocks really become full."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 1
        self.bm = Bitmap(1)
        self.model: set[int] = set()

    @initialize(n=BITMAP_SIZES)
    def create(self, n: int) -> None:
        self.n = n
        self.bm = Bitmap(n)

    @rule(i=INDEX)
    def set_bit(self, i: int) -> None:
        i %= self.n
        assert self.bm.set(i) == (i not in self.model)
        self.model.add(i)

    @rule(i=INDEX)
    def clear_bit(self, i: int) -> None:
        i %= self.n
        assert self.bm.clear(i) == (i in self.model)
        self.model.discard(i)

    @rule(lo=INDEX, length=st.integers(0, 9000), by_claim=st.booleans())
    def fill_range(self, lo: int, length: int, by_claim: bool) -> None:
        lo %= self.n
        for i in range(lo, min(lo + length, self.n)):
            if by_claim and i not in self.model:
                assert self.bm.claim(i) == i
            else:
                self.bm.set(i)
            self.model.add(i)

    @rule(by_claim=st.booleans())
    def fill_all(self, by_claim: bool) -> None:
        for i in range(self.n):
            if by_claim and i not in self.model:
                assert self.bm.claim(0) == i
            else:
                self.bm.set(i)
        self.model = set(range(self.n))
        assert self.bm.find_clear(0) is None

    @rule(lo=INDEX, length=st.integers(0, 9000), step=st.integers(1, 50))
    def clear_range(self, lo: int, length: int, step: int) -> None:
        lo %= self.n
        for i in range(lo, min(lo + length, self.n), step):
            self.bm.clear(i)
            self.model.discard(i)

    @rule(start=INDEX)
    def find_clear(self, start: int) -> None:
        assert self.bm.find_clear(start) == model_find_clear(self.model, self.n, start)

    @rule(start=INDEX)
    def claim(self, start: int) -> None:
        expected = model_find_clear(self.model, self.n, start)
        assert self.bm.claim(start) == expected
        if expected is not None:
            self.model.add(expected)

    @rule(i=INDEX)
    def test_bit(self, i: int) -> None:
        i %= self.n
        assert self.bm.test(i) == (i in self.model)

    @invariant()
    def same_contents(self) -> None:
        assert self.bm.count == len(self.model)
        assert list(self.bm.iter_set()) == sorted(self.model)
        free = sorted(set(range(self.n)) - self.model)
        for start in {0, 1 % self.n, self.n // 2, self.n - 1}:
            k = bisect.bisect_left(free, start)
            expected = free[k] if k < len(free) else (free[0] if free else None)
            assert self.bm.find_clear(start) == expected


class PoolMachine(RuleBasedStateMachine):
    """AddressPool vs a set of leased offsets and an exact next-fit model."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = AddressPool(IPv4Network("10.0.0.0/30"), gateway="10.0.0.1")
        self.base = 0
        self.size = 4
        self.reserved: set[int] = set()
        self.leases: set[int] = set()
        self.cursor = -1

    @initialize(prefix=st.integers(24, 30), third=st.integers(0, 255), gw=st.integers(0, 255))
    def create(self, prefix: int, third: int, gw: int) -> None:
        subnet = IPv4Network(f"10.{third}.{third}.0/{prefix}", strict=False)
        self.size = subnet.num_addresses
        self.base = int(subnet.network_address)
        gw_offset = 1 + gw % (self.size - 2)
        self.pool = AddressPool(subnet, gateway=IPv4Address(self.base + gw_offset))
        self.reserved = {0, self.size - 1, gw_offset}

    def addr(self, offset: int) -> IPv4Address:
        return IPv4Address(self.base + offset)

    def expected_next(self) -> int | None:
        used = self.leases | self.reserved
        return model_find_clear(used, self.size, self.cursor + 1)

    @rule()
    def allocate(self) -> None:
        expected = self.expected_next()
        if expected is None:
            try:
                self.pool.allocate()
            except ResourceExhausted:
                return
            raise AssertionError("allocate succeeded on a full pool")
        got = int(self.pool.allocate()) - self.base
        assert got == expected
        assert got not in self.leases and got not in self.reserved
        self.leases.add(got)
        self.cursor = got

    @rule(offset=st.integers(-3, 300))
    def reserve(self, offset: int) -> None:
        try:
            self.pool.reserve(self.addr(offset) if offset >= 0 else self.addr(0) - 1)
        except InvalidArgument:
            assert offset in self.reserved or not 0 <= offset < self.size
        except AlreadyExists:
            assert offset in self.leases
        else:
            assert offset not in self.leases | self.reserved and 0 <= offset < self.size
            self.leases.add(offset)

    @rule(offset=st.integers(0, 300))
    def release(self, offset: int) -> None:
        try:
            released = self.pool.release(self.addr(offset))
        except InvalidArgument:
            assert offset in self.reserved or offset >= self.size
        else:
            assert released == (offset in self.leases)
            self.leases.discard(offset)

    @precondition(lambda self: bool(self.leases))
    @rule(data=st.data())
    def release_lease(self, data: st.DataObject) -> None:
        offset = data.draw(st.sampled_from(sorted(self.leases)))
        assert self.pool.release(self.addr(offset))
        self.leases.remove(offset)

    @rule()
    def restart(self) -> None:
        """Rebuild from persisted leases + cursor; next-fit resumes where it was.

        With no cursor (only static leases so far) restore puts it on the highest lease.
        """
        fresh = AddressPool(self.pool.subnet, gateway=self.pool.gateway)
        fresh.restore(self.pool.leases(), cursor=self.pool.cursor)
        self.pool = fresh
        if self.cursor < 0 and self.leases:
            self.cursor = max(self.leases)

    @invariant()
    def matches_model(self) -> None:
        pool = self.pool
        assert {int(a) - self.base for a in pool.leases()} == self.leases
        assert pool.allocated == len(self.leases)
        assert pool.capacity == self.size - 3
        assert pool.available == pool.capacity - len(self.leases)
        assert pool.cursor == (None if self.cursor < 0 else self.addr(self.cursor))
        assert not self.leases & self.reserved


BitmapMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PoolMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=60,
    deadline=None,
)

TestBitmap = BitmapMachine.TestCase
TestPool = PoolMachine.TestCase
