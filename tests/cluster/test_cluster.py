"""Cluster mode end to end: real etcd, real sheepd processes, one netns per host."""

from __future__ import annotations

import json
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.cluster.lab import Lab
from tests.sandbox import Sandbox, in_netns

pytestmark = pytest.mark.kernel


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    world = Lab(tmp_path)
    try:
        world.start_etcd()
        yield world
    finally:
        world.close()


def subnets(lab: Lab) -> dict[IPv4Network, str]:
    out = lab.etcdctl("get", "--prefix", "/sheep/subnets/", "-w", "json")
    kvs = json.loads(out.stdout).get("kvs", [])
    import base64
    found = {}
    for kv in kvs:
        key = base64.b64decode(kv["key"]).decode().rsplit("/", 1)[1]
        addr, length = key.split("-")
        found[IPv4Network(f"{addr}/{length}")] = json.loads(base64.b64decode(kv["value"]))[
            "NodeID"]
    return found


def default_subnet(box: Sandbox) -> IPv4Network:
    nets = box.api.ListNetworks(pb.ListNetworksRequest(), timeout=10).networks
    return IPv4Network(next(n.subnet for n in nets if n.name == "sheep0"))


def test_five_nodes_racing_get_distinct_subnets(lab: Lab) -> None:
    boxes = [lab.add_host() for _ in range(5)]
    for box in boxes:
        lab.start_sheepd(box, wait=False)
    for box in boxes:
        box.wait_ready()
    held = subnets(lab)
    assert sorted(held.values()) == [f"node{n}" for n in range(1, 6)]
    mine = [default_subnet(box) for box in boxes]
    assert len(set(mine)) == 5
    assert {s: held[s] for s in mine} == {s: f"node{n}" for n, s in enumerate(mine, 1)}


def ping(box: Sandbox, container: pb.Container, address: str, *extra: str) -> bool:
    return in_netns(container.netns_path, "ping", "-c", "1", "-W", "2", *extra,
                    address).returncode == 0


def test_containers_reach_each_other_across_hosts(lab: Lab) -> None:
    boxes = [lab.add_host() for _ in range(3)]
    for box in boxes:
        lab.start_sheepd(box)
    cs = [box.run("sleep", "300") for box in boxes]
    ips = [c.networks[0].ip_address for c in cs]
    assert ping(boxes[0], cs[0], cs[0].networks[0].gateway)
    for ip in ips[1:]:
        assert ping(boxes[0], cs[0], ip)
    # 1422 bytes of payload + 28 of headers = 1450, the VXLAN device's MTU.
    assert ping(boxes[0], cs[0], ips[2], "-M", "do", "-s", "1422")


def test_sigkill_keeps_traffic_and_restart_reclaims(lab: Lab) -> None:
    boxes = [lab.add_host() for _ in range(2)]
    for box in boxes:
        lab.start_sheepd(box)
    c1, c2 = boxes[0].run("sleep", "300"), boxes[1].run("sleep", "300")
    before = default_subnet(boxes[1])
    boxes[1].kill()
    assert ping(boxes[0], c1, c2.networks[0].ip_address)
    lab.start_sheepd(boxes[1])
    assert default_subnet(boxes[1]) == before
    again = boxes[1].api.Inspect(pb.InspectRequest(id=c2.id), timeout=10)
    assert again.state == pb.Container.RUNNING
    assert again.networks[0].ip_address == c2.networks[0].ip_address
    assert ping(boxes[0], c1, c2.networks[0].ip_address)


def test_foreign_node_on_our_subnet_fails_start(lab: Lab) -> None:
    box = lab.add_host()
    lab.start_sheepd(box)
    mine = default_subnet(box)
    box.stop()
    key = f"/sheep/subnets/{mine.network_address}-{mine.prefixlen}"
    value = json.dumps({"NodeID": "intruder", "PublicIP": "203.0.113.99",
                        "BackendType": "vxlan", "BackendData": {"VtepMAC": "02:00:00:00:00:99"}})
    assert lab.etcdctl("put", key, value).returncode == 0
    lab.start_sheepd(box, wait=False)
    assert box.proc is not None
    assert box.proc.wait(20) == 1
    assert "held in etcd by node intruder" in box.log()
    box.proc = None
