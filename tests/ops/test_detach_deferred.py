"""Detach replies before the veth is deleted: the veth is retired (down, off its
bridge, both ends renamed) and deleted in the background. Checked with the fake's
background deletion held back (`deferred`), so the pending state can be looked at."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_runtime.ops.attach import RETIRED_VETH_PREFIX
from tests.fakes.links import FakeLinks
from tests.ops.daemon import Daemon
from tests.ops.helpers import collect_leaks, create, leases, rpc_error


def _links(d: Daemon) -> FakeLinks:
    links = d.rt.recovery.links
    assert isinstance(links, FakeLinks)
    links.deferred = True
    return links


def _retired(d: Daemon) -> list[str]:
    return sorted(n for n in d.machine.kernel.links if n.startswith(RETIRED_VETH_PREFIX))


async def _detach(d: Daemon, cid: str) -> None:
    await d.api.DetachNetwork(pb.DetachNetworkRequest(container_id=cid, network="sheep0"))


async def test_detach_retires_the_veth_and_frees_names_and_address(daemon: Daemon) -> None:
    links = _links(daemon)
    c = await create(daemon, "web")
    (a,) = c.networks
    await _detach(daemon, "web")
    k = daemon.machine.kernel
    (retired,) = _retired(daemon)
    assert links.pending_deletions() == {retired}
    host = k.links[retired]
    assert (host.up, host.master, host.fdb) == (False, None, set())
    assert a.host_interface not in k.links
    assert IPv4Address(a.ip_address) not in k.links["sheep0"].neighbours
    ns = k.netns[Path(c.netns_path)]
    assert a.interface_name not in ns.links and not ns.links[retired].up
    assert (await leases(daemon)).get("sheep0", 0) == 0

    # names and address are free at once: the same attachment again
    again = await daemon.api.AttachNetwork(pb.AttachNetworkRequest(
        container_id="web", network="sheep0", ip=a.ip_address))
    assert (again.host_interface, again.interface_name) == (a.host_interface,
                                                            a.interface_name)
    await collect_leaks(daemon)
    assert retired in k.links, "the leak collector took a pending deletion"
    links.reap()
    assert _retired(daemon) == []
    await _detach(daemon, "web")
    links.reap()
    assert _retired(daemon) == [] and a.host_interface not in k.links


async def test_a_killed_daemon_leaves_no_retired_veth(daemon: Daemon) -> None:
    _links(daemon)
    await create(daemon, "web")
    await _detach(daemon, "web")
    (retired,) = _retired(daemon)
    await daemon.restart()  # the new backend has no pending deletion: a leftover
    assert _retired(daemon) == [], f"{retired} survived the restart's leak collection"


async def test_remove_container_retires_every_veth(daemon: Daemon) -> None:
    links = _links(daemon)
    await create(daemon, "web")
    await daemon.api.RemoveContainer(pb.RemoveContainerRequest(id="web", force=True))
    assert len(links.pending_deletions()) == 1
    links.reap()
    assert _retired(daemon) == [] and not [n for n in daemon.machine.kernel.links
                                           if n.startswith("shp") and n != "sheep0"]


async def test_a_bridge_neighbour_that_stays_keeps_the_lease(daemon: Daemon) -> None:
    _links(daemon)
    (a,) = (await create(daemon, "web")).networks
    calls, bridge = daemon.machine.calls, daemon.machine.kernel.links["sheep0"]
    calls.fail_nth(2)  # the retirement goes through, the neighbour's removal fails
    e = await rpc_error(_detach(daemon, "web"))
    assert calls.injected == ["links.remove_bridge_entries"], e.details()
    # the bridge still answers for the address: it is not free, the record stays
    assert IPv4Address(a.ip_address) in bridge.neighbours
    assert (await leases(daemon))["sheep0"] == 1
    assert [x.host_interface for x in daemon.store.inner.attachments()] == [a.host_interface]
    await _detach(daemon, "web")  # the retry finds the veth gone and removes the rest
    assert IPv4Address(a.ip_address) not in bridge.neighbours
    assert (await leases(daemon)).get("sheep0", 0) == 0
    assert daemon.store.inner.attachments() == []
