"""Errors of the netlink backend: `KernelError` kinds that keep the kernel's errno."""

from __future__ import annotations

import os

from pyroute2.netlink.exceptions import NetlinkError

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


def error_code(exc: BaseException) -> int | None:
    """The errno carried by a pyroute2 `NetlinkError` or an `OSError`, else None."""
    if isinstance(exc, NetlinkError):
        code = getattr(exc, "code", None)
        return code if isinstance(code, int) else None
    if isinstance(exc, OSError):
        return exc.errno
    return None


def is_errno(exc: BaseException, *codes: int) -> bool:
    """True if `exc` carries one of `codes` (NetlinkError or OSError)."""
    return error_code(exc) in codes


def describe(exc: BaseException) -> str:
    """strerror of the code plus the kernel's extack text when it sent one."""
    code = error_code(exc)
    if code is None:
        return f"{type(exc).__name__}: {exc}"
    text = os.strerror(code)
    detail = exc.args[1] if len(exc.args) > 1 else None
    if isinstance(detail, str) and detail and detail != text:
        text = f"{text} ({detail})"
    return text


def link_error(what: str, exc: BaseException) -> LinkError:
    """`LinkError` for `exc` with context `what`; callers raise it `from exc`."""
    return LinkError(f"{what}: {describe(exc)}", errno=error_code(exc))


def namespace_error(what: str, exc: BaseException) -> NamespaceError:
    """`NamespaceError` for `exc` with context `what`; callers raise it `from exc`."""
    return NamespaceError(f"{what}: {describe(exc)}", errno=error_code(exc))
