"""The ops side of cluster mode over the fast tier's fakes and a fake membership: when
LeaveCluster is refused, what it changes, and how membership changes become events and
firewall rules. No privilege, no packet."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import grpc
import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_runtime.api.convert import cluster_to_pb
from sheep_runtime.errors import FailedPrecondition
from sheep_runtime.model import ClusterChange, ClusterNode, ClusterStatus
from sheep_runtime.ops.cluster import ClusterService
from sheep_runtime.ops.events import EventFilter
from tests.ops.daemon import Daemon, running_daemon

ME = ClusterNode(name="node1", underlay_address=IPv4Address("203.0.113.11"),
                 subnet=IPv4Network("10.20.1.0/24"), vtep_mac="02:00:00:00:00:01", state="self")
PEER = ClusterNode(name="node2", underlay_address=IPv4Address("203.0.113.12"),
                   subnet=IPv4Network("10.20.2.0/24"), vtep_mac="02:00:00:00:00:02",
                   state="programmed")


class FakeMember:
    """A ClusterMember whose peers the test sets."""

    def __init__(self) -> None:
        self.peers: list[ClusterNode] = []
        self.left = False
        self.on_change: Callable[[ClusterChange], None] | None = None

    def view(self) -> ClusterStatus:
        return ClusterStatus(backend="vxlan", network=IPv4Network("10.20.0.0/16"),
                             subnet_len=24, vni=42, port=4789, node=ME,
                             nodes=(ME, *self.peers), etcd_endpoints=("http://etcd:2379",),
                             device="sheep.42")

    async def fetch(self) -> ClusterStatus:
        return self.view()

    async def run(self, on_change: Callable[[ClusterChange], None]) -> None:
        self.on_change = on_change
        await asyncio.Event().wait()

    async def leave(self) -> IPv4Network:
        self.left = True
        return ME.subnet


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with running_daemon(tmp_path / "state") as d:
        yield d


def service(d: Daemon, member: FakeMember) -> ClusterService:
    rt = d.rt
    svc = ClusterService(member=member, store=rt.backends.store, networks=rt.networks,
                         firewall=rt.firewall, tasks=rt.tasks, events=rt.events)
    svc.prime()
    svc.start()
    return svc


async def test_single_host_reports_disabled_and_refuses_to_leave(daemon: Daemon) -> None:
    assert (await daemon.api.GetCluster(pb.GetClusterRequest())).enabled is False
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await daemon.api.LeaveCluster(pb.LeaveClusterRequest())
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not in cluster mode" in (e.value.details() or "")


async def test_leave_is_refused_while_a_container_is_attached(daemon: Daemon) -> None:
    member = FakeMember()
    svc = service(daemon, member)
    c = await daemon.api.CreateContainer(pb.CreateContainerRequest(name="web",
                                                                   command=["sleep", "1"]))
    with pytest.raises(FailedPrecondition, match=r"web \("):
        await svc.leave()
    assert not member.left and svc.enabled
    await daemon.api.RemoveContainer(pb.RemoveContainerRequest(id=c.id, force=True))
    assert await svc.leave() == ME.subnet
    assert member.left and not svc.enabled
    assert daemon.rt.firewall.cluster is None
    left = daemon.rt.events.recent(EventFilter(type_prefix="node.left"))
    assert [dict(e.attributes) for e in left] == [{
        "node": "node1", "subnet": "10.20.1.0/24", "underlay_address": "203.0.113.11",
        "self": "true"}]
    with pytest.raises(FailedPrecondition, match="not in cluster mode"):
        await svc.leave()


async def test_changes_become_events_and_firewall_peers(daemon: Daemon) -> None:
    member = FakeMember()
    svc = service(daemon, member)
    await asyncio.sleep(0)  # the service starts following
    assert member.on_change is not None
    fw = daemon.rt.firewall
    assert fw.cluster is not None and fw.cluster.peers == ()
    member.peers = [PEER]
    member.on_change(ClusterChange("joined", PEER))
    member.on_change(ClusterChange("programmed", PEER, latency=0.0012))
    assert fw.cluster.peers == (IPv4Address("203.0.113.12"),)
    got = [(e.type, dict(e.attributes)) for e in daemon.rt.events.recent(EventFilter())
           if e.type.startswith(("node.", "route."))]
    base = {"node": "node2", "subnet": "10.20.2.0/24", "underlay_address": "203.0.113.12"}
    assert got == [("node.joined", base), ("route.programmed", {**base, "latency_ms": "1.200"})]
    member.peers = []
    member.on_change(ClusterChange("left", PEER))
    assert fw.cluster.peers == ()
    assert cluster_to_pb(await svc.status()).nodes[0].state == "self"
