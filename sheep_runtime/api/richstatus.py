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
    resource = (Resource(exc.resource_type, exc.resource_name)
                if exc.resource_type and exc.resource_name else None)
    if exc.reason:
        return resource, exc.reason
    if isinstance(exc, errors.InvalidArgument) and exc.field:
        return resource, f"INVALID_{_reason_word(exc.field)}"
    for base, default in DEFAULT_REASONS:
        if isinstance(exc, base):
            return resource, default
    return resource, "INTERNAL"


def _pack(status: Any, detail: Any) -> None:
    status.details.add().Pack(detail)


def to_rpc_status(exc: BaseException, code: grpc.StatusCode, *,
                  message: str | None = None) -> Any:
    """A `google.rpc.Status` for `exc` failing with `code`: message plus details."""
    text = str(exc) if message is None else message
    status = status_pb2.Status(code=code.value[0], message=text)
    resource, reason = classify(exc)
    field = exc.field if isinstance(exc, errors.InvalidArgument) else ""
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
