"""Egress NAT, published ports and isolation through a real sheepd, in a small world:

    internet netns 198.51.100.1/24 ── up0 198.51.100.2/24  sandbox "host" running sheepd
                                       (default route via 198.51.100.1)

Containers run tests/echo_server.py, which answers "NAME:PORT PEER_IP". Packets only go
between the namespaces this test made.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.e2e.test_live_state import EventLog, eventually, metric
from tests.sandbox import INTERNET, REPO, UPLINK, Sandbox, add_internet, container_script, sh
from tests.traffic import Servers, connect

pytestmark = pytest.mark.kernel



class World:
    """The sandbox plus an "internet" netns behind it."""

    def __init__(self, box: Sandbox) -> None:
        self.box = box
        self.internet_name, self.internet = add_internet(box)
        self.servers = Servers()
        self.servers.listen(self.internet, "internet", "tcp", 7000)
        self.servers.start()

    def close(self) -> None:
        self.servers.stop()
        sh("ip", "netns", "del", self.internet_name, check=False)

    def server(self, name: str, *specs: str, **kw: object) -> pb.Container:
        """A container running the echo server on `specs` (e.g. "tcp:80")."""
        c = self.box.run(*container_script(REPO / "tests" / "echo_server.py", name, *specs),
                         name=name, **kw)
        eventually(lambda: "ready" in Path(c.log_path).read_text())
        return c

    def ask(self, netns: str | Path, address: str, number: int, proto: str = "tcp"
            ) -> str | None:
        return connect(Path(netns), proto, address, number, timeout=2)


@pytest.fixture
def world(box: Sandbox) -> Iterator[World]:
    w = World(box)
    yield w
    w.close()


def publish(*specs: str, network: str = "sheep0") -> list[pb.NetworkAttachmentRequest]:
    from sheep_client.ports import parse_port
    return [pb.NetworkAttachmentRequest(network=network, ports=[parse_port(s) for s in specs])]


def test_egress_is_masqueraded_and_internal_networks_stay_in(world: World) -> None:
    box = world.box
    c = box.run("/bin/sleep", "300")
    assert world.ask(c.netns_path, INTERNET, 7000) == f"internet:7000 {UPLINK}"
    box.api.CreateNetwork(pb.CreateNetworkRequest(name="private", subnet="10.70.0.0/24",
                                                  internal=True))
    i = box.run("/bin/sleep", "300", networks=[pb.NetworkAttachmentRequest(network="private")])
    assert world.ask(i.netns_path, INTERNET, 7000) is None


def test_published_ports_answer_from_everywhere(world: World) -> None:
    box = world.box
    world.server("web", "tcp:80", "udp:80", "tcp:9000", "tcp:9001", "tcp:81",
                 networks=publish("8080:80", "8080:80/udp", "9000-9001:9000-9001",
                                  "7100-7101:80-81"))
    peer = box.run("/bin/sleep", "300")
    internet, host = world.internet, box.netns
    assert world.ask(internet, UPLINK, 8080) == f"web:80 {INTERNET}"
    assert world.ask(internet, UPLINK, 8080, "udp") == f"web:80 {INTERNET}"
    assert (world.ask(host, "127.0.0.1", 8080) or "").startswith("web:80 ")
    assert (world.ask(host, UPLINK, 8080) or "").startswith("web:80 ")
    assert (world.ask(peer.netns_path, UPLINK, 8080) or "").startswith("web:80 ")  # hairpin
    assert world.ask(internet, UPLINK, 9001) == f"web:9001 {INTERNET}"
    assert world.ask(internet, UPLINK, 7101) == f"web:81 {INTERNET}"
    ports = subprocess.run([sys.executable, "-m", "sheep_client.cli", "--socket",
                            str(box.socket), "port", "web"], capture_output=True, text=True)
    assert "80/tcp -> 0.0.0.0:8080" in ports.stdout
    assert "80/tcp -> 0.0.0.0:7100\n81/tcp -> 0.0.0.0:7101" in ports.stdout  # docker's form


def test_port_taken_until_its_owner_is_removed(world: World) -> None:
    box = world.box
    first = world.server("first", "tcp:80", networks=publish("8081:80"))
    with pytest.raises(grpc.RpcError) as e:
        world.server("second", "tcp:80", networks=publish("8081:80"))
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert first.id[:12] in e.value.details()
    box.api.RemoveContainer(pb.RemoveContainerRequest(id=first.id, force=True))
    assert world.ask(world.internet, UPLINK, 8081) is None
    world.server("second", "tcp:80", networks=publish("8081:80"))
    assert world.ask(world.internet, UPLINK, 8081) == f"second:80 {INTERNET}"


def test_networks_are_isolated_and_icc_false_keeps_peers_apart(world: World) -> None:
    box = world.box
    for name, subnet, icc in (("net-a", "10.71.0.0/24", True), ("net-b", "10.72.0.0/24", True),
                              ("lonely", "10.73.0.0/24", False)):
        req = pb.CreateNetworkRequest(name=name, subnet=subnet)
        req.icc = icc
        box.api.CreateNetwork(req)
    a = world.server("a", "tcp:80", networks=[pb.NetworkAttachmentRequest(network="net-a")])
    a2 = box.run("/bin/sleep", "300", networks=[pb.NetworkAttachmentRequest(network="net-a")])
    b = world.server("b", "tcp:80", networks=[pb.NetworkAttachmentRequest(network="net-b")])
    ip_a, ip_b = a.networks[0].ip_address, b.networks[0].ip_address
    assert world.ask(a2.netns_path, ip_a, 80) is not None  # same network: fine
    assert world.ask(a.netns_path, ip_b, 80) is None
    assert world.ask(b.netns_path, ip_a, 80) is None
    l1 = world.server("l1", "tcp:80", networks=[pb.NetworkAttachmentRequest(network="lonely")])
    l2 = box.run("/bin/sleep", "300", networks=[pb.NetworkAttachmentRequest(network="lonely")])
    assert world.ask(l2.netns_path, l1.networks[0].ip_address, 80) is None
    assert world.ask(l2.netns_path, INTERNET, 7000) == f"internet:7000 {UPLINK}"


def test_flushed_ruleset_is_restored_within_a_second(world: World) -> None:
    box = world.box
    world.server("web", "tcp:80", networks=publish("8082:80"))
    events = EventLog(box, type="firewall.")
    try:
        time.sleep(0.1)
        box.host("nft", "flush", "ruleset", check=True)
        t0 = time.monotonic()
        eventually(lambda: world.ask(world.internet, UPLINK, 8082) is not None, timeout=3)
        assert time.monotonic() - t0 < 1.5
        events.wait_for("firewall.repaired")
    finally:
        events.close()
    assert metric(box, "sheep_repairs_total", kind="firewall") >= 1
