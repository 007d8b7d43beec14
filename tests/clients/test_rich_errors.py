"""Rich error details end to end: sheep_runtime.api.richstatus on a grpc.aio server
encodes google.rpc.Status details, the Python client decodes them into typed errors.

The server here is an in-process RuntimeService whose handlers raise daemon errors
through the real servicer's error mapping (`sheep_runtime.api.servicer.mapped`), on a
Unix socket in tmp_path: no root, no kernel, no network."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
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

from sheep_runtime import errors, names
from sheep_runtime.api import richstatus
from sheep_runtime.api.servicer import mapped
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


# -- bounded texts --------------------------------------------------------------------------

def test_bounded_keeps_short_texts_and_cuts_the_middle_of_long_ones() -> None:
    assert richstatus.bounded("x" * 256) == "x" * 256
    cut = richstatus.bounded("h" * 200 + "m" * 1000 + "t" * 100)
    head, _, rest = cut.partition("...[truncated, ")
    count, _, tail = rest.partition(" characters]...")
    assert head == "h" * 170 and tail == "t" * 85
    assert int(count) == 1300 - 170 - 85
    # Multi-byte characters are never split: the budget is in UTF-8 bytes.
    emoji = richstatus.bounded("\N{GRINNING FACE}" * 1000)
    assert len(emoji.encode()) < 300 and emoji.startswith("\N{GRINNING FACE}" * 42 + "...")


def _trailer_bytes(st: grpc.Status) -> int:
    """What a C-core client counts against grpc.max_metadata_size (8 KiB by default):
    grpc-message percent-encoded, the details base64, 32 bytes per entry."""
    message = sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in st.details.encode())
    ((key, value),) = st.trailing_metadata
    return (len("grpc-message") + message + len(key) + len(base64.b64encode(value))
            + 2 * 32)


@pytest.mark.parametrize("text", ["a" * (1 << 20), "\N{GRINNING FACE}" * 100_000,
                                  "\x01%" * 50_000])
@pytest.mark.parametrize("kind", [errors.InvalidArgument, errors.NotFound,
                                  errors.FailedPrecondition])
def test_a_huge_input_still_fits_the_default_metadata_limit(
        text: str, kind: type[errors.SheepError]) -> None:
    exc = (errors.InvalidArgument(f"bad {text!r}", field=text, resource_type="container",
                                  resource_name=text) if kind is errors.InvalidArgument
           else kind(f"bad {text!r}", reason="R", resource_type="container",
                     resource_name=text))
    st = richstatus.to_grpc_status(exc, status_code(exc))
    assert _trailer_bytes(st) < 6 * 1024
    d = _details(status_pb2.Status.FromString(st.trailing_metadata[0][1]))
    assert "[truncated, " in st.details and "[truncated, " in d["ResourceInfo"].resource_name
    assert d["ErrorInfo"].metadata["resource_name"] == d["ResourceInfo"].resource_name


# -- end to end over a real gRPC server ---------------------------------------------------

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
        names.validate_name(request.name, what="container")
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


async def test_huge_names_fail_with_their_own_status(socket_path: str) -> None:
    """A 10 KB or 1 MB name gets INVALID_ARGUMENT with a short message, not the C-core
    client's RESOURCE_EXHAUSTED for oversized trailers."""
    def calls() -> list[tuple[InvalidArgument, NotFound]]:
        out = []
        with SheepClient(socket=socket_path, timeout=10) as c:
            for size in (10 * 1024, 1 << 20):
                with pytest.raises(InvalidArgument) as ia:
                    c.create_container(["/bin/true"], name="a" * size)
                with pytest.raises(NotFound) as nf:
                    c.inspect("b" * size)
                out.append((ia.value, nf.value))
        return out

    for ia, nf in await asyncio.to_thread(calls):
        assert ia.field == "name" and "[truncated, " in ia.details
        assert ia.details.startswith("invalid container name 'aaa")
        assert ia.details.endswith("starting with a letter or digit")
        assert len(ia.details) < 600 and ia.field_violations[0].description == ia.details
        assert nf.resource is not None and "[truncated, " in nf.resource.name
        assert len(nf.resource.name) < 300 and len(nf.details) < 600
