"""Kernel tests of the firewall's IPv6 rules, with real traffic in a throwaway world.

The "host" is the nl_sandbox netns (the Firewall runs in a thread that joined it);
containers and the "internet" are `ip netns` named sbxfw6-<tag>-*, all deleted at
teardown. Packets only go between these namespaces; addresses are documentation and
ULA ones.

    internet 198.51.100.1, 2001:db8::1 ── up0 198.51.100.2, 2001:db8::2  host
    br-d 10.60.0.1/24 fd00:60::1/64: d1 .2 ::2, d2 .3 ::3
    br-e 10.61.0.1/24 fd00:61::1/64: e1 .2 ::2
    br-j 10.62.0.1/24 fd00:62::1/64 (internal): j1 .2 ::2
    br-f 10.63.0.1/24 (IPv4 only): f1 .2
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

import pytest

from sheep_runtime.firewall import Firewall, FirewallState, NetworkRules, PortRule
from tests.kernel.conftest import NlRun
from tests.traffic import Servers, connect

pytestmark = pytest.mark.kernel

UPLINK, INTERNET = "198.51.100.2", "198.51.100.1"
UPLINK6, INTERNET6 = "2001:db8::2", "2001:db8::1"
NETS = {  # name: (bridge, subnet, subnet6, internal)
    "d": ("br-d", "10.60.0.0/24", "fd00:60::/64", False),
    "e": ("br-e", "10.61.0.0/24", "fd00:61::/64", False),
    "j": ("br-j", "10.62.0.0/24", "fd00:62::/64", True),
    "f": ("br-f", "10.63.0.0/24", None, False),
}
CONTAINERS = {"d1": ("d", 2), "d2": ("d", 3), "e1": ("e", 2), "j1": ("j", 2), "f1": ("f", 2)}
SERVERS = {"d1": [("tcp", 80), ("udp", 53)], "d2": [("tcp", 80)], "e1": [("tcp", 80)],
           "j1": [("tcp", 80)], "f1": [("tcp", 80)], "inet": [("tcp", 5000), ("udp", 5000)]}


def _network(name: str) -> NetworkRules:
    bridge, sub, sub6, internal = NETS[name]
    subnet, subnet6 = IPv4Network(sub), IPv6Network(sub6) if sub6 else None
    return NetworkRules(name=name, bridge=bridge, subnet=subnet, internal=internal, icc=True,
                        gateway=subnet.network_address + 1, subnet6=subnet6,
                        gateway6=subnet6.network_address + 1 if subnet6 else None)


NETWORKS = tuple(_network(n) for n in NETS)
GW = {n.name: str(n.gateway) for n in NETWORKS}
GW6 = {n.name: str(n.gateway6) for n in NETWORKS if n.gateway6}


def ip_of(container: str) -> IPv4Address:
    net, host = CONTAINERS[container]
    return IPv4Network(NETS[net][1]).network_address + host


def ip6_of(container: str) -> IPv6Address | None:
    net, host = CONTAINERS[container]
    sub6 = NETS[net][2]
    return IPv6Network(sub6).network_address + host if sub6 else None


def port(container: str, host_port: int, container_port: int, *, protocol: str = "tcp",
         host_ip: str = "") -> PortRule:
    net = CONTAINERS[container][0]
    return PortRule(network=net, bridge=NETS[net][0], container_ip=ip_of(container),
                    protocol="udp" if protocol == "udp" else "tcp", host_ip=host_ip,
                    host_port=host_port, container_port=container_port,
                    container_ip6=ip6_of(container))


def state(*ports: PortRule) -> FirewallState:
    return FirewallState(networks=NETWORKS, ports=ports)


def sh(*args: str, stdin: str | None = None, check: bool = True) -> str:
    done = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise AssertionError(f"{args}: {done.stderr}")
    return done.stdout


Check = tuple[str, str, str, int, str | None]  # from, protocol, address, port, expected


@dataclass
class World:
    tag: str
    host: Path
    netns: dict[str, Path] = field(default_factory=dict)

    def ns(self, name: str) -> Path:
        return self.host if name == "host" else self.netns[name]

    def host_sh(self, *args: str, stdin: str | None = None) -> str:
        return sh("nsenter", f"--net={self.host}", *args, stdin=stdin)

    def expect(self, checks: list[Check]) -> None:
        """Run the probes concurrently; blocked ones (expected None) wait 0.6 s. The
        servers listen on [::]: an IPv4 peer shows as ::ffff:a.b.c.d, reported plain."""
        def run(c: Check) -> str | None:
            got = connect(self.ns(c[0]), c[1], c[2], c[3], 2.0 if c[4] else 0.6)
            return got.replace("::ffff:", "") if got else got
        with ThreadPoolExecutor(len(checks)) as pool:
            got = list(pool.map(run, checks))
        wrong = [f"{c[0]} -> {c[2]}:{c[3]}/{c[1]}: expected {c[4]!r}, got {g!r}"
                 for c, g in zip(checks, got, strict=True) if g != c[4]]
        assert not wrong, "\n".join(wrong)

    async def aexpect(self, checks: list[Check]) -> None:
        await asyncio.to_thread(self.expect, checks)


@pytest.fixture
def world(nl_sandbox: Path) -> Iterator[World]:
    root_tables = sh("nft", "list", "tables")
    w = World(tag=secrets.token_hex(3), host=nl_sandbox)
    servers = Servers()
    try:
        _build(w)
        for name, ports in SERVERS.items():
            for protocol, number in ports:
                servers.listen(w.ns(name), name, protocol, number, address="::")
        servers.start()
        yield w
    finally:
        try:
            servers.stop()
        finally:
            for path in w.netns.values():
                sh("ip", "netns", "del", path.name, check=False)
    assert sh("nft", "list", "tables") == root_tables, "the root netns firewall changed"


def _build(w: World) -> None:
    for name in [*CONTAINERS, "inet"]:
        w.netns[name] = Path(f"/run/netns/sbxfw6-{w.tag}-{name}")
        sh("ip", "netns", "add", f"sbxfw6-{w.tag}-{name}")
        _no_dad(w.netns[name])
    _no_dad(w.host)
    host = ["link set lo up",
            f"link add up0 type veth peer name eth0 netns sbxfw6-{w.tag}-inet",
            f"addr add {UPLINK}/24 dev up0", f"addr add {UPLINK6}/64 dev up0 nodad",
            "link set up0 up"]
    for n in NETWORKS:
        host += [f"link add {n.bridge} type bridge",
                 f"addr add {n.gateway}/{n.subnet.prefixlen} dev {n.bridge}",
                 f"link set {n.bridge} up"]
        if n.subnet6 is not None:
            host.append(f"addr add {n.gateway6}/{n.subnet6.prefixlen} dev {n.bridge} nodad")
    for name, (net, _) in CONTAINERS.items():
        host += [f"link add v-{name} type veth peer name eth0 netns sbxfw6-{w.tag}-{name}",
                 f"link set v-{name} master {NETS[net][0]} up",
                 f"link set v-{name} type bridge_slave hairpin on"]
    host += [f"route add default via {INTERNET}", f"route add default via {INTERNET6}"]
    w.host_sh("ip", "-batch", "-", stdin="\n".join(host))
    for name, (net, _) in CONTAINERS.items():
        n = _network(net)
        inside = [f"addr add {ip_of(name)}/{n.subnet.prefixlen} dev eth0", "link set eth0 up",
                  "link set lo up", f"route add default via {n.gateway}"]
        if n.subnet6 is not None:
            inside += [f"addr add {ip6_of(name)}/{n.subnet6.prefixlen} dev eth0 nodad",
                       f"route add default via {n.gateway6}"]
        sh("ip", "-n", f"sbxfw6-{w.tag}-{name}", "-batch", "-", stdin="\n".join(inside))
    sh("ip", "-n", f"sbxfw6-{w.tag}-inet", "-batch", "-", stdin="\n".join([
        f"addr add {INTERNET}/24 dev eth0", f"addr add {INTERNET6}/64 dev eth0 nodad",
        "link set eth0 up", "link set lo up",
        # Routes back to the containers, so only NAT and the firewall decide.
        *(f"route add {n.subnet6} via {UPLINK6}" for n in NETWORKS if n.subnet6),
        "route add fd00:63::/64 via 2001:db8::2"]))
    w.host_sh("sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
              *(f"net.ipv4.conf.{n.bridge}.route_localnet=1" for n in NETWORKS
                if not n.internal))
    # The first packets over a fresh path are lost for about a second (neighbour
    # discovery on new links): wait until the internet reaches every container.
    for name in CONTAINERS:
        if ip6_of(name) is not None:
            for _ in range(10):
                if subprocess.run(["nsenter", f"--net={w.netns['inet']}", "ping", "-6", "-c1",
                                   "-W1", str(ip6_of(name))], capture_output=True).returncode == 0:
                    break


def _no_dad(netns: Path) -> None:
    """Link-local addresses usable at once: until duplicate address detection ends,
    about two seconds, nothing routes over IPv6."""
    sh("nsenter", f"--net={netns}", "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0",
       "net.ipv6.conf.default.accept_dad=0")


@contextlib.asynccontextmanager
async def firewall() -> AsyncIterator[Firewall]:
    fw = Firewall()
    await fw.start()
    try:
        yield fw
    finally:
        await fw.close()


def test_ipv6_egress_is_masqueraded_and_internal_stays_in(world: World, nl_run: NlRun
                                                          ) -> None:
    async def body() -> None:
        # Routed but not NATed: the internet sees the container's own ULA address.
        await world.aexpect([("d1", "tcp", INTERNET6, 5000, f"inet:5000 {ip6_of('d1')}")])
        async with firewall() as fw:
            await fw.apply(state())
            await world.aexpect([
                ("d1", "tcp", INTERNET6, 5000, f"inet:5000 {UPLINK6}"),
                ("d1", "udp", INTERNET6, 5000, f"inet:5000 {UPLINK6}"),
                ("e1", "tcp", INTERNET6, 5000, f"inet:5000 {UPLINK6}"),
                ("d1", "tcp", INTERNET, 5000, f"inet:5000 {UPLINK}"),  # IPv4 as before
                ("j1", "tcp", INTERNET6, 5000, None),
                ("j1", "tcp", str(ip6_of("d1")), 80, None),
                ("d1", "tcp", str(ip6_of("j1")), 80, None),
            ])
    nl_run(body)


def test_published_ports_answer_over_ipv6(world: World, nl_run: NlRun) -> None:
    async def body() -> None:
        async with firewall() as fw:
            await fw.apply(state(port("d1", 8080, 80), port("d1", 8053, 53, protocol="udp"),
                                 port("d2", 8082, 80, host_ip=UPLINK6),
                                 port("d2", 8083, 80, host_ip=UPLINK)))
            gw6 = GW6["d"]
            await world.aexpect([
                ("inet", "tcp", UPLINK6, 8080, f"d1:80 {INTERNET6}"),
                ("inet", "tcp", UPLINK, 8080, f"d1:80 {INTERNET}"),  # both families
                ("inet", "udp", UPLINK6, 8053, f"d1:53 {INTERNET6}"),
                ("host", "tcp", UPLINK6, 8080, f"d1:80 {UPLINK6}"),
                ("host", "tcp", gw6, 8080, f"d1:80 {gw6}"),
                ("host", "tcp", "127.0.0.1", 8080, f"d1:80 {GW['d']}"),
                ("host", "tcp", "::1", 8080, None),  # see the rules docstring
                ("d2", "tcp", UPLINK6, 8080, f"d1:80 {gw6}"),  # hairpin via a peer
                ("d1", "tcp", UPLINK6, 8080, f"d1:80 {gw6}"),  # hairpin to itself
                ("d2", "tcp", gw6, 8080, f"d1:80 {gw6}"),
                ("e1", "tcp", UPLINK6, 8080, f"d1:80 {gw6}"),  # other network, via the host
                ("j1", "tcp", UPLINK6, 8080, None),  # internal: nothing leaves its bridge
                ("inet", "tcp", UPLINK6, 8082, f"d2:80 {INTERNET6}"),  # IPv6 host_ip
                ("inet", "tcp", UPLINK, 8082, None),
                ("inet", "tcp", UPLINK, 8083, f"d2:80 {INTERNET}"),  # IPv4 host_ip
                ("inet", "tcp", UPLINK6, 8083, None),
            ])
    nl_run(body)


def test_ipv6_networks_are_isolated(world: World, nl_run: NlRun) -> None:
    d1, d2, e1 = (str(ip6_of(n)) for n in ("d1", "d2", "e1"))

    async def body() -> None:
        await world.aexpect([("d1", "tcp", e1, 80, f"e1:80 {d1}"),  # routed, no firewall
                             ("inet", "tcp", d1, 80, f"d1:80 {INTERNET6}")])
        async with firewall() as fw:
            await fw.apply(state(port("d1", 8080, 80)))
            await world.aexpect([
                ("d1", "tcp", e1, 80, None),
                ("e1", "tcp", d1, 80, None),
                ("inet", "tcp", d1, 80, None),  # only published ports come in
                ("d1", "tcp", d2, 80, f"d2:80 {d1}"),  # same network
                ("host", "tcp", d1, 80, f"d1:80 {GW6['d']}"),  # the host reaches containers
            ])
    nl_run(body)


def test_an_ipv4_only_network_forwards_no_ipv6(world: World, nl_run: NlRun) -> None:
    """A container of an IPv4-only network with CAP_NET_ADMIN in its netns gives
    itself an IPv6 address and a route via the bridge (host forwarding is on for the
    dual-stack networks): the firewall drops what it sends through the host, even
    when answers could find their way back."""
    f1 = world.ns("f1").name
    bridge_mac = json.loads(world.host_sh("ip", "-j", "link", "show", "br-f"))[0]["address"]
    for args in (["addr", "add", "fd00:63::2/64", "dev", "eth0", "nodad"],
                 ["-6", "neigh", "add", INTERNET6, "lladdr", bridge_mac, "dev", "eth0"],
                 ["-6", "route", "add", "default", "dev", "eth0"]):
        sh("ip", "-n", f1, *args)
    # The worst case: the host also routes the answers back to it.
    world.host_sh("ip", "-6", "route", "add", "fd00:63::/64", "dev", "br-f")

    async def body() -> None:
        await world.aexpect([("f1", "tcp", INTERNET6, 5000, "inet:5000 fd00:63::2")])
        async with firewall() as fw:
            await fw.apply(state())
            await world.aexpect([("f1", "tcp", INTERNET6, 5000, None),
                                 ("f1", "tcp", INTERNET, 5000, f"inet:5000 {UPLINK}")])
    nl_run(body)


def test_a_host_service_on_ipv6_loopback_keeps_its_port(world: World, nl_run: NlRun
                                                        ) -> None:
    """[::1] is never DNATed: a host service listening there on a published port
    number still answers the host's own clients."""
    local = Servers()
    local.listen(world.host, "host", "tcp", 8080, address="::1")
    local.start()

    async def body() -> None:
        async with firewall() as fw:
            await fw.apply(state(port("d1", 8080, 80)))
            await world.aexpect([("host", "tcp", "::1", 8080, "host:8080 ::1"),
                                 ("host", "tcp", UPLINK6, 8080, f"d1:80 {UPLINK6}")])
    try:
        nl_run(body)
    finally:
        local.stop()
