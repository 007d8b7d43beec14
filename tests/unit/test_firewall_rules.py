"""Unit tests of the pure parts of the firewall: rule building and notification parsing."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

from sheep_runtime.errors import InvalidArgument
from sheep_runtime.firewall.monitor import (
    NFT_MSG_NEWGEN,
    CommitFilter,
    Notification,
    parse,
)
from sheep_runtime.firewall.rules import (
    CHAINS,
    FirewallState,
    NetworkRules,
    PortRule,
    build_ruleset,
    shape,
    validate,
)
from sheep_runtime.model import Network, PortMapping

A = NetworkRules(name="a", bridge="shpbra", subnet=IPv4Network("10.20.0.0/16"),
                 gateway=IPv4Address("10.20.0.1"), internal=False, icc=True)
B = NetworkRules(name="b", bridge="shpbrb", subnet=IPv4Network("10.30.0.0/24"),
                 gateway=IPv4Address("10.30.0.1"), internal=False, icc=False)
INT = NetworkRules(name="i", bridge="shpbri", subnet=IPv4Network("10.40.0.0/24"),
                 gateway=IPv4Address("10.40.0.1"), internal=True, icc=True)


def port(host: int, container: int, *, count: int = 1, protocol: str = "tcp",
         host_ip: str = "", net: NetworkRules = A, ip: str = "10.20.0.2") -> PortRule:
    return PortRule(network=net.name, bridge=net.bridge, container_ip=IPv4Address(ip),
                    protocol="udp" if protocol == "udp" else "tcp", host_ip=host_ip,
                    host_port=host, container_port=container, count=count)


def objects(cmds: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {c["add"][kind]["name"]: c["add"][kind] for c in cmds
            if kind in c.get("add", {}) and kind != "rule"}


def rules(cmds: list[dict[str, Any]], chain: str) -> list[list[dict[str, Any]]]:
    return [c["add"]["rule"]["expr"] for c in cmds
            if "rule" in c.get("add", {}) and c["add"]["rule"]["chain"] == chain]


def test_batch_replaces_only_our_table() -> None:
    cmds = build_ruleset(FirewallState(networks=(A, B, INT), ports=(port(8080, 80),)),
                         table="sheep2")
    table = {"family": "inet", "name": "sheep2"}
    assert cmds[:3] == [{"add": {"table": table}}, {"delete": {"table": table}},
                        {"add": {"table": table}}]
    for cmd in cmds[3:]:
        ((verb, body),) = cmd.items()
        assert verb == "add"
        ((_, obj),) = body.items()
        assert (obj["family"], obj["table"]) == ("inet", "sheep2")


def test_empty_state_has_every_chain_and_no_elements() -> None:
    cmds = build_ruleset(FirewallState())
    assert set(objects(cmds, "chain")) == set(CHAINS)
    s = shape(cmds)
    assert all(n == 0 for n in s.sets.values())
    assert s.rules == {"guard": 2, "dnat_in": 1, "dnat_local": 2, "publish": 8, "snat": 3,
                       "forward": 8}
    assert s.chains["forward"] == ("forward", 0, "accept")
    assert s.chains["publish"] == ("", 0, "")


def test_networks_give_masquerade_isolation_and_icc() -> None:
    cmds = build_ruleset(FirewallState(networks=(A, B, INT)))
    sets = {**objects(cmds, "set"), **objects(cmds, "map")}
    assert sets["bridges"]["elem"] == ["shpbra", "shpbrb", "shpbri"]
    assert sets["internal"]["elem"] == ["shpbri"]
    verdicts = {e[0]["concat"][0]: e[1] for e in sets["same_bridge"]["elem"]}
    assert verdicts == {"shpbra": {"accept": None}, "shpbrb": {"drop": None},
                        "shpbri": {"accept": None}}
    assert [e["concat"][0] for e in sets["hairpin"]["elem"]] == ["shpbra", "shpbrb"]
    masquerades = [r for r in rules(cmds, "snat") if r[0]["match"]["left"] == {
        "payload": {"protocol": "ip", "field": "saddr"}} and r[1]["match"]["op"] == "!="]
    assert [(r[0]["match"]["right"]["prefix"]["addr"], r[1]["match"]["right"])
            for r in masquerades] == [("10.20.0.0", "shpbra"), ("10.30.0.0", "shpbrb")]


def test_equal_port_range_keeps_ports() -> None:
    cmds = build_ruleset(FirewallState(networks=(A,), ports=(port(9000, 9000, count=3),)))
    maps = objects(cmds, "map")
    assert maps["dnat_any"]["elem"] == [
        [{"concat": ["tcp", p]}, "10.20.0.2"] for p in (9000, 9001, 9002)]
    assert "elem" not in maps["dnat_any_port"] and "elem" not in maps["dnat_addr"]
    assert "flags" not in maps["dnat_any"]  # a hash map: O(1) add and delete


def test_shifted_range_maps_each_port() -> None:
    cmds = build_ruleset(FirewallState(networks=(A,), ports=(
        port(7000, 80, count=2, host_ip="198.51.100.2", protocol="udp"),)))
    maps = objects(cmds, "map")
    assert maps["dnat_addr"]["elem"] == [
        [{"concat": ["198.51.100.2", "udp", p]}, "10.20.0.2"] for p in (7000, 7001)]
    assert maps["dnat_addr_port"]["elem"] == [
        [{"concat": ["198.51.100.2", "udp", 7000]}, 80],
        [{"concat": ["198.51.100.2", "udp", 7001]}, 81]]
    assert "elem" not in maps["dnat_any"]


def test_shape_counts_rules_and_elements() -> None:
    state = FirewallState(networks=(A, B), ports=(port(8080, 80), port(9000, 9000, count=5)))
    cmds = build_ruleset(state)
    s = shape(cmds)
    assert s.sets["dnat_any"] == 6 and s.sets["dnat_any_port"] == 1
    assert s.rules["snat"] == 5
    # A `list table` answer has the same objects without the "add" wrapper.
    listing = [{"metainfo": {}}] + [c["add"] for c in cmds[2:]]
    assert shape(listing) == s
    assert shape(build_ruleset(FirewallState(networks=(A, B)))) != s


@pytest.mark.parametrize("ports", [
    (port(8080, 80), port(8080, 81, ip="10.20.0.3")),
    (port(8080, 80, host_ip="127.0.0.1"), port(8080, 81)),
    (port(9000, 9000, count=10), port(9009, 80)),
    (port(8080, 80, host_ip="1.2.3.4"), port(8075, 75, count=6, host_ip="1.2.3.4")),
])
def test_overlapping_host_ports_are_refused(ports: tuple[PortRule, ...]) -> None:
    with pytest.raises(InvalidArgument, match="overlaps"):
        build_ruleset(FirewallState(networks=(A,), ports=ports))


def test_disjoint_host_ports_are_fine() -> None:
    validate(FirewallState(networks=(A,), ports=(
        port(8080, 80), port(8080, 80, protocol="udp"), port(8081, 80, count=2),
        port(9000, 80, host_ip="127.0.0.1"), port(9000, 80, host_ip="198.51.100.2"))))


@pytest.mark.parametrize(("state", "message"), [
    (FirewallState(networks=(A, A)), "duplicate bridge"),
    (FirewallState(networks=(A,), ports=(port(80, 80, net=B, ip="10.30.0.2"),)),
     "unknown network"),
    (FirewallState(networks=(INT,), ports=(port(80, 80, net=INT, ip="10.40.0.2"),)), "internal"),
    (FirewallState(networks=(A,), ports=(port(80, 80, ip="10.99.0.2"),)), "not in"),
    (FirewallState(networks=(A,), ports=(port(65535, 80, count=2),)), "range"),
    (FirewallState(networks=(A,), ports=(port(0, 80),)), "range"),
    (FirewallState(networks=(A,), ports=(port(80, 80, host_ip="::1"),)), "host address"),
])
def test_invalid_states_are_refused(state: FirewallState, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        build_ruleset(state)


def test_records_from_the_model() -> None:
    network = Network(id="n" * 64, name="a", bridge="shpbra", bridge_mac="02:00:00:00:00:01",
                      subnet=A.subnet, gateway=A.gateway, mtu=1500, internal=False,
                      icc=True, created_at=0.0)
    assert NetworkRules.of(network) == A
    mapping = PortMapping(protocol="tcp", host_ip="", host_port=8080, container_port=80)
    assert PortRule.of(network, IPv4Address("10.20.0.2"), mapping) == port(8080, 80)
    with pytest.raises(InvalidArgument):
        PortRule.of(network, IPv4Address("10.20.0.2"),
                    PortMapping(protocol="sctp", host_ip="", host_port=1, container_port=1))


def _message(msg_type: int, family: int, attrs: list[tuple[int, bytes]]) -> bytes:
    body = struct.pack("=BBH", family, 0, 0)
    for kind, value in attrs:
        attr = struct.pack("=HH", 4 + len(value), kind) + value
        body += attr + b"\0" * (-len(attr) % 4)
    return struct.pack("=IHHII", 16 + len(body), (10 << 8) | msg_type, 0, 0, 0) + body


def test_parse_notifications() -> None:
    data = (_message(2, 1, [(1, b"sheep\0"), (3, b"\0\0\0\1")])  # DELTABLE inet sheep
            + _message(NFT_MSG_NEWGEN, 0, [(1, b"\0\0\0\7"), (2, struct.pack(">I", 4242)),
                                           (3, b"nft\0")]))
    assert list(parse(data)) == [Notification(msg_type=2, family=1, table="sheep"),
                                 Notification(msg_type=NFT_MSG_NEWGEN, family=0, pid=4242)]
    assert list(parse(data[:10])) == []  # truncated: nothing, no crash


def test_commit_filter_ignores_own_and_unrelated_commits() -> None:
    own = {"pid": 100}
    f = CommitFilter("sheep", lambda: own["pid"])
    ours = Notification(msg_type=8, family=1, table="sheep")  # DELRULE
    gen = {pid: Notification(msg_type=NFT_MSG_NEWGEN, family=0, pid=pid) for pid in (100, 7)}
    assert not f.feed(ours) and not f.feed(gen[100])  # our own apply
    assert not f.feed(ours) and f.feed(gen[7])  # someone else's
    assert not f.feed(gen[7])  # a commit that did not touch our table
    for other in (Notification(msg_type=8, family=1, table="user_t"),
                  Notification(msg_type=8, family=2, table="sheep")):  # ip sheep is not ours
        assert not f.feed(other) and not f.feed(gen[7])
    f.feed(ours)
    f.reset()
    assert not f.feed(gen[7])
