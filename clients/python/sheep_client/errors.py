"""Typed errors raised by the client, decoded from gRPC statuses.

Every failed call raises a `SheepClientError` subclass chosen by the status code. When
the daemon attached `google.rpc.Status` details (trailer ``grpc-status-details-bin``),
they are decoded too: `BadRequest` field violations, `ResourceInfo`, `ErrorInfo` and
`PreconditionFailure` violations.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc

# googleapis-common-protos ships .pyi files but no py.typed marker.
from google.rpc import (  # type: ignore[import-untyped, unused-ignore]
    error_details_pb2,
    status_pb2,
)

#: The trailer that carries a serialized `google.rpc.Status` (as grpcio-status uses it).
DETAILS_METADATA_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field (`google.rpc.BadRequest.FieldViolation`)."""

    field: str
    description: str


@dataclass(frozen=True)
class ResourceRef:
    """The resource an error is about (`google.rpc.ResourceInfo`)."""

    type: str
    name: str
    description: str = ""


@dataclass(frozen=True)
class PreconditionViolation:
    """One failed precondition (`google.rpc.PreconditionFailure.Violation`)."""

    type: str
    subject: str
    description: str


class SheepClientError(Exception):
    """A call to sheepd failed. `code` is the gRPC status code, `details` its message.

    Decoded rich details, when the daemon sent them: `reason` and `domain` and
    `error_metadata` (from `ErrorInfo`), `field_violations` (from `BadRequest`),
    `resource` (from `ResourceInfo`), `precondition_violations` (from
    `PreconditionFailure`). `status` is the raw `google.rpc.Status`, or None.
    """

    def __init__(self, code: grpc.StatusCode, details: str, *,
                 status: Any = None) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code: grpc.StatusCode = code
        self.details: str = details
        self.status: Any = status
        self.reason: str = ""
        self.domain: str = ""
        self.error_metadata: dict[str, str] = {}
        self.field_violations: list[FieldViolation] = []
        self.resource: ResourceRef | None = None
        self.precondition_violations: list[PreconditionViolation] = []
        if status is not None:
            self._decode(status.details)

    def _decode(self, details: Iterable[Any]) -> None:
        for any_msg in details:
            if any_msg.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                any_msg.Unpack(info)
                self.reason, self.domain = str(info.reason), str(info.domain)
                self.error_metadata = {str(k): str(v) for k, v in info.metadata.items()}
            elif any_msg.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                any_msg.Unpack(bad)
                self.field_violations.extend(
                    FieldViolation(str(v.field), str(v.description))
                    for v in bad.field_violations)
            elif any_msg.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
                res = error_details_pb2.ResourceInfo()
                any_msg.Unpack(res)
                self.resource = ResourceRef(str(res.resource_type), str(res.resource_name),
                                            str(res.description))
            elif any_msg.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
                pf = error_details_pb2.PreconditionFailure()
                any_msg.Unpack(pf)
                self.precondition_violations.extend(
                    PreconditionViolation(str(v.type), str(v.subject), str(v.description))
                    for v in pf.violations)

    @property
    def field(self) -> str:
        """The first bad field's name, or "" (a shortcut for `field_violations`)."""
        return self.field_violations[0].field if self.field_violations else ""


class InvalidArgument(SheepClientError):
    """INVALID_ARGUMENT: the request is wrong; retrying it unchanged cannot succeed."""


class NotFound(SheepClientError):
    """NOT_FOUND: no such container, network or attachment."""


class AlreadyExists(SheepClientError):
    """ALREADY_EXISTS: a name, address or port is taken."""


class ResourceExhausted(SheepClientError):
    """RESOURCE_EXHAUSTED: a pool (addresses, bridge ports) is full."""


class FailedPrecondition(SheepClientError):
    """FAILED_PRECONDITION: wrong state (e.g. running, in use, exited)."""


class Unavailable(SheepClientError):
    """UNAVAILABLE: the daemon cannot be reached (not running, wrong socket)."""


class Internal(SheepClientError):
    """INTERNAL: the daemon failed (kernel or store); nothing was left half-made."""


ERROR_CLASSES: dict[grpc.StatusCode, type[SheepClientError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.INTERNAL: Internal,
}


def rich_status(err: grpc.RpcError) -> Any:
    """The `google.rpc.Status` carried by a failed call's trailers, or None.

    Works for sync errors and `grpc.aio.AioRpcError` alike. Unlike
    `grpc_status.rpc_status.from_call`, a status whose code disagrees with the call's
    is ignored rather than raised.
    """
    trailers = getattr(err, "trailing_metadata", None)
    if trailers is None:
        return None
    try:
        items = trailers() or ()
        code = err.code()
    except Exception:  # a call object without trailers (e.g. failed before starting)
        return None
    for key, value in items:
        if key == DETAILS_METADATA_KEY and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            if code is not None and status.code != code.value[0]:
                return None
            return status
    return None


def from_rpc_error(err: grpc.RpcError) -> SheepClientError:
    """The typed error for a failed call (sync or asyncio)."""
    try:
        code: grpc.StatusCode = err.code()
        details: str = err.details() or ""
    except Exception:
        code, details = grpc.StatusCode.UNKNOWN, str(err)
    if code is None:
        code = grpc.StatusCode.UNKNOWN
    cls = ERROR_CLASSES.get(code, SheepClientError)
    return cls(code, details, status=rich_status(err))
