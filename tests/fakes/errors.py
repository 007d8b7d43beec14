"""The errors the fakes raise: `KernelError` kinds carrying the kernel's errno, as the
netlink backend's do (ops sees only `KernelError`; the fakes do not import the
backend, so the fast tier does not depend on it)."""

from __future__ import annotations

import os

from sheep_runtime.errors import KernelError


class FakeKernelError(KernelError):
    """A refused kernel call; `errno` is the kernel's code."""

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class FakeLinkError(FakeKernelError):
    """A refused netlink request (link, address, route, neighbour)."""


class FakeNamespaceError(FakeKernelError):
    """A refused netns operation."""


def link_error(what: str, code: int) -> FakeLinkError:
    """The error for a kernel refusal `code` of the request `what`."""
    return FakeLinkError(f"{what}: {os.strerror(code)}", errno=code)
