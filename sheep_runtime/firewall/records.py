"""The plain records the firewall is built from, and their validation (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any, Literal

from sheep_runtime.errors import InvalidArgument
from sheep_runtime.model import Network, PortMapping

Json = dict[str, Any]
Protocol = Literal["tcp", "udp"]
Family = Literal[4, 6]
HostAddress = IPv4Address | IPv6Address


@dataclass(frozen=True)
class NetworkRules:
    """What the firewall needs to know about one network (`subnet6` and `gateway6`
    None: IPv4 only)."""

    name: str
    bridge: str
    subnet: IPv4Network
    gateway: IPv4Address
    internal: bool
    icc: bool
    subnet6: IPv6Network | None = None
    gateway6: IPv6Address | None = None

    @classmethod
    def of(cls, network: Network) -> NetworkRules:
        """The firewall's view of a stored network."""
        return cls(name=network.name, bridge=network.bridge, subnet=network.subnet,
                   gateway=network.gateway, internal=network.internal, icc=network.icc,
                   subnet6=network.subnet6, gateway6=network.gateway6)


@dataclass(frozen=True)
class PortRule:
    """Host ports [host_port, host_port+count) of `host_ip` forwarded to
    [container_port, container_port+count) of `container_ip` (and `container_ip6`).

    `host_ip` "" publishes on every local address of both families (IPv6 only if the
    container has `container_ip6`); an IPv4 address only over IPv4, an IPv6 address
    only over IPv6; an unspecified address (0.0.0.0, ::) on every address of its family.
    """

    network: str
    bridge: str
    container_ip: IPv4Address
    protocol: Protocol
    host_ip: str
    host_port: int
    container_port: int
    count: int = 1
    container_ip6: IPv6Address | None = None

    @classmethod
    def of(cls, network: Network, container_ip: IPv4Address, port: PortMapping, *,
           container_ip6: IPv6Address | None = None) -> PortRule:
        """The rule publishing `port` of the container at `container_ip` on `network`."""
        if port.protocol not in ("tcp", "udp"):
            raise InvalidArgument(f"protocol must be tcp or udp, not {port.protocol!r}",
                                  field="ports")
        protocol: Protocol = "tcp" if port.protocol == "tcp" else "udp"
        return cls(network=network.name, bridge=network.bridge, container_ip=container_ip,
                   protocol=protocol, host_ip=port.host_ip, host_port=port.host_port,
                   container_port=port.container_port, count=port.count,
                   container_ip6=container_ip6)

    def host_address(self) -> HostAddress | None:
        """The address `host_ip` names (None for ""); InvalidArgument if it names none."""
        if not self.host_ip:
            return None
        try:
            return ip_address(self.host_ip)
        except ValueError:
            raise InvalidArgument(f"{self.describe()}: bad host address",
                                  field="ports") from None

    def families(self) -> tuple[Family, ...]:
        """The IP versions the port is published over."""
        host = self.host_address()
        v4: tuple[Family, ...] = (4,) if host is None or host.version == 4 else ()
        v6: tuple[Family, ...] = (6,) if self.container_ip6 is not None and (
            host is None or host.version == 6) else ()
        return v4 + v6

    def claims(self) -> tuple[tuple[Family, HostAddress | None], ...]:
        """(family, address or None for all of them) pairs the port takes for itself:
        "" takes both families whether the container has IPv6 or not."""
        host = self.host_address()
        if host is None:
            return ((4, None), (6, None))
        family: Family = 4 if host.version == 4 else 6
        return ((family, None if host.is_unspecified else host),)

    def describe(self) -> str:
        return f"port {self.host_ip or '*'}:{self.host_port}/{self.protocol} of {self.container_ip}"


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
        if (net.subnet6 is None) != (net.gateway6 is None):
            raise InvalidArgument(f"network {net.name}: subnet6 and gateway6 go together")
        bridges[net.bridge] = net
    validate_ports(state.ports, bridges)


def validate_ports(ports: Iterable[PortRule], bridges: Mapping[str, NetworkRules]) -> None:
    """InvalidArgument unless each rule fits its network (by bridge) and none overlaps
    another of `ports`."""
    ports = tuple(ports)
    for p in ports:
        check_fits(p, bridges.get(p.bridge))
        check_rule(p)
    check_overlaps(ports)


def check_fits(p: PortRule, owner: NetworkRules | None) -> None:
    """InvalidArgument unless `owner` is the rule's network and holds its addresses."""
    what = p.describe()
    if owner is None or owner.name != p.network:
        raise InvalidArgument(f"{what}: unknown network {p.network} ({p.bridge})")
    if owner.internal:
        raise InvalidArgument(f"{what}: network {owner.name} is internal")
    if p.container_ip not in owner.subnet:
        raise InvalidArgument(f"{what}: not in {owner.subnet}")
    if p.container_ip6 is not None and (
            owner.subnet6 is None or p.container_ip6 not in owner.subnet6):
        raise InvalidArgument(f"{what}: {p.container_ip6} not in network "
                              f"{owner.name}'s IPv6 subnet {owner.subnet6 or '(none)'}")


def check_rule(p: PortRule) -> None:
    """InvalidArgument unless the rule's protocol, ports and host address are sound."""
    if p.protocol not in ("tcp", "udp") or p.count < 1 or min(
            p.host_port, p.container_port) < 1 or max(
            p.host_port, p.container_port) + p.count - 1 > 65535:
        raise InvalidArgument(f"{p.describe()}: bad protocol or port range")
    _check_host(p)


def _check_host(p: PortRule) -> None:
    host = p.host_address()
    if host is None or host.version == 4:
        return
    if host.is_loopback:
        # See the rules docstring: replies to ::1 from a bridge are never routed.
        raise InvalidArgument(f"{p.describe()}: the IPv6 loopback host address ::1 cannot "
                              "be published; use 127.0.0.1 or another address",
                              field="ports")
    if p.container_ip6 is None:
        raise InvalidArgument(f"{p.describe()}: an IPv6 host address needs a container "
                              f"with an IPv6 address on network {p.network}", field="ports")


def check_overlaps(ports: Iterable[PortRule]) -> None:
    """InvalidArgument if two of `ports` take the same host port of an address."""
    # Sweep per protocol: "" (any address) collides with every address of both
    # families, 0.0.0.0 and :: with every address of theirs.
    ordered = sorted(ports, key=lambda p: (p.protocol, p.host_port))
    active: list[PortRule] = []
    for p in ordered:
        active = [a for a in active if a.protocol == p.protocol
                  and a.host_port + a.count > p.host_port]
        for a in active:
            if _collide(a, p):
                raise _overlap(p, a)
        active.append(p)


class PortClaims:
    """The host ports a table holds, by (protocol, port): `check_overlaps` one rule at
    a time, for incremental changes (the kernel's own overlap check of concatenated
    intervals only compares range ends). Adding a rule it holds is a no-op."""

    def __init__(self, rules: Iterable[PortRule] = ()) -> None:
        self._taken: dict[tuple[str, int], set[PortRule]] = {}
        for rule in rules:
            self.add(rule)

    def check(self, rule: PortRule) -> None:
        """InvalidArgument if `rule` overlaps a held rule other than itself."""
        for port in range(rule.host_port, rule.host_port + rule.count):
            for held in self._taken.get((rule.protocol, port), ()):
                if held != rule and _collide(held, rule):
                    raise _overlap(rule, held)

    def add(self, rule: PortRule) -> None:
        for port in range(rule.host_port, rule.host_port + rule.count):
            self._taken.setdefault((rule.protocol, port), set()).add(rule)

    def remove(self, rule: PortRule) -> None:
        for port in range(rule.host_port, rule.host_port + rule.count):
            held = self._taken.get((rule.protocol, port))
            if held is not None:
                held.discard(rule)
                if not held:
                    del self._taken[(rule.protocol, port)]


def _collide(a: PortRule, b: PortRule) -> bool:
    """True if a and b share an address (their ports are not compared)."""
    return any(fa == fb and (ha is None or hb is None or ha == hb)
               for fa, ha in a.claims() for fb, hb in b.claims())


def _overlap(p: PortRule, a: PortRule) -> InvalidArgument:
    return InvalidArgument(f"host port {p.host_port}/{p.protocol} overlaps "
                           f"{a.host_port}-{a.host_port + a.count - 1} of {a.container_ip}")
