"""Kernel tests of the container-process backend (shim, namespaces, exit codes).

Each test gets its own throwaway network namespace (`ip netns add sbx-proc-*`) and
kills every process it started, even on failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from sheep_runtime.errors import InvalidArgument, KernelError
from sheep_runtime.process import (
    EXIT_CODE_UNKNOWN,
    ExitStatus,
    ProcessHandle,
    ProcessSpec,
    adopt,
    is_alive,
    kill,
    process_start_time,
    procfs,
    read_exit_status,
    spawn,
    start,
    stop,
    wait_exit,
)

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parents[2]
NAMESPACES = ("pid", "uts", "ipc", "mnt", "net")

SPAWNER = """
import asyncio, json, os, signal, sys
from pathlib import Path
from sheep_runtime.process import ProcessSpec, start
exit_mode, cid, cdir, netns, *argv = sys.argv[1:]
h = asyncio.run(start(ProcessSpec(cid, tuple(argv), {}, "adopted", Path(netns), Path(cdir))))
print(json.dumps([h.shim_pid, h.shim_start_time, h.pid, h.pid_start_time]), flush=True)
if exit_mode == "sigkill":  # like a daemon killed hard; "exit" is a clean shutdown
    os.kill(os.getpid(), signal.SIGKILL)
"""


class World:
    """A test's netns, container dirs and every process it started."""

    def __init__(self, tmp: Path, netns: Path) -> None:
        self.tmp = tmp
        self.netns = netns
        self.ids: list[str] = []
        self.handles: list[ProcessHandle] = []

    def spec(
        self,
        *argv: str,
        env: dict[str, str] | None = None,
        hostname: str = "box",
        netns: Path | None = None,
    ) -> ProcessSpec:
        cid = f"t-{secrets.token_hex(4)}"
        self.ids.append(cid)
        return ProcessSpec(cid, argv, env or {}, hostname, netns or self.netns, self.tmp / cid)

    async def start(self, spec: ProcessSpec) -> ProcessHandle:
        handle = await start(spec)
        self.handles.append(handle)
        return handle

    def cleanup(self) -> None:
        for h in self.handles:
            kill(h)
        deadline = time.monotonic() + 2
        for h in self.handles:
            while is_alive(h.shim_pid, h.shim_start_time) and time.monotonic() < deadline:
                time.sleep(0.01)
            procfs.send_signal(h.shim_pid, h.shim_start_time, signal.SIGKILL)
        for pid in shims_of(self.ids):  # e.g. a failed start left something behind
            procfs.send_signal(pid, process_start_time(pid) or 0, signal.SIGKILL)


def shims_of(ids: list[str]) -> list[int]:
    """Live (non-zombie) processes whose argv names one of the container ids."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and any(i in procfs.cmdline(int(entry)) for i in ids):
            start_time = process_start_time(int(entry))
            if start_time and is_alive(int(entry), start_time):
                found.append(int(entry))
    return found


def signal_set(pid: int, field: str = "SigIgn") -> set[int]:
    """The signals in a /proc status mask, leaving out 32 and 33: glibc reserves them
    (no program can reset them through libc) and `make` leaves 32 ignored."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            mask = int(line.split()[1], 16)
            return {n for n in range(1, 65) if mask & (1 << (n - 1)) and n not in (32, 33)}
    raise AssertionError(f"no {field} line")


def zombie_children() -> list[int]:
    me, zombies = os.getpid(), []
    for entry in os.listdir("/proc"):
        fields = procfs._stat_fields(int(entry)) if entry.isdigit() else None
        if fields is not None and int(fields[1]) == me and fields[0] == b"Z":
            zombies.append(int(entry))
    return zombies


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    name = f"sbx-proc-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    w = World(tmp_path, Path("/run/netns") / name)
    try:
        yield w
        assert zombie_children() == []
    finally:
        w.cleanup()
        subprocess.run(["ip", "netns", "del", name], check=True)


async def log_until(cdir: Path, text: str, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    while True:
        log = (cdir / "log").read_text()
        if text in log or time.monotonic() > deadline:
            return log
        await asyncio.sleep(0.01)


async def test_namespaces_hostname_pid1_env_and_log(world: World) -> None:
    spec = world.spec(
        "/bin/sh", "-c",
        'echo "pid=$$ host=$(cat /proc/sys/kernel/hostname) foo=$FOO procs=$(ls -d /proc/[0-9]*)"'
        '; echo oops >&2; echo ready; exec sleep 30',
        env={"FOO": "bar baz"}, hostname="web-1")  # fmt: skip
    h = await world.start(spec)
    assert h.pid and is_alive(h.pid, h.pid_start_time)
    log = await log_until(spec.container_dir, "ready")
    assert "pid=1 host=web-1 foo=bar baz procs=/proc/1\n" in log  # own /proc: only itself
    assert "oops\n" in log
    for ns in NAMESPACES:
        assert os.readlink(f"/proc/{h.pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
    assert os.stat(f"/proc/{h.pid}/ns/net").st_ino == os.stat(world.netns).st_ino
    environ = Path(f"/proc/{h.pid}/environ").read_bytes().split(b"\0")
    assert b"FOO=bar baz" in environ and b"HOSTNAME=web-1" in environ
    assert any(e.startswith(b"PATH=/") for e in environ)
    # The shim ignores HUP, INT, TERM and PIPE; the command has default dispositions.
    ignored = {1, 2, 13, 15}
    assert ignored <= signal_set(h.shim_pid)
    assert signal_set(h.pid) == set() and signal_set(h.pid, "SigBlk") == set()
    assert os.getsid(h.shim_pid) != os.getsid(0)  # not in the daemon's session
    assert procfs.children(h.shim_pid) == [h.pid]
    assert read_exit_status(spec.container_dir) is None
    kill(h)
    assert (await wait_exit(h)).code == 137


async def exit_code_scenario(world: World) -> None:
    spec = world.spec("/bin/sh", "-c", "exit 7")
    before = time.time_ns()
    status = await wait_exit(await world.start(spec))
    assert status.code == 7 and before < status.finished_at_ns <= time.time_ns()
    assert read_exit_status(spec.container_dir) == status


async def stop_scenario(world: World) -> None:
    spec = world.spec("sleep", "1000")
    h = await world.start(spec)
    t0 = time.monotonic()
    await stop(h, timeout=0.5)  # PID 1 without a handler: the kernel drops SIGTERM
    assert 0.5 <= time.monotonic() - t0 < 3
    assert (await wait_exit(h)).code == 137
    assert not is_alive(h.pid, h.pid_start_time)
    await stop(h, timeout=0.5)  # idempotent
    kill(h)


async def fast_exit_scenario(world: World) -> None:
    h = await world.start(world.spec("/bin/true"))
    assert (await wait_exit(h)).code == 0


async def bad_netns_scenario(world: World) -> None:
    spec = world.spec("sleep", "1000", netns=world.tmp / "no-such-netns")
    with pytest.raises(KernelError, match="no-such-netns"):
        await start(spec)
    assert shims_of(world.ids) == []


async def test_exit_code(world: World) -> None:
    await exit_code_scenario(world)


async def test_stop_kills_after_timeout(world: World) -> None:
    await stop_scenario(world)


async def test_fast_exit(world: World) -> None:
    await fast_exit_scenario(world)


async def test_bad_netns_raises_and_leaves_nothing(world: World) -> None:
    await bad_netns_scenario(world)


async def test_start_timeout_kills_everything(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spawn, "START_TIMEOUT", 0)
    spec = world.spec("sleep", "1000")
    with pytest.raises(KernelError, match="did not start"):
        await start(spec)
    # Everything got SIGKILL; the kernel may take a moment to tear the last ones down.
    deadline = time.monotonic() + 2
    while shims_of(world.ids) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert shims_of(world.ids) == []


def test_scenarios_on_uvloop(world: World) -> None:
    scenarios: list[Callable[[World], Coroutine[Any, Any, None]]] = [
        exit_code_scenario,
        stop_scenario,
        fast_exit_scenario,
        bad_netns_scenario,
    ]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)
        for scenario in scenarios:
            runner.run(scenario(world))


@pytest.mark.parametrize("code", [143, 42])
async def test_sigterm_with_handler(world: World, code: int) -> None:
    spec = world.spec("/bin/sh", "-c", f'trap "exit {code}" TERM; echo ready; sleep 1000 & wait')
    h = await world.start(spec)
    await log_until(spec.container_dir, "ready")
    t0 = time.monotonic()
    await stop(h, timeout=5)
    assert time.monotonic() - t0 < 2
    assert (await wait_exit(h)).code == code


async def test_stopped_command_is_not_an_exit(world: World) -> None:
    spec = world.spec("/bin/sh", "-c", "sleep 0.2; exit 5")
    h = await world.start(spec)
    os.kill(h.pid, signal.SIGSTOP)
    await asyncio.sleep(0.4)
    assert is_alive(h.shim_pid, h.shim_start_time)
    assert read_exit_status(spec.container_dir) is None
    os.kill(h.pid, signal.SIGCONT)
    assert (await wait_exit(h)).code == 5


async def test_killed_by_other_signal_is_128_plus_n(world: World) -> None:
    h = await world.start(world.spec(sys.executable, "-c", "import ctypes; ctypes.string_at(0)"))
    assert (await wait_exit(h)).code == 128 + signal.SIGSEGV


@pytest.mark.parametrize("argv0", ["/nonexistent/cmd", "no-such-command-xyz"])
async def test_nonexistent_command_exits_127(world: World, argv0: str) -> None:
    spec = world.spec(argv0)
    assert (await wait_exit(await world.start(spec))).code == 127
    assert "No such file or directory" in (spec.container_dir / "log").read_text()


@pytest.mark.parametrize("exit_mode", ["exit", "sigkill"])
async def test_adopt_after_spawner_exited(world: World, exit_mode: str) -> None:
    go = world.tmp / "go"
    spec = world.spec("/bin/sh", "-c", f"while [ ! -e {go} ]; do sleep 0.02; done; exit 3")
    args = [exit_mode, spec.container_id, str(spec.container_dir), str(world.netns)]
    out = subprocess.run(
        [sys.executable, "-c", SPAWNER, *args, *spec.argv],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == (0 if exit_mode == "exit" else -signal.SIGKILL), out.stderr
    shim_pid, shim_start, pid, pid_start = json.loads(out.stdout)
    world.handles.append(ProcessHandle(shim_pid, shim_start, pid, pid_start, spec.container_dir))
    cid, cdir = spec.container_id, spec.container_dir
    h = adopt(cid, cdir, shim_pid=shim_pid, shim_start_time=shim_start)
    assert h == ProcessHandle(shim_pid, shim_start, pid, pid_start, cdir)
    # Start time unknown: found through <dir>/shim.pid and checked on its command line.
    assert adopt(cid, cdir, shim_pid=None, shim_start_time=None) == h
    assert adopt("t-other", cdir, shim_pid=None, shim_start_time=None) is None
    assert adopt(cid, cdir, shim_pid=shim_pid, shim_start_time=shim_start + 1) is None
    waiter = asyncio.create_task(wait_exit(h))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    go.touch()
    assert (await waiter).code == 3
    assert adopt(cid, cdir, shim_pid=shim_pid, shim_start_time=shim_start) is None
    assert adopt(cid, cdir, shim_pid=None, shim_start_time=None) is None


async def test_killed_shim_records_unknown_and_kills_command(world: World) -> None:
    spec = world.spec("sleep", "1000")
    h = await world.start(spec)
    assert procfs.send_signal(h.shim_pid, h.shim_start_time, signal.SIGKILL)
    status = await wait_exit(h)
    assert status.code == EXIT_CODE_UNKNOWN
    assert read_exit_status(spec.container_dir) == status
    deadline = time.monotonic() + 2
    while is_alive(h.pid, h.pid_start_time) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert not is_alive(h.pid, h.pid_start_time)


async def test_wait_exit_cancel_leaves_no_reader(world: World) -> None:
    h = await world.start(world.spec("sleep", "1000"))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(wait_exit(h), 0.05)
    kill(h)
    assert (await wait_exit(h)).code == 137


@pytest.mark.parametrize(
    ("argv", "env", "hostname"),
    [
        ((), {}, "h"),
        (("a=b",), {}, "h"),
        (("true",), {"A=B": "1"}, "h"),
        (("true",), {}, "x" * 65),
        (("true",), {}, ""),
    ],
)
async def test_invalid_spec(
    world: World, argv: tuple[str, ...], env: dict[str, str], hostname: str
) -> None:
    with pytest.raises(InvalidArgument):
        await start(world.spec(*argv, env=env, hostname=hostname))


def test_read_exit_status(tmp_path: Path) -> None:
    assert read_exit_status(tmp_path) is None
    (tmp_path / "exit").write_text("13")  # no newline: still being written
    assert read_exit_status(tmp_path) is None
    (tmp_path / "exit").write_text("137 1700000000000000000\n")
    assert read_exit_status(tmp_path) == ExitStatus(137, 1700000000000000000)
    (tmp_path / "exit").write_text("garbage\n")
    with pytest.raises(KernelError):
        read_exit_status(tmp_path)


def test_process_identity() -> None:
    me = os.getpid()
    start_time = process_start_time(me)
    assert start_time and is_alive(me, start_time)
    assert not is_alive(me, start_time + 1)
    assert process_start_time(0) is None and not is_alive(0, 1)
