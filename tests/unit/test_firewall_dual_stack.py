"""Unit tests of the firewall's IPv6 rules, port elements per family, the incremental
change's commands, and the overlap index it is checked against (pure)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sheep_runtime.errors import InvalidArgument
from sheep_runtime.firewall.elements import build_port_update, port_elements
from sheep_runtime.firewall.records import PortClaims, check_overlaps
from sheep_runtime.firewall.rules import (
    FirewallState,
    NetworkRules,
    PortRule,
    build_ruleset,
    shape,
    validate,
)
from sheep_runtime.model import Attachment, Network, PortMapping
from sheep_runtime.ops.firewall import rules_of

V4 = NetworkRules(name="v4", bridge="shpv4", subnet=IPv4Network("10.20.0.0/16"),
                  gateway=IPv4Address("10.20.0.1"), internal=False, icc=True)
DUAL = NetworkRules(name="dual", bridge="shpdual", subnet=IPv4Network("10.30.0.0/24"),
                    gateway=IPv4Address("10.30.0.1"), internal=False, icc=True,
                    subnet6=IPv6Network("fd00:30::/64"), gateway6=IPv6Address("fd00:30::1"))
INT6 = NetworkRules(name="int6", bridge="shpint6", subnet=IPv4Network("10.40.0.0/24"),
                    gateway=IPv4Address("10.40.0.1"), internal=True, icc=True,
                    subnet6=IPv6Network("fd00:40::/64"), gateway6=IPv6Address("fd00:40::1"))


def port(host: int, container: int, *, host_ip: str = "", count: int = 1,
         protocol: str = "tcp", ip6: str | None = "fd00:30::2", ip: str = "10.30.0.2",
         net: NetworkRules = DUAL) -> PortRule:
    return PortRule(network=net.name, bridge=net.bridge, container_ip=IPv4Address(ip),
                    protocol="udp" if protocol == "udp" else "tcp", host_ip=host_ip,
                    host_port=host, container_port=container, count=count,
                    container_ip6=IPv6Address(ip6) if ip6 else None)


def objects(cmds: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {body["name"]: body for c in cmds for kind, body in c.get("add", {}).items()
            if kind in ("set", "map")}


def rules(cmds: list[dict[str, Any]], chain: str) -> list[list[dict[str, Any]]]:
    return [c["add"]["rule"]["expr"] for c in cmds
            if "rule" in c.get("add", {}) and c["add"]["rule"]["chain"] == chain]


def test_dual_stack_networks_get_ipv6_twins_of_every_address_rule() -> None:
    cmds = build_ruleset(FirewallState(networks=(V4, DUAL, INT6)))
    sets = objects(cmds)
    assert sets["ipv4_only"]["elem"] == ["shpv4"]
    assert sets["hairpin6"]["elem"] == [{"concat": ["shpdual", {"prefix": {
        "addr": "fd00:30::", "len": 64}}]}]  # internal networks have no hairpin
    assert sets["dnat6_addr"]["type"] == ["ipv6_addr", "inet_proto", "inet_service"]
    assert sets["dnat6_any"]["type"] == ["inet_proto", "inet_service"]
    assert sets["dnat6_addr"]["map"] == sets["dnat6_any"]["map"] == "ipv6_addr"
    assert sets["dnat6_addr_port"]["map"] == sets["dnat6_any_port"]["map"] == "inet_service"
    saddr6 = {"payload": {"protocol": "ip6", "field": "saddr"}}
    egress6 = [r for r in rules(cmds, "snat") if r[0]["match"]["left"] == saddr6]
    assert [(r[0]["match"]["right"]["prefix"]["addr"], r[1]["match"]["right"])
            for r in egress6] == [("fd00:30::", "shpdual")]  # not the internal one
    publish = rules(cmds, "publish")
    assert [r[-1]["dnat"]["family"] for r in publish] == ["ip"] * 4 + ["ip6"] * 4
    # proto . port keys name no family: those rules match their own explicitly
    nfproto = [r[0]["match"]["right"] for r in publish if r[0]["match"]["left"] == {
        "meta": {"key": "nfproto"}}]
    assert nfproto == ["ipv4", "ipv4", "ipv6", "ipv6"]
    daddr6 = {"payload": {"protocol": "ip6", "field": "daddr"}}
    assert [daddr6, "::1"] in [[e["match"]["left"], e["match"]["right"]]
                               for r in rules(cmds, "guard") for e in r if "match" in e]
    assert rules(cmds, "dnat_local")[0] == [
        {"match": {"op": "==", "left": daddr6, "right": "::1"}}, {"return": None}]


def test_forward_verdicts_match_no_single_family() -> None:
    """An `ip`/`ip6` payload match would silently skip the other family: apart from
    the cluster's, the forward chain matches interfaces, conntrack and nfproto only."""
    for r in rules(build_ruleset(FirewallState(networks=(V4, DUAL, INT6))), "forward"):
        assert "payload" not in str(r), r


def test_ipv4_only_state_keeps_its_ipv4_elements() -> None:
    p = port(8080, 80, ip6=None, net=V4, ip="10.20.0.2")
    sets = objects(build_ruleset(FirewallState(networks=(V4,), ports=(p,))))
    assert sets["dnat_any"]["elem"] == [[{"concat": ["tcp", 8080]}, "10.20.0.2"]]
    assert sets["dnat_any_port"]["elem"] == [[{"concat": ["tcp", 8080]}, 80]]
    assert not any("elem" in sets[name] for name in (
        "dnat6_any", "dnat6_addr", "hairpin6"))


@pytest.mark.parametrize(("host_ip", "maps", "key"), [
    ("", ["dnat_any", "dnat6_any"], []),
    ("0.0.0.0", ["dnat_any"], []),
    ("::", ["dnat6_any"], []),
    ("198.51.100.2", ["dnat_addr"], ["198.51.100.2"]),
    ("2001:db8::2", ["dnat6_addr"], ["2001:db8::2"]),
    ("2001:0db8:0::2", ["dnat6_addr"], ["2001:db8::2"]),  # canonical, as nft lists it
])
def test_host_ip_picks_the_maps(host_ip: str, maps: list[str], key: list[str]) -> None:
    elems = port_elements(port(7000, 80, host_ip=host_ip, count=2))
    assert sorted(name for name, e in elems.items() if e) == sorted(
        [*maps, *(f"{m}_port" for m in maps)])
    for name in maps:
        target = "fd00:30::2" if "6" in name else "10.30.0.2"
        assert elems[name] == [[{"concat": [*key, "tcp", p]}, target] for p in (7000, 7001)]
        assert elems[f"{name}_port"] == [[{"concat": [*key, "tcp", p]}, c]
                                         for p, c in ((7000, 80), (7001, 81))]


def test_any_address_without_ipv6_publishes_over_ipv4_only() -> None:
    elems = port_elements(port(8080, 8080, ip6=None))
    assert [name for name, e in elems.items() if e] == ["dnat_any"]  # equal ports


@pytest.mark.parametrize(("p", "message"), [
    (port(80, 80, host_ip="2001:db8::2", ip6=None), "needs a container with an IPv6"),
    (port(80, 80, host_ip="::1"), "loopback"),
    (port(80, 80, ip6="fd00:99::2"), "not in network dual's IPv6 subnet"),
    (port(80, 80, ip6="fd00:30::2", net=V4, ip="10.20.0.2"), "IPv6 subnet"),
    (port(80, 80, host_ip="2001:db8::zz"), "bad host address"),
])
def test_invalid_ipv6_ports_are_refused(p: PortRule, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate(FirewallState(networks=(V4, DUAL), ports=(p,)))


@pytest.mark.parametrize(("a", "b", "clash"), [
    ("", "::", True), ("", "2001:db8::2", True), ("::", "2001:db8::2", True),
    ("0.0.0.0", "127.0.0.1", True), ("2001:db8::2", "2001:db8:0::2", True),
    ("0.0.0.0", "::", False), ("127.0.0.1", "2001:db8::2", False),
    ("2001:db8::2", "2001:db8::3", False),
])
def test_overlaps_are_per_family(a: str, b: str, clash: bool) -> None:
    ports = (port(80, 80, host_ip=a), port(80, 81, host_ip=b, ip="10.30.0.3",
                                          ip6="fd00:30::3"))
    state = FirewallState(networks=(DUAL,), ports=ports)
    if clash:
        with pytest.raises(InvalidArgument, match="overlaps"):
            validate(state)
    else:
        validate(state)
        assert len(shape(build_ruleset(state)).sets) > 0


def test_rules_of_an_attachment_carry_its_ipv6_address() -> None:
    from ipaddress import IPv4Interface, IPv6Interface
    network = Network(id="n" * 64, name="dual", bridge="shpdual", bridge_mac="02:00:00:00:00:01",
                      subnet=DUAL.subnet, gateway=DUAL.gateway, mtu=1500, internal=False,
                      icc=True, created_at=0.0, subnet6=DUAL.subnet6, gateway6=DUAL.gateway6)
    assert NetworkRules.of(network) == DUAL
    mapping = PortMapping(protocol="tcp", host_ip="", host_port=8080, container_port=80)
    a = Attachment(container_id="c" * 64, network_id=network.id, interface_name="eth0",
                   address=IPv4Interface("10.30.0.2/24"), gateway=DUAL.gateway,
                   mac="02:00:0a:1e:00:02", host_interface="shp1", ports=(mapping,),
                   address6=IPv6Interface("fd00:30::2/64"), gateway6=DUAL.gateway6)
    assert rules_of(a, network) == (port(8080, 80),)
    v4_only = Attachment(**{**a.__dict__, "address6": None, "gateway6": None})
    assert rules_of(v4_only, network) == (port(8080, 80, ip6=None),)


def test_port_update_deletes_idempotently_then_adds() -> None:
    old, new = port(8080, 80), port(9090, 9090, host_ip="2001:db8::2")
    cmds = build_port_update(add=[new], remove=[old], table="t")
    verbs = [(verb, body["element"]["name"]) for c in cmds for verb, body in c.items()]
    assert verbs == [("add", "dnat_any"), ("add", "dnat_any_port"), ("add", "dnat6_any"),
                     ("add", "dnat6_any_port"), ("delete", "dnat_any"),
                     ("delete", "dnat_any_port"), ("delete", "dnat6_any"),
                     ("delete", "dnat6_any_port"), ("add", "dnat6_addr")]
    assert all(body["element"]["table"] == "t" for c in cmds for body in c.values())
    assert cmds[-1]["add"]["element"]["elem"] == [
        [{"concat": ["2001:db8::2", "tcp", 9090]}, "fd00:30::2"]]
    assert build_port_update() == []
    with pytest.raises(InvalidArgument, match="overlaps"):
        build_port_update(add=[port(80, 80), port(80, 80, host_ip="::")])


def test_update_and_rebuild_give_the_same_elements() -> None:
    ports = [port(8080, 80), port(9000, 9000, count=3, host_ip="::"),
             port(7000, 70, count=2, host_ip="198.51.100.2", protocol="udp")]
    full = objects(build_ruleset(FirewallState(networks=(DUAL,), ports=tuple(ports))))
    added = [body["element"] for c in build_port_update(add=ports) for body in c.values()]
    for e in added:
        assert full[e["name"]]["elem"] == e["elem"]


PORTS = st.builds(
    lambda host, count, proto, ip, n: port(
        host, host, count=count, protocol=proto, host_ip=ip, ip=f"10.30.0.{n}",
        ip6=f"fd00:30::{n}"),
    st.integers(8000, 8020), st.integers(1, 4), st.sampled_from(["tcp", "udp"]),
    st.sampled_from(["", "0.0.0.0", "::", "127.0.0.1", "198.51.100.2", "2001:db8::2"]),
    st.integers(2, 5))


@given(st.lists(PORTS, max_size=8))
def test_port_claims_agree_with_check_overlaps(ports: list[PortRule]) -> None:
    """Adding rules one at a time to PortClaims refuses exactly when the batch check
    would: incremental changes keep the table a valid state."""
    claims, kept = PortClaims(), []
    for p in ports:
        try:
            claims.check(p)
        except InvalidArgument:
            with pytest.raises(InvalidArgument):
                check_overlaps([*kept, p])
            continue
        if p not in kept:
            check_overlaps([*kept, p])
            kept.append(p)
        claims.add(p)
    for p in kept:
        claims.remove(p)
        claims.check(p)  # free again
    assert claims._taken == {}
