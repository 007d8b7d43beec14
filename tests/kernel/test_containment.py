"""A hostile container against the process backend: what it must not be able to do.

The daemon's dirs are played by a "state dir" holding a file and a "run dir" holding a
listening unix socket and a pinned netns, both hidden; a visible sibling dir holds the
same kinds of things as a control (so a passing test cannot mean "nothing was there").
They live under the repository, not /tmp: the container has a tmpfs of its own on /tmp,
which would hide them whatever the backend did.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sheep_runtime.model import DEFAULT_CAPABILITIES
from sheep_runtime.netlink import create_pinned_netns, delete_pinned_netns
from sheep_runtime.process import capabilities, procfs
from sheep_runtime.process.bundle import DEFAULT_PATH
from tests.kernel.test_process import World, log_until, make_world
from tests.logtext import log_text
from tests.sandbox import CONTAINER_PYTHON

pytestmark = pytest.mark.kernel

# Runs inside the container; prints one JSON line. An attempt gives "ok" or the errno.
PROBE = r"""
import ctypes, errno, json, os, socket, subprocess, sys
paths, hostile = json.loads(sys.argv[1]), sys.argv[2] == "hostile"
libc = ctypes.CDLL(None, use_errno=True)
out = {}

def check(ret):
    if ret != 0:
        raise OSError(ctypes.get_errno(), "call failed")

def attempt(name, fn):
    try:
        fn()
        out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))

def connect(path):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)

def setns(path):
    fd = os.open(path, os.O_RDONLY)
    check(libc.setns(fd, 0x40000000))

def run(*argv):
    return subprocess.run(argv, capture_output=True).returncode

status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines()
              if ":\t" in line)
for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"):
    out[key] = status[key].strip()
attempt("read_visible", lambda: open(paths["visible"] + "/file").read())
attempt("read_state", lambda: open(paths["state"] + "/sheep.db").read())
attempt("connect_visible", lambda: connect(paths["visible"] + "/ctl.sock"))
attempt("connect_api", lambda: connect(paths["run"] + "/api.sock"))
attempt("open_run_pin", lambda: os.close(os.open(paths["run"] + "/netns/pin", os.O_RDONLY)))
out["run_dir"] = os.listdir(paths["run"])
out["mounts_below_run"] = [line.split()[4] for line in open("/proc/self/mountinfo")
                           if line.split()[4].startswith(paths["run"])]
out["ip_link_set"] = run("ip", "link", "set", "lo", "up")
if hostile:
    attempt("write_visible", lambda: open(paths["visible"] + "/new", "w"))
    attempt("write_etc", lambda: open("/etc/sheep-containment-test", "w"))
    attempt("write_tmp", lambda: open("/tmp/mine", "w").close())
    attempt("setns_host_pin", lambda: setns(paths["host_pin"]))
    attempt("setns_proc1", lambda: setns("/proc/1/ns/net"))
    out["nsenter"] = run("nsenter", "--net=" + paths["host_pin"], "true")
    attempt("init_module", lambda: check(libc.init_module(None, 0, b"")))
    attempt("delete_module", lambda: check(libc.delete_module(b"dummy", 0)))
    attempt("mount", lambda: check(libc.mount(b"none", b"/mnt", b"tmpfs", 0, None)))
    attempt("ambient_sys_admin", lambda: check(libc.prctl(47, 2, 21, 0, 0)))
    out["setpriv"] = run("setpriv", "--inh-caps", "+sys_admin", "--ambient-caps",
                         "+sys_admin", "true")
print("PROBE " + json.dumps(out), flush=True)
"""

PRELOAD_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void mark(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/loaded-%d", MARK_DIR, (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    if (fd >= 0) close(fd);
    dprintf(2, "preloaded into pid %d\n", (int)getpid());
}
"""


@dataclass
class Daemon:
    """The daemon's dirs and things in them, and a visible control dir."""

    base: Path
    state: Path
    run: Path
    visible: Path
    host_pin: Path

    @property
    def hidden(self) -> tuple[Path, ...]:
        return (self.state, self.run)

    def paths(self) -> str:
        return json.dumps({k: str(getattr(self, k)) for k in
                           ("state", "run", "visible", "host_pin")})


def listen(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.listen(8)
    return s


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path)


@pytest.fixture
def daemon(world: World) -> Iterator[Daemon]:
    # Not under /tmp (the container's private /tmp would hide it and prove nothing).
    base = Path(tempfile.mkdtemp(prefix="sbx-containment-", dir="/var/tmp"))
    d = Daemon(base, base / "state", base / "run", base / "visible", world.netns)
    sockets: list[socket.socket] = []
    try:
        for sub in (d.state, d.run / "netns", d.visible):
            sub.mkdir(parents=True)
        (d.state / "sheep.db").write_text("secret")
        (d.visible / "file").write_text("public")
        sockets = [listen(d.run / "api.sock"), listen(d.visible / "ctl.sock")]
        create_pinned_netns(d.run / "netns" / "pin")
        yield d
    finally:
        for s in sockets:
            s.close()
        if (d.run / "netns" / "pin").exists():
            delete_pinned_netns(d.run / "netns" / "pin")
        shutil.rmtree(base, ignore_errors=True)


async def probe(world: World, daemon: Daemon, *, hostile: bool = True,
                **fields: Any) -> dict[str, Any]:
    spec = world.spec(CONTAINER_PYTHON, "-c", PROBE, daemon.paths(),
                      "hostile" if hostile else "tame", hidden_paths=daemon.hidden, **fields)
    status = await world.procs.wait_exit(await world.start(spec))
    log = log_text(spec.container_dir / "log")
    assert status.code == 0, log
    (line,) = [x for x in log.splitlines() if x.startswith("PROBE ")]
    result: dict[str, Any] = json.loads(line.removeprefix("PROBE "))
    return result


def mask(names: tuple[str, ...] | list[str]) -> str:
    return f"{capabilities.to_mask(names):016x}"


def assert_daemon_hidden(r: dict[str, Any], daemon: Daemon) -> None:
    assert r["read_visible"] == "ok" and r["connect_visible"] == "ok"  # the controls
    assert r["read_state"] == "ENOENT"
    assert r["connect_api"] == "ENOENT"  # a read-only mount would not stop connect()
    assert r["open_run_pin"] == "ENOENT"
    assert r["run_dir"] == []
    # Only the mask: the copy of the netns pin was unmounted, not just covered (it would
    # keep that netns alive after the daemon unpinned it).
    assert r["mounts_below_run"] == [str(daemon.run)]


async def test_default_container_is_contained(world: World, daemon: Daemon) -> None:
    r = await probe(world, daemon)
    assert_daemon_hidden(r, daemon)
    assert r["write_visible"] == "EROFS" and r["write_etc"] == "EROFS"
    assert r["write_tmp"] == "ok"  # its own tmpfs
    assert not (daemon.visible / "new").exists()
    assert not Path("/tmp/mine").exists()
    assert r["setns_host_pin"] == "EPERM" and r["setns_proc1"] == "EPERM"
    assert r["nsenter"] != 0
    assert r["init_module"] == "EPERM" and r["delete_module"] == "EPERM"
    assert r["mount"] == "EPERM"
    assert r["ip_link_set"] != 0  # no CAP_NET_ADMIN
    default = mask(DEFAULT_CAPABILITIES)
    assert (r["CapEff"], r["CapPrm"], r["CapBnd"]) == (default, default, default)
    assert r["CapInh"] == r["CapAmb"] == "0" * 16
    assert r["ambient_sys_admin"] == "EPERM" and r["setpriv"] != 0
    assert r["NoNewPrivs"] == "1" and r["Seccomp"] == "2"


async def test_privileged_gets_every_capability_but_not_the_daemon(
        world: World, daemon: Daemon) -> None:
    r = await probe(world, daemon, hostile=False, privileged=True, capabilities=())
    assert_daemon_hidden(r, daemon)
    full = mask(capabilities.bounding_set())
    assert (r["CapEff"], r["CapPrm"], r["CapBnd"]) == (full, full, full)
    assert r["CapAmb"] == "0" * 16
    assert r["NoNewPrivs"] == "0" and r["Seccomp"] == "0"
    assert r["ip_link_set"] == 0


async def test_added_capability_is_exactly_added(world: World, daemon: Daemon) -> None:
    caps = (*DEFAULT_CAPABILITIES, "CAP_NET_ADMIN")
    r = await probe(world, daemon, hostile=False, capabilities=caps)
    assert_daemon_hidden(r, daemon)
    assert r["CapEff"] == r["CapBnd"] == mask(caps)
    assert r["Seccomp"] == "2"
    assert r["ip_link_set"] == 0  # in the container's own (throwaway) netns


async def test_request_env_reaches_only_the_container(
        world: World, daemon: Daemon) -> None:
    marks = daemon.base / "marks"  # visible in the container, but read-only there
    marks.mkdir()
    lib = daemon.visible / "mark.so"
    src = world.tmp / "mark.c"
    src.write_text(PRELOAD_C)
    subprocess.run(["gcc", "-shared", "-fPIC", f'-DMARK_DIR="{marks}"', "-o", str(lib),
                    str(src)], check=True)
    spec = world.spec("/bin/sh", "-c", "trap 'exit 0' USR1; echo ran; sleep 1000 & wait",
                      env={"LD_PRELOAD": str(lib)}, hidden_paths=daemon.hidden)
    h = await world.start(spec)
    await log_until(spec.container_dir, "ran\n")
    runc = procfs.parent(h.pid)
    assert runc is not None
    for pid in (h.shim_pid, runc):  # the supervisor, and runc its child (sh adds PWD)
        assert environ(pid) == {"PATH": DEFAULT_PATH, "PWD": "/"}, pid
    os.kill(h.pid, signal.SIGUSR1)
    assert (await world.procs.wait_exit(h)).code == 0
    log = log_text(spec.container_dir / "log")
    assert "preloaded into pid 1\n" in log  # it did reach the container
    assert list(marks.iterdir()) == []  # ... and nothing outside it


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode()
    return dict(e.split("=", 1) for e in raw.split("\0") if e)
