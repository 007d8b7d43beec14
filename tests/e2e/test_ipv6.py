"""Dual stack through a real sheepd and kernel: IPv6 addresses usable when the call
returns, the gateway and peers reachable over IPv6 (apart with icc false),
leases kept across restarts, IPv6 host addresses of published ports in docker's form.
Packets only go between the sandbox's own namespaces."""

from __future__ import annotations

import pytest
from sheep.runtime.v1 import runtime_pb2 as pb
from sheep_client.ports import parse_port

from tests.clients.test_cli import ctl
from tests.sandbox import Sandbox, in_netns

pytestmark = pytest.mark.kernel


def ping6(netns: str, address: str) -> bool:
    return in_netns(netns, "ping", "-6", "-c1", "-W2", address).returncode == 0


def ping4(netns: str, address: str) -> bool:
    return in_netns(netns, "ping", "-4", "-c1", "-W2", address).returncode == 0


def on_dual(**kw: str) -> list[pb.NetworkAttachmentRequest]:
    return [pb.NetworkAttachmentRequest(network="dual", **kw)]


@pytest.fixture
def dual(box: Sandbox) -> pb.Network:
    net: pb.Network = box.api.CreateNetwork(pb.CreateNetworkRequest(
        name="dual", subnet="10.30.0.0/24", subnet6="fd00:30::/64"))
    return net


def test_containers_reach_the_gateway_and_each_other_over_ipv6(
        box: Sandbox, dual: pb.Network) -> None:
    a = box.run("/bin/sleep", "1000", name="a", networks=on_dual())
    # no DAD: usable the moment the call returns, no "tentative" wait
    assert ping6(a.netns_path, dual.gateway6)
    b = box.run("/bin/sleep", "1000", name="b", networks=on_dual(ip6="fd00:30::b"))
    assert b.networks[0].ip6_address == "fd00:30::b"
    assert ping6(a.netns_path, "fd00:30::b") and ping6(b.netns_path, a.networks[0].ip6_address)
    route = in_netns(a.netns_path, "ip", "-6", "route", "show", "default").stdout
    assert "via fd00:30::1 dev eth0" in route
    addrs = in_netns(a.netns_path, "ip", "-6", "addr", "show", "dev", "eth0").stdout
    assert "tentative" not in addrs and "fe80" not in addrs, addrs


def test_ipv6_leases_survive_a_daemon_restart(box: Sandbox, dual: pb.Network) -> None:
    made = [box.run("/bin/sleep", "1000", name=f"c{i}", networks=on_dual())
            for i in range(3)]
    box.restart()
    listed = {n.name: n for n in box.api.ListNetworks(pb.ListNetworksRequest()).networks}
    assert listed["dual"].leases6_allocated == 3
    for c in made:
        again = box.api.Inspect(pb.InspectRequest(id=c.id))
        assert again.networks[0].ip6_address == c.networks[0].ip6_address
    new = box.run("/bin/sleep", "1000", name="new", networks=on_dual())
    assert new.networks[0].ip6_address not in {c.networks[0].ip6_address for c in made}
    assert ping6(new.netns_path, made[0].networks[0].ip6_address)


def test_removal_frees_the_ipv6_lease_and_bridge_neighbour(box: Sandbox,
                                                          dual: pb.Network) -> None:
    c = box.run("/bin/sleep", "1000", name="gone", networks=on_dual())
    ip6 = c.networks[0].ip6_address
    assert ip6 in box.host("ip", "-6", "neigh", "show", "dev", dual.bridge).stdout
    box.api.RemoveContainer(pb.RemoveContainerRequest(id=c.id, force=True))
    assert ip6 not in box.host("ip", "-6", "neigh", "show", "dev", dual.bridge).stdout
    listed = {n.name: n for n in box.api.ListNetworks(pb.ListNetworksRequest()).networks}
    assert listed["dual"].leases6_allocated == 0


@pytest.mark.parametrize("icc", [False, True])
def test_peers_meet_over_ipv6_only_with_icc(box: Sandbox, icc: bool) -> None:
    req = pb.CreateNetworkRequest(name="peers", subnet="10.77.0.0/24", subnet6="fd00:77::/64")
    req.icc = icc
    net = box.api.CreateNetwork(req)
    on_peers = [pb.NetworkAttachmentRequest(network="peers")]
    a, b = (box.run("/bin/sleep", "1000", name=n, networks=on_peers) for n in ("a", "b"))
    (na,), (nb,) = a.networks, b.networks
    assert ping6(a.netns_path, net.gateway6) and ping6(b.netns_path, net.gateway6)
    assert ping6(a.netns_path, nb.ip6_address) is icc
    assert ping6(b.netns_path, na.ip6_address) is icc
    assert ping4(a.netns_path, nb.ip_address) is icc


def test_ipv6_host_addresses_print_in_brackets(box: Sandbox, dual: pb.Network) -> None:
    box.run("/bin/sleep", "1000", name="web", networks=[pb.NetworkAttachmentRequest(
        network="dual", ports=[parse_port(p) for p in ("[::]:8090-8091:80-81",
                                                       "127.0.0.1:8092:82/udp")])])
    r = ctl("port", "web", socket=box.socket)
    assert r.stdout == "80/tcp -> [::]:8090\n81/tcp -> [::]:8091\n82/udp -> 127.0.0.1:8092\n", \
        r.stderr
    assert ctl("port", "web", "81", socket=box.socket).stdout == "[::]:8091\n"
    assert "[::]:8090-8091->80-81/tcp, 127.0.0.1:8092->82/udp" in \
        ctl("ps", socket=box.socket).stdout
