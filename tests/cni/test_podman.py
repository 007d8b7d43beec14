"""Podman, for real, on the sheep network: Debian's podman 4.3 with its CNI backend
runs the installed plugin against a real sheepd in a sandbox netns.

The recipe and its traps (shared/notes/scaleout.md, podman appendix): podman runs
under `nsenter --net` (never `ip netns exec`, which remounts /sys), with runc (crun
1.8 refuses hybrid cgroups), cgroupfs, explicit ulimits, `--root`/`--runroot`, its
tmp dir and event log under a temp dir, and `--rootfs` from a busybox-static tree (no
image store). libcni's result cache has no knob: our entries in /var/lib/cni are
removed afterwards (and the directory if it was not there before), and so is any
container netns podman left in /run/netns. Nothing else of ours is touched: other
users of this machine may run podman too.

Needs: podman, runc, busybox-static (Debian). In CI they must be there.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.e2e.test_ports import World
from tests.sandbox import UPLINK, Sandbox, in_netns, pinned_mounts, sh

pytestmark = pytest.mark.kernel

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
NEEDED = {"podman": "podman", "runc": "runc", "busybox": "busybox-static"}
# libcni's result cache, which podman 4.3 cannot move.
CNI_CACHE = Path("/var/lib/cni")
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096")


def tools() -> dict[str, str]:
    found = {tool: shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/bin")
             for tool in NEEDED}
    missing = [NEEDED[t] for t, path in found.items() if not path]
    if missing:
        why = f"podman tests need the Debian packages {' '.join(missing)}"
        if IN_CI:
            pytest.fail(f"{why}: .ci/run must install them", pytrace=False)
        pytest.skip(why)
    return {t: str(p) for t, p in found.items()}


def busybox_rootfs(root: Path, busybox: str) -> Path:
    """A container root: busybox and one symlink per applet."""
    (root / "bin").mkdir(parents=True)
    for d in ("etc", "proc", "sys", "dev", "tmp", "run", "var"):
        (root / d).mkdir()
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in sh(busybox, "--list").stdout.split():
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    return root


class Podman:
    """podman in the sandbox, all its state under `tmp`, on network `network`."""

    def __init__(self, box: Sandbox, plugin: Path, tmp: Path, found: dict[str, str]) -> None:
        self.box = box
        self.tmp = tmp
        # podman refuses a runroot longer than 50 characters (conmon's socket paths).
        self.runroot = Path(tempfile.mkdtemp(prefix="sheeppod-", dir="/tmp"))
        self.network = f"sheep{box.tag}"
        self.rootfs = busybox_rootfs(tmp / "rootfs", found["busybox"])
        bin_dir, conf_dir = tmp / "cni" / "bin", tmp / "cni" / "net.d"
        bin_dir.mkdir(parents=True)
        conf_dir.mkdir()
        (bin_dir / "sheep").symlink_to(plugin)
        conflist = {"cniVersion": "1.0.0", "name": self.network, "plugins": [{
            "type": "sheep", "network": "sheep0", "socket": str(box.run_dir / "cni.sock"),
            "stateDir": str(box.state_dir), "capabilities": {"portMappings": True}}]}
        (conf_dir / "10-sheep.conflist").write_text(json.dumps(conflist))
        self.conf = tmp / "containers.conf"
        self.conf.write_text(f"""[network]
network_backend = "cni"
cni_plugin_dirs = ["{bin_dir}"]
network_config_dir = "{conf_dir}"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{tmp}/tmp/events.log"
tmp_dir = "{tmp}/tmp"
runtime = "runc"
[engine.runtimes]
runc = ["{found['runc']}"]
""")
        self.sandboxes: list[Path] = []  # the container netns podman made
        self.argv = ["nsenter", f"--net={box.netns}", "--", found["podman"],
                     "--root", str(tmp / "root"), "--runroot", str(self.runroot)]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CONTAINERS_CONF": str(self.conf)}
        p = subprocess.run([*self.argv, *args], env=env, capture_output=True, text=True,
                           timeout=120)
        if check and p.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {p.returncode}:\n"
                                 f"{p.stdout}\n{p.stderr}\n---- sheepd ----\n"
                                 f"{self.box.log()[-5000:]}")
        return p

    def run_detached(self, name: str, *command: str, publish: str = "") -> None:
        ports = ("-p", publish) if publish else ()
        self("run", "-d", "--name", name, "--network", self.network, *ports, *ULIMITS,
             "--rootfs", str(self.rootfs), *command)
        key = self("inspect", "--format", "{{.NetworkSettings.SandboxKey}}", name).stdout
        self.sandboxes.append(Path(key.strip()))

    def address(self, name: str) -> str:
        nets = json.loads(self("inspect", "--format", "{{json .NetworkSettings.Networks}}",
                               name).stdout)
        return str(nets[self.network]["IPAddress"])

    def pings(self, name: str, address: str) -> bool:
        return self("exec", name, "ping", "-c1", "-W2", address, check=False).returncode == 0

    def close(self) -> None:
        self("rm", "--all", "--force", "--time", "0", check=False)
        for d in (self.tmp, self.runroot):
            for mnt in sorted(pinned_mounts(d), reverse=True):
                sh("umount", "-l", mnt, check=False)
        shutil.rmtree(self.runroot, ignore_errors=True)
        for netns in self.sandboxes:
            if netns.exists():  # podman removes it with the container; if it did not
                sh("umount", "-l", str(netns), check=False)
                netns.unlink(missing_ok=True)


def clean_cni_cache(network: str, *, existed: bool) -> None:
    """Remove libcni's cached results of `network`, and the cache if we made it."""
    results = CNI_CACHE / "results"
    for entry in results.glob(f"{network}-*"):
        entry.unlink()
    if not existed:
        for d in (results, CNI_CACHE):
            with contextlib.suppress(OSError):  # not empty: someone else uses it now
                d.rmdir()


@pytest.fixture
def podman(box: Sandbox, plugin: Path, tmp_path: Path, podman_strays: None
           ) -> Iterator[Podman]:
    found = tools()
    cache_existed = CNI_CACHE.exists()
    p = Podman(box, plugin, tmp_path / "podman", found)
    try:
        yield p
    finally:
        p.close()
        clean_cni_cache(p.network, existed=cache_existed)
    assert (tmp_path / "podman" / "tmp" / "events.log").exists()  # it kept to its dirs


def leases(box: Sandbox) -> int:
    return int(box.api.InspectNetwork(pb.InspectNetworkRequest(id="sheep0")).leases_allocated)


def test_a_podman_container_lives_on_the_sheep_network(box: Sandbox, podman: Podman) -> None:
    peer = box.run("/bin/sleep", "300")
    peer_ip = peer.networks[0].ip_address
    podman.run_detached("web", "sleep", "300")
    ip = podman.address("web")
    assert ip.startswith("10.20.") and ip != peer_ip
    assert leases(box) == 2  # the podman container's lease is sheepd's
    assert podman.pings("web", "10.20.0.1") and podman.pings("web", peer_ip)
    assert in_netns(peer.netns_path, "ping", "-c1", "-W2", ip).returncode == 0
    # reload = DEL + ADD through the plugin; the container is on the network after it.
    podman("network", "reload", "web")
    assert podman.pings("web", "10.20.0.1") and podman.pings("web", peer_ip)
    assert leases(box) == 2
    podman("rm", "--force", "--time", "0", "web")
    assert leases(box) == 1
    log = box.log()
    assert log.count("CNI ADD") == 2 and log.count("CNI DEL") == 2


def test_podman_publishes_a_port_through_sheepd(box: Sandbox, podman: Podman) -> None:
    world = World(box)
    try:
        podman.run_detached("srv", "sh", "-c", "while true; do echo podman | nc -l -p 80; done",
                            publish="8080:80")
        answer = None
        for _ in range(50):  # nc may not listen yet: the container just started
            answer = world.ask(world.internet, UPLINK, 8080)
            if answer:
                break
        assert answer == "podman\n"
    finally:
        world.close()
    podman("rm", "--force", "--time", "0", "srv")
    assert leases(box) == 0
