"""Kernel tests of the firewall backend, with real traffic in a throwaway world.

The "host" is the nl_sandbox netns (the Firewall and FirewallMonitor run in a thread
that joined it); containers and the "internet" are `ip netns` named sbxfw-<tag>-*,
all deleted at teardown. Packets only go between these namespaces.

    internet 198.51.100.1 ── up0 198.51.100.2  host (ip_forward=1, default via .1)
    br-a 10.20.0.1/16: a1 .2, a2 .3     br-b 10.30.0.1/24: b1 .2
    br-i 10.40.0.1/24 (internal): i1 .2    br-c 10.50.0.1/24 (icc false): c1 .2, c2 .3
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
import uvloop

from sheep_runtime.errors import FirewallError, InvalidArgument
from sheep_runtime.firewall import (
    Firewall,
    FirewallMonitor,
    FirewallState,
    NetworkRules,
    PortRule,
    build_ruleset,
)
from sheep_runtime.firewall import monitor as monitor_module
from sheep_runtime.firewall import nft as nft_module
from sheep_runtime.netlink import run_in_netns
from tests.kernel.conftest import NlRun
from tests.traffic import Servers, connect

pytestmark = pytest.mark.kernel

UPLINK, INTERNET = "198.51.100.2", "198.51.100.1"
NETS = {  # name: (bridge, subnet, internal, icc)
    "a": ("br-a", "10.20.0.0/16", False, True),
    "b": ("br-b", "10.30.0.0/24", False, True),
    "i": ("br-i", "10.40.0.0/24", True, True),
    "c": ("br-c", "10.50.0.0/24", False, False),
}
CONTAINERS = {"a1": ("a", 2), "a2": ("a", 3), "b1": ("b", 2), "i1": ("i", 2),
              "c1": ("c", 2), "c2": ("c", 3)}
SERVERS = {  # netns: [(protocol, port)]
    "a1": [("tcp", 80), ("tcp", 81), ("tcp", 9000), ("tcp", 9001), ("tcp", 9002),
           ("udp", 53)],
    "a2": [("tcp", 80)], "b1": [("tcp", 80)], "i1": [("tcp", 80)],
    "c1": [("tcp", 80)], "c2": [("tcp", 80)],
    "inet": [("tcp", 5000), ("udp", 5000)],
}
NETWORKS = tuple(
    NetworkRules(name=n, bridge=br, subnet=IPv4Network(sub), internal=internal, icc=icc,
                 gateway=IPv4Network(sub).network_address + 1)
    for n, (br, sub, internal, icc) in NETS.items())


def ip_of(container: str) -> IPv4Address:
    net, host = CONTAINERS[container]
    return IPv4Network(NETS[net][1]).network_address + host


def port(container: str, host_port: int, container_port: int, *, protocol: str = "tcp",
         host_ip: str = "", count: int = 1) -> PortRule:
    net = CONTAINERS[container][0]
    return PortRule(network=net, bridge=NETS[net][0], container_ip=ip_of(container),
                    protocol="udp" if protocol == "udp" else "tcp", host_ip=host_ip,
                    host_port=host_port, container_port=container_port, count=count)


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

    def nft(self, *args: str, check: bool = True) -> str:
        return sh("nsenter", f"--net={self.host}", "nft", *args, check=check)

    def host_sh(self, *args: str, stdin: str | None = None) -> str:
        return sh("nsenter", f"--net={self.host}", *args, stdin=stdin)

    def table(self) -> Any:
        return json.loads(self.nft("-j", "list", "table", "inet", "sheep"))

    def foreign(self) -> str:
        return self.nft("-j", "list", "table", "ip", "user_t")

    def expect(self, checks: list[Check]) -> None:
        """Run the probes concurrently; blocked ones (expected None) wait 0.6 s."""
        def run(c: Check) -> str | None:
            return connect(self.ns(c[0]), c[1], c[2], c[3], 2.0 if c[4] else 0.6)
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
                servers.listen(w.ns(name), name, protocol, number)
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
        w.netns[name] = Path(f"/run/netns/sbxfw-{w.tag}-{name}")
        sh("ip", "netns", "add", f"sbxfw-{w.tag}-{name}")
    host = ["link set lo up",
            f"link add up0 type veth peer name eth0 netns sbxfw-{w.tag}-inet",
            f"addr add {UPLINK}/24 dev up0", "link set up0 up"]
    for rules in NETWORKS:
        host += [f"link add {rules.bridge} type bridge",
                 f"addr add {rules.gateway}/{rules.subnet.prefixlen} dev {rules.bridge}",
                 f"link set {rules.bridge} up"]
    for name, (net, _) in CONTAINERS.items():
        bridge = NETS[net][0]
        host += [f"link add v-{name} type veth peer name eth0 netns sbxfw-{w.tag}-{name}",
                 f"link set v-{name} master {bridge} up",
                 # as the daemon must: see test_self_hairpin_needs_the_hairpin_port_flag
                 f"link set v-{name} type bridge_slave hairpin on"]
    host.append(f"route add default via {INTERNET}")
    w.host_sh("ip", "-batch", "-", stdin="\n".join(host))
    for name, (net, _) in CONTAINERS.items():
        subnet = IPv4Network(NETS[net][1])
        sh("ip", "-n", f"sbxfw-{w.tag}-{name}", "-batch", "-", stdin="\n".join(
            [f"addr add {ip_of(name)}/{subnet.prefixlen} dev eth0", "link set eth0 up",
             "link set lo up", f"route add default via {subnet.network_address + 1}"]))
    sh("ip", "-n", f"sbxfw-{w.tag}-inet", "-batch", "-", stdin="\n".join(
        [f"addr add {INTERNET}/24 dev eth0", "link set eth0 up", "link set lo up"]))
    sysctls = ["net.ipv4.ip_forward=1"] + [
        f"net.ipv4.conf.{n.bridge}.route_localnet=1" for n in NETWORKS if not n.internal]
    w.host_sh("sysctl", "-q", "-w", *sysctls)
    w.nft("add table ip user_t { chain c { }; }")


@contextlib.asynccontextmanager
async def firewall() -> AsyncIterator[Firewall]:
    fw = Firewall()
    await fw.start()
    try:
        yield fw
    finally:
        await fw.close()


def test_egress_is_masqueraded_and_internal_stays_in(world: World, nl_run: NlRun) -> None:
    async def body() -> None:
        foreign = world.foreign()
        # Without NAT the internet has no route back to 10.x: nothing answers.
        await world.aexpect([("a1", "tcp", INTERNET, 5000, None)])
        async with firewall() as fw:
            await fw.apply(state())
            await world.aexpect([
                ("a1", "tcp", INTERNET, 5000, f"inet:5000 {UPLINK}"),
                ("a1", "udp", INTERNET, 5000, f"inet:5000 {UPLINK}"),
                ("b1", "tcp", INTERNET, 5000, f"inet:5000 {UPLINK}"),
                ("i1", "tcp", INTERNET, 5000, None),
                ("i1", "tcp", str(ip_of("a1")), 80, None),
                ("a1", "tcp", str(ip_of("i1")), 80, None),
            ])
            assert world.foreign() == foreign
    nl_run(body)


def test_published_tcp_port(world: World, nl_run: NlRun) -> None:
    async def body() -> None:
        async with firewall() as fw:
            await fw.apply(state(port("a1", 8080, 80), port("a2", 8081, 80, host_ip="127.0.0.1")))
            gw_a = "10.20.0.1"
            await world.aexpect([
                ("inet", "tcp", UPLINK, 8080, f"a1:80 {INTERNET}"),
                ("host", "tcp", "127.0.0.1", 8080, f"a1:80 {gw_a}"),
                ("host", "tcp", UPLINK, 8080, f"a1:80 {UPLINK}"),
                ("a2", "tcp", UPLINK, 8080, f"a1:80 {gw_a}"),  # hairpin via a peer
                ("a1", "tcp", UPLINK, 8080, f"a1:80 {gw_a}"),  # hairpin to itself
                ("a2", "tcp", gw_a, 8080, f"a1:80 {gw_a}"),
                ("b1", "tcp", UPLINK, 8080, f"a1:80 {gw_a}"),  # other network, via the host
                ("i1", "tcp", UPLINK, 8080, None),  # internal: nothing leaves its bridge
                ("host", "tcp", "127.0.0.1", 8081, f"a2:80 {gw_a}"),  # bound to 127.0.0.1 only
                ("inet", "tcp", UPLINK, 8081, None),
            ])
    nl_run(body)


def test_published_udp_port_and_ranges(world: World, nl_run: NlRun) -> None:
    async def body() -> None:
        async with firewall() as fw:
            await fw.apply(state(port("a1", 8053, 53, protocol="udp"),
                                 port("a1", 9000, 9000, count=3),
                                 port("a1", 7000, 80, count=2)))
            checks: list[Check] = [
                ("inet", "udp", UPLINK, 8053, f"a1:53 {INTERNET}"),
                ("host", "udp", "127.0.0.1", 8053, "a1:53 10.20.0.1"),
                ("host", "udp", UPLINK, 8053, f"a1:53 {UPLINK}"),
                ("a2", "udp", UPLINK, 8053, "a1:53 10.20.0.1"),
                ("inet", "tcp", UPLINK, 8053, None),  # udp only
                ("inet", "tcp", UPLINK, 7000, f"a1:80 {INTERNET}"),
                ("inet", "tcp", UPLINK, 7001, f"a1:81 {INTERNET}"),
                ("host", "tcp", "127.0.0.1", 7001, "a1:81 10.20.0.1"),
            ]
            checks += [("inet", "tcp", UPLINK, p, f"a1:{p} {INTERNET}") for p in (9000, 9001, 9002)]
            await world.aexpect(checks)
            table = world.table()["nftables"]
            elems = {o["map"]["name"]: len(o["map"].get("elem", ())) for o in table if "map" in o}
            assert elems["dnat_any"] == 6  # one element per port
            assert elems["dnat_any_port"] == 3  # 8053 and the two shifted ports
    nl_run(body)


def test_self_hairpin_needs_the_hairpin_port_flag(world: World, nl_run: NlRun) -> None:
    """With br_netfilter, a DNAT back into the same bridge is bridged (not routed), so a
    container reaching its own published port leaves and re-enters one port: only a
    port in hairpin mode allows that."""
    async def body() -> None:
        async with firewall() as fw:
            await fw.apply(state(port("a1", 8080, 80)))
            world.host_sh("ip", "link", "set", "v-a1", "type", "bridge_slave", "hairpin", "off")
            await world.aexpect([("a1", "tcp", UPLINK, 8080, None),
                                 ("a2", "tcp", UPLINK, 8080, "a1:80 10.20.0.1")])
            world.host_sh("sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=0")
            await world.aexpect([("a1", "tcp", UPLINK, 8080, "a1:80 10.20.0.1")])  # routed
    world.host_sh("sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1")
    nl_run(body)


def test_containers_cannot_reach_host_loopback(world: World, nl_run: NlRun) -> None:
    """route_localnet=1 on a bridge (needed to publish on 127.0.0.1) lets packets for
    127.0.0.0/8 in from it; the guard chain drops them. The container here sets up its
    side as an attacker with CAP_NET_ADMIN in its own netns could."""
    a1 = world.ns("a1")
    sh("ip", "-n", a1.name, "addr", "del", "127.0.0.1/8", "dev", "lo")
    sh("ip", "-n", a1.name, "route", "add", "127.0.0.0/8", "via", "10.20.0.1", "src",
       str(ip_of("a1")))
    sh("nsenter", f"--net={a1}", "sysctl", "-q", "-w", "net.ipv4.conf.all.route_localnet=1")
    loopback_only = Servers()
    loopback_only.listen(world.host, "host", "tcp", 6000, address="127.0.0.1")
    loopback_only.start()

    async def body() -> None:
        await world.aexpect([("a1", "tcp", "127.0.0.1", 6000, f"host:6000 {ip_of('a1')}")])
        async with firewall() as fw:
            await fw.apply(state(port("a1", 8080, 80, host_ip="127.0.0.1")))
            await world.aexpect([("a1", "tcp", "127.0.0.1", 6000, None),
                                 ("host", "tcp", "127.0.0.1", 8080, "a1:80 10.20.0.1")])
    try:
        nl_run(body)
    finally:
        loopback_only.stop()


def test_networks_are_isolated(world: World, nl_run: NlRun) -> None:
    a1, a2, b1 = (str(ip_of(n)) for n in ("a1", "a2", "b1"))
    async def body() -> None:
        await world.aexpect([("a1", "tcp", b1, 80, f"b1:80 {a1}")])  # routed, no firewall
        async with firewall() as fw:
            await fw.apply(state())
            await world.aexpect([
                ("a1", "tcp", b1, 80, None),
                ("b1", "tcp", a1, 80, None),
                ("a1", "tcp", a2, 80, f"a2:80 {a1}"),  # same network, icc true
                ("host", "tcp", a1, 80, "a1:80 10.20.0.1"),  # the host reaches containers
            ])
    nl_run(body)


def test_icc_false_with_br_netfilter(world: World, nl_run: NlRun) -> None:
    """bridge-nf-call-iptables=1 (this kernel's default): the same_bridge drop works."""
    c1, c2 = str(ip_of("c1")), str(ip_of("c2"))
    async def body() -> None:
        await world.aexpect([("c1", "tcp", c2, 80, f"c2:80 {c1}")])
        async with firewall() as fw:
            await fw.apply(state(port("c2", 8082, 80)))
            await world.aexpect([
                ("c1", "tcp", c2, 80, None),
                ("c2", "tcp", c1, 80, None),
                ("c1", "tcp", UPLINK, 8082, "c2:80 10.50.0.1"),  # published ports stay reachable
                ("c1", "tcp", INTERNET, 5000, f"inet:5000 {UPLINK}"),
            ])
    world.host_sh("sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1")
    nl_run(body)


def test_icc_false_needs_isolated_ports_without_br_netfilter(
        world: World, nl_run: NlRun) -> None:
    c1, c2 = str(ip_of("c1")), str(ip_of("c2"))
    async def body() -> None:
        async with firewall() as fw:
            await fw.apply(state(port("c2", 8082, 80)))
            # Bridged frames skip the inet hooks: the firewall alone cannot stop them.
            await world.aexpect([("c1", "tcp", c2, 80, f"c2:80 {c1}")])
            for name in ("v-c1", "v-c2"):
                world.host_sh("ip", "link", "set", name, "type", "bridge_slave", "isolated", "on")
            await world.aexpect([
                ("c1", "tcp", c2, 80, None),
                ("c2", "tcp", c1, 80, None),
                ("c1", "tcp", UPLINK, 8082, "c2:80 10.50.0.1"),
                ("c1", "tcp", INTERNET, 5000, f"inet:5000 {UPLINK}"),
            ])
    world.host_sh("sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=0")
    nl_run(body)


def test_removing_a_port_stops_its_dnat(world: World, nl_run: NlRun) -> None:
    async def body() -> None:
        async with firewall() as fw:
            await fw.apply(state(port("a1", 8080, 80), port("b1", 8090, 80)))
            await world.aexpect([("inet", "tcp", UPLINK, 8080, f"a1:80 {INTERNET}"),
                                 ("inet", "tcp", UPLINK, 8090, f"b1:80 {INTERNET}")])
            await fw.apply(state(port("b1", 8090, 80)))
            await world.aexpect([("inet", "tcp", UPLINK, 8080, None),
                                 ("inet", "tcp", UPLINK, 8090, f"b1:80 {INTERNET}")])
            await fw.apply(state(port("a2", 8080, 80), port("b1", 8090, 80)))  # the port is free
            await world.aexpect([("inet", "tcp", UPLINK, 8080, f"a2:80 {INTERNET}")])
    nl_run(body)


def test_apply_is_idempotent_and_is_intact_sees_damage(world: World, nl_run: NlRun) -> None:
    async def body() -> None:
        async with firewall() as fw:
            desired = state(port("a1", 8080, 80), port("a1", 9000, 9000, count=3))
            assert not await fw.is_intact(desired)
            await fw.apply(desired)
            listing = world.nft("list", "table", "inet", "sheep")
            await fw.apply(desired)
            assert world.nft("list", "table", "inet", "sheep") == listing
            assert await fw.is_intact(desired)
            assert not await fw.is_intact(state(port("a1", 8080, 80)))
            damage = [["flush", "chain", "inet", "sheep", "forward"],
                      ["chain", "inet", "sheep", "forward", "{ policy drop ; }"],
                      ["delete", "element", "inet", "sheep", "dnat_any", "{ tcp . 8080 }"],
                      ["delete", "chain", "inet", "sheep", "guard"],
                      ["delete", "table", "inet", "sheep"]]
            for args in damage:
                world.nft(*args)
                assert not await fw.is_intact(desired), args
                await fw.apply(desired)
                assert await fw.is_intact(desired)
            world.foreign()
    nl_run(body)


def test_failed_transaction_leaves_previous_table(
        world: World, nl_run: NlRun, monkeypatch: pytest.MonkeyPatch) -> None:
    def with_bad_rule(st: FirewallState, *, table: str = "sheep") -> list[dict[str, Any]]:
        bad = {"add": {"rule": {"family": "inet", "table": table, "chain": "forward",
                                "expr": [{"jump": {"target": "no_such_chain"}}]}}}
        return [*build_ruleset(st, table=table), bad]

    async def body() -> None:
        async with firewall() as fw:
            before_state = state(port("a1", 8080, 80))
            await fw.apply(before_state)
            before, foreign = world.table(), world.foreign()
            monkeypatch.setattr(nft_module, "build_ruleset", with_bad_rule)
            with pytest.raises(FirewallError, match="No such file or directory"):
                await fw.apply(state(port("a2", 8081, 80)))
            monkeypatch.undo()
            assert world.table() == before  # handles included: nothing was replaced
            assert world.foreign() == foreign
            assert await fw.is_intact(before_state)
            await world.aexpect([("inet", "tcp", UPLINK, 8080, f"a1:80 {INTERNET}")])
            with pytest.raises(InvalidArgument):  # bad plans never reach the kernel
                await fw.apply(state(port("a1", 8080, 80), port("a2", 8080, 81)))
            assert world.table() == before
    nl_run(body)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_flush_ruleset_is_repaired_within_a_second(
        world: World, nl_sandbox: Path, loop: str) -> None:
    desired = state(port("a1", 8080, 80), port("a1", 8053, 53, protocol="udp"))
    traffic: list[Check] = [("inet", "tcp", UPLINK, 8080, f"a1:80 {INTERNET}"),
                            ("inet", "udp", UPLINK, 8053, f"a1:53 {INTERNET}"),
                            ("a2", "tcp", INTERNET, 5000, f"inet:5000 {UPLINK}")]

    async def body() -> None:
        async with firewall() as fw:
            await fw.apply(desired)
            monitor = FirewallMonitor(firewall=fw)
            changes: list[float] = []
            repairs: list[float] = []

            async def on_change() -> None:
                changes.append(time.monotonic())
                if not await fw.is_intact(desired):
                    await fw.apply(desired)
                    repairs.append(time.monotonic())

            task = asyncio.create_task(monitor.run(on_change), name="fw-monitor")
            await monitor.ready.wait()
            await fw.apply(desired)  # our own commits do not wake the monitor
            await asyncio.sleep(0.2)
            assert changes == []
            for what in (["flush", "ruleset"], ["delete", "chain", "inet", "sheep", "forward"],
                         ["flush", "map", "inet", "sheep", "dnat_any"]):
                done = len(repairs)
                start = time.monotonic()
                await asyncio.to_thread(world.nft, *what)
                while len(repairs) == done and time.monotonic() - start < 3:
                    await asyncio.sleep(0.005)
                assert len(repairs) == done + 1 and repairs[-1] - start < 1.0, what
                print(f"\n{' '.join(what)}: repaired in {(repairs[-1] - start) * 1000:.0f} ms")
                await world.aexpect(traffic)
            await asyncio.sleep(0.3)
            assert len(repairs) == 3 and len(changes) == 3  # no feedback loop
            world.nft("add table ip other { chain c { }; }")  # not about our table: ignored
            await asyncio.sleep(0.2)
            assert len(changes) == 3
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    runner = uvloop.run if loop == "uvloop" else asyncio.run
    run_in_netns(nl_sandbox, lambda: runner(body()))


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_monitor_survives_enobufs(world: World, nl_sandbox: Path,
                                  monkeypatch: pytest.MonkeyPatch, loop: str) -> None:
    """A commit while the loop is busy overflows a tiny receive buffer: the lost
    messages count as a change (a wakeup even for our own apply), and the monitor
    keeps working afterwards."""
    monkeypatch.setattr(monitor_module, "_RCVBUF", 1)  # the kernel's minimum, ~2 KiB
    big = state(*(port("a1", 10000 + i, 80) for i in range(500)))

    async def body() -> None:
        async with firewall() as fw:
            monitor = FirewallMonitor(firewall=fw)
            changes: list[bool] = []

            async def on_change() -> None:
                intact = await fw.is_intact(big)
                changes.append(intact)
                if not intact:
                    await fw.apply(big)

            async def settle(count: int) -> None:
                for _ in range(150):
                    if len(changes) >= count and await fw.is_intact(big):
                        return
                    await asyncio.sleep(0.02)

            task = asyncio.create_task(monitor.run(on_change), name="fw-monitor")
            await monitor.ready.wait()
            applying = asyncio.create_task(fw.apply(big))
            await asyncio.sleep(0)
            time.sleep(0.5)  # the loop reads nothing while the worker commits
            await applying
            await settle(1)
            assert changes == [True]  # woken although the commit was ours, nothing to do
            world.nft("flush", "ruleset")  # blocking the loop again: overflow
            await settle(2)
            assert changes[1] is False
            await asyncio.to_thread(world.nft, "delete", "chain", "inet", "sheep", "forward")
            await settle(3)
            assert False in changes[2:] and await fw.is_intact(big)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    runner = uvloop.run if loop == "uvloop" else asyncio.run
    run_in_netns(nl_sandbox, lambda: runner(body()))


@pytest.mark.parametrize("count", [0, 100, 1000])
def test_apply_cost(world: World, nl_run: NlRun, count: int) -> None:
    ports = tuple(port("a1", 10000 + i, 80 if i % 2 else 10000 + i) for i in range(count))
    async def body() -> None:
        async with firewall() as fw:
            times = []
            for _ in range(5):
                start = time.perf_counter()
                await fw.apply(state(*ports))
                times.append(time.perf_counter() - start)
            start = time.perf_counter()
            assert await fw.is_intact(state(*ports))
            check = time.perf_counter() - start
            print(f"\napply {count} ports: min {min(times) * 1000:.1f} ms, "
                  f"max {max(times) * 1000:.1f} ms; is_intact {check * 1000:.1f} ms")
            assert min(times) < 2.0
    nl_run(body)
