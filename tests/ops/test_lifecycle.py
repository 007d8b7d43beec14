"""What follows an exit (networks released, restart policies, auto-remove) and
StartContainer / RestartContainer / WaitContainer, in the fakes' models and the store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_runtime.ops import restarts
from tests.ops import sweep
from tests.ops.daemon import Daemon
from tests.ops.helpers import (
    HANG_GUARD,
    changes,
    create,
    create_network,
    leases,
    net,
    port,
    rpc_error,
    wait_state,
)


@pytest.fixture(autouse=True)
def quick_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Back-off in ms, not 100 ms doubling: the fast tier checks the rules, not time."""
    monkeypatch.setattr(restarts, "FIRST_DELAY", 0.001)


async def created(d: Daemon, name: str, **fields: object) -> pb.Container:
    reply: pb.Container = await d.api.CreateContainer(pb.CreateContainerRequest(
        name=name, command=["sleep", "inf"], **fields))  # type: ignore[arg-type]
    return reply


async def exited(d: Daemon, name: str) -> pb.Container:
    """`name` once it exited and what follows the exit is done."""
    c = await wait_state(d, name, pb.Container.EXITED)
    async with asyncio.timeout(HANG_GUARD):
        while d.rt.containers._releases:
            await asyncio.sleep(0)
    return await d.api.Inspect(pb.InspectRequest(id=c.id))


async def until(d: Daemon, name: str, check: object) -> pb.Container:
    async with asyncio.timeout(HANG_GUARD):
        while True:
            c: pb.Container = await d.api.Inspect(pb.InspectRequest(id=name))
            if callable(check) and check(c):
                return c
            await asyncio.sleep(0.001)


async def test_an_exited_container_gives_its_network_back_and_keeps_what_it_asked(
        daemon: Daemon) -> None:
    await create_network(daemon, "blue", "10.30.0.0/24")
    base = await daemon.snapshot()
    c = await create(daemon, "web", networks=[net("sheep0", ports=[port(8080)]),
                                              net("blue", ip="10.30.0.50")])
    first = {a.network: a.ip_address for a in c.networks}
    daemon.machine.processes.exit(c.id, 3)
    done = await exited(daemon, "web")
    assert (done.state, done.exit_code, list(done.networks)) == (pb.Container.EXITED, 3, [])
    after = await daemon.snapshot()
    assert after["kernel"] == base["kernel"], "veths and netns gone from the kernel"
    assert after["leases"] == base["leases"] and after["pins"] == base["pins"]
    assert not after["attachments"] and daemon.machine.firewall.state == base["firewall"]

    again = await daemon.api.StartContainer(pb.StartContainerRequest(id="web"))
    assert again.state == pb.Container.RUNNING and again.id == c.id
    assert {a.network: a.ip_address for a in again.networks} == first
    assert [p.host_port for p in again.ports] == [8080]
    assert daemon.machine.processes.live() == [c.id]


async def test_a_dynamic_address_taken_meanwhile_gives_way_to_another(
        daemon: Daemon) -> None:
    c = await create(daemon, "web")
    had = c.networks[0].ip_address
    await daemon.api.StopContainer(pb.StopContainerRequest(id="web"))
    thief = await create(daemon, "thief", networks=[net("sheep0", ip=had)])
    again = await daemon.api.StartContainer(pb.StartContainerRequest(id="web"))
    assert again.networks[0].ip_address not in ("", had)
    assert thief.networks[0].ip_address == had


async def test_a_static_address_taken_meanwhile_fails_the_start_and_leaves_nothing(
        daemon: Daemon) -> None:
    await create(daemon, "web", networks=[net("sheep0", ip="10.20.0.9")])
    await daemon.api.StopContainer(pb.StopContainerRequest(id="web"))
    await daemon.api.RemoveContainer(pb.RemoveContainerRequest(id="web"))
    await create(daemon, "web", networks=[net("sheep0", ip="10.20.0.9")])
    await daemon.api.StopContainer(pb.StopContainerRequest(id="web"))
    await create(daemon, "other", networks=[net("sheep0", ip="10.20.0.9")])
    before = await daemon.snapshot()
    e = await rpc_error(daemon.api.StartContainer(pb.StartContainerRequest(id="web")))
    assert e.code() == grpc.StatusCode.ALREADY_EXISTS and "10.20.0.9" in (e.details() or "")
    assert not changes(before, await daemon.snapshot())


async def test_live_attached_networks_come_back_at_start_and_detached_ones_do_not(
        daemon: Daemon) -> None:
    await create_network(daemon, "blue", "10.30.0.0/24")
    await create_network(daemon, "red", "10.31.0.0/24")
    await create(daemon, "web")
    for name in ("blue", "red"):
        await daemon.api.AttachNetwork(pb.AttachNetworkRequest(container_id="web",
                                                               network=name))
    await daemon.api.DetachNetwork(pb.DetachNetworkRequest(container_id="web",
                                                           network="red"))
    await daemon.api.RestartContainer(pb.RestartContainerRequest(id="web"))
    c = await daemon.api.Inspect(pb.InspectRequest(id="web"))
    assert [a.network for a in c.networks] == ["sheep0", "blue"]


async def test_start_is_all_or_nothing(daemon: Daemon) -> None:
    await create_network(daemon, "blue", "10.30.0.0/24")
    await create(daemon, "web", networks=[net("sheep0", ports=[port(8080)]), net("blue")])
    await daemon.api.StopContainer(pb.StopContainerRequest(id="web"))
    calls = await sweep.all_or_nothing(
        daemon, lambda: daemon.api.StartContainer(pb.StartContainerRequest(id="web")))
    assert {"namespaces.create", "processes.start", "firewall.update_ports"} <= set(calls)
    assert calls.count("links.create_veth") == 2


async def test_stop_sends_the_configured_signal_then_start_runs_it_again(
        daemon: Daemon) -> None:
    c = await created(daemon, "web", stop_signal="SIGINT", stop_timeout_seconds=30)
    assert (c.stop_signal, c.stop_timeout_seconds) == ("SIGINT", 30)
    await daemon.api.StopContainer(pb.StopContainerRequest(id="web"))
    assert daemon.machine.processes.stop_signals[c.id] == 2
    e = await rpc_error(created(daemon, "bad", stop_signal="SIGNOPE"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "stop signal" in (e.details() or "")


async def test_on_failure_restarts_up_to_its_limit_then_stays_exited(
        daemon: Daemon) -> None:
    c = await created(daemon, "job", restart_policy=pb.RestartPolicy(name="on-failure",
                                                                      max_retries=3))
    for n in range(1, 4):
        daemon.machine.processes.exit(c.id, 1)
        again = await until(daemon, "job", lambda x, n=n: x.restart_count == n
                            and x.state == pb.Container.RUNNING)
        assert again.pid and again.networks
    daemon.machine.processes.exit(c.id, 1)
    final = await exited(daemon, "job")
    assert (final.restart_count, final.restarting, final.exit_code) == (3, False, 1)
    await asyncio.sleep(0.05)
    assert daemon.machine.processes.live() == []


async def test_on_failure_leaves_a_clean_exit_alone(daemon: Daemon) -> None:
    c = await created(daemon, "job", restart_policy=pb.RestartPolicy(name="on-failure"))
    daemon.machine.processes.exit(c.id, 0)
    assert (await exited(daemon, "job")).restart_count == 0
    assert daemon.machine.processes.live() == []


@pytest.mark.parametrize("policy", ["always", "unless-stopped"])
async def test_always_restarts_after_any_exit_but_not_after_stop(
        daemon: Daemon, policy: str) -> None:
    c = await created(daemon, "svc", restart_policy=pb.RestartPolicy(name=policy))
    daemon.machine.processes.exit(c.id, 0)
    await until(daemon, "svc", lambda x: x.restart_count == 1
                and x.state == pb.Container.RUNNING)
    await daemon.api.StopContainer(pb.StopContainerRequest(id="svc"))
    await asyncio.sleep(0.05)
    assert (await exited(daemon, "svc")).state == pb.Container.EXITED
    # A daemon start brings "always" back even after a stop, never "unless-stopped".
    await daemon.restart()
    await asyncio.sleep(0.05)
    state = (await daemon.api.Inspect(pb.InspectRequest(id="svc"))).state
    assert state == (pb.Container.RUNNING if policy == "always" else pb.Container.EXITED)


async def test_a_policy_holds_across_daemon_restarts(daemon: Daemon) -> None:
    c = await created(daemon, "svc", restart_policy=pb.RestartPolicy(name="always"))
    await daemon.stop()
    daemon.machine.processes.exit(c.id, 9)  # while the daemon is away
    await daemon.start()
    again = await until(daemon, "svc", lambda x: x.state == pb.Container.RUNNING
                        and x.restart_count == 1)
    assert again.networks and (await leases(daemon))["sheep0"] == 1
    daemon.machine.processes.exit(c.id, 9)  # and after it came back
    await until(daemon, "svc", lambda x: x.restart_count == 2
                and x.state == pb.Container.RUNNING)


async def test_back_off_doubles_and_a_long_run_resets_it() -> None:
    from dataclasses import replace

    from sheep_runtime.model import Container, ContainerState, RestartPolicy
    c = Container(id="x", name="x", command=("a",), env={}, hostname="x", network_mode="",
                  state=ContainerState.EXITED, created_at=0, netns_path="/x",
                  restart_policy=RestartPolicy(name="always"), started_at=100.0,
                  finished_at=101.0, exit_code=0)
    assert restarts.restart_delay(c) == restarts.FIRST_DELAY
    assert restarts.restart_delay(replace(c, restart_backoff=0.4)) == 0.8
    assert restarts.restart_delay(replace(c, restart_backoff=50.0)) == restarts.MAX_DELAY
    assert restarts.restart_delay(replace(c, restart_backoff=50.0,
                                          finished_at=111.0)) == restarts.FIRST_DELAY
    assert restarts.restart_delay(replace(c, stopped_by_user=True)) is None
    assert restarts.restart_delay(replace(c, stopped_by_user=True), daemon_start=True)


async def test_wait_returns_the_exit_code_when_it_comes(daemon: Daemon) -> None:
    c = await create(daemon, "job")
    waiting = asyncio.ensure_future(daemon.api.WaitContainer(
        pb.WaitContainerRequest(id="job")))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    daemon.machine.processes.exit(c.id, 42)
    reply = await asyncio.wait_for(waiting, HANG_GUARD)
    assert (reply.exit_code, reply.container.state) == (42, pb.Container.EXITED)
    again = await daemon.api.WaitContainer(pb.WaitContainerRequest(id="job"))
    assert again.exit_code == 42  # not running: at once
    e = await rpc_error(daemon.api.WaitContainer(pb.WaitContainerRequest(id="nope")))
    assert e.code() == grpc.StatusCode.NOT_FOUND


async def test_auto_remove_removes_it_at_exit_leaving_nothing(daemon: Daemon) -> None:
    base = await daemon.snapshot()
    c = await created(daemon, "tmp", auto_remove=True)
    # since its creation: the event counts even if it comes before the stream is set up
    removed = daemon.api.WatchEvents(pb.WatchEventsRequest(
        filters={"container": c.id, "type": "container.removed"}, since=c.created_at))
    daemon.machine.processes.exit(c.id, 0)
    # published once everything of it is gone, its dir last, after its record
    event = await asyncio.wait_for(removed.read(), HANG_GUARD)
    removed.cancel()
    assert event.type == "container.removed"
    assert not changes(base, await daemon.snapshot())
    e = await rpc_error(created(daemon, "both", auto_remove=True,
                                restart_policy=pb.RestartPolicy(name="always")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_limits_and_log_config_reach_the_process(daemon: Daemon) -> None:
    c = await created(daemon, "capped", resources=pb.Resources(
        memory_bytes=64 << 20, cpus=0.5, pids_limit=20), log=pb.LogConfig(max_bytes=65536))
    spec = daemon.machine.processes.spec_of(c.id)
    assert (spec.resources.memory_bytes, spec.resources.cpus, spec.resources.pids_limit) == (
        64 << 20, 0.5, 20)
    assert (spec.log.max_bytes, spec.log.max_files) == (65536, 4)
    assert (c.resources.pids_limit, c.log.max_bytes) == (20, 65536)
    await daemon.restart()  # kept in the store
    again = await daemon.api.Inspect(pb.InspectRequest(id="capped"))
    assert (again.resources.memory_bytes, again.log.max_bytes) == (64 << 20, 65536)
    for bad in (pb.Resources(memory_bytes=1024), pb.Resources(cpus=-1),
                pb.Resources(pids_limit=-2)):
        e = await rpc_error(created(daemon, "bad", resources=bad))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert Path(c.netns_path).name == c.id
