"""Cluster mode when things go wrong: overlay entries deleted or left behind, a watch
that fell behind an etcd compaction, etcd down for a while."""

from __future__ import annotations

import json
import signal
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
    ip,
    metric,
    neighbours,
    our_routes,
    ping,
    reaches,
    status_of,
    wait_for,
)
from tests.cluster.lab import Lab

pytestmark = pytest.mark.kernel

FAST_RECONCILE = ["--cluster-reconcile-seconds", "0.5"]
GHOST = "10.20.250.0/24"  # outside the first 100 free /24s nodes choose from
GHOST_MAC = "02:00:00:00:00:fa"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    world = Lab(tmp_path)
    try:
        world.start_etcd()
        yield world
    finally:
        world.close()


def ghost_record(lab: Lab) -> None:
    """A peer that exists only in etcd (no packet is ever sent to it)."""
    value = json.dumps({"NodeID": "ghost", "PublicIP": "203.0.113.77", "BackendType": "vxlan",
                        "BackendData": {"VtepMAC": GHOST_MAC}})
    lab.etcdctl("put", "/sheep/subnets/10.20.250.0-24", value, check=True)


def test_reconcile_repairs_deleted_entries_and_removes_stale_ones(lab: Lab) -> None:
    boxes = [lab.add_host() for _ in range(2)]
    for box in boxes:
        lab.start_sheepd(box, extra=FAST_RECONCILE)
    h1, h2 = boxes
    c1, c2 = h1.run("sleep", "300"), h2.run("sleep", "300")
    s2 = default_subnet(h2)
    gw2 = str(s2.network_address)
    mac2 = next(n.vtep_mac for n in get_cluster(h1).nodes if n.name == "node2")
    # someone deletes node2's route, neighbour and FDB entry on node1 ...
    h1.host("ip", "route", "del", str(s2), check=True)
    h1.host("ip", "neigh", "del", gw2, "dev", "sheep.42", check=True)
    h1.host("bridge", "fdb", "del", mac2, "dev", "sheep.42", "self", check=True)
    # ... and entries of a node that left long ago are still there
    h1.host("ip", "neigh", "add", "10.20.250.0", "lladdr", GHOST_MAC, "dev", "sheep.42",
            "nud", "permanent", check=True)
    h1.host("bridge", "fdb", "append", GHOST_MAC, "dev", "sheep.42", "dst", "203.0.113.77",
            "self", "permanent", check=True)
    h1.host("ip", "route", "add", GHOST, "via", "10.20.250.0", "dev", "sheep.42", "onlink",
            "proto", "83", check=True)
    wait_for("the reconcile restoring node2's entries", lambda: (
        our_routes(h1).get(str(s2)) == gw2 and neighbours(h1).get(gw2) == mac2
        and fdb(h1).get(mac2) == "203.0.113.12"))
    wait_for("the reconcile removing the stale entries", lambda: (
        GHOST not in our_routes(h1) and "10.20.250.0" not in neighbours(h1)
        and GHOST_MAC not in fdb(h1)))
    assert ping(c1, ip(c2))
    # the whole VXLAN device deleted: made again, with its peers
    h1.host("ip", "link", "del", "sheep.42", check=True)
    wait_for("the reconcile recreating the VXLAN device and node2's route",
             lambda: our_routes(h1).get(str(s2)) == gw2 and fdb(h1).get(mac2))
    assert ping(c1, ip(c2))
    assert metric(h1, "sheep_repairs_total", 'kind="overlay"') >= 2
    seen = events(h1, "route.programmed", until=lambda es: any(
        e.attributes.get("repaired") == "true" for e in es))
    assert any(e.attributes["node"] == "node2" for e in seen if "repaired" in e.attributes)


def test_watch_behind_a_compaction_relists(lab: Lab) -> None:
    boxes = [lab.add_host() for _ in range(2)]
    for box in boxes:
        lab.start_sheepd(box)
    h1 = boxes[0]
    assert h1.proc is not None
    # Freeze node1 with its watch at revision R, restart etcd under it (its stream is
    # gone), then move past R and compact: resuming from R+1 must fail and re-list.
    h1.proc.send_signal(signal.SIGSTOP)
    try:
        lab.stop_etcd()
        lab.start_etcd()
        ghost_record(lab)  # R+1
        lab.etcdctl("put", "/sheep/filler", "x", check=True)  # R+2
        lab.etcdctl("compact", str(lab.revision()), check=True)  # R+1 is history now
    finally:
        h1.proc.send_signal(signal.SIGCONT)
    wait_for("node1 programming the peer it learnt by re-listing",
             lambda: our_routes(h1).get(GHOST) == "10.20.250.0")
    assert fdb(h1).get(GHOST_MAC) == "203.0.113.77"
    assert "the watch fell behind a compaction" in h1.log()
    assert metric(h1, "sheep_etcd_errors_total", 'op="watch"') >= 1
    assert {n.name for n in get_cluster(h1).nodes} == {"node1", "node2", "ghost"}


def test_etcd_down_keeps_traffic_and_the_node_catches_up(lab: Lab) -> None:
    boxes = [lab.add_host() for _ in range(3)]
    for box in boxes[:2]:
        lab.start_sheepd(box)
    h1, h2 = boxes[:2]
    c1, c2 = h1.run("sleep", "300"), h2.run("sleep", "300")
    assert ping(c1, ip(c2))
    lab.stop_etcd()

    def cluster() -> pb.Cluster:
        return get_cluster(h1)

    wait_for("GetCluster saying UNAVAILABLE",
             lambda: status_of(cluster) == grpc.StatusCode.UNAVAILABLE)
    for _ in range(3):
        assert ping(c1, ip(c2)) and ping(c2, ip(c1))
    late = h1.run("sleep", "300")  # the subnet is ours already: no etcd needed
    assert late.networks[0].ip_address in [str(a) for a in default_subnet(h1).hosts()]
    assert ping(late, ip(c2))
    assert metric(h1, "sheep_etcd_errors_total", 'op="list"') + metric(
        h1, "sheep_etcd_errors_total", 'op="watch"') >= 1

    lab.start_etcd()
    wait_for("GetCluster answering again", lambda: status_of(cluster) is None)
    lab.start_sheepd(boxes[2])
    c3 = boxes[2].run("sleep", "300")
    for c in (c1, c2):
        wait_for(f"{ip(c)} reaching the new node", lambda c=c: reaches(c, ip(c3)))
    assert {n.name: n.state for n in cluster().nodes}["node3"] == "programmed"
