"""Container lifecycle through the API, checked in the fakes' models and the store."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.ops.daemon import Daemon
from tests.ops.helpers import changes, create, leases, rpc_error, wait_state


async def test_create_inspect_list_stop_remove(daemon: Daemon) -> None:
    m = daemon.machine
    base = await daemon.snapshot()
    c = await create(daemon, "web", hostname="web-1", env={"A": "1"})
    assert c.state == pb.Container.RUNNING
    assert (c.name, c.hostname, dict(c.env), list(c.command)) == (
        "web", "web-1", {"A": "1"}, ["sleep", "inf"])
    assert m.processes.live() == [c.id]
    spec = m.processes.spec_of(c.id)
    assert (spec.argv, spec.hostname, str(spec.netns_path)) == (
        ("sleep", "inf"), "web-1", c.netns_path)
    for ref in ("web", c.id, c.id[:12]):
        assert (await daemon.api.Inspect(pb.InspectRequest(id=ref))).id == c.id
    listed = await daemon.api.ListContainers(pb.ListContainersRequest())
    assert [x.id for x in listed.containers] == [c.id]

    stopped = await daemon.api.StopContainer(pb.StopContainerRequest(id="web"))
    assert (stopped.state, stopped.exit_code) == (pb.Container.EXITED, 143)
    assert m.processes.live() == []
    assert not (await daemon.api.ListContainers(pb.ListContainersRequest())).containers
    everything = await daemon.api.ListContainers(pb.ListContainersRequest(filters={"all": "1"}))
    assert [x.id for x in everything.containers] == [c.id]

    await daemon.api.RemoveContainer(pb.RemoveContainerRequest(id="web"))
    e = await rpc_error(daemon.api.Inspect(pb.InspectRequest(id="web")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    assert not changes(base, await daemon.snapshot())


async def test_exit_is_recorded(daemon: Daemon) -> None:
    c = await create(daemon, "job")
    daemon.machine.processes.exit(c.id, 7)
    done = await wait_state(daemon, "job", pb.Container.EXITED)
    assert done.exit_code == 7 and done.HasField("finished_at")


async def test_remove_of_a_running_container_needs_force(daemon: Daemon) -> None:
    await create(daemon, "web")
    before = await daemon.snapshot()
    e = await rpc_error(daemon.api.RemoveContainer(pb.RemoveContainerRequest(id="web")))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert not changes(before, await daemon.snapshot())


async def test_network_mode_none_has_only_loopback(daemon: Daemon) -> None:
    c = await create(daemon, "alone", network_mode="none")
    assert not c.networks
    ns = daemon.machine.kernel.netns[Path(c.netns_path)]
    assert list(ns.links) == ["lo"] and ns.default_route is None
    assert (await leases(daemon))["sheep0"] == 0


async def test_cap_add_widens_the_default_set(daemon: Daemon) -> None:
    c = await create(daemon, "admin", cap_add=["net_admin", "CAP_SYS_PTRACE"])
    caps = daemon.machine.processes.spec_of(c.id).capabilities
    assert {"CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_CHOWN"} <= set(caps)
    assert set(c.capabilities) == set(caps)
    plain = await create(daemon, "plain")
    assert "CAP_NET_ADMIN" not in daemon.machine.processes.spec_of(plain.id).capabilities


async def test_a_capability_sheepd_lacks_is_refused_before_anything_is_made(
        daemon: Daemon) -> None:
    daemon.machine.processes.capabilities -= {"CAP_SYS_RESOURCE"}
    before = await daemon.snapshot()
    e = await rpc_error(daemon.api.CreateContainer(pb.CreateContainerRequest(
        command=["sleep", "inf"], cap_add=["SYS_RESOURCE"])))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "CAP_SYS_RESOURCE" in e.details()
    assert not changes(before, await daemon.snapshot())
    every = await create(daemon, "every", cap_add=["ALL"])
    assert "CAP_SYS_RESOURCE" not in every.capabilities and "CAP_SYS_ADMIN" in every.capabilities


async def test_restart_adopts_running_containers_and_changes_nothing(daemon: Daemon) -> None:
    web = await create(daemon, "web")
    job = await create(daemon, "job")
    daemon.machine.processes.exit(job.id, 3)
    await wait_state(daemon, "job", pb.Container.EXITED)
    before = await daemon.snapshot()
    await daemon.restart()
    assert not changes(before, await daemon.snapshot())
    assert (await daemon.api.Inspect(pb.InspectRequest(id="web"))).state == (
        pb.Container.RUNNING)
    daemon.machine.processes.exit(web.id, 0)
    assert (await wait_state(daemon, "web", pb.Container.EXITED)).exit_code == 0


@pytest.mark.parametrize("exited", [False, True], ids=["running", "exited"])
async def test_restart_records_an_exit_that_happened_meanwhile(daemon: Daemon,
                                                               exited: bool) -> None:
    web = await create(daemon, "web")
    await daemon.stop()
    if exited:
        daemon.machine.processes.exit(web.id, 9)
    await daemon.start()
    want = pb.Container.EXITED if exited else pb.Container.RUNNING
    c = await wait_state(daemon, "web", want)
    assert c.exit_code == (9 if exited else 0)
