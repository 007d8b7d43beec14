"""Kernel tests of the container-process backend (runc under a supervisor, exit codes,
re-adoption, cleanup of runc state and cgroups).

Each test gets its own throwaway network namespace (`ip netns add sbx-proc-*`), runc
state root and cgroup parent, and removes every process, container and cgroup it made,
even on failure.
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
from sheep_runtime.model import ExitStatus, ProcessHandle, ProcessSpec
from sheep_runtime.process import (
    EXIT_CODE_UNKNOWN,
    CorruptExitRecord,
    OciProcesses,
    is_alive,
    process_start_time,
    procfs,
    read_exit_status,
)
from tests.sandbox import CONTAINER_PYTHON

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parents[2]
NAMESPACES = ("pid", "uts", "ipc", "mnt", "net")

SPAWNER = """
import asyncio, json, os, signal, sys
from pathlib import Path
from sheep_runtime.model import ProcessSpec
from sheep_runtime.process import OciProcesses
exit_mode, root, cgroup, cid, cdir, netns, *argv = sys.argv[1:]
procs = OciProcesses(Path(root), cgroup_parent=cgroup)
spec = ProcessSpec(cid, tuple(argv), {}, "adopted", Path(netns), Path(cdir))
h = asyncio.run(procs.start(spec))
print(json.dumps([h.shim_pid, h.shim_start_time, h.pid, h.pid_start_time]), flush=True)
if exit_mode == "sigkill":  # like a daemon killed hard; "exit" is a clean shutdown
    os.kill(os.getpid(), signal.SIGKILL)
"""


def cgroup_dirs(name: str) -> list[Path]:
    """The dirs `name` below this process's cgroup in each hierarchy (runc makes a
    relative cgroupsPath relative to its own cgroup, which is ours)."""
    found = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        hierarchy = controllers.removeprefix("name=") or "unified"
        d = Path("/sys/fs/cgroup", hierarchy, path.lstrip("/"), name)
        if d.is_dir():
            found.append(d)
    return found


class World:
    """A test's netns, runc root, cgroup parent, container dirs and what it started."""

    def __init__(self, tmp: Path, netns: Path, **options: Any) -> None:
        self.tmp = tmp
        self.netns = netns
        self.runc_root = tmp / "runc"
        self.cgroup_parent = f"sheep-test-{secrets.token_hex(4)}"
        self.procs = OciProcesses(self.runc_root, cgroup_parent=self.cgroup_parent,
                                  **options)
        self.ids: list[str] = []
        self.handles: list[ProcessHandle] = []

    def spec(self, *argv: str, env: dict[str, str] | None = None, hostname: str = "box",
             netns: Path | None = None, **fields: Any) -> ProcessSpec:
        cid = f"t-{secrets.token_hex(4)}"
        self.ids.append(cid)
        return ProcessSpec(cid, argv, env or {}, hostname, netns or self.netns,
                           self.tmp / cid, **fields)

    async def start(self, spec: ProcessSpec) -> ProcessHandle:
        handle = await self.procs.start(spec)
        self.handles.append(handle)
        return handle

    def runc_ids(self) -> list[str]:
        out = subprocess.run(["runc", "--root", str(self.runc_root), "list", "-q"],
                             capture_output=True, text=True, check=True)
        return out.stdout.split()

    def leftovers(self, cid: str) -> list[str]:
        """What of container `cid` is still there: processes, runc state, cgroups."""
        left = [f"pid {p}" for p in processes_of([cid])]
        left += [f"runc {cid}"] if cid in self.runc_ids() else []
        return left + [str(d) for d in cgroup_dirs(f"{self.cgroup_parent}/{cid}")]

    def cleanup(self) -> None:
        for h in self.handles:
            self.procs.kill(h)
        deadline = time.monotonic() + 2
        for h in self.handles:
            while is_alive(h.shim_pid, h.shim_start_time) and time.monotonic() < deadline:
                time.sleep(0.01)
            procfs.send_signal(h.shim_pid, h.shim_start_time, signal.SIGKILL)
        for pid in processes_of(self.ids):  # e.g. a failed start left something behind
            procfs.send_signal(pid, process_start_time(pid) or 0, signal.SIGKILL)
        for cid in self.runc_ids():
            subprocess.run(["runc", "--root", str(self.runc_root), "delete", "--force", cid],
                           check=False)
        for parent in cgroup_dirs(self.cgroup_parent):
            for d, _, _ in sorted(os.walk(parent), reverse=True):  # children first
                Path(d).rmdir()


async def until_gone(world: World, cid: str, timeout: float = 5) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := world.leftovers(cid)) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return left


def processes_of(ids: list[str]) -> list[int]:
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


def make_world(tmp: Path, **options: Any) -> Iterator[World]:
    name = f"sbx-proc-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        w = World(tmp, Path("/run/netns") / name, **options)
        try:
            yield w
            assert zombie_children() == []
        finally:
            w.cleanup()
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path)


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
    assert procfs.cmdline(h.pid)[0] in ("/bin/sh", "sleep")  # the command, not runc init
    log = await log_until(spec.container_dir, "ready")
    assert "pid=1 host=web-1 foo=bar baz procs=/proc/1\n" in log  # own /proc: only itself
    assert "oops\n" in log
    for ns in NAMESPACES:
        assert os.readlink(f"/proc/{h.pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
    assert os.stat(f"/proc/{h.pid}/ns/net").st_ino == os.stat(world.netns).st_ino
    environ = Path(f"/proc/{h.pid}/environ").read_bytes().split(b"\0")
    assert b"FOO=bar baz" in environ and b"HOSTNAME=web-1" in environ
    assert any(e.startswith(b"PATH=/") for e in environ)
    # The supervisor ignores HUP, INT, TERM and PIPE; the command has default dispositions.
    ignored = {1, 2, 13, 15}
    assert ignored <= signal_set(h.shim_pid)
    assert signal_set(h.pid) == set() and signal_set(h.pid, "SigBlk") == set()
    assert os.getsid(h.shim_pid) != os.getsid(0)  # not in the daemon's session
    # supervisor -> runc -> command; runc puts it in the container's cgroup.
    assert procfs.parent(h.pid) in procfs.children(h.shim_pid)
    suffix = f"/{world.cgroup_parent}/{spec.container_id}"
    assert all(line.endswith(suffix)
               for line in Path(f"/proc/{h.pid}/cgroup").read_text().splitlines())
    assert world.runc_ids() == [spec.container_id]
    assert read_exit_status(spec.container_dir) is None
    world.procs.kill(h)
    assert (await world.procs.wait_exit(h)).code == 137
    assert world.leftovers(spec.container_id) == []  # deleted before the exit record


async def exit_code_scenario(world: World) -> None:
    spec = world.spec("/bin/sh", "-c", "exit 7")
    before = time.time_ns()
    status = await world.procs.wait_exit(await world.start(spec))
    assert status.code == 7 and before < status.finished_at_ns <= time.time_ns()
    assert read_exit_status(spec.container_dir) == status
    assert world.leftovers(spec.container_id) == []


async def stop_scenario(world: World) -> None:
    spec = world.spec("sleep", "1000")
    h = await world.start(spec)
    t0 = time.monotonic()
    await world.procs.stop(h, timeout=0.5)  # PID 1 without a handler: SIGTERM dropped
    assert 0.5 <= time.monotonic() - t0 < 3
    assert (await world.procs.wait_exit(h)).code == 137
    assert not is_alive(h.pid, h.pid_start_time)
    assert world.leftovers(spec.container_id) == []
    await world.procs.stop(h, timeout=0.5)  # idempotent
    world.procs.kill(h)


async def fast_exit_scenario(world: World) -> None:
    h = await world.start(world.spec("/bin/true"))
    assert (await world.procs.wait_exit(h)).code == 0


async def bad_netns_scenario(world: World) -> None:
    spec = world.spec("sleep", "1000", netns=world.tmp / "no-such-netns")
    with pytest.raises(KernelError, match="no-such-netns"):
        await world.procs.start(spec)
    assert processes_of(world.ids) == []
    assert world.leftovers(spec.container_id) == []


async def test_exit_code(world: World) -> None:
    await exit_code_scenario(world)


async def test_stop_kills_after_timeout(world: World) -> None:
    await stop_scenario(world)


async def test_fast_exit(world: World) -> None:
    await fast_exit_scenario(world)


async def test_bad_netns_raises_and_leaves_nothing(world: World) -> None:
    await bad_netns_scenario(world)


@pytest.mark.parametrize("timeout", [0, 0.03])  # before the readiness line; inside runc
async def test_start_timeout_kills_everything(tmp_path: Path, timeout: float) -> None:
    for world in make_world(tmp_path, start_timeout=timeout):
        spec = world.spec("sleep", "1000")
        with pytest.raises(KernelError, match="did not start"):
            await world.procs.start(spec)
        assert await until_gone(world, spec.container_id) == []


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
    await world.procs.stop(h, timeout=5)
    assert time.monotonic() - t0 < 2
    assert (await world.procs.wait_exit(h)).code == code


async def test_stopped_command_is_not_an_exit(world: World) -> None:
    spec = world.spec("/bin/sh", "-c", "sleep 0.2; exit 5")
    h = await world.start(spec)
    os.kill(h.pid, signal.SIGSTOP)
    await asyncio.sleep(0.4)
    assert is_alive(h.shim_pid, h.shim_start_time)
    assert read_exit_status(spec.container_dir) is None
    os.kill(h.pid, signal.SIGCONT)
    assert (await world.procs.wait_exit(h)).code == 5


async def test_killed_by_other_signal_is_128_plus_n(world: World) -> None:
    spec = world.spec(CONTAINER_PYTHON, "-c", "import ctypes; ctypes.string_at(0)")
    h = await world.start(spec)
    assert (await world.procs.wait_exit(h)).code == 128 + signal.SIGSEGV


@pytest.mark.parametrize(("argv0", "code", "message"), [
    ("/nonexistent/cmd", 127, "No such file or directory"),
    ("no-such-command-xyz", 127, "No such file or directory"),
    ("/etc/passwd", 126, "Permission denied"),
])
async def test_command_that_cannot_run_exits_126_or_127(
        world: World, argv0: str, code: int, message: str) -> None:
    spec = world.spec(argv0)
    assert (await world.procs.wait_exit(await world.start(spec))).code == code
    assert message in (spec.container_dir / "log").read_text()


@pytest.mark.parametrize("exit_mode", ["exit", "sigkill"])
async def test_adopt_after_spawner_exited(world: World, exit_mode: str) -> None:
    spec = world.spec("/bin/sh", "-c", "trap 'exit 3' USR1; echo ready; sleep 1000 & wait",
                      hostname="adopted")
    args = [exit_mode, str(world.runc_root), world.cgroup_parent, spec.container_id,
            str(spec.container_dir), str(world.netns)]
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
    cid, cdir, procs = spec.container_id, spec.container_dir, world.procs
    h = procs.adopt(cid, cdir, shim_pid=shim_pid, shim_start_time=shim_start)
    assert h == ProcessHandle(shim_pid, shim_start, pid, pid_start, cdir)
    # Start time unknown: found through <dir>/shim.pid and checked on its command line.
    assert procs.adopt(cid, cdir, shim_pid=None, shim_start_time=None) == h
    assert procs.adopt("t-other", cdir, shim_pid=None, shim_start_time=None) is None
    assert procs.adopt(cid, cdir, shim_pid=shim_pid, shim_start_time=shim_start + 1) is None
    waiter = asyncio.create_task(procs.wait_exit(h))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await log_until(spec.container_dir, "ready")
    os.kill(pid, signal.SIGUSR1)
    assert (await waiter).code == 3
    assert procs.adopt(cid, cdir, shim_pid=shim_pid, shim_start_time=shim_start) is None
    assert procs.adopt(cid, cdir, shim_pid=None, shim_start_time=None) is None
    assert world.leftovers(cid) == []


async def test_killed_shim_records_unknown_and_kills_command(world: World) -> None:
    spec = world.spec("sleep", "1000")
    h = await world.start(spec)
    assert procfs.send_signal(h.shim_pid, h.shim_start_time, signal.SIGKILL)
    status = await world.procs.wait_exit(h)
    assert status.code == EXIT_CODE_UNKNOWN
    assert read_exit_status(spec.container_dir) == status
    assert await until_gone(world, spec.container_id) == []
    assert not is_alive(h.pid, h.pid_start_time)


async def test_wait_exit_cancel_leaves_no_reader(world: World) -> None:
    h = await world.start(world.spec("sleep", "1000"))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(world.procs.wait_exit(h), 0.05)
    world.procs.kill(h)
    assert (await world.procs.wait_exit(h)).code == 137


@pytest.mark.parametrize(
    ("argv", "env", "hostname", "fields"),
    [
        ((), {}, "h", {}),
        (("a=b",), {}, "h", {}),
        (("true",), {"A=B": "1"}, "h", {}),
        (("true",), {}, "x" * 65, {}),
        (("true",), {}, "", {}),
        (("true",), {}, "h", {"capabilities": ("CAP_NO_SUCH",)}),
        (("true",), {}, "h", {"hidden_paths": (Path("relative"),)}),
    ],
)
async def test_invalid_spec(world: World, argv: tuple[str, ...], env: dict[str, str],
                            hostname: str, fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        await world.procs.start(world.spec(*argv, env=env, hostname=hostname, **fields))


@pytest.mark.parametrize("cid", ["../x", "..", "a/b", "", "-x", "x" * 129])
async def test_invalid_container_id(world: World, cid: str) -> None:
    spec = world.spec("true")
    with pytest.raises(InvalidArgument, match="container id"):
        await world.procs.start(ProcessSpec(cid, spec.argv, {}, "h", world.netns,
                                            spec.container_dir))


def test_read_exit_status(tmp_path: Path) -> None:
    assert read_exit_status(tmp_path) is None
    (tmp_path / "exit").write_text("137 1700000000000000000\n")
    assert read_exit_status(tmp_path) == ExitStatus(137, 1700000000000000000)
    # The supervisor renames a complete record into place: anything else is corrupt.
    for text in ("garbage\n", "13", "1 2 3\n", ""):
        (tmp_path / "exit").write_text(text)
        with pytest.raises(CorruptExitRecord):
            read_exit_status(tmp_path)
    assert issubclass(CorruptExitRecord, KernelError)


def test_process_identity() -> None:
    me = os.getpid()
    start_time = process_start_time(me)
    assert start_time and is_alive(me, start_time)
    assert not is_alive(me, start_time + 1)
    assert process_start_time(0) is None and not is_alive(0, 1)
    assert procfs.parent(me) == os.getppid()
