"""Property tests: SparseBitmap and AddressPool6 against plain Python set models."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

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
from sheep_runtime.ipam import AddressPool6, SparseBitmap

# Sizes around word (64) and summary-node (4096) boundaries, and the 2**64 of a /64.
BITMAP_SIZES = st.sampled_from([1, 63, 64, 65, 4095, 4096, 4097, 3 * 4096 + 13, 2**64])
_EDGES = sorted({e + d for e in (0, 64, 4096, 8192, 12288) for d in (-2, -1, 0, 1, 2)
                 if e + d >= 0})


def model_find_clear(used: set[int], n: int, start: int) -> int | None:
    """First integer >= start (mod n, wrapping) not in ``used``; steps only over ``used``."""
    start %= n
    i = start
    while i < n and i in used:
        i += 1
    if i < n:
        return i
    i = 0
    while i < start and i in used:
        i += 1
    return i if i < start else None


def near(n: int) -> st.SearchStrategy[int]:
    """Indices of a range of size ``n``: low ones, block edges and the very top."""
    top = st.integers(0, 300).map(lambda k: n - 1 - k)
    low = st.one_of(st.integers(0, 3 * 4096 + 20), st.sampled_from(_EDGES))
    return st.one_of(low, top).map(lambda i: i % n)


class SparseBitmapMachine(RuleBasedStateMachine):
    """SparseBitmap vs a set of ints, with bulk fills so words and summaries fill up."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 1
        self.bm = SparseBitmap(1)
        self.model: set[int] = set()

    @initialize(n=BITMAP_SIZES)
    def create(self, n: int) -> None:
        self.n = n
        self.bm = SparseBitmap(n)

    @rule(data=st.data())
    def set_bit(self, data: st.DataObject) -> None:
        i = data.draw(near(self.n))
        assert self.bm.set(i) == (i not in self.model)
        self.model.add(i)

    @rule(data=st.data())
    def clear_bit(self, data: st.DataObject) -> None:
        i = data.draw(near(self.n))
        assert self.bm.clear(i) == (i in self.model)
        self.model.discard(i)

    @rule(data=st.data(), length=st.integers(0, 9000), by_claim=st.booleans())
    def fill_range(self, data: st.DataObject, length: int, by_claim: bool) -> None:
        lo = data.draw(near(self.n))
        for i in range(lo, min(lo + length, self.n)):
            if by_claim and i not in self.model:
                assert self.bm.claim(i) == i
            else:
                self.bm.set(i)
            self.model.add(i)

    @rule(data=st.data(), length=st.integers(0, 9000), step=st.integers(1, 50))
    def clear_range(self, data: st.DataObject, length: int, step: int) -> None:
        lo = data.draw(near(self.n))
        for i in range(lo, min(lo + length, self.n), step):
            self.bm.clear(i)
            self.model.discard(i)

    @precondition(lambda self: self.n <= 3 * 4096 + 13)
    @rule()
    def fill_all(self) -> None:
        for i in range(self.n):
            self.bm.set(i)
        self.model = set(range(self.n))
        assert self.bm.find_clear(0) is None and self.bm.claim(0) is None

    @rule(data=st.data())
    def claim(self, data: st.DataObject) -> None:
        start = data.draw(near(self.n))
        expected = model_find_clear(self.model, self.n, start)
        assert self.bm.claim(start) == expected
        if expected is not None:
            self.model.add(expected)

    @invariant()
    def same_contents(self) -> None:
        assert self.bm.count == len(self.model)
        assert list(self.bm.iter_set()) == sorted(self.model)
        assert self.bm.nodes <= len(self.model)  # memory follows the set bits
        for start in {0, 1 % self.n, self.n // 2, self.n - 1, *(e % self.n for e in _EDGES)}:
            assert self.bm.find_clear(start) == model_find_clear(self.model, self.n, start)
            assert self.bm.test(start) == (start in self.model)


class Pool6Machine(RuleBasedStateMachine):
    """AddressPool6 vs a set of leased offsets and an exact next-fit model."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = AddressPool6(IPv6Network("fd00::/126"), gateway="fd00::1")
        self.base = int(self.pool.subnet.network_address)
        self.size = 4
        self.reserved: set[int] = {0, 1}
        self.leases: set[int] = set()
        self.cursor = -1

    @initialize(prefix=st.sampled_from([64, 96, 120, 124, 124, 126]),
                net=st.integers(0, 0xFFFF), gw=st.integers(1, 2**64))
    def create(self, prefix: int, net: int, gw: int) -> None:
        subnet = IPv6Network(f"fd00:{net:x}::/{prefix}")
        self.size = subnet.num_addresses
        self.base = int(subnet.network_address)
        gw_offset = 1 + gw % (self.size - 1)  # anywhere but the anycast address
        self.pool = AddressPool6(subnet, gateway=IPv6Address(self.base + gw_offset))
        self.reserved = {0, gw_offset}

    def addr(self, offset: int) -> IPv6Address:
        return IPv6Address(self.base + offset)

    def expected_next(self) -> int | None:
        return model_find_clear(self.leases | self.reserved, self.size, self.cursor + 1)

    @rule(count=st.integers(1, 20))
    def allocate(self, count: int) -> None:
        """Up to 20 allocations: enough to exhaust the small subnets (/124: 14 leases)."""
        for _ in range(count):
            expected = self.expected_next()
            if expected is None:
                try:
                    self.pool.allocate()
                except ResourceExhausted:
                    return
                raise AssertionError("allocate succeeded on a full pool")
            got = int(self.pool.allocate()) - self.base
            assert got == expected
            self.leases.add(got)
            self.cursor = got

    @rule(data=st.data(), outside=st.booleans())
    def reserve(self, data: st.DataObject, outside: bool) -> None:
        offset = data.draw(near(self.size)) + (self.size if outside else 0)
        try:
            self.pool.reserve(self.addr(offset))
        except InvalidArgument:
            assert offset in self.reserved or offset >= self.size
        except AlreadyExists:
            assert offset in self.leases
        else:
            assert offset not in self.leases | self.reserved and offset < self.size
            self.leases.add(offset)

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        offset = data.draw(near(self.size))
        try:
            released = self.pool.release(self.addr(offset))
        except InvalidArgument:
            assert offset in self.reserved
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
        """Rebuild from persisted leases + cursor; the next allocations are the same.

        With no cursor (only static leases so far) restore puts it on the highest lease.
        """
        fresh = AddressPool6(self.pool.subnet, gateway=self.pool.gateway)
        fresh.restore(self.pool.leases(), cursor=self.pool.cursor)
        self.pool = fresh
        if self.cursor < 0 and self.leases:
            self.cursor = max(self.leases)

    @rule(data=st.data())
    def restart_with_cursor(self, data: st.DataObject) -> None:
        """A restart whose stored cursor is anywhere, e.g. near the top: next-fit wraps."""
        cursor = data.draw(near(self.size))
        fresh = AddressPool6(self.pool.subnet, gateway=self.pool.gateway)
        fresh.restore([str(a) for a in self.pool.leases()], cursor=str(self.addr(cursor)))
        self.pool = fresh
        self.cursor = cursor

    @invariant()
    def matches_model(self) -> None:
        pool = self.pool
        assert {int(a) - self.base for a in pool.leases()} == self.leases
        assert pool.allocated == len(self.leases)
        assert pool.capacity == self.size - 2
        assert pool.available == pool.capacity - len(self.leases)
        assert pool.cursor == (None if self.cursor < 0 else self.addr(self.cursor))
        assert not self.leases & self.reserved


SparseBitmapMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
Pool6Machine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=60,
    deadline=None,
)

TestSparseBitmap = SparseBitmapMachine.TestCase
TestPool6 = Pool6Machine.TestCase
