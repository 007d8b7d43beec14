"""The one table from daemon errors to CNI error codes.

Codes below 100 are the spec's; a plugin owns 100 and up. The gRPC-style status name
and the error's reason go in `details` ("ALREADY_EXISTS: INTERFACE_EXISTS"), so a
person or a tool sees the same reason the gRPC API would give.
"""

from __future__ import annotations

from sheep_runtime import errors
from sheep_runtime.cni.plugin import (
    INVALID_CONFIG,
    INVALID_ENV,
    UNKNOWN_CONTAINER,
    Failure,
)

ALREADY_EXISTS = 100
RESOURCE_EXHAUSTED = 101
CHECK_FAILED = 102  # FAILED_PRECONDITION: the kernel or prevResult differ from the record
INTERNAL = 110

_CODES: tuple[tuple[type[errors.SheepError], int, str], ...] = (
    (errors.AlreadyExists, ALREADY_EXISTS, "ALREADY_EXISTS"),
    (errors.ResourceExhausted, RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED"),
    (errors.FailedPrecondition, CHECK_FAILED, "FAILED_PRECONDITION"),
    (errors.KernelError, INTERNAL, "INTERNAL"),
    (errors.StoreError, INTERNAL, "INTERNAL"),
)


def failure_of(exc: errors.SheepError) -> Failure:
    """The CNI error for a daemon error."""
    code, status = _code(exc)
    return Failure(code, str(exc), f"{status}: {exc.reason}" if exc.reason else status)


def _code(exc: errors.SheepError) -> tuple[int, str]:
    if isinstance(exc, errors.InvalidArgument):
        return (INVALID_ENV if exc.field.startswith("CNI_") else INVALID_CONFIG,
                "INVALID_ARGUMENT")
    if isinstance(exc, errors.NotFound):
        # An unknown network is a config error; an unknown attachment, the spec's 3.
        return (INVALID_CONFIG if exc.resource_type == "network" else UNKNOWN_CONTAINER,
                "NOT_FOUND")
    for kind, code, status in _CODES:
        if isinstance(exc, kind):
            return code, status
    return INTERNAL, "INTERNAL"
