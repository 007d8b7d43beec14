"""Background deletion of retired links, many per kernel call.

A veth deletion spends ~20 ms in the kernel, almost all of it waiting for RCU grace
periods. `host_side.retire_link` makes a veth answer for nothing in ~0.1 ms (down, off
its bridge, renamed into `PENDING_GROUP`), so a detach can reply at once; this thread
then deletes the whole group with one RTM_DELLINK: one unregister and one set of grace
periods for every link retired meanwhile.

A name is *reserved* before its rename is sent and *queued* once the rename is done,
so a leak collector that lists the links first and reads `pending()` second never
takes a retired link for a leftover. Leftovers of a killed daemon carry the retired
name pattern and are collected at the next start.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from sheep_runtime.netlink import host_side
from sheep_runtime.netlink.errors import LinkError
from sheep_runtime.netlink.raw import RawRoute

log = logging.getLogger(__name__)

PENDING_GROUP = 0x73687800  # "shx\0": the link group of retired links
BATCH_WINDOW = 0.005  # let a burst of detaches join one deletion
RETRY_SECONDS = 0.2


class Reaper:
    """One thread (with its own socket, in the netns of the thread that calls `start`)
    that deletes the queued links of `group`."""

    def __init__(self, *, group: int = PENDING_GROUP, window: float = BATCH_WINDOW) -> None:
        self.group = group
        self._window = window
        self._cond = threading.Condition()
        self._reserved: set[str] = set()
        self._queued: set[str] = set()
        self._closing = False
        self._thread: threading.Thread | None = None
        self.rounds = 0  # deletion calls made (for tests and benchmarks)

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is None:
            self._closing = False
            self._thread = threading.Thread(target=self._serve, name="sheep-nl-reaper",
                                            daemon=True)
            self._thread.start()

    async def close(self) -> None:
        """Delete what is queued, then stop the thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        await asyncio.to_thread(thread.join)

    def pending(self) -> frozenset[str]:
        """Names reserved or queued for deletion."""
        with self._cond:
            return frozenset(self._reserved | self._queued)

    def reserve(self, name: str) -> None:
        with self._cond:
            self._reserved.add(name)

    def queue(self, name: str) -> None:
        """`name` is renamed into the group: delete it soon."""
        with self._cond:
            self._reserved.discard(name)
            self._queued.add(name)
            self._cond.notify_all()

    def release(self, name: str) -> None:
        """The retirement of `name` did not happen."""
        with self._cond:
            self._reserved.discard(name)

    def _serve(self) -> None:
        sock: RawRoute | None = None
        try:
            while True:
                with self._cond:
                    while not self._queued and not self._closing:
                        self._cond.wait()
                    if not self._queued:
                        return
                    closing = self._closing
                if not closing:
                    time.sleep(self._window)
                with self._cond:
                    batch = set(self._queued)
                try:
                    if sock is None or sock.closed:
                        sock = RawRoute()
                    done = self._delete(sock, batch)
                except Exception:  # e.g. no socket: the thread must live on, retry later
                    log.exception("delete retired links %s", sorted(batch))
                    done = set()
                with self._cond:
                    self._queued -= done
                    if done != batch:
                        if closing:
                            log.error("retired links left for the leak collector: %s",
                                      sorted(batch - done))
                            return
                        self._cond.wait(RETRY_SECONDS)
        finally:
            if sock is not None:
                sock.close()

    def _delete(self, sock: RawRoute, batch: set[str]) -> set[str]:
        """Delete the group (every name of `batch` was in it before this call); one by
        one if that fails. The names that are gone."""
        self.rounds += 1
        try:
            host_side.delete_group(sock, self.group)
            return batch
        except LinkError as exc:
            log.warning("delete link group %#x: %s; deleting one by one", self.group, exc)
        done = set()
        for name in batch:
            try:
                host_side.delete_link(sock, name)
            except LinkError as exc:
                log.error("delete retired link %s: %s", name, exc)
            else:
                done.add(name)
        return done
