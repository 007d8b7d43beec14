"""Cgroup limits of real containers (ProcessSpec.resources through the bundle and runc):
what the container can do under them, and what its cgroup shows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sheep_runtime.model import ExecSpec, Resources
from sheep_runtime.process.limits import swap_limit_supported
from tests.kernel.test_process import World, cgroup_dirs, log_until, make_world
from tests.sandbox import CONTAINER_PYTHON

pytestmark = pytest.mark.kernel

MiB = 1024 * 1024



@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path)


FORKER = """
import errno, os, time
kids = []
try:
    for _ in range(50):
        pid = os.fork()
        if pid == 0:
            time.sleep(1000)
            os._exit(0)
        kids.append(pid)
    print("forked", len(kids), "none", flush=True)
except OSError as e:
    print("forked", len(kids), errno.errorcode[e.errno], flush=True)
time.sleep(1000)
"""


def cgroup_file(world: World, cid: str, name: str) -> str:
    """The content of the cgroup file `name` of container `cid` (in whichever
    hierarchy has it)."""
    for d in cgroup_dirs(f"{world.cgroup_parent}/{cid}"):
        if (d / name).exists():
            return (d / name).read_text().strip()
    raise AssertionError(f"no cgroup file {name} for {cid}")


async def test_pids_limit_stops_forks_at_the_limit(world: World) -> None:
    spec = world.spec(CONTAINER_PYTHON, "-c", FORKER, resources=Resources(pids_limit=10))
    h = await world.start(spec)
    log = await log_until(spec.container_dir, "forked")
    # The command itself is one of the 10 tasks; the 10th fork is refused.
    assert "forked 9 EAGAIN" in log, log
    usage = await world.procs.cgroup_usage(spec.container_id)
    assert usage is not None and (usage.pids_current, usage.pids_limit) == (10, 10)
    # An exec joins the same cgroup: it cannot fork either. Which task is refused
    # depends on timing: the shell's fork ("can't fork"), or a thread of runc's own
    # init in the cgroup (Go: "pthread_create failed: Resource temporarily unavailable").
    r = await world.procs.exec(spec.container_id, h.container_dir,
                               ExecSpec(("/bin/sh", "-c", "/bin/true; echo forked")))
    assert b"forked" not in r.stdout and r.exit_code != 0, r
    assert b"fork" in r.stderr or b"Resource temporarily unavailable" in r.stderr, r


async def test_memory_limit_is_in_the_cgroup_and_enforced(world: World) -> None:
    spec = world.spec(CONTAINER_PYTHON, "-c",
                      "import sys, time; print('ready', flush=True); "
                      "data = bytearray(int(sys.argv[1])); time.sleep(1000)", str(128 * MiB),
                      resources=Resources(memory_bytes=64 * MiB))
    h = await world.start(spec)
    status = await world.procs.wait_exit(h)
    assert status.code == 137  # the OOM killer: 128 MiB do not fit in 64
    assert "ready" in (spec.container_dir / "log").read_text()

    spec = world.spec("sleep", "1000", resources=Resources(memory_bytes=64 * MiB))
    await world.start(spec)
    usage = await world.procs.cgroup_usage(spec.container_id)
    assert usage is not None and usage.memory_limit_bytes == 64 * MiB
    assert 0 < usage.memory_usage_bytes < 64 * MiB
    assert int(cgroup_file(world, spec.container_id, "memory.limit_in_bytes")) == 64 * MiB
    if swap_limit_supported():  # no swap beyond the limit
        memsw = cgroup_file(world, spec.container_id, "memory.memsw.limit_in_bytes")
        assert int(memsw) == 64 * MiB


async def test_cpu_quota_is_in_the_cgroup(world: World) -> None:
    spec = world.spec("sleep", "1000", resources=Resources(cpus=0.5))
    await world.start(spec)
    assert cgroup_file(world, spec.container_id, "cpu.cfs_period_us") == "100000"
    assert cgroup_file(world, spec.container_id, "cpu.cfs_quota_us") == "50000"


async def test_no_limits_by_default(world: World) -> None:
    spec = world.spec("sleep", "1000")
    await world.start(spec)
    usage = await world.procs.cgroup_usage(spec.container_id)
    assert usage is not None and (usage.memory_limit_bytes, usage.pids_limit) == (0, 0)
    assert cgroup_file(world, spec.container_id, "cpu.cfs_quota_us") == "-1"
