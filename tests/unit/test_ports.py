"""Host port leases: conflicts name the holder, ranges count port by port."""

from __future__ import annotations

import pytest

from sheep_runtime.errors import AlreadyExists, InvalidArgument
from sheep_runtime.model import PortMapping
from sheep_runtime.ops.ports import PortTable, describe, validate_ports


def pm(host: int, cont: int, *, count: int = 1, proto: str = "tcp", ip: str = "") -> PortMapping:
    return PortMapping(protocol=proto, host_ip=ip, host_port=host, container_port=cont,
                       count=count)


def test_conflict_names_the_holder_and_changes_nothing() -> None:
    t = PortTable()
    t.reserve("a" * 64, [pm(8080, 80)])
    with pytest.raises(AlreadyExists, match="aaaaaaaaaaaa"):
        t.reserve("b" * 64, [pm(9000, 90), pm(8075, 75, count=10)])
    assert t.owner("tcp", "", 9000) is None  # all or nothing
    t.reserve("b" * 64, [pm(8080, 80, proto="udp")])  # another protocol is free


def test_any_address_clashes_with_a_specific_one() -> None:
    t = PortTable()
    t.reserve("a", [pm(80, 80, ip="198.51.100.2")])
    t.reserve("b", [pm(80, 80, ip="198.51.100.3")])
    with pytest.raises(AlreadyExists):
        t.reserve("c", [pm(80, 80)])
    t.release("a", [pm(80, 80, ip="198.51.100.2")])
    t.release("b", [pm(80, 80, ip="198.51.100.3")])
    t.reserve("c", [pm(80, 80)])
    with pytest.raises(AlreadyExists):
        t.reserve("d", [pm(80, 80, ip="198.51.100.2")])


def test_release_frees_the_range() -> None:
    t = PortTable()
    t.reserve("a", [pm(7000, 80, count=3)])
    assert t.owner("tcp", "", 7002) == "a"
    t.release("a", [pm(7000, 80, count=3)])
    t.reserve("b", [pm(7001, 81)])


@pytest.mark.parametrize("bad", [
    pm(0, 80), pm(65535, 80, count=2), pm(80, 80, proto="sctp"), pm(80, 80, ip="nope"),
    pm(80, 80, count=0),
])
def test_invalid_mappings(bad: PortMapping) -> None:
    with pytest.raises(InvalidArgument):
        validate_ports([bad])


def test_duplicate_host_port_in_one_request() -> None:
    with pytest.raises(InvalidArgument, match="twice"):
        validate_ports([pm(80, 80), pm(79, 1, count=2)])


def test_describe() -> None:
    assert describe(pm(8080, 80, count=3, ip="127.0.0.1", proto="udp")) == \
        "127.0.0.1:8080-8082:80-82/udp"
