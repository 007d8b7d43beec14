"""The Node.js package @sheep/runtime-client (clients/node) as a user gets it: packed
with `npm pack` (its prepack bundles the .proto), installed from the tarball into a
fresh project outside the checkout, its example run from there against a real sheepd
over the Unix socket; and its type declarations checked by tsc --strict.

In CI (CI=true) it must run: a missing node or npm fails. Elsewhere it is skipped only
when node or npm is not installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.sandbox import Sandbox

NODE_DIR = Path(__file__).resolve().parents[2] / "clients" / "node"
PROTO = Path(__file__).resolve().parents[2] / "proto" / "sheep" / "runtime" / "v1" / \
    "runtime.proto"
PINNED = {"@grpc/grpc-js": "1.14.7", "@grpc/proto-loader": "0.8.1"}
NAME = "@sheep/runtime-client"


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is missing: CI must install nodejs and npm")
        pytest.skip(f"{tool} is not installed")
    return path


def npm(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([_require("npm"), *argv, "--no-audit", "--no-fund"], cwd=cwd,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"npm {' '.join(argv)}:\n{p.stdout}\n{p.stderr}"
    return p


def _installed_version(root: Path, package: str) -> str | None:
    manifest = root / "node_modules" / package / "package.json"
    if not manifest.exists():
        return None
    version: str = json.loads(manifest.read_text())["version"]
    return version


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`npm pack` of clients/node (scripts on: the prepack bundles the proto)."""
    out = tmp_path_factory.mktemp("npm-pack")
    npm("pack", "--ignore-scripts=false", "--pack-destination", str(out), cwd=NODE_DIR)
    (tgz,) = out.glob("*.tgz")
    assert not (NODE_DIR / "proto").exists(), "postpack removes the bundled copy"
    return tgz


@pytest.fixture(scope="module")
def project(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh Node project (outside the checkout) with the package installed."""
    root = tmp_path_factory.mktemp("node-project")
    (root / "package.json").write_text(json.dumps({"name": "user", "private": True}))
    npm("install", "--ignore-scripts", str(tarball), cwd=root)
    for package, version in PINNED.items():
        assert _installed_version(root, package) == version, package
    return root


def test_package_json_is_a_real_package() -> None:
    manifest = json.loads((NODE_DIR / "package.json").read_text())
    assert manifest["name"] == NAME and "private" not in manifest
    assert manifest["dependencies"] == PINNED
    assert manifest["types"] == "index.d.ts" and "proto/" in manifest["files"]
    assert "package-lock=false" in (NODE_DIR / ".npmrc").read_text()


def test_tarball_bundles_the_proto(tarball: Path) -> None:
    with tarfile.open(tarball) as t:
        names = set(t.getnames())
        bundled = t.extractfile("package/proto/sheep/runtime/v1/runtime.proto")
        assert bundled is not None and bundled.read() == PROTO.read_bytes()
    assert {"package/package.json", "package/index.js", "package/index.d.ts",
            "package/example.js"} <= names
    assert not [n for n in names if n.startswith(("package/node_modules", "package/test"))]


def test_type_declarations_check_strict() -> None:
    _require("node")
    if _installed_version(NODE_DIR, "typescript") is None:
        npm("install", cwd=NODE_DIR)
    npm("run", "typecheck", cwd=NODE_DIR)


@pytest.mark.kernel
def test_installed_package_against_sheepd(project: Path, box: Sandbox) -> None:
    node = _require("node")
    installed = project / "node_modules" / "@sheep" / "runtime-client"
    env = dict(os.environ, SHEEP_SOCKET=str(box.socket), SHEEP_WATCH_SECONDS="15")
    p = subprocess.run([node, str(installed / "example.js")], cwd=project, env=env,
                       capture_output=True, text=True, timeout=120)
    steps: list[dict[str, Any]] = [json.loads(line) for line in p.stdout.splitlines()]
    report = f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    assert p.returncode == 0, report
    by_step: dict[str, list[dict[str, Any]]] = {}
    for s in steps:
        by_step.setdefault(s["step"], []).append(s)
    assert "error" not in by_step, report

    (connect,) = by_step["connect"]
    assert connect["target"] == f"unix:{box.socket}"
    assert connect["proto_root"] == str(installed / "proto")  # bundled, not the checkout's
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
    order = [s["step"] for s in steps if s["step"] != "event"]
    assert order == ["connect", "version", "create", "inspect", "remove", "done"]
    assert list(box.api.ListContainers(pb.ListContainersRequest(
        filters={"all": "true"})).containers) == []
