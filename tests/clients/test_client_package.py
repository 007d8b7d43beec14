"""The client package on its own (no daemon): it never pulls in the daemon, it exports a
typed API, builds requests correctly and maps every status to its error class."""

from __future__ import annotations

import ast
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
import sheep_client
from google.protobuf.timestamp_pb2 import Timestamp
from sheep.runtime.v1 import runtime_pb2 as pb
from sheep_client import builders, errors
from sheep_client.cli import build_parser
from sheep_client.connection import DEFAULT_SOCKET, target

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "python"


def test_client_never_imports_the_daemon() -> None:
    for path in (CLIENT / "sheep_client").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.startswith(("sheep_runtime", "pyroute2")), f"{path}: {name}"
    # And at run time, from a clean interpreter that only sees the client's directory.
    code = ("import sys, sheep_client, sheep_client.cli; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('sheep_runtime', 'pyroute2')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    p = subprocess.run([sys.executable, "-c", code], cwd=CLIENT, capture_output=True,
                       text=True, env={"PYTHONPATH": str(CLIENT)}, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def test_package_is_typed_and_exports_resolve() -> None:
    assert (CLIENT / "sheep_client" / "py.typed").exists()
    for name in sheep_client.__all__:
        assert hasattr(sheep_client, name), name


def test_every_rpc_has_a_wrapper_method() -> None:
    snake = {"CreateContainer": "create_container", "StopContainer": "stop_container",
             "RemoveContainer": "remove_container", "ListContainers": "list_containers",
             "Inspect": "inspect", "AttachNetwork": "attach_network",
             "DetachNetwork": "detach_network", "CreateNetwork": "create_network",
             "InspectNetwork": "inspect_network", "ListNetworks": "list_networks",
             "RemoveNetwork": "remove_network", "WatchEvents": "watch_events",
             "ImportImage": "import_image", "ListImages": "list_images",
             "RemoveImage": "remove_image", "StartContainer": "start_container",
             "RestartContainer": "restart_container", "WaitContainer": "wait_container",
             "Logs": "logs", "Exec": "exec", "Stats": "stats", "GetCluster": "get_cluster",
             "LeaveCluster": "leave_cluster", "Version": "version"}
    rpcs = {m.name for m in pb.DESCRIPTOR.services_by_name["RuntimeService"].methods}
    assert rpcs == set(snake), "a new RPC needs a wrapper method (sync and async)"
    for method in snake.values():
        assert callable(getattr(sheep_client.SheepClient, method))
        assert callable(getattr(sheep_client.AsyncSheepClient, method))


@pytest.mark.parametrize(("code", "cls"), [
    (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgument),
    (grpc.StatusCode.NOT_FOUND, errors.NotFound),
    (grpc.StatusCode.ALREADY_EXISTS, errors.AlreadyExists),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.ResourceExhausted),
    (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPrecondition),
    (grpc.StatusCode.UNAVAILABLE, errors.Unavailable),
    (grpc.StatusCode.INTERNAL, errors.Internal),
    (grpc.StatusCode.PERMISSION_DENIED, errors.SheepClientError),
])
def test_status_codes_map_to_error_classes(code: grpc.StatusCode,
                                           cls: type[errors.SheepClientError]) -> None:
    class FakeError(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return code

        def details(self) -> str:
            return "why"

        def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
            return ()

    e = errors.from_rpc_error(FakeError())
    assert type(e) is cls and e.code == code and e.details == "why"
    assert str(e) == f"{code.name}: why" and e.status is None and e.resource is None


def test_mismatched_rich_status_is_ignored() -> None:
    from google.rpc import status_pb2

    class FakeError(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.NOT_FOUND

        def details(self) -> str:
            return "gone"

        def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
            other = status_pb2.Status(code=3, message="gone")  # INVALID_ARGUMENT
            return ((errors.DETAILS_METADATA_KEY, other.SerializeToString()),)

    assert errors.from_rpc_error(FakeError()).status is None


def test_request_builders() -> None:
    req = builders.create_container(["/bin/sleep", "1"], name="x", env={"A": "1"},
                                    networks=["backend", pb.NetworkAttachmentRequest(
                                        network="front", ip="10.0.0.5")])
    assert [n.network for n in req.networks] == ["backend", "front"]
    assert req.networks[1].ip == "10.0.0.5" and dict(req.env) == {"A": "1"}
    with pytest.raises(TypeError):
        builders.create_container("/bin/sleep 1")

    att = builders.attach_network("c", "n", ports=["127.0.0.1:8080-8081:80-81/udp",
                                                   pb.PortMapping(host_port=1, container_port=2)])
    assert [(p.protocol, p.host_ip, p.host_port, p.container_port, p.count)
            for p in att.ports] == [("udp", "127.0.0.1", 8080, 80, 2), ("", "", 1, 2, 0)]

    assert dict(builders.list_containers(all=True, filters={"network": "n"}).filters) == \
        {"all": "true", "network": "n"}
    assert not builders.create_network("n", "10.0.0.0/24").HasField("icc")
    assert builders.create_network("n", "10.0.0.0/24", icc=False).HasField("icc")

    assert not builders.watch_events().HasField("since")
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert builders.watch_events(since=when).since.ToDatetime(tzinfo=UTC) == when
    assert builders.watch_events(since=1.5).since.ToNanoseconds() == 1_500_000_000
    ts = Timestamp(seconds=7)
    assert builders.watch_events({"type": "link."}, since=ts).since.seconds == 7


def test_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHEEP_SOCKET", raising=False)
    assert target() == f"unix:{DEFAULT_SOCKET}"
    monkeypatch.setenv("SHEEP_SOCKET", "/tmp/x.sock")
    assert target() == "unix:/tmp/x.sock"
    assert target(socket="/a.sock") == "unix:/a.sock"
    assert target(socket="unix:/b.sock") == "unix:/b.sock"
    assert target(host="127.0.0.1:50051", socket="/a.sock") == "127.0.0.1:50051"


def test_sheepctl_keeps_its_commands_and_flags() -> None:
    p = build_parser()
    a = p.parse_args(["--socket", "/s", "run", "-d", "--name", "n", "--network", "a",
                      "--network-mode", "none", "--ip", "10.0.0.2", "-p", "80:80",
                      "--hostname", "h", "-e", "K=V", "--", "/bin/true"])
    assert (a.cmd, a.detach, a.name, a.network, a.network_mode, a.ip, a.publish, a.hostname,
            a.env, a.command) == ("run", True, "n", ["a"], "none", "10.0.0.2", ["80:80"], "h",
                                  ["K=V"], ["--", "/bin/true"])
    assert p.parse_args(["ps", "-a"]).all
    assert p.parse_args(["stop", "-t", "3", "a", "b"]).ids == ["a", "b"]
    assert p.parse_args(["rm", "-f", "a"]).force
    for argv in (["inspect", "x"], ["port", "x"], ["events", "--filter", "type=link."],
                 ["version"], ["network", "ls"], ["network", "inspect", "n"],
                 ["network", "rm", "n"], ["network", "disconnect", "n", "c"],
                 ["network", "connect", "n", "c", "--ip", "1.2.3.4", "--interface", "eth5",
                  "-p", "1:2"],
                 ["network", "create", "n", "--subnet", "10.0.0.0/24", "--gateway",
                  "10.0.0.1", "--bridge", "br", "--mtu", "1400", "--internal", "--no-icc"],
                 ["--host", "127.0.0.1:1", "version"]):
        assert p.parse_args(argv).fn is not None
