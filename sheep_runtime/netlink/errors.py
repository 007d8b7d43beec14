"""Errors of the netlink backend: `KernelError` kinds that keep the kernel's errno."""

from __future__ import annotations

import os

from sheep_runtime.errors import KernelError


class NetlinkBackendError(KernelError):
    """A kernel call of the netlink backend failed; `errno` is the kernel's code."""

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class LinkError(NetlinkBackendError):
    """A netlink request (link, address, route) failed."""


class NamespaceError(NetlinkBackendError):
    """Creating, entering or removing a network namespace failed."""


def describe(exc: BaseException) -> str:
    """strerror of the errno plus the kernel's extack text when it sent one."""
    if not isinstance(exc, OSError) or exc.errno is None:
        return f"{type(exc).__name__}: {exc}"
    text = os.strerror(exc.errno)
    detail = exc.strerror
    if detail and detail != text:
        text = f"{text} ({detail})"
    return text


def _code(exc: BaseException) -> int | None:
    return exc.errno if isinstance(exc, OSError) else None


def link_error(what: str, exc: BaseException) -> LinkError:
    """`LinkError` for `exc` with context `what`; callers raise it `from exc`."""
    return LinkError(f"{what}: {describe(exc)}", errno=_code(exc))


def namespace_error(what: str, exc: BaseException) -> NamespaceError:
    """`NamespaceError` for `exc` with context `what`; callers raise it `from exc`."""
    return NamespaceError(f"{what}: {describe(exc)}", errno=_code(exc))
