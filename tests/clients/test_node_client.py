"""The Node.js client (clients/node/example.js) against a real sheepd: it creates a
container, inspects it, streams its events, removes it, and reports each step as JSON.

In CI (CI=true) it must run: a missing node or npm fails. Elsewhere it is skipped only
when node is not installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.sandbox import Sandbox

pytestmark = pytest.mark.kernel

NODE_DIR = Path(__file__).resolve().parents[2] / "clients" / "node"
PINNED = {"@grpc/grpc-js": "1.14.7", "@grpc/proto-loader": "0.8.1"}


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is missing: CI must install nodejs and npm")
        pytest.skip(f"{tool} is not installed")
    return path


def _installed_version(package: str) -> str | None:
    manifest = NODE_DIR / "node_modules" / package / "package.json"
    if not manifest.exists():
        return None
    version: str = json.loads(manifest.read_text())["version"]
    return version


def ensure_node_modules() -> None:
    """`npm install` into clients/node/node_modules unless the pinned versions are there."""
    if all(_installed_version(p) == v for p, v in PINNED.items()):
        return
    npm = _require("npm")
    p = subprocess.run([npm, "install", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"npm install failed:\n{p.stdout}\n{p.stderr}"
    assert not (NODE_DIR / "package-lock.json").exists(), "no lockfile may be written"
    for package, version in PINNED.items():
        assert _installed_version(package) == version, package


def test_package_json_pins_exact_versions() -> None:
    manifest = json.loads((NODE_DIR / "package.json").read_text())
    assert manifest["dependencies"] == PINNED
    assert "package-lock=false" in (NODE_DIR / ".npmrc").read_text()


def test_node_example_against_sheepd(box: Sandbox) -> None:
    node = _require("node")
    ensure_node_modules()
    env = dict(os.environ, SHEEP_SOCKET=str(box.socket), SHEEP_WATCH_SECONDS="15")
    p = subprocess.run([node, "example.js"], cwd=NODE_DIR, env=env, capture_output=True,
                       text=True, timeout=120)
    steps: list[dict[str, Any]] = [json.loads(line) for line in p.stdout.splitlines()]
    report = f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    assert p.returncode == 0, report
    by_step: dict[str, list[dict[str, Any]]] = {}
    for s in steps:
        by_step.setdefault(s["step"], []).append(s)
    assert "error" not in by_step, report

    assert by_step["connect"][0]["target"] == f"unix:{box.socket}"
    assert by_step["version"][0]["api_version"] == "v1"

    (created,) = by_step["create"]
    assert created["state"] == "RUNNING" and created["pid"] > 0 and len(created["id"]) == 64
    assert created["command"] == ["/bin/sleep", "30"]
    assert created["networks"][0]["network"] == "sheep0"
    assert created["networks"][0]["ip_address"].startswith("10.20.")

    (inspected,) = by_step["inspect"]
    assert {**inspected, "step": "create"} == created  # the same container, running

    events = by_step["event"]
    types = [e["type"] for e in events]
    for t in ("container.created", "container.started", "network.attached",
              "container.removed"):
        assert t in types, types
    assert types[-1] == "container.removed"
    assert {e["container_id"] for e in events} == {created["id"]}
    assert all(isinstance(e["id"], str) for e in events)  # uint64 as strings
    started = events[types.index("container.started")]
    assert started["attributes"]["pid"] == str(created["pid"])

    assert by_step["remove"] == [{"step": "remove", "id": created["id"]}]
    (done,) = by_step["done"]
    assert done["saw_removed"] is True and done["ended_by"] == "removed"
    assert done["inspect_after_remove"] == "NOT_FOUND"
    # Order of the steps as the example promises them.
    order = [s["step"] for s in steps if s["step"] != "event"]
    assert order == ["connect", "version", "create", "inspect", "remove", "done"]
    # And the daemon agrees: nothing is left.
    assert list(box.api.ListContainers(pb.ListContainersRequest(
        filters={"all": "true"})).containers) == []
