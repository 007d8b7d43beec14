"""Exec and Stats through the API over the fakes: what reaches the backend, the
defaults and bounds of a request, and the status of each refusal."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status  # type: ignore[import-untyped, unused-ignore]
from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_runtime.model import ExecResult, InterfaceCounters
from sheep_runtime.ops.exec import DEFAULT_MAX_OUTPUT, MAX_OUTPUT
from tests.ops.daemon import Daemon
from tests.ops.helpers import create, create_network, net, rpc_error, wait_state

MiB = 1024 * 1024


def reason(e: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a rich status."""
    for detail in rpc_status.from_call(e).details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


def bad_fields(e: grpc.aio.AioRpcError) -> list[str]:
    """The fields of the BadRequest violations of a rich status."""
    for detail in rpc_status.from_call(e).details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return [v.field for v in bad.field_violations]
    return []


def exec_request(ref: str, *command: str, **fields: object) -> pb.ExecRequest:
    return pb.ExecRequest(id=ref, command=list(command), **fields)  # type: ignore[arg-type]


async def test_exec_runs_the_spec_with_its_defaults(daemon: Daemon) -> None:
    c = await create(daemon, "web", network_mode="none")
    reply = await daemon.api.Exec(exec_request("web", "echo", "hi"))
    assert (reply.exit_code, reply.stdout, reply.stderr) == (0, b"echo hi\n", b"")
    assert not (reply.stdout_truncated or reply.stderr_truncated or reply.timed_out)
    ((cid, spec),) = daemon.machine.processes.execs
    assert cid == c.id and spec.argv == ("echo", "hi")
    assert spec.timeout == 60 and spec.max_output == DEFAULT_MAX_OUTPUT == MiB
    assert spec.env == {} and spec.cwd == ""


async def test_exec_passes_env_dir_limits_and_reports_the_result(daemon: Daemon) -> None:
    await create(daemon, "web", network_mode="none")
    daemon.machine.processes.exec_result = ExecResult(
        exit_code=137, stdout=b"x" * 4, stderr=b"e", stdout_truncated=True, timed_out=True)
    reply = await daemon.api.Exec(exec_request(
        "web", "sh", "-c", "work", env={"A": "1"}, working_dir="/srv", timeout_seconds=5,
        max_output_bytes=MAX_OUTPUT))
    assert (reply.exit_code, reply.stdout, reply.stderr) == (137, b"xxxx", b"e")
    assert reply.stdout_truncated and reply.timed_out and not reply.stderr_truncated
    ((_, spec),) = daemon.machine.processes.execs
    assert (spec.env, spec.cwd, spec.timeout, spec.max_output) == (
        {"A": "1"}, "/srv", 5.0, MAX_OUTPUT)


@pytest.mark.parametrize(("fields", "field"), [
    ({"command": []}, "command"),
    ({"command": [""]}, "command"),
    ({"command": ["sh", "a\0b"]}, "command"),
    ({"env": {"A=B": "1"}}, "env"),
    ({"env": {"": "1"}}, "env"),
    ({"working_dir": "relative/dir"}, "working_dir"),
    ({"max_output_bytes": MAX_OUTPUT + 1}, "max_output_bytes"),
])
async def test_bad_exec_request_is_invalid_before_anything_runs(
        daemon: Daemon, fields: dict[str, object], field: str) -> None:
    await create(daemon, "web", network_mode="none")
    request: dict[str, object] = {"command": ["true"], **fields}
    e = await rpc_error(daemon.api.Exec(pb.ExecRequest(id="web", **request)))  # type: ignore[arg-type]
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
    assert bad_fields(e) == [field]
    assert daemon.machine.processes.execs == []


async def test_exec_needs_a_running_container(daemon: Daemon) -> None:
    c = await create(daemon, "web", network_mode="none")
    daemon.machine.processes.exit(c.id, 0)
    await wait_state(daemon, "web", pb.Container.EXITED)
    e = await rpc_error(daemon.api.Exec(exec_request("web", "true")))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(e) == "CONTAINER_NOT_RUNNING"
    e = await rpc_error(daemon.api.Exec(exec_request("nope", "true")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    assert daemon.machine.processes.execs == []


async def test_stats_reads_each_interface_and_the_cgroup(daemon: Daemon) -> None:
    await create_network(daemon, "back", "10.30.0.0/24")
    c = await create(daemon, "web", networks=[net("sheep0"), net("back")])
    ns = daemon.machine.kernel.netns[Path(c.netns_path)]
    ns.links["eth0"].counters = InterfaceCounters(rx_bytes=10, rx_packets=1, tx_bytes=20,
                                                  tx_packets=2, tx_dropped=3)
    ns.links["eth1"].counters = InterfaceCounters(rx_errors=7)
    handles = daemon.machine.kernel.open_handles
    s = await daemon.api.Stats(pb.StatsRequest(id="web"))
    assert (s.container_id, s.name) == (c.id, "web") and s.time.seconds > 0
    by_name = {i.interface_name: i for i in s.interfaces}
    assert sorted(by_name) == ["eth0", "eth1"]
    eth0, eth1 = by_name["eth0"], by_name["eth1"]
    assert (eth0.network, eth0.rx_bytes, eth0.rx_packets, eth0.tx_bytes, eth0.tx_packets,
            eth0.tx_dropped) == ("sheep0", 10, 1, 20, 2, 3)
    assert (eth1.network, eth1.rx_errors, eth1.rx_bytes) == ("back", 7, 0)
    assert s.cgroup_readable and s.cpu_usage_ns > 0 and s.pids_current == 1
    assert daemon.machine.kernel.open_handles == handles  # the netns handle was closed
    opened = [x.name for x in daemon.machine.calls.calls].count("links.open_container_netns")
    assert opened >= 1


async def test_stats_of_a_container_without_networks_opens_no_netns(daemon: Daemon) -> None:
    await create(daemon, "web", network_mode="none")
    mark = daemon.machine.calls.mark()
    s = await daemon.api.Stats(pb.StatsRequest(id="web"))
    assert list(s.interfaces) == [] and s.cgroup_readable
    assert "links.open_container_netns" not in daemon.machine.calls.since(mark)


async def test_stats_without_a_readable_cgroup_has_only_the_counters(daemon: Daemon) -> None:
    await create(daemon, "web")
    daemon.machine.processes.cgroup_unreadable = True
    s = await daemon.api.Stats(pb.StatsRequest(id="web"))
    assert [i.interface_name for i in s.interfaces] == ["eth0"]
    assert not s.cgroup_readable
    assert (s.cpu_usage_ns, s.memory_usage_bytes, s.memory_limit_bytes, s.pids_current,
            s.pids_limit) == (0, 0, 0, 0, 0)


async def test_stats_shows_the_limits_the_container_was_created_with(daemon: Daemon) -> None:
    await daemon.api.CreateContainer(pb.CreateContainerRequest(
        name="web", command=["sleep", "inf"], network_mode="none",
        resources=pb.Resources(memory_bytes=64 * MiB, cpus=0.5, pids_limit=10)))
    s = await daemon.api.Stats(pb.StatsRequest(id="web"))
    assert (s.memory_limit_bytes, s.pids_limit) == (64 * MiB, 10)


async def test_stats_needs_a_running_container(daemon: Daemon) -> None:
    c = await create(daemon, "web")
    daemon.machine.processes.exit(c.id, 3)
    await wait_state(daemon, "web", pb.Container.EXITED)
    e = await rpc_error(daemon.api.Stats(pb.StatsRequest(id="web")))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(e) == "CONTAINER_NOT_RUNNING"
    e = await rpc_error(daemon.api.Stats(pb.StatsRequest(id="nope")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
