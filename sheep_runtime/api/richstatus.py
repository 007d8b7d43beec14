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

The resource is taken from the error's `resource_type` / `resource_name` attributes if
it has them, else recognised from the daemon's own message wording (RESOURCE_PATTERNS).
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

# A name as the daemon quotes it: 'repr' quotes, double quotes, or a bare word.
_Q = r"""(?:'(?P<sq>[^']*)'|"(?P<dq>[^"]*)"|(?P<bare>[^'"\s;:,()]+))"""


@dataclass(frozen=True)
class Resource:
    """What an error is about: a resource type ("container", "network", "address",
    "bridge", "interface", "attachment") and its name as the client gave or knows it."""

    type: str
    name: str


#: (error kind, message pattern with a `name` group, resource type, ErrorInfo reason).
#: The first match wins. Patterns follow the messages raised in sheep_runtime.ops.
RESOURCE_PATTERNS: tuple[tuple[type[errors.SheepError], re.Pattern[str], str, str], ...] = (
    (errors.NotFound, re.compile(r"^no container with id or name " + _Q),
     "container", "CONTAINER_NOT_FOUND"),
    (errors.NotFound, re.compile(r"^container " + _Q + r" was removed"),
     "container", "CONTAINER_NOT_FOUND"),
    (errors.NotFound,
     re.compile(r"^container (?P<container>\S+) is not attached to network (?P<network>\S+)"),
     "attachment", "ATTACHMENT_NOT_FOUND"),
    (errors.NotFound, re.compile(r"^no network named " + _Q), "network", "NETWORK_NOT_FOUND"),
    (errors.AlreadyExists, re.compile(r"^a container named " + _Q + " already exists"),
     "container", "NAME_TAKEN"),
    (errors.AlreadyExists, re.compile(r"^a network named " + _Q + " already exists"),
     "network", "NAME_TAKEN"),
    (errors.AlreadyExists, re.compile(r"^bridge " + _Q + " already belongs"),
     "bridge", "BRIDGE_TAKEN"),
    (errors.AlreadyExists, re.compile(r"^an interface named " + _Q + " already exists"),
     "interface", "INTERFACE_TAKEN"),
    (errors.AlreadyExists, re.compile(r"^address " + _Q + " on network .* already leased"),
     "address", "ADDRESS_TAKEN"),
    (errors.AlreadyExists, re.compile(r"^" + _Q + " is already allocated in "),
     "address", "ADDRESS_TAKEN"),
    (errors.FailedPrecondition, re.compile(r"^container " + _Q + " is running"),
     "container", "CONTAINER_RUNNING"),
    (errors.FailedPrecondition, re.compile(r"^container " + _Q + " has exited"),
     "container", "CONTAINER_EXITED"),
    (errors.FailedPrecondition, re.compile(r"^container " + _Q + " is already on "),
     "container", "ADDRESS_CONFLICT"),
    (errors.FailedPrecondition, re.compile(r"^the default network " + _Q + " cannot"),
     "network", "DEFAULT_NETWORK"),
    (errors.FailedPrecondition, re.compile(r"^network " + _Q + " still has containers"),
     "network", "NETWORK_IN_USE"),
    (errors.ResourceExhausted, re.compile(r"^network " + _Q + r" \(\S+\) has no free address"),
     "network", "ADDRESS_POOL_EXHAUSTED"),
)

#: The reason when no pattern matched, by error kind (most specific first).
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


def _name(m: re.Match[str]) -> str:
    """The resource name a pattern matched; "container/network" for an attachment."""
    g = m.groupdict()
    if "container" in g:
        return f"{g['container']}/{g['network']}"
    return next((g[k] for k in ("sq", "dq", "bare") if g.get(k) is not None), "")


def _reason_word(field: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", field.upper()).strip("_")


def classify(exc: BaseException) -> tuple[Resource | None, str]:
    """The resource an error is about (if known) and its ErrorInfo reason."""
    message = str(exc)
    rtype, rname = getattr(exc, "resource_type", ""), getattr(exc, "resource_name", "")
    for kind, pattern, ptype, reason in RESOURCE_PATTERNS:
        if isinstance(exc, kind):
            m = pattern.search(message)
            if m:
                return Resource(str(rtype or ptype), str(rname or _name(m))), reason
    resource = Resource(str(rtype), str(rname)) if rtype and rname else None
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
