"""GetCluster, LeaveCluster, events and metrics of cluster mode, and the host-gw
backend: real etcd, real sheepd processes, one netns per host."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.cluster.helpers import (
    default_subnet,
    events,
    fdb,
    get_cluster,
    has_link,
    ip,
    metric,
    mtu,
    neighbours,
    node_states,
    our_routes,
    ping,
    reaches,
    status_of,
    subnets,
    wait_for,
)
from tests.cluster.lab import Lab
from tests.sandbox import Sandbox

pytestmark = pytest.mark.kernel


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    world = Lab(tmp_path)
    try:
        world.start_etcd()
        yield world
    finally:
        world.close()


def test_host_gw_backend_end_to_end(lab: Lab) -> None:
    boxes = [lab.add_host() for _ in range(2)]
    for box in boxes:
        lab.start_sheepd(box, backend="host-gw")
    c1, c2 = (box.run("sleep", "300") for box in boxes)
    assert ping(c1, ip(c2)) and ping(c2, ip(c1))
    # No encapsulation: containers keep the underlay's MTU, and there is no VXLAN device.
    assert mtu(c1) == mtu(c2) == 1500
    assert not has_link(boxes[0], "sheep.42")
    s2 = str(default_subnet(boxes[1]))
    assert our_routes(boxes[0]) == {s2: "203.0.113.12"}
    cluster = get_cluster(boxes[0])
    assert cluster.backend == "host-gw"
    assert {(n.name, n.state, n.vtep_mac) for n in cluster.nodes} == {
        ("node1", "self", ""), ("node2", "programmed", "")}
    table = sheepctl(boxes[0], "cluster").splitlines()
    assert table[0].startswith("backend host-gw (routes via peers), network 10.20.0.0/16")
    assert table[1].startswith(f"this node: node1 {default_subnet(boxes[0])} at 203.0.113.11")
    assert sorted(line.split()[::4] for line in table[3:]) == [["node1", "self"],
                                                                ["node2", "programmed"]]
    as_json = json.loads(sheepctl(boxes[0], "cluster", "--format", "json"))
    assert as_json["self"]["name"] == "node1" and len(as_json["nodes"]) == 2


def sheepctl(box: Sandbox, *args: str) -> str:
    out = subprocess.run([str(Path(sys.executable).parent / "sheepctl"), "--socket",
                          str(box.socket), *args], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_join_is_reachable_from_every_node_with_events_and_metrics(lab: Lab) -> None:
    boxes = [lab.add_host() for _ in range(3)]
    for box in boxes[:2]:
        lab.start_sheepd(box)
    c1, c2 = (box.run("sleep", "300") for box in boxes[:2])
    assert metric(boxes[0], "sheep_cluster_peers") == 1
    lab.start_sheepd(boxes[2])
    c3 = boxes[2].run("sleep", "300")
    for c in (c1, c2):
        wait_for(f"{ip(c)} reaching {ip(c3)}", lambda c=c: reaches(c, ip(c3)))
    assert ping(c3, ip(c1)) and ping(c3, ip(c2))
    s3 = str(default_subnet(boxes[2]))
    latencies = []
    for box in boxes[:2]:
        seen = events(box, "node.", until=lambda es: any(
            e.type == "node.joined" and e.attributes["node"] == "node3" for e in es))
        joined = next(e for e in seen if e.attributes["node"] == "node3")
        assert (joined.network, joined.attributes["subnet"]) == ("sheep0", s3)
        assert joined.attributes["underlay_address"] == "203.0.113.13"
        programmed = events(box, "route.programmed", until=lambda es: any(
            e.attributes["node"] == "node3" for e in es))
        latencies.append(float(next(e for e in programmed
                                    if e.attributes["node"] == "node3").attributes["latency_ms"]))
        assert metric(box, "sheep_cluster_peers") == 2
        assert metric(box, "sheep_cluster_route_programming_seconds_count") >= 2
        assert metric(box, "sheep_etcd_requests_total", 'op="txn"') >= 2
        assert metric(box, "sheep_etcd_request_duration_seconds_count", 'op="list"') >= 1
        assert node_states(box)["node3"] == "programmed"
    print(f"\njoin: watch event -> programmed on node1/node2: p50 "
          f"{statistics.median(latencies):.2f} ms, p100 {max(latencies):.2f} ms")


def test_leave_cluster(lab: Lab) -> None:
    boxes = [lab.add_host() for _ in range(3)]
    for box in boxes:
        lab.start_sheepd(box)
    h1, h2, h3 = boxes
    c1, c2 = h1.run("sleep", "300"), h2.run("sleep", "300", name="busy")
    s2 = default_subnet(h2)
    mac2 = next(n.vtep_mac for n in get_cluster(h1).nodes if n.name == "node2")
    assert str(s2) in our_routes(h1) and str(s2) in our_routes(h3)
    assert mac2 in fdb(h1) and mac2 in fdb(h3)
    h3.stop()  # leaves while node3 is down: its restart must drop what it had for node2

    def leave() -> pb.LeaveClusterResponse:
        r: pb.LeaveClusterResponse = h2.api.LeaveCluster(pb.LeaveClusterRequest(), timeout=30)
        return r

    with pytest.raises(grpc.RpcError) as refused:
        leave()
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "busy" in (refused.value.details() or "")
    assert s2 in subnets(lab)
    h2.api.RemoveContainer(pb.RemoveContainerRequest(id=c2.id, force=True), timeout=30)

    assert leave().subnet == str(s2)
    assert s2 not in subnets(lab)
    wait_for(f"node1 dropping its route to {s2}", lambda: str(s2) not in our_routes(h1))
    gateway = str(s2.network_address)
    assert gateway not in neighbours(h1) and mac2 not in fdb(h1)
    assert not has_link(h2, "sheep.42")
    assert get_cluster(h2).enabled is False
    assert status_of(leave) == grpc.StatusCode.FAILED_PRECONDITION
    seen = events(h1, "node.left", until=lambda es: any(
        e.attributes["node"] == "node2" for e in es))
    assert seen[-1].attributes["subnet"] == str(s2)
    assert node_states(h1) == {"node1": "self", "node3": "programmed"}
    # single host from now on: containers still get addresses on its old slice
    assert ip(h2.run("sleep", "300")) in [str(a) for a in s2.hosts()]

    # node3 still has node2's entries from before; its first reconcile removes them
    assert str(s2) in our_routes(h3)
    lab.start_sheepd(h3)
    wait_for("node3 dropping node2's route", lambda: str(s2) not in our_routes(h3))
    wait_for("node3 dropping node2's neighbour", lambda: gateway not in neighbours(h3))
    wait_for("node3 dropping node2's FDB entry", lambda: mac2 not in fdb(h3))
    assert reaches(c1, ip(h3.run("sleep", "300")))
