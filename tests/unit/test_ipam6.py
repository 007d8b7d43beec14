"""Unit tests of IPv6 IPAM: subnet parsing, the sparse bitmap and AddressPool6."""

from __future__ import annotations

import gc
import random
import tracemalloc
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from sheep_runtime.errors import AlreadyExists, InvalidArgument, ResourceExhausted
from sheep_runtime.ipam import (
    AddressPool,
    AddressPool6,
    SparseBitmap,
    default_gateway,
    find_overlap,
    parse_address6,
    parse_subnet6,
    pool_for,
    validate_gateway6,
)


def pool6(text: str, gateway: str | None = None) -> AddressPool6:
    subnet = IPv6Network(text)
    return AddressPool6(subnet, gateway=gateway or default_gateway(subnet))


def drain(p: AddressPool6) -> list[IPv6Address]:
    out = []
    while True:
        try:
            out.append(p.allocate())
        except ResourceExhausted:
            return out


# --- subnets ---------------------------------------------------------------


def test_parse_subnet6_ok() -> None:
    assert parse_subnet6(" fd00:30::/64 ") == IPv6Network("fd00:30::/64")
    assert parse_subnet6("FD00:30:0:7::/64") == IPv6Network("fd00:30:0:7::/64")
    assert parse_subnet6("fd00:30::100/120") == IPv6Network("fd00:30::100/120")
    assert parse_subnet6("2a01:4f8::/96") == IPv6Network("2a01:4f8::/96")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("fd00:30::/63", "between /64 and /120"),
        ("fd00:30::/121", "between /64 and /120"),
        ("fd00:30::/128", "between /64 and /120"),
        ("fd00:30::5/64", "did you mean 'fd00:30::/64'"),
        ("fd00:30::", "needs a prefix length"),
        ("fd00:30::/64\n", "control characters"),
        ("fe80::%eth0/64", "zone"),
        ("fd00:30:::/64", "not a valid CIDR"),
        ("10.0.0.0/24", "is IPv4"),
        ("::/64", "unspecified"),
        ("::/120", "unspecified"),
        ("::ffff:0:0/120", "IPv4-mapped"),
        ("fe80::/64", "link-local"),
        ("febf:1::/64", "link-local"),
        ("ff02::/64", "multicast"),
        ("2001:db8::/64", "documentation"),
        ("2001:db8:ffff:1::/64", "documentation"),
    ],
)
def test_parse_subnet6_errors(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment) as info:
        parse_subnet6(text)
    assert info.value.field == "subnet6"


def test_addresses_and_gateway6() -> None:
    subnet = IPv6Network("fd00:30::/64")
    assert default_gateway(subnet) == IPv6Address("fd00:30::1")
    assert parse_address6(" fd00:30::9 ") == IPv6Address("fd00:30::9")
    last = "fd00:30::ffff:ffff:ffff:ffff"
    assert validate_gateway6(subnet, last) == IPv6Address(last)  # no broadcast in IPv6
    for bad, fragment in [
        ("fd00:31::1", "outside"),
        ("fd00:30::", "subnet-router anycast"),
        ("fd00:30::1%eth0", "not a valid IPv6 address"),
        ("10.0.0.1", "not a valid IPv6 address"),
    ]:
        with pytest.raises(InvalidArgument, match=fragment) as info:
            validate_gateway6(subnet, bad)
        assert info.value.field == "gateway6"


def test_find_overlap_is_per_family() -> None:
    existing: dict[str, IPv4Network | IPv6Network] = {
        "v4": IPv4Network("10.0.0.0/8"), "a": IPv6Network("fd00:30::/64")}
    assert find_overlap(IPv6Network("fd00:30::100/120"), existing) == "a"
    assert find_overlap(IPv6Network("fd00:31::/64"), existing) is None


# --- sparse bitmap -----------------------------------------------------------


def test_sparse_bitmap_basics() -> None:
    b = SparseBitmap(2**64)
    top = 2**64 - 1
    assert b.size == 2**64 and b.count == 0 and b.nodes == 0
    assert b.set(top) and not b.set(top) and b.test(top) and b.count == 1
    assert b.find_clear(top) == 0 and b.claim(top) == 0
    assert b.clear(top) and not b.clear(top) and b.count == 1 and b.nodes == 1
    with pytest.raises(IndexError):
        b.set(2**64)
    with pytest.raises(IndexError):
        b.test(-1)
    with pytest.raises(ValueError, match="positive"):
        SparseBitmap(0)


def test_sparse_bitmap_full_summaries_are_skipped() -> None:
    n = 64**3 + 5  # three summary levels, a partial last word
    b = SparseBitmap(n)
    for i in range(n):
        assert b.claim(i) == i
    assert b.count == n and b.find_clear(0) is None and b.claim(7) is None
    assert b.nodes == n // 64 + 1 + 64 + 1 + 1  # words, full leaves' parents, ...
    for hole in (0, 63, 64, 4095, 4096, 64**3 - 1, 64**3, n - 1):
        b.clear(hole)
        for start in (0, 1, 63, 4096, 4097, 64**2 * 7 + 3, 64**3, n - 1):
            assert b.find_clear(start) == hole
        b.set(hole)
    b.clear(100)
    b.clear(200_000)
    assert b.find_clear(101) == 200_000 and b.find_clear(200_001) == 100
    assert list(b.iter_set())[98:102] == [98, 99, 101, 102]
    for i in range(n):
        b.clear(i)
    assert b.count == 0 and b.nodes == 0


def test_sparse_bitmap_run_across_boundaries_of_a_huge_range() -> None:
    b = SparseBitmap(2**64)
    lo = 2**40 - 100  # a run over a boundary of every summary level
    for i in range(lo, lo + 10_000):
        b.set(i)
    assert b.find_clear(lo) == lo + 10_000 and b.find_clear(lo - 1) == lo - 1
    b.clear(2**40)
    assert b.find_clear(lo) == 2**40
    for i in range(2**64 - 5000, 2**64):
        b.set(i)
    assert b.find_clear(2**64 - 4000) == 0  # wraps
    b.set(0)
    assert b.find_clear(2**64 - 1) == 1


# --- pool ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subnet", "capacity"),
    [("fd00::/126", 2), ("fd00::/124", 14), ("fd00::/120", 254), ("fd00::/64", 2**64 - 2)],
)
def test_capacity6(subnet: str, capacity: int) -> None:
    p = pool6(subnet)
    assert p.capacity == capacity
    assert p.allocated == 0 and p.available == capacity and p.cursor is None


@pytest.mark.parametrize("prefix", [126, 124, 120])
@pytest.mark.parametrize("gw_pos", ["first", "middle", "last"])
def test_exhaustion_is_exact(prefix: int, gw_pos: str) -> None:
    subnet = IPv6Network(f"fd00:30::/{prefix}")
    addresses = [subnet[i] for i in range(1, subnet.num_addresses)]
    gw = {"first": addresses[0], "middle": addresses[len(addresses) // 2],
          "last": addresses[-1]}[gw_pos]
    p = AddressPool6(subnet, gateway=gw)
    got = drain(p)
    assert len(got) == len(set(got)) == p.capacity == p.allocated
    assert set(got) == set(addresses) - {gw}  # the last address too: no broadcast
    assert p.available == 0
    before = (list(p.leases()), p.cursor)
    with pytest.raises(ResourceExhausted, match=f"all {p.capacity} usable addresses"):
        p.allocate_int()
    assert (list(p.leases()), p.cursor) == before
    p.release(got[0])
    assert p.allocate() == got[0]


def test_constructor_rejects6() -> None:
    for prefix in (63, 127, 128):
        with pytest.raises(InvalidArgument, match="/64 to /126") as info:
            pool6(f"fd00::/{prefix}", "fd00::1")
        assert info.value.field == "subnet6"
    with pytest.raises(InvalidArgument, match="anycast"):
        pool6("fd00::/64", "fd00::")
    with pytest.raises(InvalidArgument, match="outside"):
        pool6("fd00::/64", "fd01::1")


def test_pool_for_picks_the_family() -> None:
    v4 = pool_for(IPv4Network("10.20.0.0/24"), gateway="10.20.0.1")
    v6 = pool_for(IPv6Network("fd00:30::/64"), gateway=IPv6Address("fd00:30::1"))
    assert isinstance(v4, AddressPool) and v4.allocate() == IPv4Address("10.20.0.2")
    assert isinstance(v6, AddressPool6) and v6.allocate() == IPv6Address("fd00:30::2")
    assert repr(v6) == "AddressPool6(fd00:30::/64, gateway=fd00:30::1, allocated=1/" \
        f"{2**64 - 2})"
    with pytest.raises(InvalidArgument, match="not a valid IPv6 address"):
        pool_for(IPv6Network("fd00:30::/64"), gateway=IPv4Address("10.0.0.1"))  # type: ignore[call-overload]


def test_next_fit_wraps_at_the_top_of_a_slash64() -> None:
    p = pool6("fd00:30::/64")
    p.restore([], cursor="fd00:30::ffff:ffff:ffff:fffd")
    got = [str(p.allocate()) for _ in range(4)]
    assert got == ["fd00:30::ffff:ffff:ffff:fffe", "fd00:30::ffff:ffff:ffff:ffff",
                   "fd00:30::2", "fd00:30::3"]
    assert p.release("fd00:30::ffff:ffff:ffff:fffe") and p.cursor == IPv6Address("fd00:30::3")
    assert p.allocate_int() == int(IPv6Address("fd00:30::4"))


@pytest.mark.parametrize(
    ("address", "error", "message"),
    [
        ("fd00:30::1", InvalidArgument, "fd00:30::1 is the gateway of fd00:30::/64"),
        ("fd00:30::", InvalidArgument, "is the subnet-router anycast address of fd00:30::/64"),
        ("fd00:31::9", InvalidArgument, "fd00:31::9 is outside fd00:30::/64"),
        ("10.0.0.1", InvalidArgument, "not a valid IPv6 address"),
        ("fd00:30::7", AlreadyExists, "fd00:30::7 is already allocated in fd00:30::/64"),
    ],
)
def test_reserve_errors6(address: str, error: type[Exception], message: str) -> None:
    p = pool6("fd00:30::/64")
    p.reserve("fd00:30::7")
    with pytest.raises(error, match=message):
        p.reserve(address)
    assert p.allocated == 1


def test_static_reserve_does_not_move_cursor_and_is_skipped() -> None:
    p = pool6("fd00:30::/64")
    p.reserve(IPv6Address("fd00:30::2"))
    p.reserve("fd00:30::ffff:0:0:1")
    assert p.cursor is None and p.allocate() == IPv6Address("fd00:30::3")
    assert p.is_allocated("fd00:30::ffff:0:0:1") and "fd00:30::ffff:0:0:1" in p
    assert "fd00:30::1" not in p and "fd00:31::2" not in p and "junk" not in p
    assert IPv4Address("10.0.0.2") not in p and 3 not in p
    assert not p.is_allocated("fd00:30::1") and not p.is_allocated("fd00:31::2")
    with pytest.raises(InvalidArgument, match="gateway"):
        p.release("fd00:30::1")
    assert [str(a) for a in p.leases()] == ["fd00:30::2", "fd00:30::3", "fd00:30::ffff:0:0:1"]


def test_restore_resumes_next_fit_after_restart6() -> None:
    p = pool6("fd00:30::/64")
    got = [p.allocate() for _ in range(6)]
    p.reserve("fd00:30::8")
    p.release(got[-1])  # the highest dynamic lease is gone, the cursor still points there
    q = pool6("fd00:30::/64")
    q.restore(p.leases(), cursor=p.cursor)
    assert [q.allocate() for _ in range(3)] == [p.allocate() for _ in range(3)]
    r = pool6("fd00:30::/64")
    r.restore(["fd00:30::5", "fd00:30::9"])  # no cursor: above the highest lease
    assert r.cursor == IPv6Address("fd00:30::9") and r.allocate() == IPv6Address("fd00:30::a")
    with pytest.raises(AlreadyExists, match="restored twice"):
        r.restore(["fd00:30::20", "fd00:30::20"])
    with pytest.raises(InvalidArgument, match="outside"):
        r.restore(["fd00:30::21"], cursor="fd00:31::1")
    assert r.allocated == 3 and r.cursor == IPv6Address("fd00:30::a")


def _traced_bytes() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _nodes(p: AddressPool6) -> int:
    """Words and summary nodes the pool's sparse bitmap holds."""
    bits = p._bits
    assert isinstance(bits, SparseBitmap)
    return bits.nodes


def test_slash64_memory_follows_leases_not_the_subnet() -> None:
    """10,000 allocations and releases on a /64, and as many static leases scattered."""
    rng = random.Random(14)
    p = pool6("fd00:30::/64")
    base = int(p.subnet.network_address)
    offsets = {rng.randrange(2**32, 2**64) for _ in range(10_000)}  # clear of the dynamic run
    statics = [IPv6Address(base + off) for off in offsets]
    tracemalloc.start()
    try:
        empty = _traced_bytes()
        dynamic = [p.allocate_int() for _ in range(10_000)]
        for address in statics:
            p.reserve(address)
        assert p.allocated == 20_000
        # A word per scattered static lease; the dynamic run packs 64 leases a word.
        assert _nodes(p) <= len(statics) + len(dynamic) // 64 + 8
        held = _traced_bytes() - empty - 10_000 * 36  # minus the ints of `dynamic`
        assert held < 20_000 * 120, f"{held / 20_000:.0f} bytes a lease"
        for offset in dynamic:
            assert p.release(IPv6Address(offset))
        for address in statics:
            assert p.release(address)
        assert p.allocated == 0 and _nodes(p) == 1  # the word of the anycast and gateway
        # Churn: 10,000 more allocations, each releasing the oldest of 100 live leases.
        live = [p.allocate() for _ in range(100)]
        settled = _traced_bytes()
        for _ in range(10_000):
            p.release(live.pop(0))
            live.append(p.allocate())
        assert p.allocated == 100 and _nodes(p) <= 100 // 64 + 4
        assert _traced_bytes() - settled < 20_000
    finally:
        tracemalloc.stop()
