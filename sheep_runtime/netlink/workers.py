"""Worker threads with blocking raw netlink sockets of their own, off the event loop.

Every rtnetlink request takes the RTNL lock, and the kernel does the work inside the
send call: a veth deletion costs ~20 ms there (RCU grace periods), and any request
can wait that long for the lock. On the event loop's socket that would stall the whole
daemon. Each worker owns a `RawRoute`, so requests also overlap (deletions: about 4x
the rate at 8 in flight; one shared socket would serialize them).

This is the backend's one way to open a socket in another netns (`socket_in`): a
worker joins that netns (setns), creates the socket and returns home (~30 us, vs
~0.7 ms for a fresh thread; pyroute2's `netns=` forks, which crashes next to grpc).
A socket stays in the netns it was created in.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sheep_runtime.netlink.errors import link_error, namespace_error
from sheep_runtime.netlink.namespaces import CLONE_NEWNET, setns_fd
from sheep_runtime.netlink.raw import RawRoute

T = TypeVar("T")

Job = Callable[[RawRoute], Any]
_Item = tuple[Job, asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


def _settle(waiter: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if waiter.cancelled():
        return
    if error is not None:
        waiter.set_exception(error)
    else:
        waiter.set_result(result)


def _join_all(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join()


def _own_socket() -> RawRoute:
    try:
        return RawRoute()
    except OSError as exc:
        raise link_error("open netlink socket", exc) from exc


class _Worker(threading.local):
    stranded = False  # setns back home failed once: retry before the next job


class NetlinkWorkers:
    """A fixed set of threads, each with a `RawRoute` of its own.

    The threads and their sockets live in the netns of the thread that calls `start`
    (threads inherit their creator's netns); it is also where `socket_in` returns.
    """

    def __init__(self, *, size: int = 8, name: str = "sheep-nl-worker") -> None:
        self._size = size
        self._name = name
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._home: int | None = None
        self._local = _Worker()

    def start(self) -> None:
        """Start the threads (idempotent) and wait until each has opened its socket,
        so the daemon's fd count is stable from here on (~1 ms)."""
        if self._threads:
            return
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        ready = threading.Semaphore(0)
        for number in range(self._size):
            thread = threading.Thread(
                target=self._serve, args=(ready,), name=f"{self._name}-{number}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        for _ in self._threads:
            ready.acquire()

    async def run(self, job: Callable[[RawRoute], T]) -> T:
        """Run `job(sock)` on a worker with that worker's socket; return its result or
        raise its error. Cancelling the caller does not stop a job already started.
        """
        if not self._threads:
            raise RuntimeError("NetlinkWorkers not started")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        self._queue.put((job, loop, waiter))
        return await waiter

    async def close(self) -> None:
        """Finish queued jobs, close the sockets and join the threads."""
        threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(None)
        await asyncio.to_thread(_join_all, threads)
        if self._home is not None:
            os.close(self._home)
            self._home = None

    def _go_home(self) -> None:
        assert self._home is not None
        try:
            setns_fd(self._home, CLONE_NEWNET)
        except OSError as exc:
            self._local.stranded = True
            raise namespace_error("return worker thread to its netns", exc) from exc
        self._local.stranded = False

    def socket_in(self, netns: Path) -> RawRoute:
        """A new `RawRoute` in the netns pinned at `netns`. Call it only from a job (on
        a worker thread): the thread joins that netns, creates the socket, returns."""
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                setns_fd(fd, CLONE_NEWNET)
            finally:
                os.close(fd)
        except OSError as exc:
            raise namespace_error(f"open netlink socket in netns {netns}", exc) from exc
        try:
            return RawRoute()
        except OSError as exc:
            raise namespace_error(f"open netlink socket in netns {netns}", exc) from exc
        finally:
            self._go_home()

    def _serve(self, ready: threading.Semaphore) -> None:
        sock: RawRoute | None = None
        try:
            sock = _own_socket()
        except Exception:  # retried, and then reported, by the first job
            sock = None
        finally:
            ready.release()
        try:
            while (item := self._queue.get()) is not None:
                job, loop, waiter = item
                result: Any = None
                error: BaseException | None = None
                try:
                    if self._local.stranded:
                        self._go_home()
                    if sock is None or sock.closed:
                        sock = _own_socket()
                    result = job(sock)
                except BaseException as exc:  # handed to the caller
                    error = exc
                with contextlib.suppress(RuntimeError):  # the caller's loop is closed
                    loop.call_soon_threadsafe(_settle, waiter, result, error)
        finally:
            if sock is not None:
                sock.close()
