"""Unit tests of the pure IPAM package: subnets, bitmap and address pool."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, ip_network

import pytest

from sheep_runtime.errors import AlreadyExists, InvalidArgument, ResourceExhausted
from sheep_runtime.ipam import (
    AddressPool,
    Bitmap,
    default_gateway,
    find_overlap,
    parse_subnet,
    validate_gateway,
)


def net(text: str) -> IPv4Network:
    n = ip_network(text)
    assert isinstance(n, IPv4Network)
    return n


def pool(text: str, gateway: str | None = None) -> AddressPool:
    subnet = net(text)
    return AddressPool(subnet, gateway=gateway or default_gateway(subnet))


def drain(p: AddressPool) -> list[IPv4Address]:
    out = []
    while True:
        try:
            out.append(p.allocate())
        except ResourceExhausted:
            return out


# --- subnets ---------------------------------------------------------------


def test_parse_subnet_ok() -> None:
    assert parse_subnet(" 10.20.0.0/16 ") == net("10.20.0.0/16")
    assert parse_subnet("10.0.0.0/8") == net("10.0.0.0/8")
    assert parse_subnet("192.168.1.4/30") == net("192.168.1.4/30")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("10.20.0.5/16", "did you mean '10.20.0.0/16'"),
        ("10.0.0.0/7", "between /8 and /30"),
        ("10.0.0.0/31", "between /8 and /30"),
        ("10.0.0.0", "needs a prefix length"),
        ("10.0.0.300/24", "not a valid CIDR"),
        ("banana/24", "not a valid CIDR"),
        ("fd00::/64", "IPv6"),
    ],
)
def test_parse_subnet_errors(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment) as info:
        parse_subnet(text)
    assert info.value.field == "subnet"


def test_default_and_validate_gateway() -> None:
    subnet = net("10.20.0.0/16")
    assert default_gateway(subnet) == IPv4Address("10.20.0.1")
    assert validate_gateway(subnet, "10.20.255.254") == IPv4Address("10.20.255.254")
    for bad, fragment in [
        ("10.21.0.1", "outside"),
        ("10.20.0.0", "network address"),
        ("10.20.255.255", "broadcast address"),
        ("nope", "not a valid IPv4 address"),
    ]:
        with pytest.raises(InvalidArgument, match=fragment) as info:
            validate_gateway(subnet, bad)
        assert info.value.field == "gateway"


def test_find_overlap() -> None:
    existing = {
        "a": net("10.1.0.0/16"),
        "b": net("10.2.0.0/16"),
        "c": net("10.0.0.0/8"),
        "v6": ip_network("fd00::/64"),
    }
    assert find_overlap(net("10.2.3.0/24"), existing) == "b"
    assert find_overlap(net("10.3.0.0/16"), existing) == "c"
    assert find_overlap(net("192.168.0.0/24"), existing) is None
    assert find_overlap(net("0.0.0.0/0"), {"v6": ip_network("::/0")}) is None
    assert find_overlap(net("10.0.0.0/8"), {}) is None


# --- bitmap ----------------------------------------------------------------


def test_bitmap_basics() -> None:
    b = Bitmap(13)
    assert len(b) == 13 and b.count == 0
    assert b.set(3) and not b.set(3) and b.test(3) and b.count == 1
    assert b.clear(3) and not b.clear(3) and not b.test(3) and b.count == 0
    with pytest.raises(IndexError):
        b.set(13)
    with pytest.raises(IndexError):
        b.test(-1)
    with pytest.raises(ValueError, match="positive"):
        Bitmap(0)


def test_bitmap_find_clear_wraps_and_ignores_padding() -> None:
    b = Bitmap(13)  # 3 padding bits in the last byte
    for i in range(13):
        b.set(i)
    assert b.find_clear(0) is None and b.claim(5) is None
    b.clear(2)
    assert [b.find_clear(s) for s in (0, 2, 3, 12, 13)] == [2, 2, 2, 2, 2]
    b.clear(12)
    assert b.find_clear(3) == 12 and b.find_clear(0) == 2
    assert b.claim(3) == 12 and b.claim(3) == 2 and b.claim(0) is None
    assert b.count == 13


def test_bitmap_full_blocks_are_skipped() -> None:
    n = 3 * 4096 + 5
    b = Bitmap(n)
    for i in range(n):
        assert b.claim(i) == i
    assert b.count == n and b.find_clear(0) is None
    for hole in (0, 4095, 4096, 8191, 9000, n - 1):
        b.clear(hole)
        for start in (0, 1, 4095, 4096, 4097, 8192, n - 1):
            assert b.find_clear(start) == hole
        b.set(hole)
    b.clear(100)
    b.clear(9000)
    assert b.find_clear(101) == 9000 and b.find_clear(9001) == 100
    assert list(b.iter_set()) == [i for i in range(n) if i not in (100, 9000)]


# --- pool ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subnet", "capacity"),
    [
        ("10.0.0.0/30", 1),
        ("10.0.0.0/29", 5),
        ("10.0.0.0/24", 253),
        ("10.0.0.0/16", 65533),
        ("10.0.0.0/8", 16777213),
    ],
)
def test_capacity(subnet: str, capacity: int) -> None:
    p = pool(subnet)
    assert p.capacity == capacity
    assert p.allocated == 0 and p.available == capacity and p.cursor is None


@pytest.mark.parametrize("prefix", [30, 29, 24, 16])
@pytest.mark.parametrize("gw_pos", ["first", "middle", "last"])
def test_reserved_addresses_never_allocated(prefix: int, gw_pos: str) -> None:
    subnet = net(f"10.20.0.0/{prefix}")
    hosts = list(subnet.hosts())
    gw = {"first": hosts[0], "middle": hosts[len(hosts) // 2], "last": hosts[-1]}
    p = AddressPool(subnet, gateway=gw[gw_pos])
    got = drain(p)
    assert len(got) == len(set(got)) == p.capacity == p.allocated
    assert set(got) == set(hosts) - {gw[gw_pos]}
    assert p.available == 0


def test_constructor_rejects() -> None:
    with pytest.raises(InvalidArgument, match="IPv6"):
        AddressPool(ip_network("fd00::/120"), gateway="10.0.0.1")
    for subnet in ("10.0.0.0/31", "10.0.0.0/32"):
        with pytest.raises(InvalidArgument, match="too small"):
            pool(subnet)
    with pytest.raises(InvalidArgument, match="more than 16777216"):
        pool("10.0.0.0/7")
    with pytest.raises(InvalidArgument, match="broadcast"):
        pool("10.0.0.0/24", "10.0.0.255")
    with pytest.raises(InvalidArgument, match="outside"):
        pool("10.0.0.0/24", "10.0.1.1")


def test_allocate_is_sequential_from_first_host() -> None:
    p = pool("10.20.0.0/24")
    assert [str(p.allocate()) for _ in range(3)] == ["10.20.0.2", "10.20.0.3", "10.20.0.4"]
    assert p.cursor == IPv4Address("10.20.0.4")
    assert p.allocate_int() == int(IPv4Address("10.20.0.5"))


def test_next_fit_does_not_reuse_released_until_wrap() -> None:
    p = pool("10.20.0.0/24")
    first = [p.allocate() for _ in range(10)]
    assert p.release(first[2]) is True
    assert p.release(first[2]) is False  # idempotent
    following = p.allocate()
    assert following == first[-1] + 1 != first[2]
    rest = drain(p)  # fills up to .254 and then wraps to the one hole
    assert rest[-1] == first[2]
    assert first[2] not in rest[:-1]
    assert p.allocated == p.capacity


def test_exhaustion_leaves_state_unchanged() -> None:
    p = pool("10.20.0.0/29")
    drain(p)
    before = (p.allocated, list(p.leases()), p.cursor)
    with pytest.raises(ResourceExhausted, match=r"10\.20\.0\.0/29"):
        p.allocate()
    with pytest.raises(ResourceExhausted):
        p.allocate_int()
    assert (p.allocated, list(p.leases()), p.cursor) == before
    p.release("10.20.0.4")
    assert p.allocate() == IPv4Address("10.20.0.4")


@pytest.mark.parametrize(
    ("address", "error", "message"),
    [
        ("10.20.0.1", InvalidArgument, "10.20.0.1 is the gateway of 10.20.0.0/16"),
        ("10.20.0.0", InvalidArgument, "10.20.0.0 is the network address of 10.20.0.0/16"),
        ("10.20.255.255", InvalidArgument, "is the broadcast address of 10.20.0.0/16"),
        ("10.21.0.9", InvalidArgument, "10.21.0.9 is outside 10.20.0.0/16"),
        ("10.20.0.", InvalidArgument, "not a valid IPv4 address"),
        ("10.20.0.7", AlreadyExists, "10.20.0.7 is already allocated in 10.20.0.0/16"),
    ],
)
def test_reserve_errors(address: str, error: type[Exception], message: str) -> None:
    p = pool("10.20.0.0/16")
    p.reserve("10.20.0.7")
    with pytest.raises(error, match=message):
        p.reserve(address)
    assert p.allocated == 1


def test_reserve_does_not_move_cursor_and_is_skipped() -> None:
    p = pool("10.20.0.0/24")
    p.reserve(IPv4Address("10.20.0.2"))
    p.reserve("10.20.0.3")
    assert p.cursor is None
    assert p.allocate() == IPv4Address("10.20.0.4")
    p.reserve("10.20.0.200")
    assert p.cursor == IPv4Address("10.20.0.4")
    assert p.allocate() == IPv4Address("10.20.0.5")
    assert p.allocated == 5


def test_release_and_membership() -> None:
    p = pool("10.20.0.0/24")
    a = p.allocate()
    assert p.is_allocated(a) and a in p and str(a) in p
    assert "10.20.0.9" not in p and "10.99.0.1" not in p and "junk" not in p
    assert 42 not in p and None not in p
    assert not p.is_allocated("10.20.0.1") and not p.is_allocated("10.99.0.1")
    with pytest.raises(InvalidArgument, match="gateway"):
        p.release("10.20.0.1")
    with pytest.raises(InvalidArgument, match="outside"):
        p.release("10.99.0.1")
    assert p.release(a) and not p.is_allocated(a) and a not in p
    assert p.allocated == 0 and p.cursor == a


def test_restore_with_and_without_cursor() -> None:
    leases: list[IPv4Address | str] = ["10.20.0.9", "10.20.0.3", IPv4Address("10.20.0.5")]
    p = pool("10.20.0.0/24")
    p.restore(leases)
    assert p.allocated == 3 and p.cursor == IPv4Address("10.20.0.9")
    assert [str(a) for a in p.leases()] == ["10.20.0.3", "10.20.0.5", "10.20.0.9"]
    assert p.allocate() == IPv4Address("10.20.0.10")

    q = pool("10.20.0.0/24")
    q.restore(leases, cursor="10.20.0.4")
    assert q.cursor == IPv4Address("10.20.0.4")
    assert q.allocate() == IPv4Address("10.20.0.6")  # .5 is restored

    r = pool("10.20.0.0/24")
    r.restore([])
    assert r.cursor is None and r.allocated == 0


def test_restore_resumes_next_fit_after_restart() -> None:
    p = pool("10.20.0.0/28")
    got = [p.allocate() for _ in range(6)]
    p.release(got[-1])  # the highest lease is gone, the cursor still points there
    q = pool("10.20.0.0/28")
    q.restore(p.leases(), cursor=p.cursor)
    assert q.allocate() == p.allocate() == got[-1] + 1


@pytest.mark.parametrize(
    ("leases", "cursor", "error", "message"),
    [
        (["10.20.0.3", "10.20.0.1"], None, InvalidArgument, "gateway"),
        (["10.20.0.3", "10.30.0.1"], None, InvalidArgument, "outside"),
        (["10.20.0.3", "bad"], None, InvalidArgument, "not a valid"),
        (["10.20.0.3", "10.20.0.3"], None, AlreadyExists, "restored twice"),
        (["10.20.0.3", "10.20.0.7"], None, AlreadyExists, "10.20.0.7"),
        (["10.20.0.3"], "10.30.0.1", InvalidArgument, "outside"),
    ],
)
def test_restore_is_all_or_nothing(
    leases: list[str], cursor: str | None, error: type[Exception], message: str
) -> None:
    p = pool("10.20.0.0/24")
    p.reserve("10.20.0.7")
    with pytest.raises(error, match=message):
        p.restore(leases, cursor=cursor)
    assert [str(a) for a in p.leases()] == ["10.20.0.7"]
    assert p.allocated == 1 and p.cursor is None


def test_slash8_allocates_across_blocks_and_wraps() -> None:
    p = pool("10.0.0.0/8")
    p.restore([], cursor="10.255.255.250")
    got = [str(p.allocate()) for _ in range(6)]
    assert got == [
        "10.255.255.251",
        "10.255.255.252",
        "10.255.255.253",
        "10.255.255.254",
        "10.0.0.2",
        "10.0.0.3",
    ]
    p.release("10.255.255.252")
    p.restore([], cursor="10.0.0.3")
    p.reserve("10.0.0.4")
    assert p.allocate() == IPv4Address("10.0.0.5")
