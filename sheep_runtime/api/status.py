"""The one table from error kinds to gRPC status codes."""

from __future__ import annotations

import grpc

from sheep_runtime import errors

STATUS_OF: tuple[tuple[type[errors.SheepError], grpc.StatusCode], ...] = (
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.KernelError, grpc.StatusCode.INTERNAL),
    (errors.StoreError, grpc.StatusCode.INTERNAL),
)


def status_code(exc: errors.SheepError) -> grpc.StatusCode:
    """The gRPC status code for a daemon error."""
    for kind, code in STATUS_OF:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL
