"""The whole sheep nftables table as libnftables JSON, built from plain records (pure).

`build_ruleset` returns one batch that replaces the table: `add table; delete table;
add table; ...` (the first add makes the delete safe when the table is missing), so
applying it is idempotent and also restores a flushed or deleted table. Only the
`inet <table>` table is ever named; every other table is left alone. Publishing or
withdrawing ports changes only their map elements (elements.py: one transaction whose
cost does not grow with the number of ports published).

Layout (`nft list table inet sheep`):
- sets `bridges`, `internal`, `ipv4_only` (ifname; bridges of networks without
  subnet6); vmap `same_bridge` (ifname . ifname: accept or, for icc false, drop); sets
  `hairpin` (ifname . subnet) and `hairpin6` (ifname . subnet6);
  maps of published ports, one element per port: `dnat_addr` (host addr . proto . port
  -> container ip) for ports bound to one host address, `dnat_any` (proto . port ->
  container ip) for those on every address, and `dnat_addr_port`/`dnat_any_port` (the
  same keys -> container port) only for ports whose container port differs; their IPv6
  twins `dnat6_addr`, `dnat6_any`, `dnat6_addr_port`, `dnat6_any_port`. All are hash
  maps: adding or deleting an element costs the same at any size, where a
  concatenated interval map (nft's pipapo, which one element per range would need)
  deletes in time linear in its size. A single map to `ipv4_addr . inet_service` would
  do, but libnftables 1.0.6 JSON cannot declare concatenated map data (it silently
  makes a set, then crashes adding elements).
- `guard`      filter prerouting, raw: drop packets from our bridges to 127.0.0.0/8
               (and to ::1, which the kernel already drops before any hook).
- `dnat_in`    nat prerouting: `fib daddr type local` -> `publish` (outside, hairpin).
- `dnat_local` nat output: the same for the host's own connections (127.0.0.1 too;
               ::1 returns first, see below).
- `publish`    per family, dnat to dnat_addr : dnat_addr_port, else to dnat_addr (port
               kept), then the same with the `any` maps; a map miss falls through, a
               dnat is terminal.
- `snat`       nat postrouting: masquerade 127.0.0.0/8 sources leaving via a bridge,
               DNATed traffic from a bridge's own subnet (subnet6) back into it
               (hairpin), and each non-internal subnet and subnet6 leaving through any
               interface but its bridge (ULA subnets are not routable outside).
- `forward`    filter forward: established/related, IPv6 into or out of an IPv4-only
               network's bridge dropped, then DNATed traffic (not from an internal
               bridge), same-bridge verdicts, internal bridges, then every other new
               flow into a bridge is dropped (other networks, the outside).

IPv6: a rule that matches `ip saddr`/`ip daddr` carries an implicit `meta nfproto
ipv4` in an inet table and never matches IPv6, so each address match has its ip6 twin
(guard, publish, hairpin, egress masquerade); every forward verdict matches only
interfaces and conntrack and holds for both families. A published port of a container
with an IPv6 address answers on [::]:PORT (every local IPv6 address: the uplink's, a
bridge's gateway6) from outside, from the host itself and from containers (hairpin),
unless its host_ip is IPv4; an IPv6 host_ip publishes over IPv6 only. The one
exception is [::1]: there is no route_localnet for IPv6. The host's SYN to [::1]:PORT
can be DNATed and masqueraded out of the bridge, but the container's answer gets its
destination rewritten back to ::1 at prerouting (undoing the masquerade), and the
input route lookup for a loopback destination is strict about the interface
(rt6_need_strict): the ::1 route is on lo, the packet came in on the bridge, so it is
dropped as unroutable. No sysctl changes that; a user-space proxy would. So ::1 is
left alone (`dnat_local` returns for it: a host service on [::1]:PORT keeps working)
and a host_ip of ::1 is refused. sheepd opens no input port, so nothing filters input
and containers reach the DNS server on gateway and gateway6 alike.

icc false: bridged traffic between two ports of one bridge reaches the inet forward
hook only when br_netfilter runs with bridge-nf-call-iptables=1 (ip6tables=1 for
IPv6), and a `bridge` table cannot name the bridge without `meta ibrname`
(CONFIG_NFT_BRIDGE_META, absent on some kernels, this one included). So the kernel's
bridge-port `isolated` flag is the enforcement (set on every port of an icc-false
network at attach; it needs no firewall, holds for both families and survives `nft
flush ruleset`), and the `same_bridge` drop is a second line that works whenever
br_netfilter is active. DNATed traffic is accepted before it, so peers reach each
other's published ports through the host address - except between two isolated ports
while br_netfilter is active: it then forwards a DNAT back into the same bridge at
layer 2 (which is also why a container reaching its own published port needs its
port's `hairpin` flag).
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network
from typing import Any

from sheep_runtime.firewall.elements import FAMILY, PORT_MAPS, collect
from sheep_runtime.firewall.records import (
    ClusterRules,
    FirewallState,
    Json,
    NetworkRules,
    PortRule,
    Protocol,
    Shape,
    validate,
)

__all__ = ["CHAINS", "FAMILY", "ClusterRules", "FirewallState", "Json", "NetworkRules",
           "PortRule", "Protocol", "Shape", "build_ruleset", "shape", "validate"]

CHAINS = ("guard", "dnat_in", "dnat_local", "publish", "snat", "forward")


def build_ruleset(state: FirewallState, *, table: str = "sheep") -> list[Json]:
    """The libnftables commands that atomically replace `inet <table>` with `state`."""
    validate(state)
    t = {"family": FAMILY, "name": table}
    base = {"family": FAMILY, "table": table}
    cmds: list[Json] = [{"add": {"table": t}}, {"delete": {"table": t}}, {"add": {"table": t}}]
    for kind, name, spec, elems in _sets(state):
        body = {**base, "name": name, **spec}
        if elems:
            body["elem"] = elems
        cmds.append({"add": {kind: body}})
    for name, hook in _base_chains(cluster=state.cluster is not None):
        cmds.append({"add": {"chain": {**base, "name": name, **hook}}})
    for chain, exprs in _rules(state):
        cmds.append({"add": {"rule": {**base, "chain": chain, "expr": exprs}}})
    return cmds


def shape(objects: Iterable[Json]) -> Shape:
    """The Shape of `build_ruleset` output or of a `list table` JSON answer."""
    chains: dict[str, tuple[str, int, str]] = {}
    rules: dict[str, int] = {}
    sets: dict[str, int] = {}
    for obj in objects:
        obj = obj.get("add", obj)
        if "chain" in obj:
            c = obj["chain"]
            chains[c["name"]] = (c.get("hook", ""), c.get("prio", 0), c.get("policy", ""))
            rules.setdefault(c["name"], 0)
        elif "rule" in obj:
            name = obj["rule"]["chain"]
            rules[name] = rules.get(name, 0) + 1
        for kind in ("set", "map"):
            if kind in obj:
                sets[obj[kind]["name"]] = len(obj[kind].get("elem", ()))
    return Shape(chains=chains, rules=rules, sets=sets)


def _sets(state: FirewallState) -> list[tuple[str, str, Json, list[Any]]]:
    nets = state.networks
    public = [n for n in nets if not n.internal]
    interval = {"flags": ["interval"]}
    elems = collect(state.ports)
    keys = {"addr": {4: ["ipv4_addr", "inet_proto", "inet_service"],
                     6: ["ipv6_addr", "inet_proto", "inet_service"]},
            "any": {4: ["inet_proto", "inet_service"], 6: ["inet_proto", "inet_service"]}}
    maps = [("map", name, {"type": keys[key][family],
                           "map": "inet_service" if data == "port" else f"ipv{family}_addr"},
             elems[name])
            for name, (family, key, data) in PORT_MAPS.items()]
    peers = ([("set", "cluster_peers", {"type": "ipv4_addr"},
               [str(a) for a in state.cluster.peers])] if state.cluster else [])
    return [*peers,
        ("set", "bridges", {"type": "ifname"}, [n.bridge for n in nets]),
        ("set", "internal", {"type": "ifname"}, [n.bridge for n in nets if n.internal]),
        ("set", "ipv4_only", {"type": "ifname"}, [n.bridge for n in nets if not n.subnet6]),
        ("map", "same_bridge", {"type": ["ifname", "ifname"], "map": "verdict"},
         [[{"concat": [n.bridge, n.bridge]}, {"accept" if n.icc else "drop": None}]
          for n in nets]),
        ("set", "hairpin", {"type": ["ifname", "ipv4_addr"], **interval},
         [{"concat": [n.bridge, _prefix(n.subnet)]} for n in public]),
        ("set", "hairpin6", {"type": ["ifname", "ipv6_addr"], **interval},
         [{"concat": [n.bridge, _prefix(n.subnet6)]} for n in public if n.subnet6]),
        *maps,
    ]


def _base_chains(*, cluster: bool) -> list[tuple[str, Json]]:
    def hook(kind: str, name: str, prio: int) -> Json:
        return {"type": kind, "hook": name, "prio": prio, "policy": "accept"}
    return [
        ("guard", hook("filter", "prerouting", -300)),
        ("dnat_in", hook("nat", "prerouting", -100)),
        ("dnat_local", hook("nat", "output", -100)),
        ("publish", {}),
        ("snat", hook("nat", "postrouting", 100)),
        ("forward", hook("filter", "forward", 0)),
        *([("cluster_in", hook("filter", "input", 0))] if cluster else []),
    ]


def _rules(state: FirewallState) -> list[tuple[str, list[Json]]]:
    iif, oif = _meta("iifname"), _meta("oifname")
    saddr, daddr = _addr("ip", "saddr"), _addr("ip", "daddr")
    saddr6, daddr6 = _addr("ip6", "saddr"), _addr("ip6", "daddr")
    loopback = _prefix(IPv4Network("127.0.0.0/8"))
    local = _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")
    dnatted = _match({"ct": {"key": "status"}}, "dnat", op="in")
    v6 = _match(_meta("nfproto"), "ipv6")
    masq: Json = {"masquerade": None}
    drop: Json = {"drop": None}
    accept: Json = {"accept": None}
    publish = {"jump": {"target": "publish"}}
    rules: list[tuple[str, list[Json]]] = [
        # route_localnet on a bridge (needed for 127.0.0.1 publishing) would otherwise
        # let containers reach the host's loopback services (CVE-2020-8558). The
        # kernel drops ::1 from a bridge before any hook; the rule is a second line.
        ("guard", [_match(iif, "@bridges"), _match(daddr, loopback), drop]),
        ("guard", [_match(iif, "@bridges"), _match(daddr6, "::1"), drop]),
        ("dnat_in", [local, publish]),
        # [::1] is never published (see the module docstring): a local server there
        # keeps its port, a client gets "refused" instead of a DNAT that cannot answer.
        ("dnat_local", [_match(daddr6, "::1"), {"return": None}]),
        ("dnat_local", [local, publish]),
        *_publish("ip", daddr, "ipv4"),
        *_publish("ip6", daddr6, "ipv6"),
        # The host's own 127.0.0.1 connection DNATed to a container: the container
        # must answer the gateway, not its own loopback.
        ("snat", [_match(oif, "@bridges"), _match(saddr, loopback), masq]),
        ("snat", [dnatted, _match({"concat": [oif, saddr]}, "@hairpin"), masq]),
        ("snat", [dnatted, _match({"concat": [oif, saddr6]}, "@hairpin6"), masq]),
    ]
    cl = state.cluster
    for n in state.networks:
        if n.internal:
            continue
        rules.append(("snat", [_match(saddr, _prefix(n.subnet)), _match(oif, n.bridge, op="!="),
                               *_leaving(cl, n, daddr), masq]))
        if n.subnet6 is not None:  # ULA subnets are not routable outside
            rules.append(("snat", [_match(saddr6, _prefix(n.subnet6)),
                                   _match(oif, n.bridge, op="!="), masq]))
    # Every verdict below matches interfaces and conntrack only, so it holds for both
    # families alike; IPv6 to or from an IPv4-only network's bridge is dropped.
    rules += [
        ("forward", [_match({"ct": {"key": "state"}}, ["established", "related"], op="in"),
                     accept]),
        ("forward", [v6, _match(iif, "@ipv4_only"), drop]),
        ("forward", [v6, _match(oif, "@ipv4_only"), drop]),
        ("forward", [_match(iif, "@internal", op="!="), dnatted, accept]),
        ("forward", [{"vmap": {"key": {"concat": [iif, oif]}, "data": "@same_bridge"}}]),
        ("forward", [_match(iif, "@internal"), drop]),
        ("forward", [_match(oif, "@internal"), drop]),
    ]
    if cl is not None:
        rules += [("forward", [_match(iif, cl.device), _match(saddr, _prefix(cl.network)),
                               _match(oif, n.bridge), accept])
                  for n in state.networks if n.subnet.subnet_of(cl.network)]
        # VXLAN has no authentication: only the peers may inject frames (GHSA-vwm3-crmr-xfxw).
        rules.append(("cluster_in", [
            _match({"payload": {"protocol": "udp", "field": "dport"}}, cl.port),
            _match(saddr, "@cluster_peers", op="!="), drop]))
    rules.append(("forward", [_match(oif, "@bridges"), drop]))
    return rules


def _publish(family: str, daddr: Json, nfproto: str) -> list[tuple[str, list[Json]]]:
    """dnat to <addr map> : <port map>, else to <addr map> with the port kept, for the
    host addresses of their own (`daddr` . proto . port), then for every address
    (proto . port, limited to the family). A port map miss (equal ports) breaks the
    first rule of a pair before it NATs; a dnat is terminal."""
    v = "" if family == "ip" else "6"
    dport = {"payload": {"protocol": "th", "field": "dport"}}
    l4 = _match(_meta("l4proto"), {"set": ["tcp", "udp"]})
    out: list[tuple[str, list[Json]]] = []
    for maps, key, only in (
            (f"dnat{v}_addr", {"concat": [daddr, _meta("l4proto"), dport]}, []),
            (f"dnat{v}_any", {"concat": [_meta("l4proto"), dport]},
             [_match(_meta("nfproto"), nfproto)])):
        to_addr = {"map": {"key": key, "data": f"@{maps}"}}
        to_port = {"map": {"key": key, "data": f"@{maps}_port"}}
        out += [("publish", [*only, l4, {"dnat": {"family": family, "addr": to_addr,
                                                  "port": to_port}}]),
                ("publish", [*only, l4, {"dnat": {"family": family, "addr": to_addr}}])]
    return out


def _leaving(cluster: ClusterRules | None, net: NetworkRules, daddr: Json) -> list[Json]:
    """In cluster mode a slice of the cluster network is masqueraded only on its way
    out of the cluster: container-to-container traffic across hosts keeps its source."""
    if cluster is None or not net.subnet.subnet_of(cluster.network):
        return []
    return [_match(daddr, _prefix(cluster.network), op="!=")]


def _meta(key: str) -> Json:
    return {"meta": {"key": key}}


def _match(left: Json, right: Any, *, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def _addr(protocol: str, field: str) -> Json:
    return {"payload": {"protocol": protocol, "field": field}}


def _prefix(net: IPv4Network | IPv6Network) -> Json:
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}
