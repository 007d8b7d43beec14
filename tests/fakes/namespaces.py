"""`Namespaces` over the `FakeKernel`: a pin is a plain file at its path (so whatever
lists the pin directory sees it) plus a netns model in the kernel."""

from __future__ import annotations

import errno
from pathlib import Path

from tests.fakes.calls import CallLog
from tests.fakes.errors import FakeNamespaceError
from tests.fakes.kernel import FakeKernel


def _injected(message: str) -> FakeNamespaceError:
    return FakeNamespaceError(message, errno=errno.EIO)


class FakeNamespaces:
    """Pinned network namespaces."""

    def __init__(self, kernel: FakeKernel, calls: CallLog) -> None:
        self._kernel = kernel
        self._calls = calls

    async def create(self, path: Path) -> None:
        self._calls.record("namespaces.create", mutating=True, error=_injected)
        if not path.parent.is_dir():
            raise FakeNamespaceError(f"create netns {path}: No such file or directory",
                                 errno=errno.ENOENT)
        self._kernel.add_netns(path)
        path.touch(mode=0o444)

    async def delete(self, path: Path) -> None:
        self._calls.record("namespaces.delete", mutating=True, error=_injected)
        self._kernel.drop_netns(path)
        path.unlink(missing_ok=True)

    def exists(self, path: Path) -> bool:
        self._calls.record("namespaces.exists", mutating=False)
        return path in self._kernel.netns
