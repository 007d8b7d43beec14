"""Network namespaces pinned by bind mounts, and code run inside them.

Joining a netns (setns) or creating one (unshare) with CLONE_NEWNET changes only the
calling thread, so every such step runs in a short-lived dedicated thread and the rest
of the process never leaves its own netns. Threads inherit the netns of the thread
that created them. Sockets in another netns come from `NetlinkWorkers.socket_in`.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import fcntl
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TypeVar

from sheep_runtime.netlink.errors import NamespaceError, namespace_error

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_MNT_DETACH = 2
_NS_GET_NSTYPE = 0xB703  # ioctl on an nsfs file: returns the CLONE_NEW* type

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        code = ctypes.get_errno()
        raise OSError(code, what)


def _mount_bind(source: str, target: Path) -> None:
    ret = _libc.mount(source.encode(), os.fsencode(target), b"none", _MS_BIND, None)
    _check(ret, "mount")


def _umount_detach(target: Path) -> None:
    _check(_libc.umount2(os.fsencode(target), _MNT_DETACH), "umount2")


def setns_fd(fd: int, nstype: int = CLONE_NEWNET) -> None:
    """setns(2) for the calling thread only (Python 3.11 has no os.setns)."""
    _check(_libc.setns(fd, nstype), "setns")


def _setns(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns_fd(fd, CLONE_NEWNET)
    finally:
        os.close(fd)


def _call_in_thread(fn: Callable[[], T], *, name: str) -> T:
    """Run `fn` in a fresh thread, wait for it, return its result or raise its error."""
    result: Future[T] = Future()

    def body() -> None:
        try:
            result.set_result(fn())
        except BaseException as exc:  # re-raised in the caller
            result.set_exception(exc)

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    thread.join()
    return result.result()


def _mount_points() -> set[str]:
    """Mount points of the caller's mount namespace (octal escapes decoded)."""
    with open("/proc/self/mountinfo", "rb") as mountinfo:
        fields = [line.split()[4] for line in mountinfo]
    return {field.decode("unicode_escape") for field in fields}


def is_pinned_netns(path: Path) -> bool:
    """True if `path` is a bind mount of a network namespace (an nsfs file)."""
    try:
        if os.stat(path).st_dev != os.stat("/proc/self/ns/net").st_dev:
            return False
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, _NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError:
        return False
    finally:
        os.close(fd)


def create_pinned_netns(path: Path) -> None:
    """Create a new, empty netns and pin it at `path` (whose parent must exist).

    Blocking: run it with `asyncio.to_thread`. A stale plain file at `path` is
    reused; anything mounted there is an error (EEXIST). On failure nothing is
    left behind.
    """
    if is_pinned_netns(path) or str(path.absolute()) in _mount_points():
        raise NamespaceError(f"create netns {path}: already mounted", errno=errno.EEXIST)

    def create() -> None:
        _check(_libc.unshare(CLONE_NEWNET), "unshare")
        created = not path.exists()
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))
        try:
            _mount_bind("/proc/thread-self/ns/net", path)
        except OSError:
            if created:
                path.unlink(missing_ok=True)
            raise

    try:
        _call_in_thread(create, name="sheep-netns-create")
    except (OSError, RuntimeError) as exc:  # RuntimeError: can't start a thread
        raise namespace_error(f"create netns {path}", exc) from exc


def delete_pinned_netns(path: Path) -> None:
    """Unpin the netns at `path` and remove the file; already gone is success.

    The namespace itself goes away once no process, socket or mount holds it.
    """
    try:
        for _ in range(8):  # mounts may be stacked
            if not is_pinned_netns(path):
                break
            _umount_detach(path)
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise namespace_error(f"delete netns {path}", exc) from exc


def run_in_netns(path: Path | None, fn: Callable[[], T]) -> T:
    """Run `fn` in a short-lived thread that joined the netns at `path` and return
    its result. None means the caller's own netns (fn then runs in the caller).

    Blocking; anything `fn` creates (sockets, threads) lives in that netns.
    """
    if path is None:
        return fn()

    def body() -> T:
        try:
            _setns(path)
        except OSError as exc:
            raise namespace_error(f"enter netns {path}", exc) from exc
        return fn()

    return _call_in_thread(body, name="sheep-netns-call")


class PinnedNamespaces:
    """The `Namespaces` of ops: one netns per container, pinned by a bind mount; the
    blocking work runs off the event loop."""

    async def create(self, path: Path) -> None:
        """A new, empty netns pinned at `path` (see `create_pinned_netns`)."""
        await asyncio.to_thread(create_pinned_netns, path)

    async def delete(self, path: Path) -> None:
        """Unpin the netns at `path`; already gone is success."""
        await asyncio.to_thread(delete_pinned_netns, path)

    def exists(self, path: Path) -> bool:
        """True if a netns is pinned at `path`."""
        return is_pinned_netns(path)
