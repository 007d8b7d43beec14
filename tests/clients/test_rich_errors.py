"""Rich error details end to end: sheep_runtime.api.richstatus on a grpc.aio server
encodes google.rpc.Status details, the Python client decodes them into typed errors.

The server here is an in-process RuntimeService whose handlers raise daemon errors
through the same abort path the real servicer uses, on a Unix socket in tmp_path: no
root, no kernel, no network."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from sheep.runtime.v1 import runtime_pb2 as pb
from sheep.runtime.v1 import runtime_pb2_grpc as pb_grpc
from sheep_client import (
    AlreadyExists,
    AsyncSheepClient,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SheepClient,
)

from sheep_runtime import errors
from sheep_runtime.api import richstatus
from sheep_runtime.api.status import status_code

# -- the encoder alone --------------------------------------------------------------------


def _details(status: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for any_msg in status.details:
        for cls in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest,
                    error_details_pb2.ResourceInfo, error_details_pb2.PreconditionFailure):
            if any_msg.Is(cls.DESCRIPTOR):
                msg = cls()
                any_msg.Unpack(msg)
                out[cls.__name__] = msg
    return out


def test_invalid_argument_has_field_violation() -> None:
    e = errors.InvalidArgument("command is required: give the program and its arguments",
                               field="command")
    s = richstatus.to_rpc_status(e, grpc.StatusCode.INVALID_ARGUMENT)
    assert isinstance(s, status_pb2.Status)
    assert s.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and s.message == str(e)
    d = _details(s)
    assert [(v.field, v.description) for v in d["BadRequest"].field_violations] == \
        [("command", str(e))]
    assert d["ErrorInfo"].reason == "INVALID_COMMAND"
    assert d["ErrorInfo"].domain == "sheep.runtime.v1"
    assert dict(d["ErrorInfo"].metadata) == {"field": "command"}
    assert "ResourceInfo" not in d


def _err(kind: type[errors.SheepError], message: str, reason: str, rtype: str,
         rname: str) -> errors.SheepError:
    return kind(message, reason=reason, resource_type=rtype, resource_name=rname)


@pytest.mark.parametrize(("exc", "rtype", "rname", "reason"), [
    (_err(errors.NotFound, "no container with id or name 'web'", "CONTAINER_NOT_FOUND",
          "container", "web"), "container", "web", "CONTAINER_NOT_FOUND"),
    (_err(errors.AlreadyExists, "a network named 'backend' already exists", "NAME_TAKEN",
          "network", "backend"), "network", "backend", "NAME_TAKEN"),
    (_err(errors.FailedPrecondition, "container web is running: stop it first",
          "CONTAINER_RUNNING", "container", "web"), "container", "web", "CONTAINER_RUNNING"),
    (_err(errors.ResourceExhausted, "network 'tiny' (10.9.0.0/30) has no free address",
          "ADDRESS_POOL_EXHAUSTED", "network", "tiny"), "network", "tiny",
     "ADDRESS_POOL_EXHAUSTED"),
])
def test_resource_info_from_the_error(exc: errors.SheepError, rtype: str, rname: str,
                                      reason: str) -> None:
    s = richstatus.to_rpc_status(exc, status_code(exc))
    d = _details(s)
    assert (d["ResourceInfo"].resource_type, d["ResourceInfo"].resource_name) == \
        (rtype, rname)
    assert d["ErrorInfo"].reason == reason
    assert d["ErrorInfo"].metadata["resource_name"] == rname
    if isinstance(exc, errors.FailedPrecondition):
        (v,) = d["PreconditionFailure"].violations
        assert (v.type, v.subject) == (reason, f"{rtype}/{rname}")


def test_an_error_without_reason_gets_its_kinds() -> None:
    d = _details(richstatus.to_rpc_status(errors.NotFound("gone"), grpc.StatusCode.NOT_FOUND))
    assert d["ErrorInfo"].reason == "NOT_FOUND" and "ResourceInfo" not in d


def test_unknown_errors_are_internal_without_resource() -> None:
    s = richstatus.to_rpc_status(RuntimeError("boom"), grpc.StatusCode.INTERNAL,
                                 message="RuntimeError: boom")
    d = _details(s)
    assert s.message == "RuntimeError: boom" and d["ErrorInfo"].reason == "INTERNAL"
    assert set(d) == {"ErrorInfo"}
    assert _details(richstatus.to_rpc_status(
        errors.KernelError("netlink said no"), grpc.StatusCode.INTERNAL)
    )["ErrorInfo"].reason == "KERNEL_ERROR"


def test_grpc_status_carries_the_details_trailer() -> None:
    st = richstatus.to_grpc_status(errors.NotFound("no container with id or name 'x'",
                                                   reason="CONTAINER_NOT_FOUND"),
                                   grpc.StatusCode.NOT_FOUND)
    assert st.code == grpc.StatusCode.NOT_FOUND and st.details.startswith("no container")
    ((key, value),) = st.trailing_metadata
    assert key == "grpc-status-details-bin"
    assert status_pb2.Status.FromString(value).message == st.details


# -- end to end over a real gRPC server ---------------------------------------------------

Handler = Callable[..., Any]


def mapped(fn: Handler) -> Handler:
    """The servicer's `_mapped`, as wired to richstatus (see the lead's patch)."""
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await fn(self, request, context)
        except errors.SheepError as e:
            await richstatus.abort(context, e, status_code(e))
        except Exception as e:
            await richstatus.abort(context, e, grpc.StatusCode.INTERNAL,
                                   message=f"{type(e).__name__}: {e}")
    return wrapper


class FailingServicer(pb_grpc.RuntimeServiceServicer):  # type: ignore[misc]
    """Every RPC fails the way the daemon would."""

    @mapped
    async def Inspect(self, request: pb.InspectRequest, context: Any) -> pb.Container:
        raise errors.NotFound(f"no container with id or name {request.id!r}",
                              reason="CONTAINER_NOT_FOUND", resource_type="container",
                              resource_name=request.id)

    @mapped
    async def CreateContainer(self, request: pb.CreateContainerRequest,
                              context: Any) -> pb.Container:
        if not request.command:
            raise errors.InvalidArgument(
                "command is required: give the program and its arguments", field="command")
        raise errors.AlreadyExists(f"a container named {request.name!r} already exists",
                                   reason="NAME_TAKEN", resource_type="container",
                                   resource_name=request.name)

    @mapped
    async def RemoveContainer(self, request: pb.RemoveContainerRequest,
                              context: Any) -> pb.RemoveContainerResponse:
        raise errors.FailedPrecondition(
            f"container {request.id} is running: stop it first or use force",
            reason="CONTAINER_RUNNING", resource_type="container", resource_name=request.id)

    @mapped
    async def AttachNetwork(self, request: pb.AttachNetworkRequest,
                            context: Any) -> pb.NetworkAttachment:
        raise errors.ResourceExhausted(
            f"network {request.network!r} (10.9.0.0/30) has no free address: 1 of 1 leased",
            reason="ADDRESS_POOL_EXHAUSTED", resource_type="network",
            resource_name=request.network)

    @mapped
    async def Version(self, request: pb.VersionRequest, context: Any) -> pb.VersionResponse:
        raise ZeroDivisionError("division by zero")


@pytest.fixture
async def socket_path(tmp_path: Path) -> AsyncIterator[str]:
    server = grpc.aio.server()
    pb_grpc.add_RuntimeServiceServicer_to_server(FailingServicer(), server)
    path = tmp_path / "rich.sock"
    server.add_insecure_port(f"unix:{path}")
    await server.start()
    try:
        yield str(path)
    finally:
        await server.stop(None)


async def test_async_client_decodes_rich_details(socket_path: str) -> None:
    async with AsyncSheepClient(socket=socket_path, timeout=10) as c:
        with pytest.raises(NotFound) as nf:
            await c.inspect("web")
        assert nf.value.reason == "CONTAINER_NOT_FOUND"
        assert nf.value.resource is not None
        assert (nf.value.resource.type, nf.value.resource.name) == ("container", "web")
        assert nf.value.details == "no container with id or name 'web'"

        with pytest.raises(InvalidArgument) as ia:
            await c.create_container([])
        assert ia.value.field == "command"
        assert [v.field for v in ia.value.field_violations] == ["command"]
        assert ia.value.error_metadata == {"field": "command"}

        with pytest.raises(AlreadyExists) as ae:
            await c.create_container(["/bin/true"], name="web")
        assert ae.value.reason == "NAME_TAKEN" and ae.value.resource is not None

        with pytest.raises(FailedPrecondition) as fp:
            await c.remove_container("web")
        assert [(v.type, v.subject) for v in fp.value.precondition_violations] == \
            [("CONTAINER_RUNNING", "container/web")]

        with pytest.raises(ResourceExhausted) as rx:
            await c.attach_network("web", "tiny")
        assert rx.value.resource is not None and rx.value.resource.name == "tiny"

        with pytest.raises(Internal) as ie:
            await c.version()
        assert ie.value.details == "ZeroDivisionError: division by zero"
        assert ie.value.reason == "INTERNAL" and ie.value.status is not None


async def test_sync_client_decodes_rich_details(socket_path: str) -> None:
    def calls() -> tuple[NotFound, InvalidArgument]:
        with SheepClient(socket=socket_path, timeout=10) as c:
            with pytest.raises(NotFound) as nf:
                c.inspect("db")
            with pytest.raises(InvalidArgument) as ia:
                c.create_container([])
            return nf.value, ia.value

    # The server runs on this event loop: block a worker thread, not the loop.
    nf, ia = await asyncio.to_thread(calls)
    assert nf.resource is not None and nf.resource.name == "db"
    assert nf.code == grpc.StatusCode.NOT_FOUND
    assert ia.field_violations[0].field == "command"
