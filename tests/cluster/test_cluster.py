"""Cluster mode end to end: real etcd, real sheepd processes, one netns per host."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.cluster.helpers import default_subnet, get_cluster, mtu, ping, subnets
from tests.cluster.lab import Lab

pytestmark = pytest.mark.kernel


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    world = Lab(tmp_path)
    try:
        world.start_etcd()
        yield world
    finally:
        world.close()


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


def test_containers_reach_each_other_across_hosts(lab: Lab) -> None:
    boxes = [lab.add_host() for _ in range(3)]
    for box in boxes:
        lab.start_sheepd(box)
    cs = [box.run("sleep", "300") for box in boxes]
    ips = [c.networks[0].ip_address for c in cs]
    assert ping(cs[0], cs[0].networks[0].gateway)
    for ip in ips[1:]:
        assert ping(cs[0], ip)
    # 1422 bytes of payload + 28 of headers = 1450, the VXLAN device's MTU; the
    # containers' MTU follows it, so they never send what the device would drop.
    assert ping(cs[0], ips[2], "-M", "do", "-s", "1422")
    assert [mtu(c) for c in cs] == [1450] * 3
    assert not ping(cs[0], ips[2], "-M", "do", "-s", "1423")
    cluster = get_cluster(boxes[0])
    assert (cluster.enabled, cluster.backend, cluster.network) == (True, "vxlan", "10.20.0.0/16")
    assert cluster.self.name == "node1" and cluster.self.state == "self"
    assert {n.name: n.state for n in cluster.nodes} == {
        "node1": "self", "node2": "programmed", "node3": "programmed"}
    assert all(n.vtep_mac and n.underlay_address.startswith("203.0.113.")
               for n in cluster.nodes)


def test_sigkill_keeps_traffic_and_restart_reclaims(lab: Lab) -> None:
    boxes = [lab.add_host() for _ in range(2)]
    for box in boxes:
        lab.start_sheepd(box)
    c1, c2 = boxes[0].run("sleep", "300"), boxes[1].run("sleep", "300")
    before = default_subnet(boxes[1])
    boxes[1].kill()
    assert ping(c1, c2.networks[0].ip_address)
    lab.start_sheepd(boxes[1])
    assert default_subnet(boxes[1]) == before
    again = boxes[1].api.Inspect(pb.InspectRequest(id=c2.id), timeout=10)
    assert again.state == pb.Container.RUNNING
    assert again.networks[0].ip_address == c2.networks[0].ip_address
    assert ping(c1, c2.networks[0].ip_address)


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
