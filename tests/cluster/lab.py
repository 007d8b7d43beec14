"""A multi-host lab in namespaces: an underlay netns with a bridge and a real etcd on
203.0.113.1, and host netns (203.0.113.1x) each running its own `sheepd --cluster-etcd`
(a `tests.sandbox.Sandbox`). Every name carries a per-run tag; `close` removes it all."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from tests.sandbox import Sandbox, free_port, in_netns, sh

ETCD_IP = "203.0.113.1"


class Lab:
    def __init__(self, tmp: Path) -> None:
        self.tag = secrets.token_hex(3)
        self.tmp = tmp
        self.ul = f"cul-{self.tag}"
        self.ul_path = Path("/run/netns") / self.ul
        self.hosts: list[Sandbox] = []
        self.etcd: subprocess.Popen[bytes] | None = None
        self.port = free_port()
        self.peer_port = free_port()
        sh("ip", "netns", "add", self.ul)
        in_netns(self.ul_path, "ip", "link", "set", "lo", "up", check=True)
        in_netns(self.ul_path, "ip", "link", "add", "ul0", "type", "bridge", check=True)
        in_netns(self.ul_path, "ip", "addr", "add", f"{ETCD_IP}/24", "dev", "ul0", check=True)
        in_netns(self.ul_path, "ip", "link", "set", "ul0", "up", check=True)

    @property
    def endpoint(self) -> str:
        return f"http://{ETCD_IP}:{self.port}"

    def start_etcd(self) -> None:
        data = self.tmp / "etcd"
        url = f"http://{ETCD_IP}:{self.port}"
        peer = f"http://{ETCD_IP}:{self.peer_port}"
        log = open(self.tmp / "etcd.log", "ab")  # noqa: SIM115 - etcd owns it
        self.etcd = subprocess.Popen(
            ["nsenter", f"--net={self.ul_path}", "--", "etcd", "--name", "lab",
             "--data-dir", str(data), "--listen-client-urls", url,
             "--advertise-client-urls", url, "--listen-peer-urls", peer,
             "--initial-advertise-peer-urls", peer, "--initial-cluster", f"lab={peer}"],
            stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.etcdctl("endpoint", "health").returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError("etcd did not become healthy")

    def etcdctl(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        env_args = ["env", "ETCDCTL_API=3", "etcdctl", "--endpoints", self.endpoint]
        return in_netns(self.ul_path, *env_args, *args, check=check)

    def add_host(self) -> Sandbox:
        n = len(self.hosts) + 1
        (self.tmp / f"h{n}").mkdir()
        box = Sandbox(self.tmp / f"h{n}", bridge=f"cbr{self.tag}{n}")
        self.hosts.append(box)
        peer = f"cv{self.tag}{n}"
        in_netns(self.ul_path, "ip", "link", "add", peer, "type", "veth", "peer", "name",
                 "eth0", "netns", str(box.netns), check=True)
        in_netns(self.ul_path, "ip", "link", "set", peer, "master", "ul0", "up", check=True)
        box.host("ip", "addr", "add", f"203.0.113.{10 + n}/24", "dev", "eth0", check=True)
        box.host("ip", "link", "set", "eth0", "up", check=True)
        return box

    def start_sheepd(self, box: Sandbox, *, wait: bool = True, backend: str = "vxlan",
                     name: str = "", extra: Sequence[str] = ()) -> None:
        n = self.hosts.index(box) + 1
        box.start(wait=wait, extra=["--cluster-etcd", self.endpoint,
                                    "--node-name", name or f"node{n}",
                                    "--cluster-backend", backend, *extra])

    def stop_etcd(self) -> None:
        """Stop etcd (its data dir stays: `start_etcd` brings the same store back)."""
        if self.etcd is not None:
            self.etcd.terminate()
            self.etcd.wait(15)
            self.etcd = None

    def revision(self) -> int:
        out = self.etcdctl("get", "/sheep/config", "-w", "json", check=True)
        return int(json.loads(out.stdout)["header"]["revision"])

    def close(self) -> None:
        for box in self.hosts:
            with contextlib.suppress(Exception):
                box.close()
        if self.etcd is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.etcd.pid, signal.SIGKILL)
            self.etcd.wait(10)
        sh("ip", "netns", "del", self.ul, check=False)
