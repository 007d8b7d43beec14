"""Container logs through the process backend: runc containers under their shim, their
output logged by their logger, read back with `OciProcesses.read_logs`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sheep_runtime.model import LogConfig, LogQuery, LogRecord
from sheep_runtime.process import procfs
from sheep_runtime.process.spawn import LOGGER_PATH
from tests.kernel.test_process import World, make_world, until_gone
from tests.sandbox import CONTAINER_PYTHON

pytestmark = pytest.mark.kernel


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path)


async def collect(world: World, cdir: Path, query: LogQuery) -> list[LogRecord]:
    async with asyncio.timeout(30):
        return [r async for r in world.procs.read_logs(cdir, query)]


def log_sizes(directory: Path) -> list[int]:
    """The sizes of the log files (one that the logger rotates away meanwhile is left
    out: it is counted under its new name, or was dropped)."""
    sizes = []
    for p in directory.glob("log*"):
        with contextlib.suppress(FileNotFoundError):
            sizes.append(p.stat().st_size)
    return sizes


def loggers_of(cdir: Path) -> list[int]:
    """Live logger processes of the container dir `cdir`."""
    found = []
    for entry in os.listdir("/proc"):
        argv = procfs.cmdline(int(entry)) if entry.isdigit() else []
        if argv[1:5] == ["-I", "-S", str(LOGGER_PATH), str(cdir)]:  # not its shim
            start = procfs.process_start_time(int(entry))
            if start and procfs.is_alive(int(entry), start):
                found.append(int(entry))
    return found


async def test_stdout_and_stderr_are_marked_and_complete_at_the_exit(world: World) -> None:
    spec = world.spec("/bin/sh", "-c", "echo one; echo two >&2; printf three; exit 4")
    before = time.time_ns()
    assert (await world.procs.wait_exit(await world.start(spec))).code == 4
    # The exit record comes after the logger wrote everything: no waiting for it.
    got = await collect(world, spec.container_dir, LogQuery())
    assert sorted((r.stream, r.data, r.partial) for r in got) == [
        ("stderr", b"two\n", False), ("stdout", b"one\n", False), ("stdout", b"three", True)]
    assert all(before < r.time_ns < time.time_ns() for r in got)
    assert loggers_of(spec.container_dir) == []
    assert [r.data for r in await collect(world, spec.container_dir, LogQuery(
        streams=frozenset({"stdout"}), tail=1))] == [b"three"]


async def test_a_chatty_container_stays_within_its_log_limits(world: World) -> None:
    limits = LogConfig(max_bytes=4096, max_files=3)
    script = "import sys\nfor i in range(20000): print(f'line {i:05d}', flush=i % 7 == 0)"
    spec = world.spec(CONTAINER_PYTHON, "-c", script, log=limits)
    h = await world.start(spec)
    waiter = asyncio.ensure_future(world.procs.wait_exit(h))
    cap = limits.max_bytes * limits.max_files
    while not waiter.done():  # while it writes, too
        sizes = log_sizes(spec.container_dir)
        assert len(sizes) <= limits.max_files and sum(sizes) <= cap, sizes
        await asyncio.sleep(0.005)
    assert (await waiter).code == 0
    names = sorted(p.name for p in spec.container_dir.glob("log*"))
    assert names == ["log", "log.1", "log.2"]
    assert all(0 < (spec.container_dir / n).stat().st_size <= 4096 for n in names)
    got = [r.data for r in await collect(world, spec.container_dir, LogQuery())]
    assert got[-1] == b"line 19999\n" and len(got) > 2 * 4096 // 60
    assert got == [b"line %05d\n" % i for i in range(20000 - len(got), 20000)]


async def test_follow_of_a_running_container(world: World) -> None:
    spec = world.spec("/bin/sh", "-c", "echo ready; trap 'echo bye; exit 0' USR1; "
                      "while :; do sleep 0.05; done")
    h = await world.start(spec)
    stream = world.procs.read_logs(spec.container_dir, LogQuery(follow=True))
    async with asyncio.timeout(30):
        assert (await anext(stream)).data == b"ready\n"
        reader = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.2)
        assert not reader.done()  # nothing more yet: it waits
        os.kill(h.pid, signal.SIGUSR1)
        assert (await reader).data == b"bye\n"
        assert [r async for r in stream] == []  # the exit record ends it
    assert (await world.procs.wait_exit(h)).code == 0


async def test_the_logger_ends_when_a_killed_shims_container_is_gone(world: World) -> None:
    spec = world.spec("/bin/sh", "-c", "echo up; exec sleep 1000")
    h = await world.start(spec)
    stream = world.procs.read_logs(spec.container_dir, LogQuery(follow=True))
    async with asyncio.timeout(30):
        assert (await anext(stream)).data == b"up\n"  # the logger runs
    await stream.aclose()
    (logger,) = loggers_of(spec.container_dir)
    assert os.getpriority(os.PRIO_PROCESS, logger) == 0  # niced only while it started
    assert procfs.send_signal(h.shim_pid, h.shim_start_time, signal.SIGKILL)
    await world.procs.wait_exit(h)  # kills the command: nothing writes to the fifos
    assert await until_gone(world, spec.container_id) == []
    deadline = time.monotonic() + 10
    while loggers_of(spec.container_dir) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert loggers_of(spec.container_dir) == []
