"""Exec and Stats through a real sheepd in a sandbox: commands run inside running
containers (runc exec), and the counters of their interfaces and cgroups."""

from __future__ import annotations

import os
import time

import grpc
import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_runtime.ops.exec import MAX_OUTPUT
from sheep_runtime.process import procfs
from tests.sandbox import Sandbox

pytestmark = pytest.mark.kernel

NONE = {"network_mode": "none"}
MiB = 1024 * 1024
PINGS = 3


def execute(box: Sandbox, ref: str, *command: str, **fields: object) -> pb.ExecResponse:
    reply: pb.ExecResponse = box.api.Exec(pb.ExecRequest(
        id=ref, command=list(command), **fields), timeout=60)  # type: ignore[arg-type]
    return reply


def live_with_arg(arg: str) -> list[int]:
    """Live (non-zombie) processes with `arg` in their argv."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and arg in procfs.cmdline(int(entry)):
            start = procfs.process_start_time(int(entry))
            if start and procfs.is_alive(int(entry), start):
                found.append(int(entry))
    return found


def wait_exited(box: Sandbox, cid: str, timeout: float = 10) -> pb.Container:
    deadline = time.monotonic() + timeout
    while True:
        c = box.api.Inspect(pb.InspectRequest(id=cid))
        if c.state == pb.Container.EXITED:
            return c
        assert time.monotonic() < deadline, f"still not exited:\n{c}"
        time.sleep(0.02)


def test_exec_output_and_exit_codes(box: Sandbox) -> None:
    box.run("/bin/sleep", "1000", name="web", **NONE)
    r = execute(box, "web", "/bin/sh", "-c", "echo out; echo err >&2")
    assert (r.exit_code, r.stdout, r.stderr) == (0, b"out\n", b"err\n")
    assert not (r.timed_out or r.stdout_truncated or r.stderr_truncated)
    assert execute(box, "web", "/bin/sh", "-c", "exit 3").exit_code == 3
    missing = execute(box, "web", "no-such-command-xyz")
    assert missing.exit_code == 127 and b"not found" in missing.stderr
    assert execute(box, "web", "/etc/passwd").exit_code == 126


def test_env_and_working_dir_apply(box: Sandbox) -> None:
    box.run("/bin/sleep", "1000", name="web", env={"MINE": "container", "BOTH": "c"}, **NONE)
    r = execute(box, "web", "/bin/sh", "-c", 'echo "$MINE $BOTH $ADDED"; pwd',
                env={"BOTH": "exec", "ADDED": "x y"}, working_dir="/etc")
    assert (r.exit_code, r.stdout) == (0, b"container exec x y\n/etc\n")
    with pytest.raises(grpc.RpcError) as e:
        execute(box, "web", "/bin/true", working_dir="/no/such/dir")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_output_beyond_the_limit_is_reported(box: Sandbox) -> None:
    box.run("/bin/sleep", "1000", name="web", **NONE)
    r = execute(box, "web", "/bin/sh", "-c", "head -c 5000 /dev/zero | tr '\\0' a",
                max_output_bytes=100)
    assert r.exit_code == 0 and r.stdout == b"a" * 100 and r.stdout_truncated
    assert not r.stderr_truncated
    with pytest.raises(grpc.RpcError) as e:
        execute(box, "web", "/bin/true", max_output_bytes=MAX_OUTPUT + 1)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Both streams at the limit: the reply still fits a default gRPC client.
    r = execute(box, "web", "/bin/sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' o; "
                "head -c 3000000 /dev/zero | tr '\\0' e >&2", max_output_bytes=MAX_OUTPUT)
    assert r.stdout == b"o" * MAX_OUTPUT and r.stderr == b"e" * MAX_OUTPUT
    assert r.stdout_truncated and r.stderr_truncated


def test_timeout_kills_the_command_and_leaves_no_process(box: Sandbox) -> None:
    box.run("/bin/sleep", "1000", name="web", **NONE)
    r = execute(box, "web", "/bin/sh", "-c", "echo begun; sleep 314159 & sleep 271828",
                timeout_seconds=1)
    assert r.timed_out and r.exit_code == 137 and r.stdout == b"begun\n"
    assert live_with_arg("314159") == [] and live_with_arg("271828") == []
    c = box.api.Inspect(pb.InspectRequest(id="web"))
    assert c.state == pb.Container.RUNNING  # the container runs on
    assert execute(box, "web", "/bin/true").exit_code == 0


def test_exec_and_stats_need_a_running_container(box: Sandbox) -> None:
    c = box.run("/bin/sh", "-c", "exit 0", name="done", **NONE)
    wait_exited(box, c.id)
    for call in (lambda: execute(box, "done", "/bin/true"),
                 lambda: box.api.Stats(pb.StatsRequest(id="done"))):
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as e:
        execute(box, "nope", "/bin/true")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_stats_count_the_pings_to_the_gateway(box: Sandbox) -> None:
    c = box.run("/bin/sleep", "1000", name="web")
    (a,) = c.networks
    before = box.api.Stats(pb.StatsRequest(id="web"))
    (eth0,) = before.interfaces
    assert (eth0.interface_name, eth0.network) == ("eth0", "sheep0")
    r = execute(box, "web", "ping", "-c", str(PINGS), "-i", "0.2", "-W", "2", a.gateway)
    assert r.exit_code == 0, r.stderr
    after = box.api.Stats(pb.StatsRequest(id="web"))
    (eth0_after,) = after.interfaces
    assert eth0_after.tx_packets - eth0.tx_packets >= PINGS
    assert eth0_after.rx_packets - eth0.rx_packets >= PINGS  # the replies
    assert eth0_after.tx_bytes > eth0.tx_bytes and eth0_after.rx_bytes > eth0.rx_bytes
    assert eth0_after.tx_errors == eth0_after.rx_errors == 0
    assert (after.container_id, after.name) == (c.id, "web")
    assert after.time.ToNanoseconds() >= before.time.ToNanoseconds()
    assert after.cgroup_readable
    assert after.cpu_usage_ns > 0 and after.memory_usage_bytes > 0
    assert after.pids_current >= 1
    assert after.memory_limit_bytes == 0 and after.pids_limit == 0  # none asked


def test_limits_given_at_create_hold(box: Sandbox) -> None:
    box.run("/bin/sleep", "1000", name="small", **NONE,
            resources=pb.Resources(memory_bytes=64 * MiB, cpus=0.5, pids_limit=10))
    s = box.api.Stats(pb.StatsRequest(id="small"))
    assert s.cgroup_readable and (s.memory_limit_bytes, s.pids_limit) == (64 * MiB, 10)
    # The command is one task of the ten, the exec's shell another: its forks stop at
    # eight (its children must not hold the output open, or the exec waits for them).
    r = execute(box, "small", "/bin/sh", "-c", "n=0; while [ $n -lt 20 ]; do "
                "sleep 100 >/dev/null 2>&1 & n=$((n+1)); done; echo $n")
    assert b"fork" in r.stderr.lower(), r
    assert box.api.Stats(pb.StatsRequest(id="small")).pids_current <= 10
