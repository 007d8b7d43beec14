"""The one error tree of sheep-runtime.

Every failure the daemon reports is a `SheepError` of one kind; the API layer maps
each kind to a gRPC status code in one table (`api/status.py`). Library errors
(pyroute2, sqlite, OSError) are wrapped with context and chained, never leaked raw.
"""

from __future__ import annotations


class SheepError(Exception):
    """Base of every error the daemon reports to a client.

    Besides the message a person reads, an error may say what a program needs to act:
    `reason` (UPPER_SNAKE_CASE, e.g. NAME_TAKEN) and the resource it is about
    (`resource_type` such as "container", `resource_name`). The API turns them into
    `google.rpc` status details.
    """

    def __init__(self, message: str, *, reason: str = "", resource_type: str = "",
                 resource_name: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.resource_type = resource_type
        self.resource_name = resource_name


class InvalidArgument(SheepError):
    """The request itself is wrong; retrying it unchanged cannot succeed."""

    def __init__(self, message: str, *, field: str = "", reason: str = "",
                 resource_type: str = "", resource_name: str = "") -> None:
        super().__init__(message, reason=reason, resource_type=resource_type,
                         resource_name=resource_name)
        self.field = field


class NotFound(SheepError):
    """The named container, network or attachment does not exist."""


class AlreadyExists(SheepError):
    """A name, address or port is already taken by someone else."""


class ResourceExhausted(SheepError):
    """A pool (addresses, bridge ports) is full."""


class FailedPrecondition(SheepError):
    """The object is in a state that forbids the operation (e.g. running, in use)."""


class Unavailable(SheepError):
    """A service the daemon depends on (etcd) cannot be reached; retrying may help."""


class KernelError(SheepError):
    """A kernel operation (netlink, mount, namespaces) failed; `errno` is the kernel's
    code when one is known."""

    errno: int | None = None


class FirewallError(KernelError):
    """An nftables transaction failed."""


class StoreError(SheepError):
    """The state store failed."""
