"""sheepctl's lifecycle, logs, exec and stats commands as a user runs them, against a
real sheepd in a sandbox: docker's flags, outputs and exit statuses."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sheep_client
from sheep_client import SheepClient

from tests.clients.test_cli import ctl, is_id
from tests.sandbox import Sandbox

kernel = pytest.mark.kernel
RFC3339_NANO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"
NO_NET = ("--network-mode", "none")


def ctl_bytes(*argv: str, socket: Path | str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "sheep_client.cli", "--socket", str(socket),
                           *argv], capture_output=True, timeout=120, check=False)


def inspect(box: Sandbox, ref: str) -> dict[str, object]:
    r = ctl("inspect", ref, socket=box.socket)
    assert r.returncode == 0, r.stderr
    c: dict[str, object] = json.loads(r.stdout)
    return c


def run_d(box: Sandbox, *argv: str) -> str:
    r = ctl("run", "-d", *argv, socket=box.socket)
    assert r.returncode == 0 and is_id(r.stdout.strip()), r.stderr
    return r.stdout.strip()


def events_of(box: Sandbox, container_id: str, kind: str) -> list[str]:
    """The retained events `kind` of a container (replayed, so none is missed)."""
    with SheepClient(socket=str(box.socket), timeout=30) as api, api.watch_events(
            {"container": container_id, "type": kind}, since=1.0, duration=2) as events:
        return [e.type for e in events]


# -- run ------------------------------------------------------------------------------


@kernel
def test_run_flags_reach_the_daemon(box: Sandbox) -> None:
    run_d(box, "--name", "cfg", *NO_NET, "--restart", "on-failure:3", "--stop-signal",
          "SIGINT", "--stop-timeout", "7", "-m", "64m", "--cpus", "0.5", "--pids-limit",
          "50", "--log-opt", "max-size=1m", "--log-opt", "max-file=2",
          "-e", "MODE=demo", "--", "/bin/sleep", "300")
    c = inspect(box, "cfg")
    assert c["restart_policy"] == {"name": "on-failure", "max_retries": 3}
    assert (c["stop_signal"], c["stop_timeout_seconds"]) == ("SIGINT", 7)
    assert c["resources"] == {"memory_bytes": str(64 << 20), "cpus": 0.5, "pids_limit": "50"}
    assert c["log"] == {"max_bytes": "1000000", "max_files": 2}
    assert c["env"] == {"MODE": "demo"} and not c.get("auto_remove")


@kernel
def test_workdir_applies_on_the_hosts_view_too(box: Sandbox) -> None:
    r = ctl("run", *NO_NET, "-w", "/tmp", "--", "/bin/pwd", socket=box.socket)
    assert (r.returncode, r.stdout) == (0, "/tmp\n"), r.stderr


@kernel
def test_run_rm_removes_the_container_in_the_foreground_and_detached(box: Sandbox) -> None:
    r = ctl("run", "--rm", "--name", "once", *NO_NET, "--", "/bin/sh", "-c",
            "echo bye; exit 4", socket=box.socket)
    assert (r.returncode, r.stdout) == (4, "bye\n"), r.stderr
    assert ctl("ps", "-a", "-q", socket=box.socket).stdout == ""
    cid = run_d(box, "--rm", "--name", "later", *NO_NET, "--", "/bin/sleep", "300")
    assert inspect(box, "later")["auto_remove"] is True  # the daemon removes it
    stop = ctl("stop", "-t", "1", "later", socket=box.socket)
    assert events_of(box, cid, "container.removed") == ["container.removed"]
    assert ctl("ps", "-a", "-q", socket=box.socket).stdout == ""
    assert (stop.returncode, stop.stdout, stop.stderr) == (0, "later\n", "")  # as docker
    r = ctl("run", "--rm", "--restart", "always", "--", "/bin/true", socket=box.socket)
    assert (r.returncode, r.stderr) == (125, "sheepctl: conflicting options: --restart and "
                                             "--rm\n")


# -- start, stop, restart, wait, rm: several names each ------------------------------


@kernel
def test_lifecycle_commands_take_several_names(box: Sandbox) -> None:
    for name in ("a", "b"):
        run_d(box, "--name", name, *NO_NET, "--", "/bin/sleep", "300")
    r = ctl("stop", "-t", "1", "a", "b", socket=box.socket)
    assert (r.returncode, r.stdout) == (0, "a\nb\n"), r.stderr
    code = inspect(box, "a")["exit_code"]
    assert code in (137, 143)
    r = ctl("wait", "a", "b", socket=box.socket)
    assert (r.returncode, r.stdout) == (0, f"{code}\n{inspect(box, 'b')['exit_code']}\n")
    assert "Exited (" in ctl("ps", "-a", socket=box.socket).stdout

    r = ctl("start", "a", "b", socket=box.socket)
    assert (r.returncode, r.stdout) == (0, "a\nb\n"), r.stderr
    pid = inspect(box, "a")["pid"]
    assert inspect(box, "b")["state"] == "RUNNING"
    r = ctl("restart", "-t", "1", "a", socket=box.socket)
    assert (r.returncode, r.stdout) == (0, "a\n"), r.stderr
    c = inspect(box, "a")
    assert c["state"] == "RUNNING" and c["pid"] != pid

    r = ctl("stop", "-t", "1", "ghost", "b", socket=box.socket)  # goes on past an error
    assert (r.returncode, r.stdout) == (1, "b\n")
    assert r.stderr.startswith("sheepctl: NOT_FOUND: "), r.stderr
    r = ctl("rm", "a", socket=box.socket)
    assert r.returncode == 1 and r.stderr.startswith("sheepctl: FAILED_PRECONDITION: ")
    r = ctl("rm", "-f", "a", "ghost", "b", socket=box.socket)
    assert (r.returncode, r.stdout) == (1, "a\nb\n")
    assert ctl("ps", "-a", "-q", socket=box.socket).stdout == ""


@kernel
def test_wait_returns_when_the_container_exits(box: Sandbox) -> None:
    run_d(box, "--name", "brief", *NO_NET, "--", "/bin/sh", "-c", "sleep 1; exit 9")
    r = ctl("wait", "brief", socket=box.socket)
    assert (r.returncode, r.stdout) == (0, "9\n"), r.stderr
    r = ctl("wait", "ghost", socket=box.socket)
    assert r.returncode == 1 and r.stderr.startswith("sheepctl: NOT_FOUND: ")


# -- logs -----------------------------------------------------------------------------


@kernel
def test_logs_split_streams_with_tail_timestamps_and_times(box: Sandbox) -> None:
    run_d(box, "--name", "chat", *NO_NET, "--", "/bin/sh", "-c",
          r"echo one; echo two >&2; printf 'raw\377\000\n'; echo three")
    assert ctl("wait", "chat", socket=box.socket).stdout == "0\n"
    r = ctl_bytes("logs", "chat", socket=box.socket)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"one\nraw\xff\x00\nthree\n", b"two\n")
    # Only stdout: the order of lines across two pipes is the order the logger read them.
    run_d(box, "--name", "count", *NO_NET, "--", "/bin/sh", "-c",
          "for i in 1 2 3 4 5; do echo $i; done")
    assert ctl("wait", "count", socket=box.socket).stdout == "0\n"
    for tail, out in (("2", "4\n5\n"), ("0", ""), ("all", "1\n2\n3\n4\n5\n")):
        r = ctl("logs", "--tail", tail, "count", socket=box.socket)
        assert (r.returncode, r.stdout, r.stderr) == (0, out, ""), tail
    r = ctl_bytes("logs", "-t", "chat", socket=box.socket)
    lines = r.stdout.decode("latin-1").splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["one", "raw\xff\x00", "three"]
    assert all(re.match(rf"{RFC3339_NANO} ", line) for line in lines), lines
    assert re.fullmatch(rf"{RFC3339_NANO} two\n", r.stderr.decode()), r.stderr
    assert ctl_bytes("logs", "--since", "1h", "chat", socket=box.socket).stdout.count(b"\n") \
        == 3
    for window in (("--until", "2000-01-01T00:00:00Z"), ("--since=-1h",)):  # none in it
        r = ctl_bytes("logs", *window, "chat", socket=box.socket)
        assert (r.returncode, r.stdout, r.stderr) == (0, b"", b""), window
    r = ctl("logs", "ghost", socket=box.socket)
    assert r.returncode == 1 and r.stderr.startswith("sheepctl: NOT_FOUND: ")


@kernel
def test_logs_follow_ends_when_the_container_exits(box: Sandbox) -> None:
    run_d(box, "--name", "talker", *NO_NET, "--", "/bin/sh", "-c",
          "echo first; sleep 1; echo second")
    r = ctl("logs", "-f", "talker", socket=box.socket)
    assert (r.returncode, r.stdout) == (0, "first\nsecond\n"), r.stderr


# -- exec -----------------------------------------------------------------------------


@kernel
def test_exec_prints_the_output_and_returns_the_status(box: Sandbox) -> None:
    run_d(box, "--name", "box", *NO_NET, "--", "/bin/sleep", "300")
    r = ctl("exec", "box", "/bin/sh", "-c", "echo out; echo err >&2; exit 5",
            socket=box.socket)
    assert (r.returncode, r.stdout, r.stderr) == (5, "out\n", "err\n")
    r = ctl("exec", "-e", "A=1", "-w", "/tmp", "box", "/bin/sh", "-c", 'echo "$A"; pwd',
            socket=box.socket)
    assert (r.returncode, r.stdout) == (0, "1\n/tmp\n"), r.stderr
    assert ctl("exec", "box", "/nonexistent", socket=box.socket).returncode == 127
    assert ctl("exec", "box", "/etc/passwd", socket=box.socket).returncode == 126
    r = ctl("exec", "--timeout", "1", "box", "/bin/sleep", "30", socket=box.socket)
    assert r.returncode == 137 and "killed at its timeout (1s" in r.stderr, r.stderr
    r = ctl_bytes("exec", "box", "/bin/sh", "-c", "head -c 2000000 /dev/zero",
                  socket=box.socket)
    assert r.returncode == 0 and len(r.stdout) == 1 << 20
    assert b"sheepctl: exec: stdout truncated: only its first 1048576 bytes" in r.stderr
    r = ctl("exec", "ghost", "/bin/true", socket=box.socket)
    assert r.returncode == 125 and r.stderr.startswith("sheepctl: NOT_FOUND: ")  # docker's
    assert ctl("stop", "-t", "1", "box", socket=box.socket).returncode == 0
    r = ctl("exec", "box", "/bin/true", socket=box.socket)
    assert r.returncode == 125 and r.stderr.startswith("sheepctl: FAILED_PRECONDITION: ")


# -- stats, port, info, version, events ---------------------------------------------


@kernel
def test_stats_one_shot_json_and_stream(box: Sandbox) -> None:
    cid = run_d(box, "--name", "busy", "-m", "64m", "--", "/bin/sleep", "300")
    r = ctl("stats", socket=box.socket)
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.splitlines()
    assert re.split(r"\s{3,}", header) == ["CONTAINER ID", "NAME", "CPU TIME",
                                           "MEM USAGE / LIMIT", "MEM %", "NET I/O", "PIDS"]
    assert row.startswith(f"{cid[:12]}   busy ") and "/ 64MiB" in row, row
    [line] = ctl("stats", "--no-stream", "--format", "json", "busy",
                 socket=box.socket).stdout.splitlines()
    s = json.loads(line)
    assert (s["container_id"], s["name"], s["memory_limit_bytes"]) == \
        (cid, "busy", str(64 << 20))
    assert [i["interface_name"] for i in s["interfaces"]] == ["eth0"]
    r = ctl("stats", "busy", "ghost", socket=box.socket)
    assert r.returncode == 1 and "busy" in r.stdout and "NOT_FOUND" in r.stderr
    with subprocess.Popen([sys.executable, "-m", "sheep_client.cli", "--socket",
                           str(box.socket), "stats", "--stream", "--format", "json", "busy"],
                          stdout=subprocess.PIPE, text=True) as stream:
        assert stream.stdout is not None
        first = json.loads(stream.stdout.readline())
        stream.terminate()
    assert first["name"] == "busy" and "cpu_percent" in first  # from two samples


@kernel
def test_port_lists_each_published_port(box: Sandbox) -> None:
    run_d(box, "--name", "web", "-p", "8080-8081:80-81", "--", "/bin/sleep", "300")
    r = ctl("port", "web", socket=box.socket)
    assert r.stdout == "80/tcp -> 0.0.0.0:8080\n81/tcp -> 0.0.0.0:8081\n", r.stderr
    assert ctl("port", "web", "81/tcp", socket=box.socket).stdout == "0.0.0.0:8081\n"
    r = ctl("port", "web", "99", socket=box.socket)
    assert r.returncode == 1 and "no public port '99/tcp'" in r.stderr
    assert "0.0.0.0:8080-8081->80-81/tcp" in ctl("ps", socket=box.socket).stdout


@kernel
def test_info_and_version(box: Sandbox) -> None:
    run_d(box, "--name", "up", *NO_NET, "--", "/bin/sleep", "300")
    run_d(box, "--name", "down", *NO_NET, "--", "/bin/true")
    assert ctl("wait", "down", socket=box.socket).stdout == "0\n"
    i = json.loads(ctl("info", "--format", "json", socket=box.socket).stdout)
    assert (i["containers"], i["running"], i["exited"], i["images"], i["networks"]) == \
        (2, 1, 1, 0, 1)
    assert i["api_version"] == "v1" and i["backends"]
    text = ctl("info", socket=box.socket).stdout
    assert " Containers: 2\n  Running: 1\n  Exited: 1\n" in text and " Networks: 1\n" in text
    v = ctl("version", socket=box.socket)
    assert v.returncode == 0 and "Client:\n Version: " in v.stdout
    assert "Server:\n" in v.stdout and " API version: v1\n" in v.stdout
    v = json.loads(ctl("version", "--format", "json", socket=box.socket).stdout)
    assert (v["api_version"], v["client_version"]) == ("v1", sheep_client.__version__)


@kernel
def test_events_replay_since_and_stop_at_until(box: Sandbox) -> None:
    assert ctl("network", "create", "seen", "--subnet", "10.41.0.0/24",
               socket=box.socket).returncode == 0
    r = ctl("events", "--filter", "type=network.", "--since", "10m", "--until=-1s",
            socket=box.socket)
    assert r.returncode == 0, r.stderr
    assert re.search(rf"^{RFC3339_NANO} network created seen\b", r.stdout, re.M), r.stdout
    r = ctl("network", "rm", "seen", "ghost", socket=box.socket)
    assert (r.returncode, r.stdout) == (1, "seen\n")
