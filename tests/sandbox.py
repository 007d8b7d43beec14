"""A throwaway world for kernel tests: a sandbox netns (the "host") in which a real
sheepd runs with its own state dir, run dir and bridge. Everything it made is removed
on close, even when the test failed: processes, pinned namespaces, the sandbox."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sheep.runtime.v1 import runtime_pb2 as pb
from sheep.runtime.v1 import runtime_pb2_grpc as pb_grpc

from sheep_runtime.netlink import run_in_netns

REPO = Path(__file__).resolve().parent.parent
# A container sees a read-only view of the host with a private /tmp: the checkout and its
# venv may sit under /tmp (CI's clone may), so code a container runs must not come from
# them. Debian's interpreter and a script's source passed with -c work from anywhere.
CONTAINER_PYTHON = "/usr/bin/python3"


def container_script(path: Path, *args: str) -> list[str]:
    """argv that runs the stdlib-only script `path` inside a container."""
    return [CONTAINER_PYTHON, "-c", path.read_text(), *args]


def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output as text."""
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


def in_netns(netns: str | Path, *argv: str, check: bool = False,
             timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a command inside a pinned network namespace (never `ip netns exec`: it
    remounts /sys in a private mount namespace)."""
    return sh("nsenter", f"--net={netns}", "--", *argv, check=check, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sandbox:
    """A sandbox netns running one sheepd at a time."""

    def __init__(self, tmp: Path, *, bridge: str = "", subnet: str = "10.20.0.0/16") -> None:
        self.tag = secrets.token_hex(3)
        self.name = f"sbx-{self.tag}"
        self.netns = Path("/run/netns") / self.name
        self.tmp = tmp
        self.state_dir = tmp / "state"
        self.run_dir = tmp / "run"
        self.socket = self.run_dir / "sheep.sock"
        self.bridge = bridge or f"sbr{self.tag}"
        self.subnet = subnet
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = tmp / "sheepd.log"
        self._channel: grpc.Channel | None = None
        sh("ip", "netns", "add", self.name)
        in_netns(self.netns, "ip", "link", "set", "lo", "up", check=True)

    # -- daemon -------------------------------------------------------------------

    def start(self, *, extra: Sequence[str] = (), wait: bool = True,
              sheepd: Sequence[str] = (sys.executable, "-m", "sheep_runtime.daemon")) -> None:
        """Start `sheepd` (an argv prefix: another install's `sheepd` script) in the
        sandbox, with its dirs, bridge and metrics port."""
        env = dict(os.environ)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the daemon owns it
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={self.netns}", "--", *sheepd,
             "--state-dir", str(self.state_dir),
             "--run-dir", str(self.run_dir), "--bridge", self.bridge,
             "--default-subnet", self.subnet,
             "--metrics-addr", f"127.0.0.1:{self.metrics_port}", "--log-level", "debug",
             *extra],
            stdout=log, stderr=log, env=env, cwd=REPO)
        log.close()
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"sheepd exited with {self.proc.returncode}:\n{self.log()}")
            if self.socket.exists():
                try:
                    stub = health_pb2_grpc.HealthStub(self.channel())
                    resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
            time.sleep(0.05)
        raise TimeoutError(f"sheepd not ready after {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Stop the daemon with `sig`; return its exit status."""
        self._close_channel()
        if self.proc is None:
            return 0
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self, **kw: object) -> None:
        self.stop()
        self.start(**kw)  # type: ignore[arg-type]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- clients ------------------------------------------------------------------

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(f"unix:{self.socket}")
        return self._channel

    def _close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    @property
    def api(self) -> pb_grpc.RuntimeServiceStub:
        return pb_grpc.RuntimeServiceStub(self.channel())

    def run(self, *command: str, name: str = "", **kw: object) -> pb.Container:
        """Create a container (on the default network unless told otherwise)."""
        c: pb.Container = self.api.CreateContainer(pb.CreateContainerRequest(
            name=name, command=list(command), **kw), timeout=30)  # type: ignore[arg-type]
        return c

    def metrics(self) -> str:
        """The daemon's /metrics text, fetched from inside the sandbox."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        def fetch() -> str:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return str(resp.read().decode())
        return run_in_netns(self.netns, fetch)

    def host(self, *argv: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run a command in the sandbox (the daemon's "host" netns)."""
        return in_netns(self.netns, *argv, check=check)

    # -- teardown -----------------------------------------------------------------

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop(signal.SIGKILL)
        kill_containers(self.state_dir, self.run_dir)
        unpin_all(self.run_dir / "netns")
        for mount in reversed(pinned_mounts(self.state_dir)):  # image roots (overlays)
            sh("umount", "-l", mount, check=False)
        sh("ip", "netns", "del", self.name, check=False)


def kill_containers(state_dir: Path, run_dir: Path) -> None:
    """Kill and delete every container of the daemon's runc root (their state and
    cgroups go too), then SIGKILL any supervisor left (its command line names its
    container dir under `state_dir`)."""
    root = str(run_dir / "runc")
    for cid in sh("runc", "--root", root, "list", "-q", check=False).stdout.split():
        sh("runc", "--root", root, "delete", "--force", cid, check=False)
    sh("pkill", "-KILL", "-f", f"shim.sh --supervise [0-9a-f]{{64}} {state_dir}/containers/",
       check=False)


def unpin_all(netns_dir: Path) -> None:
    for pin in netns_dir.glob("*") if netns_dir.is_dir() else []:
        sh("umount", "-l", str(pin), check=False)
        pin.unlink(missing_ok=True)


def pinned_mounts(root: Path) -> list[str]:
    """Mount points below `root` (pinned namespaces left behind)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4]
            if mnt.startswith(str(root)):
                out.append(mnt)
    return out


#: The test "internet": documentation addresses (RFC 5737) in a netns of the test's own.
INTERNET = "198.51.100.1"
UPLINK = "198.51.100.2"  # the sandbox host's side
#: Its IPv6 side (RFC 3849), with `add_internet(box, ipv6=True)`.
INTERNET6 = "2001:db8::1"
UPLINK6 = "2001:db8::2"


def add_internet(box: Sandbox, *, ipv6: bool = False) -> tuple[str, Path]:
    """A netns holding INTERNET (and INTERNET6), linked to the sandbox (at UPLINK and
    UPLINK6, its default routes): (name, path). The caller deletes it (`ip netns del
    NAME`)."""
    name = f"sbxnet-{secrets.token_hex(3)}"
    path = Path("/run/netns") / name
    sh("ip", "netns", "add", name)
    box.host("ip", "link", "add", "up0", "type", "veth", "peer", "name", "inet0",
             "netns", name, check=True)
    for argv in (("ip", "addr", "add", f"{UPLINK}/24", "dev", "up0"),
                 ("ip", "link", "set", "up0", "up"),
                 ("ip", "route", "add", "default", "via", INTERNET)):
        box.host(*argv, check=True)
    for argv in (("ip", "addr", "add", f"{INTERNET}/24", "dev", "inet0"),
                 ("ip", "link", "set", "inet0", "up"), ("ip", "link", "set", "lo", "up")):
        in_netns(path, *argv, check=True)
    if ipv6:  # nodad: usable at once
        in_netns(path, "ip", "addr", "add", f"{INTERNET6}/64", "dev", "inet0", "nodad",
                 check=True)
        argvs: tuple[tuple[str, ...], ...] = (
            ("ip", "addr", "add", f"{UPLINK6}/64", "dev", "up0", "nodad"),
            ("ip", "-6", "route", "add", "default", "via", INTERNET6))
        for argv6 in argvs:
            box.host(*argv6, check=True)
    return name, path


@contextlib.contextmanager
def sandbox(tmp: Path, **kw: str) -> Iterator[Sandbox]:
    box = Sandbox(tmp, **kw)
    try:
        yield box
    finally:
        box.close()
