"""Embedded DNS through a real sheepd, in a small world:

    internet netns 198.51.100.1 (a fake upstream resolver) ── sandbox "host" (sheepd)
                                                               ├─ sheep0 10.20.0.0/16
                                                               ├─ other  10.31.0.0/24
                                                               └─ dual   10.30.0.0/24
                                                                         fd00:30::/64

Queries are sent from the containers' own netns, so the daemon sees their addresses.
Packets only go between the namespaces this test made.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dns.reversename
import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.dns.upstream import FakeUpstream
from tests.e2e.test_live_state import eventually
from tests.logtext import log_text
from tests.sandbox import (
    CONTAINER_PYTHON,
    INTERNET,
    Sandbox,
    add_internet,
    in_netns,
    sandbox,
    sh,
)

pytestmark = pytest.mark.kernel

GATEWAY = "10.20.0.1"
OUTSIDE: dict[str, str | tuple[str, ...]] = {
    "outside.example": "203.0.113.7", "second.example": "203.0.113.8",
    "six.example": ("203.0.113.9", "2001:db8:6::9")}

# Run inside a container's netns: ask SERVER for NAME (TYPE), print "RCODE ADDR...".
ASK = """
import sys, dns.message, dns.query, dns.rcode
server, name, rdtype, proto = sys.argv[1:5]
q = dns.message.make_query(name, rdtype)
ask = dns.query.tcp if proto == "tcp" else dns.query.udp
r = ask(q, server, timeout=5)
print(dns.rcode.to_text(r.rcode()), *sorted(str(rd) for rrset in r.answer for rd in rrset))
"""

# Run inside a container (its own /etc files, the C library's resolver): the IPv6
# addresses of each name, then its resolv.conf.
GETADDRINFO6 = """
import socket, sys
for name in sys.argv[1:]:
    try:
        found = sorted({ai[4][0] for ai in socket.getaddrinfo(
            name, 80, socket.AF_INET6, socket.SOCK_STREAM)})
    except socket.gaierror as e:
        found = ["gaierror"]
    print(name, *found)
print(open("/etc/resolv.conf").read().replace("\\n", "|"), "end", flush=True)
"""


class World:
    """The sandbox with sheepd forwarding to a fake upstream in an "internet" netns."""

    def __init__(self, box: Sandbox) -> None:
        self.box = box
        self.internet_name, self.internet = add_internet(box)
        self.upstream: FakeUpstream | None = FakeUpstream(self.internet, INTERNET, OUTSIDE)

    def close(self) -> None:
        if self.upstream is not None:
            self.upstream.stop()
        sh("ip", "netns", "del", self.internet_name, check=False)

    def sleeper(self, name: str, **kw: object) -> pb.Container:
        return self.box.run("sleep", "600", name=name, **kw)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with sandbox(tmp_path) as box:
        box.start(extra=["--dns-upstream", INTERNET])
        w = World(box)
        try:
            yield w
        finally:
            w.close()


def ask(c: pb.Container, name: str, rdtype: str = "A", *, server: str = GATEWAY,
        proto: str = "udp") -> list[str]:
    out = in_netns(c.netns_path, sys.executable, "-c", ASK, server, name, rdtype, proto,
                   check=True)
    return out.stdout.split()


def test_containers_resolve_peers_on_shared_networks_only(world: World) -> None:
    box = world.box
    b = world.sleeper("bee", networks=[pb.NetworkAttachmentRequest(
        network="sheep0", aliases=["db", "Cache.Local"])])
    a = world.sleeper("ay")
    box.api.CreateNetwork(pb.CreateNetworkRequest(name="other", subnet="10.31.0.0/24"))
    c = world.sleeper("sea", networks=[pb.NetworkAttachmentRequest(network="other")])
    b_ip = b.networks[0].ip_address
    for name in ("bee", "db", "cache.local", b.id[:12], "BEE"):
        assert ask(a, name) == ["NOERROR", b_ip], name
    # the full id (64 characters) cannot be a DNS label (at most 63): no query holds it
    assert ask(a, "bee", proto="tcp") == ["NOERROR", b_ip]
    assert ask(a, "bee", "AAAA") == ["NOERROR"]  # a name with no IPv6 address: NODATA
    ptr = ".".join(reversed(b_ip.split("."))) + ".in-addr.arpa"
    assert ask(a, ptr, "PTR") == ["NOERROR", "bee."]
    # isolation holds for names: sea is on another network
    assert ask(a, "sea") == ["NXDOMAIN"]
    assert ask(c, "bee", server="10.31.0.1") == ["NXDOMAIN"]
    assert ask(c, "sea", server="10.31.0.1") == ["NOERROR", c.networks[0].ip_address]
    # a live attach adds the names of the new network, a detach takes them away
    box.api.AttachNetwork(pb.AttachNetworkRequest(container_id=a.id, network="other",
                                                  aliases=["gate"]))
    assert ask(c, "gate", server="10.31.0.1")[0] == "NOERROR"
    assert ask(a, "sea")[0] == "NOERROR"
    box.api.DetachNetwork(pb.DetachNetworkRequest(container_id=a.id, network="other"))
    assert ask(a, "sea") == ["NXDOMAIN"]


def test_removed_container_stops_resolving(world: World) -> None:
    b = world.sleeper("bee")
    a = world.sleeper("ay")
    assert ask(a, "bee")[0] == "NOERROR"
    world.box.api.RemoveContainer(pb.RemoveContainerRequest(id=b.id, force=True))
    t0 = time.monotonic()
    assert ask(a, "bee") == ["NXDOMAIN"]
    print(f"removal reflected: first query {1000 * (time.monotonic() - t0):.0f} ms after "
          "the call returned (includes starting the asking process)")


def test_names_outside_are_forwarded_and_servfail_without_upstream(world: World) -> None:
    a = world.sleeper("ay")
    assert ask(a, "outside.example") == ["NOERROR", OUTSIDE["outside.example"]]
    assert ask(a, "outside.example", proto="tcp") == ["NOERROR", OUTSIDE["outside.example"]]
    assert ask(a, "nowhere.example") == ["NXDOMAIN"]
    assert world.upstream is not None
    world.upstream.stop()
    world.upstream = None
    # cached while its TTL lasts; a name not asked before finds no upstream
    assert ask(a, "outside.example") == ["NOERROR", OUTSIDE["outside.example"]]
    assert ask(a, "second.example") == ["SERVFAIL"]


def test_dns_metrics_are_exported(world: World) -> None:
    a = world.sleeper("ay")
    world.sleeper("bee")
    assert ask(a, "bee")[0] == "NOERROR"
    assert ask(a, "outside.example")[0] == "NOERROR"
    metrics = world.box.metrics()
    assert 'sheep_dns_queries_total{result="answered",type="A"} 1.0' in metrics
    assert 'sheep_dns_queries_total{result="forwarded",type="A"} 1.0' in metrics
    assert "sheep_dns_forward_duration_seconds_count 1.0" in metrics


def test_container_gets_its_own_resolv_conf_hosts_and_hostname(world: World) -> None:
    c = world.box.run("sh", "-c", "cat /etc/resolv.conf /etc/hosts /etc/hostname",
                      name="files", hostname="files.test")
    eventually(lambda: "files.test" in log_text(c.log_path).splitlines()[-1:])
    text = log_text(c.log_path)
    assert text.startswith(f"nameserver {GATEWAY}\n")
    assert f"{c.networks[0].ip_address}\tfiles.test files" in text
    assert "127.0.0.1\tlocalhost" in text
    none = world.box.run("cat", "/etc/resolv.conf", name="nonet", network_mode="none")
    eventually(lambda: log_text(none.log_path) != "")
    assert log_text(none.log_path) == Path("/etc/resolv.conf").read_text()


def test_http_server_listens_within_a_second(world: World) -> None:
    t0 = time.monotonic()
    c = world.box.run("python3", "-m", "http.server", "8000", name="web")
    ip = c.networks[0].ip_address

    def listening() -> bool:
        with socket.socket() as s:
            s.settimeout(0.2)
            return run_in(world.box, s, ip)
    eventually(listening, timeout=10)
    print(f"python3 -m http.server listened {time.monotonic() - t0:.2f} s after "
          "CreateContainer was called")


def run_in(box: Sandbox, s: socket.socket, ip: str) -> bool:
    out = box.host(sys.executable, "-c", f"import socket; socket.create_connection(("
                   f"'{ip}', 8000), timeout=0.2)")
    return out.returncode == 0


def test_aaaa_and_ip6_ptr_on_a_dual_stack_network(world: World) -> None:
    box = world.box
    dual = box.api.CreateNetwork(pb.CreateNetworkRequest(
        name="dual", subnet="10.30.0.0/24", subnet6="fd00:30::/64"))
    gw4, gw6 = dual.gateway, dual.gateway6
    on_dual = pb.NetworkAttachmentRequest(network="dual", aliases=["db"])
    b = world.sleeper("bee", networks=[on_dual])
    a = world.sleeper("ay", networks=[pb.NetworkAttachmentRequest(network="dual")])
    c = world.sleeper("sea")  # sheep0 only: IPv4 only, shares nothing with a and b
    d = world.sleeper("dee", networks=[pb.NetworkAttachmentRequest(network="sheep0"),
                                       pb.NetworkAttachmentRequest(network="dual")])
    b4, b6 = b.networks[0].ip_address, b.networks[0].ip6_address
    assert b6.startswith("fd00:30::")
    # over IPv4 and over IPv6 (the query then comes from a's IPv6 address), UDP and TCP
    for server in (gw4, gw6):
        for proto in ("udp", "tcp"):
            assert ask(a, "bee", "AAAA", server=server, proto=proto) == ["NOERROR", b6]
        assert ask(a, "db", "AAAA", server=server) == ["NOERROR", b6]
        assert ask(a, b.id[:12], "AAAA", server=server) == ["NOERROR", b6]
        assert ask(a, "bee", "A", server=server) == ["NOERROR", b4]
        assert ask(a, "bee", "ANY", server=server) == ["NOERROR", b4, b6]
    ptr = dns.reversename.from_address(b6).to_text(omit_final_dot=True)
    assert ptr.endswith(".ip6.arpa")
    assert ask(a, ptr, "PTR", server=gw6) == ["NOERROR", "bee."]
    assert ask(a, ptr, "PTR", server=gw4) == ["NOERROR", "bee."]
    # isolation: sea is on sheep0 only, bee on dual only
    assert ask(c, "bee", "AAAA") == ["NXDOMAIN"]
    assert ask(c, ptr, "PTR") == ["NXDOMAIN"]
    assert ask(a, "sea", "AAAA", server=gw6) == ["NXDOMAIN"]
    # dee, asking over IPv6, is known by that address: it shares sheep0 with sea, which
    # has no IPv6 address (NODATA, not NXDOMAIN, not forwarded)
    assert ask(d, "sea", "AAAA", server=gw6) == ["NOERROR"]
    assert ask(d, "sea", "A", server=gw6) == ["NOERROR", c.networks[0].ip_address]
    # and sea sees dee's IPv4 address on sheep0, not its IPv6 one on dual
    assert ask(c, "dee", "A") == ["NOERROR", d.networks[0].ip_address]
    assert ask(c, "dee", "AAAA") == ["NOERROR"]
    # AAAA of names outside go upstream, over either family
    assert ask(a, "six.example", "AAAA", server=gw6) == ["NOERROR", "2001:db8:6::9"]
    assert ask(a, "six.example", "AAAA", server=gw4, proto="tcp") == ["NOERROR",
                                                                      "2001:db8:6::9"]
    # the container's own resolver: its resolv.conf (the IPv4 gateway) and /etc/hosts
    probe = box.run(CONTAINER_PYTHON, "-c", GETADDRINFO6, "bee", "probe", "sea",
                    name="probe", networks=[pb.NetworkAttachmentRequest(network="dual")])
    eventually(lambda: "end" in log_text(probe.log_path), timeout=15)
    lines = log_text(probe.log_path).splitlines()
    assert lines[:3] == [f"bee {b6}", f"probe {probe.networks[0].ip6_address}",
                         "sea gaierror"], lines
    assert lines[3] == f"nameserver {gw4}| end", lines
    # a detach takes the IPv6 name and address away with the IPv4 ones (bee is then on
    # no network: its name goes upstream, which knows it not)
    box.api.DetachNetwork(pb.DetachNetworkRequest(container_id=b.id, network="dual"))
    assert ask(a, "bee", "AAAA", server=gw6) == ["NXDOMAIN"]
    assert ask(a, ptr, "PTR", server=gw6) == ["NXDOMAIN"]
