"""Rich error statuses: a daemon error as a `google.rpc.Status` with details.

The status message stays the human one (`str(exc)`); the details let a program act
without parsing it:

- `ErrorInfo` (always): `reason` in UPPER_SNAKE_CASE (e.g. CONTAINER_NOT_FOUND,
  NAME_TAKEN, CONTAINER_RUNNING), `domain` "sheep.runtime.v1", and `metadata` with
  the bad `field` and the resource `type`/`name` when known.
- `BadRequest` with one field violation for INVALID_ARGUMENT errors that name a field.
- `ResourceInfo` for NOT_FOUND / ALREADY_EXISTS (and FAILED_PRECONDITION) errors whose
  resource type and name are known.
- `PreconditionFailure` for FAILED_PRECONDITION errors.

The reason and the resource come from the error itself (`SheepError.reason`,
`resource_type`, `resource_name`, set where it is raised); without a reason, one is
derived from the bad field or the error's kind.

Messages and names often quote what the client sent, and every copy travels in the
trailers (grpc-message, and grpc-status-details-bin in base64): a long input copied
unbounded made the trailers larger than the 8 KiB a gRPC C-core client accepts by
default, which then reports RESOURCE_EXHAUSTED instead of the error. So each text is
bounded here (`bounded`: the message to 512 bytes, names and metadata to 256): a
worst-case status stays under about 6 KiB of trailers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

# grpcio-status and googleapis-common-protos ship no py.typed marker.
from google.rpc import (  # type: ignore[import-untyped, unused-ignore]
    error_details_pb2,
    status_pb2,
)
from grpc_status import rpc_status  # type: ignore[import-untyped, unused-ignore]

from sheep_runtime import errors

DOMAIN = "sheep.runtime.v1"
#: Most UTF-8 bytes of a status message, and of a name or metadata value, before the
#: middle is cut out (the tail of a message usually says what to do).
MESSAGE_LIMIT = 512
VALUE_LIMIT = 256


def bounded(text: str, limit: int = VALUE_LIMIT) -> str:
    """`text` if its UTF-8 form fits in `limit` bytes; else its head and tail around
    "...[truncated, N characters]...", N being how many characters were cut."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    # A cut inside a multi-byte character drops that character ("ignore").
    head = data[:limit * 2 // 3].decode("utf-8", "ignore")
    tail = data[len(data) - limit // 3:].decode("utf-8", "ignore")
    return f"{head}...[truncated, {len(text) - len(head) - len(tail)} characters]...{tail}"


@dataclass(frozen=True)
class Resource:
    """What an error is about: a resource type ("container", "network", "address",
    "bridge", "interface", "attachment") and its name as the client gave or knows it."""

    type: str
    name: str


#: The reason of an error that names none, by error kind (most specific first).
DEFAULT_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (errors.InvalidArgument, "INVALID_ARGUMENT"),
    (errors.NotFound, "NOT_FOUND"),
    (errors.AlreadyExists, "ALREADY_EXISTS"),
    (errors.ResourceExhausted, "RESOURCE_EXHAUSTED"),
    (errors.FailedPrecondition, "FAILED_PRECONDITION"),
    (errors.FirewallError, "FIREWALL_ERROR"),
    (errors.KernelError, "KERNEL_ERROR"),
    (errors.StoreError, "STORE_ERROR"),
)


def _reason_word(field: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", field.upper()).strip("_")


def classify(exc: BaseException) -> tuple[Resource | None, str]:
    """The resource an error is about (if known) and its ErrorInfo reason."""
    if not isinstance(exc, errors.SheepError):
        return None, "INTERNAL"
    resource = (Resource(exc.resource_type, bounded(exc.resource_name))
                if exc.resource_type and exc.resource_name else None)
    if exc.reason:
        return resource, exc.reason
    if isinstance(exc, errors.InvalidArgument) and exc.field:
        return resource, f"INVALID_{_reason_word(bounded(exc.field))}"
    for base, default in DEFAULT_REASONS:
        if isinstance(exc, base):
            return resource, default
    return resource, "INTERNAL"


def _pack(status: Any, detail: Any) -> None:
    status.details.add().Pack(detail)


def to_rpc_status(exc: BaseException, code: grpc.StatusCode, *,
                  message: str | None = None) -> Any:
    """A `google.rpc.Status` for `exc` failing with `code`: message plus details,
    every text bounded."""
    text = bounded(str(exc) if message is None else message, MESSAGE_LIMIT)
    status = status_pb2.Status(code=code.value[0], message=text)
    resource, reason = classify(exc)
    field = bounded(exc.field) if isinstance(exc, errors.InvalidArgument) else ""
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN)
    if field:
        info.metadata["field"] = field
    if resource is not None:
        info.metadata["resource_type"] = resource.type
        info.metadata["resource_name"] = resource.name
    _pack(status, info)
    if field:
        _pack(status, error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=field, description=text)]))
    if resource is not None:
        _pack(status, error_details_pb2.ResourceInfo(
            resource_type=resource.type, resource_name=resource.name, description=text))
    if isinstance(exc, errors.FailedPrecondition):
        subject = f"{resource.type}/{resource.name}" if resource else ""
        _pack(status, error_details_pb2.PreconditionFailure(violations=[
            error_details_pb2.PreconditionFailure.Violation(
                type=reason, subject=subject, description=text)]))
    return status


def to_grpc_status(exc: BaseException, code: grpc.StatusCode, *,
                   message: str | None = None) -> grpc.Status:
    """The same as a `grpc.Status` for `context.abort_with_status`."""
    status: grpc.Status = rpc_status.to_status(to_rpc_status(exc, code, message=message))
    return status


async def abort(context: grpc.aio.ServicerContext, exc: BaseException,
                code: grpc.StatusCode, *, message: str | None = None) -> NoReturn:
    """End the call with `code`, `message` (default `str(exc)`) and rich details."""
    await context.abort_with_status(to_grpc_status(exc, code, message=message))
    raise AssertionError("unreachable")  # abort_with_status always raises
