"""Kernel tests of `OciProcesses.exec` (runc exec) and `cgroup_usage` (runc events):
real containers in a throwaway netns, runc root and cgroup parent (see test_process).

An exec'd process must be confined exactly like the container's command: the
containment probe runs through exec and is compared with the command itself.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest
import uvloop

from sheep_runtime.errors import FailedPrecondition, InvalidArgument
from sheep_runtime.model import DEFAULT_CAPABILITIES, ExecResult, ExecSpec, ProcessHandle
from sheep_runtime.process import exec as exec_
from sheep_runtime.process import is_alive
from tests.kernel import test_containment as containment
from tests.kernel.test_process import World, processes_of, zombie_children
from tests.sandbox import CONTAINER_PYTHON

pytestmark = pytest.mark.kernel

world = containment.world
daemon = containment.daemon


async def running(world: World, *argv: str, **fields: Any) -> ProcessHandle:
    spec = world.spec(*(argv or ("sleep", "1000")), **fields)
    return await world.start(spec)


def cid_of(world: World, h: ProcessHandle) -> str:
    return h.container_dir.name


async def run(world: World, h: ProcessHandle, *argv: str, **fields: Any
              ) -> ExecResult:
    return await world.procs.exec(cid_of(world, h), h.container_dir,
                                  ExecSpec(argv=argv, **fields))


def status_of(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, v in (line.split(":\t", 1) for line in lines if ":\t" in line)}


async def test_output_exit_codes_env_and_working_dir(world: World) -> None:
    h = await running(world, env={"FROM_CONTAINER": "c", "SHARED": "container"})
    r = await run(world, h, "/bin/sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.exit_code, r.stdout, r.stderr) == (3, b"out\n", b"err\n")
    assert not (r.timed_out or r.stdout_truncated or r.stderr_truncated)
    r = await run(world, h, "/bin/sh", "-c", 'echo "$FROM_CONTAINER $SHARED $ADDED"; pwd',
                  env={"SHARED": "exec", "ADDED": "a b"}, cwd="/etc")
    assert (r.exit_code, r.stdout) == (0, b"c exec a b\n/etc\n")
    r = await run(world, h, "/bin/sh", "-c", "echo $$; cat /proc/sys/kernel/hostname")
    pid, hostname = r.stdout.decode().split()
    assert hostname == "box" and int(pid) > 1  # its namespaces: pid 1 is the command
    assert (await run(world, h, "/bin/true")).exit_code == 0
    assert not list(h.container_dir.glob("exec-*"))  # pid and log files removed


@pytest.mark.parametrize(("argv0", "code", "message"), [
    ("no-such-command-xyz", 127, b"executable file not found"),
    ("/nonexistent/cmd", 127, b"no such file or directory"),
    ("/etc/passwd", 126, b"permission denied"),
])
async def test_command_that_cannot_run_is_126_or_127(
        world: World, argv0: str, code: int, message: bytes) -> None:
    h = await running(world)
    r = await run(world, h, argv0)
    assert r.exit_code == code and message in r.stderr


async def test_signal_is_128_plus_n(world: World) -> None:
    h = await running(world)
    r = await run(world, h, "/bin/sh", "-c", "kill -USR1 $$")
    assert r.exit_code == 128 + signal.SIGUSR1 and not r.timed_out


async def test_output_beyond_the_limit_is_drained_and_reported(world: World) -> None:
    h = await running(world)
    r = await run(world, h, "/bin/sh", "-c",
                  "head -c 300000 /dev/zero | tr '\\0' o; echo short >&2", max_output=1000)
    assert r.exit_code == 0 and r.stdout == b"o" * 1000 and r.stdout_truncated
    assert r.stderr == b"short\n" and not r.stderr_truncated
    r = await run(world, h, "/bin/sh", "-c", "printf 1234", max_output=4)
    assert r.stdout == b"1234" and not r.stdout_truncated
    r = await run(world, h, "/bin/sh", "-c", "printf 1234", max_output=0)
    assert r.stdout == b"" and r.stdout_truncated


async def test_timeout_kills_the_process_and_its_children(world: World) -> None:
    h = await running(world)
    r = await run(world, h, "/bin/sh", "-c", "echo started; sleep 314159 & sleep 271828",
                  timeout=0.5)
    assert r.timed_out and r.exit_code == 137 and r.stdout == b"started\n"
    assert processes_of(["314159", "271828"]) == []  # killed (zombies of PID 1 at most)
    assert is_alive(h.pid, h.pid_start_time)  # the container itself runs on
    assert (await run(world, h, "/bin/true")).exit_code == 0


@pytest.mark.parametrize("delay", [0.0, 0.002, 0.01, 0.05])
async def test_a_cancelled_exec_is_killed(world: World, delay: float) -> None:
    """Cancelled at once, while runc init is still making the process, or later."""
    h = await running(world)
    task = asyncio.ensure_future(run(world, h, "sleep", "161803"))
    while not processes_of(["161803"]):  # runc exec itself, at first
        await asyncio.sleep(0.001)
    await asyncio.sleep(delay)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    while exec_._ORPHANS:  # the kill goes on in the background
        await asyncio.sleep(0.01)
    assert processes_of(["161803"]) == []
    assert zombie_children() == []  # runc was reaped


async def test_exec_in_an_exited_container_is_failed_precondition(world: World) -> None:
    h = await running(world, "/bin/true")
    await world.procs.wait_exit(h)
    with pytest.raises(FailedPrecondition) as e:
        await run(world, h, "/bin/true")
    assert e.value.reason == "CONTAINER_NOT_RUNNING"


@pytest.mark.parametrize(("fields", "field"), [
    ({"argv": ()}, "command"),
    ({"argv": ("a\0b",)}, "command"),
    ({"env": {"A=B": "1"}}, "env"),
    ({"cwd": "relative"}, "working_dir"),
])
async def test_invalid_spec(world: World, fields: dict[str, Any], field: str) -> None:
    h = await running(world)
    spec = ExecSpec(**{"argv": ("/bin/true",), **fields})
    with pytest.raises(InvalidArgument) as e:
        await world.procs.exec(cid_of(world, h), h.container_dir, spec)
    assert e.value.field == field


async def test_missing_working_dir_is_invalid(world: World) -> None:
    h = await running(world)
    with pytest.raises(InvalidArgument, match="no such file") as e:
        await run(world, h, "/bin/true", cwd="/nonexistent")
    assert e.value.field == "working_dir"


def test_exec_on_uvloop(world: World) -> None:
    async def scenario() -> None:
        h = await running(world)
        r = await run(world, h, "/bin/sh", "-c", "echo hi; exit 4")
        assert (r.exit_code, r.stdout) == (4, b"hi\n")
        r = await run(world, h, "sleep", "141421", timeout=0.3)
        assert r.timed_out and processes_of(["141421"]) == []

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())


@pytest.mark.parametrize("caps", [DEFAULT_CAPABILITIES, (*DEFAULT_CAPABILITIES,
                                                         "CAP_NET_ADMIN")])
async def test_exec_is_confined_like_the_command(
        world: World, daemon: containment.Daemon, caps: tuple[str, ...]) -> None:
    h = await running(world, hidden_paths=daemon.hidden, capabilities=caps)
    r = await run(world, h, CONTAINER_PYTHON, "-c", containment.PROBE, daemon.paths(),
                  "hostile")
    assert r.exit_code == 0, r.stderr
    (line,) = [x for x in r.stdout.decode().splitlines() if x.startswith("PROBE ")]
    probe: dict[str, Any] = json.loads(line.removeprefix("PROBE "))
    command = status_of(h.pid)
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"):
        assert probe[key] == command[key], key
    assert probe["CapEff"] == containment.mask(caps) and probe["CapAmb"] == "0" * 16
    assert probe["NoNewPrivs"] == "1" and probe["Seccomp"] == "2"
    containment.assert_daemon_hidden(probe, daemon)
    assert probe["write_visible"] == "EROFS" and probe["write_etc"] == "EROFS"
    assert probe["setns_host_pin"] == "EPERM" and probe["mount"] == "EPERM"
    assert probe["ambient_sys_admin"] == "EPERM" and probe["setpriv"] != 0
    assert (probe["ip_link_set"] == 0) == ("CAP_NET_ADMIN" in caps)


async def test_cgroup_usage(world: World) -> None:
    h = await running(world)
    usage = await world.procs.cgroup_usage(cid_of(world, h))
    assert usage is not None
    assert usage.cpu_usage_ns > 0 and usage.memory_usage_bytes > 0
    assert usage.pids_current >= 1
    assert usage.memory_limit_bytes == 0 and usage.pids_limit == 0  # none set
    world.procs.kill(h)
    await world.procs.wait_exit(h)
    assert await world.procs.cgroup_usage(cid_of(world, h)) is None
    assert await world.procs.cgroup_usage("no-such-container") is None
