"""The plugin on its own, as a runtime runs it, with no sheepd anywhere: VERSION,
the spec's error object and codes, ADD failing fast and DEL queued when sheepd is
not reachable. No root needed."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sheep_runtime.cni.plugin import QUEUE_DIR, QUEUE_MAX, SUPPORTED_VERSIONS
from tests.cni.driver import Cni

CID = "3cafd4cca40ef4be34810c61616b784d0d5fa6b92863d977c8d767c8c74db067"
NETNS = "/run/netns/netns-8b554ae3-3fbb-d94a-53e7-3fd0bbf308ca"


@pytest.fixture
def cni(plugin: Path, tmp_path: Path) -> Cni:
    """A network whose sheepd socket does not exist."""
    return Cni(plugin, {"type": "sheep", "socket": str(tmp_path / "cni.sock"),
                        "stateDir": str(tmp_path / "state")})


def queued(tmp_path: Path) -> list[Path]:
    qdir = tmp_path / "state" / QUEUE_DIR
    return sorted(qdir.glob("*.json")) if qdir.is_dir() else []


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_version_answers_without_sheepd(cni: Cni, version: str) -> None:
    cni.version = version
    out = cni.version_probe()
    assert (out.status, out.stderr) == (0, "")
    assert out.json == {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}


def test_version_with_an_empty_stdin_reports_the_latest(cni: Cni) -> None:
    out = cni.exec("VERSION", stdin="")
    assert out.status == 0 and out.json["cniVersion"] == "1.1.0"


@pytest.mark.parametrize(("command", "missing"), [
    ("ADD", "CNI_CONTAINERID"), ("ADD", "CNI_NETNS"), ("ADD", "CNI_IFNAME"),
    ("DEL", "CNI_CONTAINERID"), ("DEL", "CNI_IFNAME"),
    ("CHECK", "CNI_CONTAINERID"), ("CHECK", "CNI_NETNS"), ("CHECK", "CNI_IFNAME")])
def test_a_missing_variable_is_code_4(cni: Cni, command: str, missing: str) -> None:
    env = {"CNI_CONTAINERID": CID, "CNI_NETNS": NETNS, "CNI_IFNAME": "eth0", missing: ""}
    out = cni.exec(command, cid=env["CNI_CONTAINERID"], netns=env["CNI_NETNS"],
                   ifname=env["CNI_IFNAME"])
    err = out.error()
    assert (err["code"], err["cniVersion"]) == (4, "1.0.0")
    assert missing in err["msg"] and err["details"] == f"INVALID_ARGUMENT: {missing}"
    assert out.stderr == ""  # the error is on stdout, where libcni reads it


@pytest.mark.parametrize(("env", "field"), [
    ({"CNI_COMMAND": ""}, "CNI_COMMAND"),
    ({"CNI_COMMAND": "FROB"}, "CNI_COMMAND"),
    ({"CNI_CONTAINERID": "-starts-with-a-dash"}, "CNI_CONTAINERID"),
    ({"CNI_CONTAINERID": "has/slash"}, "CNI_CONTAINERID"),
    ({"CNI_IFNAME": "a-name-of-16-chr"}, "CNI_IFNAME"),
    ({"CNI_IFNAME": "eth:0"}, "CNI_IFNAME"),
    ({"CNI_IFNAME": ".."}, "CNI_IFNAME"),
    ({"CNI_NETNS": "relative/netns"}, "CNI_NETNS")])
def test_an_invalid_variable_is_code_4(cni: Cni, env: dict[str, str], field: str) -> None:
    err = cni.exec("ADD", cid=CID, netns=NETNS, ifname="eth0", env=env).error()
    assert err["code"] == 4 and err["details"] == f"INVALID_ARGUMENT: {field}"


def test_a_config_that_is_not_json_is_code_6(cni: Cni) -> None:
    err = cni.exec("ADD", cid=CID, netns=NETNS, ifname="eth0", stdin='{"cniVersion":').error()
    assert err["code"] == 6 and "not JSON" in err["msg"]


@pytest.mark.parametrize(("change", "field"), [
    ({"name": ""}, "name"), ({"socket": 7}, "socket"), ({"network": ""}, "network"),
    ({"stateDir": ["x"]}, "stateDir")])
def test_an_invalid_config_is_code_7(cni: Cni, change: dict[str, object], field: str) -> None:
    err = cni.exec("ADD", cid=CID, netns=NETNS, ifname="eth0",
                   conf={**cni.config(), **change}).error()
    assert err["code"] == 7 and err["details"] == f"INVALID_ARGUMENT: {field}"


def test_a_config_that_is_not_an_object_is_code_7(cni: Cni) -> None:
    err = cni.exec("ADD", cid=CID, netns=NETNS, ifname="eth0", stdin="[1, 2]").error()
    assert err["code"] == 7


@pytest.mark.parametrize(("command", "version"), [
    ("ADD", "0.2.0"), ("ADD", "2.0.0"), ("CHECK", "0.3.1"), ("GC", "1.0.0"),
    ("STATUS", "0.4.0")])
def test_a_version_without_the_command_is_code_1(cni: Cni, command: str,
                                                 version: str) -> None:
    cni.version = version
    err = cni.exec(command, cid=CID, netns=NETNS, ifname="eth0").error()
    assert (err["code"], err["cniVersion"]) == (1, version)


def test_add_without_sheepd_fails_fast_with_code_11(cni: Cni, tmp_path: Path) -> None:
    out = cni.add(CID, NETNS)
    err = out.error()
    assert err["code"] == 11 and err["details"] == "UNAVAILABLE"
    assert str(tmp_path / "cni.sock") in err["msg"]
    assert queued(tmp_path) == []


def test_a_socket_nobody_listens_on_is_unreachable_too(cni: Cni, tmp_path: Path) -> None:
    # What a killed sheepd leaves: the socket file, with no listener behind it.
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "cni.sock"))
    s.close()
    assert cni.add(CID, NETNS).error()["code"] == 11
    assert cni.delete(CID, NETNS).status == 0
    assert len(queued(tmp_path)) == 1


def test_status_without_sheepd_is_code_50(cni: Cni) -> None:
    cni.version = "1.1.0"
    assert cni.status().error()["code"] == 50


def test_unknown_config_keys_are_ignored(cni: Cni) -> None:
    conf = cni.config(extra={"sheepSocket": "/elsewhere", "ipam": {"type": "host-local"},
                             "args": {"x": 1}})
    # Not a config error: the call got as far as trying sheepd.
    assert cni.exec("ADD", cid=CID, netns=NETNS, ifname="eth0", conf=conf).error()["code"] == 11


def test_del_without_sheepd_is_queued_and_succeeds(cni: Cni, tmp_path: Path) -> None:
    out = cni.delete(CID, NETNS)
    assert (out.status, out.stdout, out.stderr) == (0, "", "")
    (entry,) = queued(tmp_path)
    request = json.loads(entry.read_text())
    assert request["v"] == 1
    assert request["env"] == {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": CID, "CNI_NETNS": NETNS,
                              "CNI_IFNAME": "eth0", "CNI_ARGS": "IgnoreUnknown=1",
                              "CNI_PATH": str(cni.plugin.parent)}
    assert request["config"] == cni.config()
    qdir = entry.parent
    assert stat.S_IMODE(qdir.stat().st_mode) == 0o700
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert not list(qdir.glob(".tmp-*"))


def test_del_of_a_gone_netns_is_queued_too(cni: Cni, tmp_path: Path) -> None:
    assert cni.delete(CID, "").status == 0
    (entry,) = queued(tmp_path)
    assert json.loads(entry.read_text())["env"]["CNI_NETNS"] == ""


def test_repeated_dels_of_one_key_queue_once(cni: Cni, tmp_path: Path) -> None:
    for _ in range(3):
        assert cni.delete(CID, NETNS).status == 0
    assert cni.delete(CID, NETNS, ifname="net1").status == 0
    assert len(queued(tmp_path)) == 2


def test_the_queue_is_bounded(cni: Cni, tmp_path: Path) -> None:
    qdir = tmp_path / "state" / QUEUE_DIR
    qdir.mkdir(parents=True)
    for i in range(QUEUE_MAX):
        (qdir / f"{i:019d}-{i:016x}.json").write_text("{}")
    err = cni.delete(CID, NETNS).error()
    assert err["code"] == 11 and err["details"] == "UNAVAILABLE: DEL_QUEUE_FULL"
    assert len(queued(tmp_path)) == QUEUE_MAX


def test_del_waits_for_a_draining_sheepd(cni: Cni, tmp_path: Path) -> None:
    """While sheepd holds the queue lock (it drains), a DEL waits rather than queue
    behind its back; it queues once the lock is free."""
    qdir = tmp_path / "state" / QUEUE_DIR
    qdir.mkdir(parents=True)
    lock = qdir / ".lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    env = {**os.environ, "CNI_COMMAND": "DEL", "CNI_CONTAINERID": CID, "CNI_IFNAME": "eth0"}
    p = subprocess.Popen([str(cni.plugin)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         env=env, text=True)
    try:
        assert p.stdin is not None
        p.stdin.write(json.dumps(cni.config()))
        p.stdin.close()
        wait_until(lambda: holds_open(p.pid, lock))  # it is past connect, at the lock
        assert p.poll() is None and queued(tmp_path) == []
    finally:
        os.close(fd)  # the drain is over
    assert p.wait(timeout=15) == 0
    assert p.stdout is not None
    with p.stdout:
        assert p.stdout.read() == ""
    assert len(queued(tmp_path)) == 1


def holds_open(pid: int, path: Path) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fd) == str(path) for fd in fds.iterdir())
    except FileNotFoundError:  # an fd closed while we looked
        return False


def wait_until(cond: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out (hang guard)"
        time.sleep(0.01)
