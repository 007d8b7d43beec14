"""Bridge networking through a real sheepd: addresses, links, reachability, leases."""

from __future__ import annotations

import ipaddress
import json
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.sandbox import Sandbox, in_netns, pinned_mounts

pytestmark = pytest.mark.kernel


def ping(netns: str, address: str) -> bool:
    return in_netns(netns, "ping", "-c1", "-W2", address).returncode == 0


def host_links(box: Sandbox) -> dict[str, dict[str, object]]:
    out = box.host("ip", "-j", "-d", "link", "show", check=True).stdout
    return {link["ifname"]: link for link in json.loads(out)}


def sql(box: Sandbox, query: str) -> list[tuple[object, ...]]:
    import sqlite3
    with sqlite3.connect(box.state_dir / "sheep.db") as db:
        return list(db.execute(query))


def test_containers_reach_their_gateway_and_each_other(box: Sandbox) -> None:
    a = box.run("/bin/sleep", "300", name="a")
    b = box.run("/bin/sleep", "300", name="b")
    na, nb = a.networks[0], b.networks[0]
    assert (na.network, na.gateway, na.prefix_length, na.interface_name) == \
        ("sheep0", "10.20.0.1", 16, "eth0")
    assert na.ip_address != nb.ip_address
    assert ipaddress.ip_address(na.ip_address) in ipaddress.ip_network("10.20.0.0/16")
    assert na.link_state == "up" and na.mac_address.startswith("02:5e:")
    links = host_links(box)
    assert links[na.host_interface]["master"] == box.bridge
    assert ping(a.netns_path, "10.20.0.1")
    assert ping(a.netns_path, nb.ip_address) and ping(b.netns_path, na.ip_address)
    # Inside: the address, the default route, lo up.
    routes = json.loads(in_netns(a.netns_path, "ip", "-j", "route").stdout)
    assert {"dst": "default", "gateway": "10.20.0.1"}.items() <= routes[0].items()
    assert ping(a.netns_path, "127.0.0.1")


def test_user_network_gets_its_own_bridge(box: Sandbox) -> None:
    net = box.api.CreateNetwork(pb.CreateNetworkRequest(name="back", subnet="10.30.0.0/24"))
    assert net.bridge.startswith("shpbr") and len(net.bridge) == 15
    assert (net.gateway, net.leases_capacity, net.leases_allocated) == ("10.30.0.1", 253, 0)
    assert host_links(box)[net.bridge]["operstate"] in ("UP", "UNKNOWN", "DOWN")
    nets = [pb.NetworkAttachmentRequest(network="back")]
    a = box.run("/bin/sleep", "300", networks=nets)
    b = box.run("/bin/sleep", "300", networks=nets)
    assert ping(a.netns_path, "10.30.0.1") and ping(a.netns_path, b.networks[0].ip_address)
    got = box.api.InspectNetwork(pb.InspectNetworkRequest(id="back"))
    assert got.leases_allocated == 2 and set(got.containers) == {a.id, b.id}
    # Remove refuses while containers are attached, naming them.
    with pytest.raises(grpc.RpcError) as e:
        box.api.RemoveNetwork(pb.RemoveNetworkRequest(id="back"))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert a.id[:12] in e.value.details()
    for c in (a, b):
        box.api.RemoveContainer(pb.RemoveContainerRequest(id=c.id, force=True))
    box.api.RemoveNetwork(pb.RemoveNetworkRequest(id="back"))
    assert net.bridge not in host_links(box)


@pytest.mark.parametrize(("subnet", "clash"), [
    ("10.20.5.0/24", "sheep0"),     # overlaps the default network
    ("10.0.0.0/8", "sheep0"),
    ("10.30.0.1/24", "host bits"),  # not a network address
    ("10.30.0.0/31", "/30"),
])
def test_bad_subnets_are_refused(box: Sandbox, subnet: str, clash: str) -> None:
    with pytest.raises(grpc.RpcError) as e:
        box.api.CreateNetwork(pb.CreateNetworkRequest(name="x", subnet=subnet))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert clash in e.value.details()


def test_subnet_overlapping_a_host_route_is_refused(box: Sandbox) -> None:
    box.host("ip", "link", "add", "hostbr", "type", "bridge", check=True)
    box.host("ip", "addr", "add", "192.0.2.1/24", "dev", "hostbr", check=True)
    box.host("ip", "link", "set", "hostbr", "up", check=True)
    with pytest.raises(grpc.RpcError) as e:
        box.api.CreateNetwork(pb.CreateNetworkRequest(name="x", subnet="192.0.2.0/25"))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "192.0.2.0/24" in e.value.details()


def test_default_network_cannot_be_removed(box: Sandbox) -> None:
    with pytest.raises(grpc.RpcError) as e:
        box.api.RemoveNetwork(pb.RemoveNetworkRequest(id="sheep0"))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_fifty_concurrent_creates(box: Sandbox) -> None:
    with ThreadPoolExecutor(8) as pool:
        cs = list(pool.map(lambda i: box.run("/bin/sleep", "300", name=f"c{i}"), range(50)))
    addrs = {c.networks[0].ip_address for c in cs}
    assert len(addrs) == 50
    links = host_links(box)
    assert all(links[c.networks[0].host_interface]["master"] == box.bridge for c in cs)
    assert all(links[c.networks[0].host_interface]["operstate"] == "UP" for c in cs)
    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(lambda c: ping(c.netns_path, "10.20.0.1"), cs))
    net = box.api.InspectNetwork(pb.InspectNetworkRequest(id="sheep0"))
    assert net.leases_allocated == 50


def test_static_ip_taken_ip_and_exhaustion(box: Sandbox) -> None:
    box.api.CreateNetwork(pb.CreateNetworkRequest(name="tiny", subnet="10.40.0.0/29"))
    static = [pb.NetworkAttachmentRequest(network="tiny", ip="10.40.0.4")]
    a = box.run("/bin/sleep", "300", name="static", networks=static)
    assert a.networks[0].ip_address == "10.40.0.4"
    with pytest.raises(grpc.RpcError) as e:
        box.run("/bin/sleep", "300", networks=static)
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS and a.id[:12] in e.value.details()
    tiny = [pb.NetworkAttachmentRequest(network="tiny")]
    for _ in range(4):  # a /29 has 5 usable addresses besides the gateway
        box.run("/bin/sleep", "300", networks=tiny)
    before_links = set(host_links(box))
    before_pins = pinned_mounts(box.run_dir)
    with pytest.raises(grpc.RpcError) as e:
        box.run("/bin/sleep", "300", name="one-too-many", networks=tiny)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "tiny" in e.value.details()
    assert set(host_links(box)) == before_links and pinned_mounts(box.run_dir) == before_pins
    assert not sql(box, "SELECT id FROM containers WHERE name='one-too-many'")
    assert box.api.InspectNetwork(pb.InspectNetworkRequest(id="tiny")).leases_allocated == 5


def test_detach_and_remove_free_everything(box: Sandbox) -> None:
    box.api.CreateNetwork(pb.CreateNetworkRequest(name="extra", subnet="10.50.0.0/24"))
    c = box.run("/bin/sleep", "300")
    att = box.api.AttachNetwork(pb.AttachNetworkRequest(container_id=c.id, network="extra"))
    assert att.interface_name == "eth1" and att.ip_address == "10.50.0.2"
    assert box.api.AttachNetwork(pb.AttachNetworkRequest(
        container_id=c.id, network="extra")).ip_address == "10.50.0.2"  # idempotent
    assert ping(c.netns_path, "10.50.0.1")
    box.api.DetachNetwork(pb.DetachNetworkRequest(container_id=c.id, network="extra"))
    assert att.host_interface not in host_links(box)
    assert not sql(box, f"SELECT * FROM attachments WHERE host_interface='{att.host_interface}'")
    extra = box.api.InspectNetwork(pb.InspectNetworkRequest(id="extra"))
    assert extra.leases_allocated == 0
    # Next-fit: the address just released is not the next one handed out.
    again = box.api.AttachNetwork(pb.AttachNetworkRequest(container_id=c.id, network="extra"))
    assert again.ip_address == "10.50.0.3"
    host_if = c.networks[0].host_interface
    box.api.RemoveContainer(pb.RemoveContainerRequest(id=c.id, force=True))
    links = host_links(box)
    assert host_if not in links and again.host_interface not in links
    assert sql(box, "SELECT COUNT(*) FROM attachments") == [(0,)]
    assert pinned_mounts(box.run_dir) == []



def test_addresses_and_links_survive_a_restart(box: Sandbox) -> None:
    cs = [box.run("/bin/sleep", "300") for _ in range(3)]
    box.restart()
    for c in cs:
        got = box.api.Inspect(pb.InspectRequest(id=c.id))
        assert got.networks[0].ip_address == c.networks[0].ip_address
        assert got.networks[0].link_state == "up"
        assert ping(c.netns_path, "10.20.0.1")
    new = box.run("/bin/sleep", "300")
    assert new.networks[0].ip_address not in {c.networks[0].ip_address for c in cs}
    assert ping(new.netns_path, cs[0].networks[0].ip_address)

