"""The whole sheep nftables table as libnftables JSON, built from plain records (pure).

`build_ruleset` returns one batch that replaces the table: `add table; delete table;
add table; ...` (the first add makes the delete safe when the table is missing), so
applying it is idempotent and also restores a flushed or deleted table. Only the
`inet <table>` table is ever named; every other table is left alone.

Layout (`nft list table inet sheep`):
- sets `bridges`, `internal` (ifname); vmap `same_bridge` (ifname . ifname: accept or,
  for icc false, drop); set `hairpin` (ifname . subnet);
  maps `dnat_addr` (host addr . proto . port interval -> container ip: one element per
  published range) and `dnat_port` (host addr . proto . port -> container port: only
  for ranges whose container ports differ, one element per port). A single map to
  `ipv4_addr . inet_service` would do, but libnftables 1.0.6 JSON cannot declare
  concatenated map data (it silently makes a set, then crashes adding elements).
- `guard`      filter prerouting, raw: drop packets from our bridges to 127.0.0.0/8.
- `dnat_in`    nat prerouting: `fib daddr type local` -> `publish` (outside, hairpin).
- `dnat_local` nat output: the same for the host's own connections (127.0.0.1 too).
- `publish`    dnat to dnat_addr : dnat_port, else to dnat_addr (port kept); a map
               miss falls through, a dnat is terminal.
- `snat`       nat postrouting: masquerade 127.0.0.0/8 sources leaving via a bridge,
               DNATed traffic from a bridge's own subnet back into it (hairpin), and each
               non-internal subnet leaving through any interface but its bridge.
- `forward`    filter forward: established/related, then DNATed traffic (not from an
               internal bridge), same-bridge verdicts, internal bridges, then every
               other new flow into a bridge is dropped (other networks, the outside).

icc false: bridged traffic between two ports of one bridge reaches the inet forward
hook only when br_netfilter runs with bridge-nf-call-iptables=1, and a `bridge` table
cannot name the bridge without `meta ibrname` (CONFIG_NFT_BRIDGE_META, absent on some
kernels, this one included). So the kernel's bridge-port `isolated` flag is the
enforcement (set on every port of an icc-false network at attach; it needs no firewall
and survives `nft flush ruleset`), and the `same_bridge` drop is a second line that
works whenever br_netfilter is active. DNATed traffic is accepted before it, so peers
reach each other's published ports through the host address - except between two
isolated ports while br_netfilter is active: it then forwards a DNAT back into the
same bridge at layer 2 (which is also why a container reaching its own published
port needs its port's `hairpin` flag).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Literal

from sheep_runtime.errors import InvalidArgument
from sheep_runtime.model import Network, PortMapping

Json = dict[str, Any]
Protocol = Literal["tcp", "udp"]
FAMILY = "inet"
CHAINS = ("guard", "dnat_in", "dnat_local", "publish", "snat", "forward")


@dataclass(frozen=True)
class NetworkRules:
    """What the firewall needs to know about one network."""

    name: str
    bridge: str
    subnet: IPv4Network
    gateway: IPv4Address
    internal: bool
    icc: bool

    @classmethod
    def of(cls, network: Network) -> NetworkRules:
        """The firewall's view of a stored network."""
        return cls(name=network.name, bridge=network.bridge, subnet=network.subnet,
                   gateway=network.gateway, internal=network.internal, icc=network.icc)


@dataclass(frozen=True)
class PortRule:
    """Host ports [host_port, host_port+count) of `host_ip` ("" = every local address)
    forwarded to [container_port, container_port+count) of `container_ip`."""

    network: str
    bridge: str
    container_ip: IPv4Address
    protocol: Protocol
    host_ip: str
    host_port: int
    container_port: int
    count: int = 1

    @classmethod
    def of(cls, network: Network, container_ip: IPv4Address, port: PortMapping) -> PortRule:
        """The rule publishing `port` of the container at `container_ip` on `network`."""
        if port.protocol not in ("tcp", "udp"):
            raise InvalidArgument(f"protocol must be tcp or udp, not {port.protocol!r}",
                                  field="ports")
        protocol: Protocol = "tcp" if port.protocol == "tcp" else "udp"
        return cls(network=network.name, bridge=network.bridge, container_ip=container_ip,
                   protocol=protocol, host_ip=port.host_ip, host_port=port.host_port,
                   container_port=port.container_port, count=port.count)


@dataclass(frozen=True)
class ClusterRules:
    """Cluster mode: the cluster network (never masqueraded inside), the device peer
    traffic arrives on (the VXLAN device, or the underlay link for host-gw), and the
    peers' underlay addresses (the only sources allowed to send VXLAN to `port`)."""

    network: IPv4Network
    device: str
    port: int
    peers: tuple[IPv4Address, ...] = ()


@dataclass(frozen=True)
class FirewallState:
    """The complete desired contents of our table."""

    networks: tuple[NetworkRules, ...] = ()
    ports: tuple[PortRule, ...] = ()
    cluster: ClusterRules | None = None


@dataclass(frozen=True)
class Shape:
    """What `is_intact` compares: each chain's hook, priority and policy, its rule
    count, and each set's element count."""

    chains: Mapping[str, tuple[str, int, str]]
    rules: Mapping[str, int]
    sets: Mapping[str, int]


def validate(state: FirewallState) -> None:
    """InvalidArgument unless the kernel could take the state as it is."""
    bridges: dict[str, NetworkRules] = {}
    for net in state.networks:
        if not 1 <= len(net.bridge) <= 15 or net.bridge in bridges:
            raise InvalidArgument(f"network {net.name}: bad or duplicate bridge {net.bridge!r}")
        bridges[net.bridge] = net
    for p in state.ports:
        what = f"port {p.host_ip or '*'}:{p.host_port}/{p.protocol} of {p.container_ip}"
        owner = bridges.get(p.bridge)
        if owner is None or owner.name != p.network:
            raise InvalidArgument(f"{what}: unknown network {p.network} ({p.bridge})")
        if owner.internal:
            raise InvalidArgument(f"{what}: network {owner.name} is internal")
        if p.container_ip not in owner.subnet:
            raise InvalidArgument(f"{what}: not in {owner.subnet}")
        if p.protocol not in ("tcp", "udp") or p.count < 1 or min(
                p.host_port, p.container_port) < 1 or max(
                p.host_port, p.container_port) + p.count - 1 > 65535:
            raise InvalidArgument(f"{what}: bad protocol or port range")
        if p.host_ip:
            try:
                IPv4Address(p.host_ip)
            except ValueError:
                raise InvalidArgument(f"{what}: bad host address") from None
    _check_overlaps(state.ports)


def _check_overlaps(ports: Iterable[PortRule]) -> None:
    # Sweep per protocol: "" (any address) collides with every address.
    ordered = sorted(ports, key=lambda p: (p.protocol, p.host_port))
    active: list[PortRule] = []
    for p in ordered:
        active = [a for a in active if a.protocol == p.protocol
                  and a.host_port + a.count > p.host_port]
        for a in active:
            if not a.host_ip or not p.host_ip or a.host_ip == p.host_ip:
                raise InvalidArgument(
                    f"host port {p.host_port}/{p.protocol} overlaps "
                    f"{a.host_port}-{a.host_port + a.count - 1} of {a.container_ip}")
        active.append(p)


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


def _port_key(host_ip: str, protocol: str, port: int | Json) -> Json:
    addr: str | Json = host_ip or {"prefix": {"addr": "0.0.0.0", "len": 0}}
    return {"concat": [addr, protocol, port]}


def _sets(state: FirewallState) -> list[tuple[str, str, Json, list[Any]]]:
    nets = state.networks
    public = [n for n in nets if not n.internal]
    interval = {"flags": ["interval"]}
    addrs: list[Any] = []
    shifted: list[Any] = []
    for p in state.ports:
        last = p.host_port + p.count - 1
        span: int | Json = p.host_port if p.count == 1 else {"range": [p.host_port, last]}
        addrs.append([_port_key(p.host_ip, p.protocol, span), str(p.container_ip)])
        if p.host_port != p.container_port:
            # nft cannot add an offset to a port: a shifted range gets one element per port.
            shifted.extend([_port_key(p.host_ip, p.protocol, p.host_port + i),
                            p.container_port + i] for i in range(p.count))
    addr_key = ["ipv4_addr", "inet_proto", "inet_service"]
    peers = ([("set", "cluster_peers", {"type": "ipv4_addr"},
               [str(a) for a in state.cluster.peers])] if state.cluster else [])
    return [*peers,
        ("set", "bridges", {"type": "ifname"}, [n.bridge for n in nets]),
        ("set", "internal", {"type": "ifname"}, [n.bridge for n in nets if n.internal]),
        ("map", "same_bridge", {"type": ["ifname", "ifname"], "map": "verdict"},
         [[{"concat": [n.bridge, n.bridge]}, {"accept" if n.icc else "drop": None}]
          for n in nets]),
        ("set", "hairpin", {"type": ["ifname", "ipv4_addr"], **interval},
         [{"concat": [n.bridge, _prefix(n.subnet)]} for n in public]),
        ("map", "dnat_addr", {"type": addr_key, "map": "ipv4_addr", **interval}, addrs),
        ("map", "dnat_port", {"type": addr_key, "map": "inet_service", **interval}, shifted),
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
    saddr = {"payload": {"protocol": "ip", "field": "saddr"}}
    daddr = {"payload": {"protocol": "ip", "field": "daddr"}}
    loopback = _prefix(IPv4Network("127.0.0.0/8"))
    local = _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")
    dnatted = _match({"ct": {"key": "status"}}, "dnat", op="in")
    masq: Json = {"masquerade": None}
    drop: Json = {"drop": None}
    accept: Json = {"accept": None}
    key = {"concat": [daddr, _meta("l4proto"), {"payload": {"protocol": "th", "field": "dport"}}]}
    l4 = _match(_meta("l4proto"), {"set": ["tcp", "udp"]})
    to_addr = {"map": {"key": key, "data": "@dnat_addr"}}
    rules: list[tuple[str, list[Json]]] = [
        # route_localnet on a bridge (needed for 127.0.0.1 publishing) would otherwise
        # let containers reach the host's loopback services (CVE-2020-8558).
        ("guard", [_match(iif, "@bridges"), _match(daddr, loopback), drop]),
        ("dnat_in", [local, {"jump": {"target": "publish"}}]),
        ("dnat_local", [local, {"jump": {"target": "publish"}}]),
        # A dnat_port miss (a range with equal ports) breaks the rule before it NATs.
        ("publish", [l4, {"dnat": {"family": "ip", "addr": to_addr,
                                   "port": {"map": {"key": key, "data": "@dnat_port"}}}}]),
        ("publish", [l4, {"dnat": {"family": "ip", "addr": to_addr}}]),
        # The host's own 127.0.0.1 connection DNATed to a container: the container
        # must answer the gateway, not its own loopback.
        ("snat", [_match(oif, "@bridges"), _match(saddr, loopback), masq]),
        ("snat", [dnatted, _match({"concat": [oif, saddr]}, "@hairpin"), masq]),
    ]
    cl = state.cluster
    rules += [("snat", [_match(saddr, _prefix(n.subnet)), _match(oif, n.bridge, op="!="),
                        *_leaving(cl, n, daddr), masq])
              for n in state.networks if not n.internal]
    rules += [
        ("forward", [_match({"ct": {"key": "state"}}, ["established", "related"], op="in"),
                     accept]),
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


def _prefix(net: IPv4Network) -> Json:
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}
