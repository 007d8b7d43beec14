"""Worker threads with their own blocking netlink sockets, for slow requests.

Deleting a veth costs ~20 ms inside the kernel (RCU grace periods), and the kernel does
that work inside the netlink send call: on the event loop's socket it would stall the
whole daemon. Here each worker owns a socket, so deletions overlap (about 4x the rate at
8 in flight; one shared socket would serialize them).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from sheep_runtime.netlink.namespaces import open_sync_route_socket

T = TypeVar("T")

Job = Callable[[IPRoute], Any]
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


class NetlinkWorkers:
    """A fixed set of threads, each with a blocking `IPRoute` of its own.

    The threads and their sockets live in the netns of the thread that calls `start`
    (threads inherit their creator's netns).
    """

    def __init__(self, *, size: int = 8, name: str = "sheep-nl-worker") -> None:
        self._size = size
        self._name = name
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the threads (idempotent)."""
        if self._threads:
            return
        for number in range(self._size):
            thread = threading.Thread(
                target=self._serve, name=f"{self._name}-{number}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    async def run(self, job: Callable[[IPRoute], T]) -> T:
        """Run `job(ipr)` on a worker and return its result (or raise its error).

        Cancelling the caller does not stop a job that already started.
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

    def _serve(self) -> None:
        ipr: IPRoute | None = None
        try:
            while (item := self._queue.get()) is not None:
                job, loop, waiter = item
                result: Any = None
                error: BaseException | None = None
                try:
                    if ipr is None:
                        ipr = open_sync_route_socket(None)
                    result = job(ipr)
                except BaseException as exc:  # handed to the caller
                    error = exc
                    if ipr is not None and not isinstance(exc, NetlinkError):
                        # a socket-level failure (ENOBUFS...) leaves the socket unusable
                        ipr.close()
                        ipr = None
                # RuntimeError: the caller's loop is closed and nobody is waiting.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, waiter, result, error)
        finally:
            if ipr is not None:
                ipr.close()
