"""The firewall over IPv6 through a real sheepd, in a small world:

    internet netns 198.51.100.1/24, 2001:db8::1/64 ── up0 198.51.100.2, 2001:db8::2
                                                      sandbox "host" running sheepd

Containers of a dual-stack network run a server on [::] (both families) answering
"NAME:PORT PEER_IP". Packets only go between the namespaces this test made.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.e2e.test_live_state import eventually
from tests.sandbox import (
    CONTAINER_PYTHON,
    INTERNET,
    INTERNET6,
    UPLINK,
    UPLINK6,
    Sandbox,
    add_internet,
    sh,
)
from tests.traffic import Servers, connect

pytestmark = pytest.mark.kernel

# A dual-stack TCP server for containers (standard library only, run with -c).
SERVER = """
import socket, sys
name, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", port))
s.listen(16)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    c.sendall(f"{name}:{port} {peer[0]}".encode())
    c.close()
"""


class World:
    """The sandbox plus an "internet" netns behind it, over both families."""

    def __init__(self, box: Sandbox) -> None:
        self.box = box
        self.internet_name, self.internet = add_internet(box, ipv6=True)
        self.servers = Servers()
        self.servers.listen(self.internet, "internet", "tcp", 7000, address="::")
        self.servers.start()
        for name, subnet, subnet6, internal in (
                ("dual", "10.80.0.0/24", "fd00:80::/64", False),
                ("other", "10.81.0.0/24", "fd00:81::/64", False),
                ("private", "10.82.0.0/24", "fd00:82::/64", True)):
            box.api.CreateNetwork(pb.CreateNetworkRequest(
                name=name, subnet=subnet, subnet6=subnet6, internal=internal))

    def close(self) -> None:
        self.servers.stop()
        sh("ip", "netns", "del", self.internet_name, check=False)

    def server(self, name: str, port: int, network: str, *ports: pb.PortMapping
               ) -> pb.Container:
        c = self.box.run(CONTAINER_PYTHON, "-c", SERVER, name, str(port), name=name,
                         networks=[pb.NetworkAttachmentRequest(network=network,
                                                               ports=list(ports))])
        eventually(lambda: "ready" in Path(c.log_path).read_text())
        return c

    def ask(self, netns: str | Path, address: str, number: int) -> str | None:
        got = connect(Path(netns), "tcp", address, number, timeout=2)
        return got.replace("::ffff:", "") if got else None


@pytest.fixture
def world(box: Sandbox) -> Iterator[World]:
    w = World(box)
    yield w
    w.close()


def published(host_port: int, container_port: int, host_ip: str = "") -> pb.PortMapping:
    return pb.PortMapping(protocol="tcp", host_ip=host_ip, host_port=host_port,
                          container_port=container_port)


def test_ipv6_egress_is_masqueraded_and_internal_stays_in(world: World) -> None:
    c = world.box.run("/bin/sleep", "300", networks=[pb.NetworkAttachmentRequest(
        network="dual")])
    # The first packets over the fresh uplink wait for neighbour discovery.
    eventually(lambda: world.ask(c.netns_path, INTERNET6, 7000) is not None)
    assert world.ask(c.netns_path, INTERNET6, 7000) == f"internet:7000 {UPLINK6}"
    assert world.ask(c.netns_path, INTERNET, 7000) == f"internet:7000 {UPLINK}"
    i = world.box.run("/bin/sleep", "300", networks=[pb.NetworkAttachmentRequest(
        network="private")])
    assert world.ask(i.netns_path, INTERNET6, 7000) is None


def test_published_ports_answer_over_ipv6_and_networks_stay_apart(world: World) -> None:
    box = world.box
    web = world.server("web", 80, "dual", published(8080, 80),
                       published(8081, 80, host_ip=UPLINK6))
    gw6 = web.networks[0].gateway6
    eventually(lambda: world.ask(world.internet, UPLINK6, 8080) is not None)
    assert world.ask(world.internet, UPLINK6, 8080) == f"web:80 {INTERNET6}"
    assert world.ask(world.internet, UPLINK, 8080) == f"web:80 {INTERNET}"
    assert world.ask(world.internet, UPLINK6, 8081) == f"web:80 {INTERNET6}"
    assert world.ask(world.internet, UPLINK, 8081) is None  # IPv6 host_ip only
    assert world.ask(box.netns, UPLINK6, 8080) == f"web:80 {UPLINK6}"
    peer = box.run("/bin/sleep", "300", networks=[pb.NetworkAttachmentRequest(
        network="dual")])
    assert world.ask(peer.netns_path, UPLINK6, 8080) == f"web:80 {gw6}"  # hairpin
    assert world.ask(web.netns_path, UPLINK6, 8080) == f"web:80 {gw6}"  # to itself
    web6 = web.networks[0].ip6_address
    assert world.ask(peer.netns_path, web6, 80) == f"web:80 {peer.networks[0].ip6_address}"
    stranger = world.server("stranger", 80, "other")
    assert world.ask(stranger.netns_path, web6, 80) is None
    assert world.ask(web.netns_path, stranger.networks[0].ip6_address, 80) is None
    assert world.ask(stranger.netns_path, UPLINK6, 8080) == f"web:80 {gw6}"  # via the host
    box.api.RemoveContainer(pb.RemoveContainerRequest(id=web.id, force=True))
    assert world.ask(world.internet, UPLINK6, 8080) is None
