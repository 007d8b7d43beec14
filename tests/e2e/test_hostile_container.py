"""A hostile container, created through the API of a real sheepd: from inside it tries
to write the host's files, read the daemon's state, reach its API socket, enter another
container's netns, load a module and gain capabilities. Each attempt must fail.

The sandbox's dirs are under /var/tmp here: under /tmp the container's private /tmp
would hide them anyway, and the test would prove nothing about the masking."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_runtime.model import ALL_CAPABILITIES
from sheep_runtime.process.capabilities import from_mask
from tests.logtext import log_text
from tests.sandbox import Sandbox, sandbox

pytestmark = pytest.mark.kernel

DEFAULT = {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
           "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
           "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}


@pytest.fixture
def outside_tmp() -> Iterator[Sandbox]:
    root = Path(tempfile.mkdtemp(prefix="sheep-hostile-", dir="/var/tmp"))
    try:
        with sandbox(root) as box:
            box.start()
            yield box
    finally:
        shutil.rmtree(root, ignore_errors=True)


def attempts(box: Sandbox, victim: Path, other_netns: str, *,
             only: tuple[str, ...] = ()) -> str:
    """A shell script printing `NAME rc` for each attempt (rc 0 = it worked), all of
    them or those named in `only`."""
    db = box.state_dir / "sheep.db"
    sock = box.run_dir / "sheep.sock"
    tries = {
        "write-host-file": f"echo owned > {victim}",
        "read-state-db": f"cat {db}",
        "list-run-dir": f"ls {box.run_dir}/netns | grep -q .",
        "connect-api-socket": f"python3 -c \"import socket; s = socket.socket(socket.AF_UNIX); "
                              f"s.connect('{sock}')\"",
        "enter-other-netns": f"nsenter --net={other_netns} true",
        "new-netns": "unshare --net true",
        "load-module": "modprobe dummy",
        "raise-sys-admin": "setpriv --inh-caps=+sys_admin --ambient-caps=+sys_admin true",
    }
    # In a subshell, so that even a failed redirection's message goes to /dev/null.
    lines = [f"( {cmd} ) >/dev/null 2>&1; echo \"{name} $?\"" for name, cmd in tries.items()
             if not only or name in only]
    return "\n".join([*lines, "grep CapEff /proc/self/status"])


def run_and_read(box: Sandbox, script: str, **kw: object) -> tuple[pb.Container, str]:
    c = box.run("/bin/sh", "-c", script, **kw)
    deadline = time.monotonic() + 30
    while box.api.Inspect(pb.InspectRequest(id=c.id)).state != pb.Container.EXITED:
        assert time.monotonic() < deadline, "the hostile container did not finish"
        time.sleep(0.05)
    return c, log_text(c.log_path)


def results(log: str) -> tuple[dict[str, int], set[str]]:
    codes, caps = {}, set()
    for line in log.splitlines():
        if line.startswith("CapEff:"):
            caps = set(from_mask(int(line.split()[1], 16)))
        elif line.count(" ") == 1 and line.split()[1].isdigit():
            name, rc = line.split()
            codes[name] = int(rc)
    return codes, caps


def test_a_default_container_cannot_reach_the_host_or_the_daemon(
        outside_tmp: Sandbox) -> None:
    box = outside_tmp
    victim = box.tmp / "victim"
    neighbour = box.run("/bin/sleep", "600", name="neighbour")
    c, log = run_and_read(box, attempts(box, victim, neighbour.netns_path), name="hostile")
    codes, caps = results(log)
    assert len(codes) == 8, log
    assert {name: rc for name, rc in codes.items() if rc == 0} == {}, log
    assert not victim.exists()
    assert caps == DEFAULT == set(c.capabilities)
    assert not c.privileged


def test_cap_add_grants_exactly_that_capability(outside_tmp: Sandbox) -> None:
    c, log = run_and_read(outside_tmp, "grep CapEff /proc/self/status", cap_add=["NET_ADMIN"])
    assert results(log)[1] == DEFAULT | {"CAP_NET_ADMIN"} == set(c.capabilities)


def test_privileged_gets_every_capability_but_still_not_the_daemon_dirs(
        outside_tmp: Sandbox) -> None:
    box = outside_tmp
    # Nothing that would change the host kernel: a privileged container really could.
    hidden = ("read-state-db", "list-run-dir", "connect-api-socket")
    c, log = run_and_read(box, attempts(box, box.tmp / "victim", "", only=hidden),
                          privileged=True)
    codes, caps = results(log)
    assert c.privileged and "CAP_SYS_ADMIN" in caps and caps <= set(ALL_CAPABILITIES)
    assert set(c.capabilities) == caps
    assert {name: rc for name, rc in codes.items() if rc == 0} == {}, log
    assert set(codes) == set(hidden), log
