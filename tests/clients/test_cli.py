"""sheepctl as a user runs it (a process; its stdout, stderr and exit status), against a
real sheepd in a sandbox: `run -d` prints only the id, listings take -q and --format
json, exit statuses are docker's, an unreachable daemon gets a clear message. The
lifecycle, logs, exec and stats commands: tests/clients/test_cli_lifecycle.py."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sheep_client
from sheep_client import SheepClient
from sheep_client.cli import build_parser

from tests.images.builders import BUSYBOX, busybox_entries, rootfs_tarball
from tests.sandbox import REPO, Sandbox

kernel = pytest.mark.kernel
HEX = set("0123456789abcdef")


def ctl(*argv: str, socket: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sheep_client.cli", "--socket", str(socket),
                           *argv], capture_output=True, text=True, timeout=120, check=False)


def is_id(text: str, length: int = 64) -> bool:
    return len(text) == length and set(text) <= HEX


# -- without a daemon -----------------------------------------------------------------


def _parsers(p: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = [p]
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out += _parsers(sub)
    return out


def test_every_flag_and_argument_has_help() -> None:
    missing = [f"{p.prog}: {a.option_strings or a.dest}"
               for p in _parsers(build_parser()) for a in p._actions
               if not isinstance(a, argparse._SubParsersAction) and not a.help]
    assert missing == []
    for p in _parsers(build_parser()):
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                assert all(choice.help for choice in a._choices_actions), p.prog


def test_version_flag_prints_the_client_version() -> None:
    r = ctl("--version", socket="/nonexistent.sock")
    assert (r.returncode, r.stdout) == (0, f"sheepctl {sheep_client.__version__}\n")


def test_unreachable_daemon_gets_a_clear_message(tmp_path: Path) -> None:
    sock = tmp_path / "sheep.sock"
    message = (f"sheepctl: cannot reach sheepd at {sock}: is it running? "
               "(sudo systemctl start sheepd)\n")
    r = ctl("ps", socket=sock)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", message)
    r = ctl("run", "-d", "--", "/bin/true", socket=sock)
    assert (r.returncode, r.stdout, r.stderr) == (125, "", message)  # docker: 125


def test_usage_errors_exit_125_as_docker(tmp_path: Path) -> None:
    r = ctl("ps", "--format", "yaml", socket=tmp_path / "s")
    assert r.returncode == 125 and "invalid choice" in r.stderr
    r = ctl("events", "--filter", "no-equals", socket=tmp_path / "s")
    assert r.returncode == 125 and "bad filter 'no-equals': use KEY=VALUE" in r.stderr
    r = ctl("run", "--memory", "lots", "--", "/bin/true", socket=tmp_path / "s")
    assert r.returncode == 125 and "bad memory size 'lots'" in r.stderr


# -- against sheepd -------------------------------------------------------------------


@kernel
def test_run_detached_prints_only_the_id(box: Sandbox) -> None:
    r = ctl("run", "-d", "--name", "web", "--", "/bin/sleep", "300", socket=box.socket)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    cid = r.stdout.removesuffix("\n")
    assert is_id(cid), r.stdout  # so that id=$(sheepctl run -d ...) works
    c = json.loads(ctl("inspect", cid, socket=box.socket).stdout)
    assert (c["id"], c["name"], c["state"]) == (cid, "web", "RUNNING")


@kernel
def test_listings_quiet_and_json(box: Sandbox) -> None:
    ids = [ctl("run", "-d", "--name", f"c{i}", "--", "/bin/sleep", "300",
               socket=box.socket).stdout.strip() for i in range(2)]
    r = ctl("ps", "-q", socket=box.socket)
    assert r.returncode == 0 and sorted(r.stdout.split()) == sorted(i[:12] for i in ids)
    rows = [json.loads(line) for line in ctl("ps", "--format", "json",
                                             socket=box.socket).stdout.splitlines()]
    assert sorted((c["id"], c["name"], c["state"]) for c in rows) == \
        sorted(zip(ids, ("c0", "c1"), ("RUNNING",) * 2, strict=True))
    table = ctl("ps", socket=box.socket).stdout.splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                "ADDRESSES", "PORTS", "NAMES"] and len(table) == 3
    row = next(line for line in table if line.startswith(ids[0][:12]))
    assert '"/bin/sleep 300"' in row and " Up " in row and row.endswith("c0"), row

    assert ctl("network", "create", "backend", "--subnet", "10.30.0.0/24",
               socket=box.socket).returncode == 0
    nets = [json.loads(line) for line in ctl("network", "ls", "--format", "json",
                                             socket=box.socket).stdout.splitlines()]
    assert sorted(n["name"] for n in nets) == ["backend", "sheep0"]
    quiet = ctl("network", "ls", "-q", socket=box.socket).stdout.split()
    assert sorted(quiet) == sorted(n["id"][:12] for n in nets)


@kernel
def test_a_command_not_found_or_not_executable_is_127_or_126(box: Sandbox) -> None:
    for command, status, why in (("/nonexistent", 127, "not found"),
                                 ("/etc/passwd", 126, "not executable")):
        r = ctl("run", "-d", "--name", f"bad{status}", "--", command, socket=box.socket)
        assert (r.returncode, r.stdout) == (status, ""), r.stderr
        assert f"{command}: {why} in the container (exit {status})" in r.stderr
        c = json.loads(ctl("inspect", f"bad{status}", socket=box.socket).stdout)
        assert (c["state"], c["exit_code"]) == ("EXITED", status)
        # In the foreground too.
        r = ctl("run", "--network-mode", "none", "--", command, socket=box.socket)
        assert r.returncode == status and why in r.stderr, r.stderr


@kernel
def test_run_in_the_foreground_streams_the_output_and_returns_the_status(
        box: Sandbox) -> None:
    r = ctl("run", "--name", "fg", "--network-mode", "none", "--", "/bin/sh", "-c",
            "echo out; echo err >&2; exit 7", socket=box.socket)
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n")
    assert json.loads(ctl("inspect", "fg", socket=box.socket).stdout)["state"] == "EXITED"
    r = ctl("run", "-d", "--network-mode", "none", "--", "/bin/sh", "-c", "exit 3",
            socket=box.socket)
    assert r.returncode == 0 and is_id(r.stdout.strip()), r.stderr  # -d: docker's 0


@kernel
def test_daemon_errors_exit_125_from_run_and_1_otherwise(box: Sandbox) -> None:
    assert ctl("run", "-d", "--name", "dup", "--", "/bin/sleep", "300",
               socket=box.socket).returncode == 0
    r = ctl("run", "-d", "--name", "dup", "--", "/bin/sleep", "300", socket=box.socket)
    assert r.returncode == 125 and r.stderr.startswith("sheepctl: ALREADY_EXISTS: "), r.stderr
    r = ctl("run", "-d", "-p", "bogus", "--", "/bin/true", socket=box.socket)
    assert r.returncode == 125 and "bad port spec 'bogus'" in r.stderr
    r = ctl("rm", "dup", socket=box.socket)
    assert r.returncode == 1 and r.stderr.startswith("sheepctl: FAILED_PRECONDITION: ")
    r = ctl("inspect", "ghost", socket=box.socket)
    assert (r.returncode, r.stderr) == (1, "sheepctl: NOT_FOUND: no container with id or "
                                            "name 'ghost'\n")


@kernel
def test_unknown_event_filter_fails_with_the_daemon_message(box: Sandbox) -> None:
    r = ctl("events", "--filter", "bogus=1", socket=box.socket)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith(
        "sheepctl: INVALID_ARGUMENT: unknown event filter 'bogus'"), r.stderr


@kernel
def test_privileged_and_cap_add_reach_the_daemon(box: Sandbox) -> None:
    r = ctl("run", "-d", "--name", "netadmin", "--cap-add", "NET_ADMIN", "--", "/bin/sleep",
            "300", socket=box.socket)
    assert r.returncode == 0, r.stderr
    c = json.loads(ctl("inspect", "netadmin", socket=box.socket).stdout)
    assert "CAP_NET_ADMIN" in c["capabilities"] and not c.get("privileged")
    r = ctl("run", "-d", "--name", "root", "--privileged", "--", "/bin/sleep", "300",
            socket=box.socket)
    assert r.returncode == 0, r.stderr
    c = json.loads(ctl("inspect", "root", socket=box.socket).stdout)
    assert c["privileged"] is True and "CAP_SYS_ADMIN" in c["capabilities"]


@kernel
def test_tour_commands(box: Sandbox) -> None:
    cid = ctl("run", "-d", "--name", "cli", "--", "/bin/sleep", "300",
              socket=box.socket).stdout.strip()
    assert ctl("network", "create", "clinet", "--subnet", "10.34.0.0/24",
               socket=box.socket).returncode == 0
    r = ctl("network", "connect", "clinet", "cli", "--ip", "10.34.0.9", socket=box.socket)
    assert r.stdout == "eth1\t10.34.0.9/24\n", r.stderr
    assert ctl("network", "disconnect", "clinet", "cli", socket=box.socket).returncode == 0
    assert ctl("network", "rm", "clinet", socket=box.socket).returncode == 0
    r = ctl("stop", "-t", "1", "cli", socket=box.socket)
    assert (r.returncode, r.stdout) == (0, "cli\n"), r.stderr  # docker echoes the names
    r = ctl("rm", cid[:12], socket=box.socket)
    assert (r.returncode, r.stdout) == (0, f"{cid[:12]}\n"), r.stderr
    assert ctl("ps", "-a", "-q", socket=box.socket).stdout == ""



def watchers(box: Sandbox) -> float:
    """How many WatchEvents calls the daemon has started."""
    m = re.search(r'^grpc_server_started_total\{[^}]*grpc_method="WatchEvents"[^}]*\} '
                  r'([0-9.]+)$', box.metrics(), flags=re.M)
    return float(m[1]) if m else 0.0


@kernel
def test_events_stream_as_json_lines(box: Sandbox) -> None:
    with subprocess.Popen([sys.executable, "-m", "sheep_client.cli", "--socket", str(box.socket),
                           "events", "--filter", "type=network.", "--format", "json"],
                          stdout=subprocess.PIPE, text=True) as events:
        assert events.stdout is not None
        while watchers(box) < 1:  # until the daemon serves the stream
            assert events.poll() is None
            time.sleep(0.05)
        assert ctl("network", "create", "watched", "--subnet", "10.40.0.0/24",
                   socket=box.socket).returncode == 0
        first = json.loads(events.stdout.readline())
        events.terminate()
    assert (first["type"], first["network"]) == ("network.created", "watched")
    assert isinstance(first["id"], str)  # uint64, as proto JSON writes it


# -- images, roots and DNS aliases ---------------------------------------------------


@pytest.fixture
def minimal(tmp_path: Path) -> Path:
    """A `minimal` rootfs tarball: Debian's busybox-static and its applet links."""
    return rootfs_tarball(tmp_path / "minimal.tar", busybox_entries())


@pytest.fixture
def tidy(box: Sandbox) -> Iterator[Sandbox]:
    """The sandbox, whose containers are removed through its daemon after the test: a
    daemon that is just killed leaves their overlay roots mounted."""
    yield box
    with SheepClient(socket=str(box.socket), timeout=30) as api:
        for c in api.list_containers(all=True):
            api.remove_container(c.id, force=True)


@kernel
@pytest.mark.usefixtures("tidy")
def test_images_import_list_run_and_rmi(box: Sandbox, minimal: Path) -> None:
    r = ctl("image", "import", "minimal", str(minimal), socket=box.socket)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    image_id = r.stdout.removesuffix("\n")
    assert image_id.startswith("sha256:") and is_id(image_id[7:]), r.stdout
    assert ctl("images", "-q", socket=box.socket).stdout == f"{image_id[7:19]}\n"
    [row] = [json.loads(line) for line in ctl("images", "--format", "json",
                                              socket=box.socket).stdout.splitlines()]
    assert (row["name"], row["id"]) == ("minimal", image_id)
    assert int(row["size_bytes"]) >= BUSYBOX.stat().st_size
    table = ctl("images", socket=box.socket).stdout.splitlines()
    assert table[0].split() == ["NAME", "IMAGE", "ID", "CREATED", "SIZE"]
    assert table[1].split()[:2] == ["minimal", image_id[7:19]] and " ago " in table[1]

    r = ctl("run", "--name", "net-test", "-d", "minimal", "/bin/sleep", "3600",
            socket=box.socket)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    cid = r.stdout.removesuffix("\n")
    assert is_id(cid), r.stdout
    c = json.loads(ctl("inspect", "net-test", socket=box.socket).stdout)
    assert (c["id"], c["state"], c["command"]) == (cid, "RUNNING", ["/bin/sleep", "3600"])
    root = Path(f"/proc/{c['pid']}/root")
    assert (root / "etc/image-release").is_file() and not (root / "usr").exists()

    r = ctl("rmi", "minimal", socket=box.socket)
    assert (r.returncode, r.stdout, r.stderr) == (
        1, "", f"sheepctl: FAILED_PRECONDITION: image minimal is used by container(s) "
               f"{cid[:12]}: remove them first\n")
    assert ctl("rm", "-f", "net-test", socket=box.socket).returncode == 0
    r = ctl("rmi", "minimal", socket=box.socket)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"{image_id}\n", "")
    assert ctl("images", "-q", socket=box.socket).stdout == ""


@kernel
@pytest.mark.usefixtures("tidy")
def test_run_takes_an_image_a_rootfs_or_the_host_view(box: Sandbox, minimal: Path,
                                                      tmp_path: Path) -> None:
    assert ctl("image", "import", "minimal", str(minimal), socket=box.socket).returncode == 0
    # The image's root, with -w; the command's status is sheepctl's.
    check = 'test "$(pwd)" = /etc && test -f image-release && test ! -e /usr'
    r = ctl("run", "--network-mode", "none", "-w", "/etc", "minimal", "/bin/sh", "-c",
            check, socket=box.socket)
    assert r.returncode == 0, r.stderr
    # A directory as the root: the arguments are the command (sh, found in PATH).
    tree = tmp_path / "tree"
    with tarfile.open(minimal) as tar:
        tar.extractall(tree, filter="tar")
    r = ctl("run", "--network-mode", "none", "--rootfs", str(tree), "sh", "-c",
            "test -f /etc/image-release && test ! -e /usr", socket=box.socket)
    assert r.returncode == 0, r.stderr
    # No image: after --, or an absolute path first, the host's root.
    for argv in (("--", "/bin/sh", "-c", "test -d /usr"), ("/bin/sh", "-c", "test -d /usr")):
        r = ctl("run", "--network-mode", "none", *argv, socket=box.socket)
        assert r.returncode == 0, r.stderr
    # A first argument that names no image: docker's 125, and the way to the host view.
    r = ctl("run", "-d", "sleep", "300", socket=box.socket)
    assert r.returncode == 125 and r.stdout == ""
    assert r.stderr.startswith("sheepctl: NOT_FOUND: no image 'sleep' ") and \
        "sheepctl run [OPTIONS] -- sleep 300" in r.stderr, r.stderr


@kernel
def test_network_aliases_and_no_dns(box: Sandbox) -> None:
    r = ctl("network", "create", "quiet", "--subnet", "10.36.0.0/24", "--no-dns",
            socket=box.socket)
    assert r.returncode == 0, r.stderr
    nets = {n["name"]: n for n in map(json.loads, ctl("network", "ls", "--format", "json",
                                                      socket=box.socket).stdout.split())}
    assert (nets["sheep0"].get("dns"), nets["quiet"].get("dns")) == (True, None)  # false
    r = ctl("run", "-d", "--name", "db", "--network", "quiet", "--network", "sheep0",
            "--network-alias", "database", "--network-alias", "pg", "--", "/bin/sleep",
            "300", socket=box.socket)
    assert r.returncode == 0, r.stderr
    c = json.loads(ctl("inspect", "db", socket=box.socket).stdout)
    assert [(n["network"], n["aliases"]) for n in c["networks"]] == [
        ("quiet", ["database", "pg"]), ("sheep0", ["database", "pg"])]
    # Without --network: the aliases go to the default network.
    assert ctl("run", "-d", "--name", "web", "--network-alias", "www", "--", "/bin/sleep",
               "300", socket=box.socket).returncode == 0
    r = ctl("network", "connect", "quiet", "web", "--network-alias", "front",
            socket=box.socket)
    assert r.returncode == 0, r.stderr
    c = json.loads(ctl("inspect", "web", socket=box.socket).stdout)
    assert [(n["network"], n["aliases"]) for n in c["networks"]] == [
        ("sheep0", ["www"]), ("quiet", ["front"])]


@kernel
@pytest.mark.usefixtures("tidy")
def test_the_demo_script_runs_net_test_on_minimal_again_and_again(box: Sandbox) -> None:
    """`make run`'s script, inside the sandbox netns against its daemon, twice."""
    env = {**os.environ, "SHEEP_STATE_DIR": str(box.state_dir),
           "SHEEP_RUN_DIR": str(box.run_dir), "SHEEP_SOCKET": str(box.socket),
           "PREFIX": str(REPO / ".venv")}
    for _ in range(2):
        r = subprocess.run(["nsenter", f"--net={box.netns}", "--", "bash",
                            str(REPO / "scripts/run-demo.sh")], env=env, capture_output=True,
                           text=True, timeout=120, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert re.search(r"^\+ sheepctl run --name net-test -d minimal /bin/sleep 3600\n"
                         r"[0-9a-f]{64}\n", r.stdout, flags=re.M), r.stdout
        assert "state=RUNNING" in r.stdout
        assert r.stdout.count(" 0% packet loss") == 2, r.stdout
    rows = [json.loads(line) for line in ctl("ps", "--format", "json",
                                             socket=box.socket).stdout.splitlines()]
    assert sorted(c["name"] for c in rows) == ["net-peer", "net-test"]
    assert [json.loads(line)["name"] for line in ctl(
        "images", "--format", "json", socket=box.socket).stdout.splitlines()] == ["minimal"]
