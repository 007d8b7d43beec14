"""The two packages as a user installs them: wheels built with `python -m build`, each
installed into a fresh venv (`python3 -m venv`, dependencies from the package index),
the daemon's without the client and the client's without the daemon. The daemon's
`sheepd` then runs in a sandbox netns and the README's tour runs verbatim against it
with the client venv's `sheepctl` first on PATH."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sheep_runtime import __version__ as daemon_version
from sheep_runtime.netlink import run_in_netns
from tests.sandbox import Sandbox, sandbox

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parents[2]
CLIENT = REPO / "clients" / "python"


def run(*argv: str | Path, cwd: Path = REPO, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=timeout, check=False)
    assert r.returncode == 0, f"{argv}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


@dataclass(frozen=True)
class Installs:
    daemon: Path  # venv with only the sheep-runtime wheel (and its dependencies)
    client: Path  # venv with only the sheep-client wheel


def fresh_venv(path: Path, wheel: Path) -> Path:
    python3 = shutil.which("python3")
    assert python3, "python3 is needed"
    run(python3, "-m", "venv", path)
    run(path / "bin" / "python", "-m", "pip", "install", "-q", wheel)
    run(path / "bin" / "python", "-m", "pip", "check")
    return path


@pytest.fixture(scope="module")
def installs(tmp_path_factory: pytest.TempPathFactory) -> Installs:
    root = tmp_path_factory.mktemp("packaging")
    dist = root / "dist"
    for project in (REPO, CLIENT):  # sdist, then the wheel built from it
        run(sys.executable, "-m", "build", "--outdir", dist, project)
    (daemon_wheel,) = dist.glob("sheep_runtime-*.whl")
    (client_wheel,) = dist.glob("sheep_client-*.whl")
    return Installs(daemon=fresh_venv(root / "daemon", daemon_wheel),
                    client=fresh_venv(root / "client", client_wheel))


def distributions(venv: Path) -> set[str]:
    out = run(venv / "bin" / "python", "-m", "pip", "list", "--format=freeze").stdout
    return {line.split("==")[0].lower() for line in out.splitlines()}


def test_each_package_installs_alone(installs: Installs) -> None:
    daemon, client = distributions(installs.daemon), distributions(installs.client)
    assert "sheep-runtime" in daemon and "sheep-client" not in daemon
    assert "sheep-client" in client and "sheep-runtime" not in client
    assert not {"pyroute2", "uvloop", "prometheus-client"} & client
    assert "pip-nftables" not in daemon
    r = run(installs.daemon / "bin" / "sheepd", "--version")
    assert r.stdout == f"sheepd {daemon_version}\n"
    r = run(installs.client / "bin" / "sheepctl", "--version")
    assert re.fullmatch(r"sheepctl \d+\.\d+\.\d+\n", r.stdout), r.stdout


def tour() -> list[str]:
    """The command lines of the README's tour."""
    text = (REPO / "README.md").read_text()
    m = re.search(r"^## A short tour\n.*?^```sh\n(.*?)^```$", text, flags=re.M | re.S)
    assert m, "the README has a tour"
    lines = [line for line in m[1].splitlines() if line.strip()]
    assert lines and all(line.startswith("sheepctl ") for line in lines), lines
    return lines


@pytest.fixture
def box_from_wheel(installs: Installs, tmp_path: Path) -> Iterator[Sandbox]:
    with sandbox(tmp_path) as box:
        box.start(sheepd=[str(installs.daemon / "bin" / "sheepd")])
        yield box


def get(box: Sandbox, url: str) -> int:
    """The HTTP status of `url` fetched inside the sandbox, once the server listens."""
    def fetch() -> int:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    return int(resp.status)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    return run_in_netns(box.netns, fetch)


def wait_for_watcher(box: Sandbox, events: subprocess.Popen[str]) -> None:
    """Wait until the daemon serves the `sheepctl events` call."""
    started = re.compile(r'^grpc_server_started_total\{[^}]*grpc_method="WatchEvents"[^}]*\} '
                         r'([0-9.]+)$', re.M)
    while events.poll() is None:
        m = started.search(box.metrics())
        if m and float(m[1]) >= 1:
            return
        time.sleep(0.05)
    pytest.fail(f"sheepctl events exited with {events.returncode}")


def test_readme_tour_against_the_installed_daemon(installs: Installs,
                                                  box_from_wheel: Sandbox) -> None:
    box = box_from_wheel
    env = dict(os.environ, SHEEP_SOCKET=str(box.socket),
               PATH=f"{installs.client / 'bin'}:{os.environ['PATH']}")
    assert run("bash", "-c", "command -v sheepctl", env=env).stdout.strip() == \
        str(installs.client / "bin" / "sheepctl")
    lines = tour()
    streaming = [line for line in lines if line.split("#")[0].split() == ["sheepctl", "events"]]
    assert len(streaming) == 1
    with subprocess.Popen(["bash", "-c", streaming[0]], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as events:
        wait_for_watcher(box, events)
        out = {}
        for line in lines:
            if line not in streaming:
                out[line.split("#")[0].strip()] = run("bash", "-c", line, env=env).stdout
            if line.startswith("sheepctl run -d"):
                assert get(box, "http://127.0.0.1:8080/") == 200  # the published port
        events.terminate()
        stream, err = events.communicate(timeout=30)
    web = out["sheepctl run -d --name web -p 8080:80 -- python3 -m http.server 80 "
              "-d /usr/share/doc"].strip()
    assert re.fullmatch(r"[0-9a-f]{64}", web)
    assert out["sheepctl port web"] == "80/tcp -> 0.0.0.0:8080\n"
    assert web[:12] in out["sheepctl ps"]
    assert out["sheepctl network connect backend web --ip 10.30.0.10"] == \
        "eth1\t10.30.0.10/24\n"
    assert "backend" in out["sheepctl network ls"]
    assert out["sheepctl stop web && sheepctl rm web"].splitlines() == ["web", "web"]
    for kind in ("container created", "network created", "network attached"):  # docker's form
        assert kind in stream, stream + err
    assert run("bash", "-c", "sheepctl ps -a -q", env=env).stdout == ""
