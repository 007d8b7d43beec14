"""The one error tree of sheep-runtime.

Every failure the daemon reports is a `SheepError` of one kind; the API layer maps
each kind to a gRPC status code in one table (`api/status.py`). Library errors
(pyroute2, sqlite, OSError) are wrapped with context and chained, never leaked raw.
"""

from __future__ import annotations


class SheepError(Exception):
    """Base of every error the daemon reports to a client."""


class InvalidArgument(SheepError):
    """The request itself is wrong; retrying it unchanged cannot succeed."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class NotFound(SheepError):
    """The named container, network or attachment does not exist."""


class AlreadyExists(SheepError):
    """A name, address or port is already taken by someone else."""


class ResourceExhausted(SheepError):
    """A pool (addresses, bridge ports) is full."""


class FailedPrecondition(SheepError):
    """The object is in a state that forbids the operation (e.g. running, in use)."""


class KernelError(SheepError):
    """A kernel operation (netlink, mount, namespaces) failed."""


class FirewallError(KernelError):
    """An nftables transaction failed."""


class StoreError(SheepError):
    """The state store failed."""
