"""sheepd's side of the DEL queue: the DELs the plugin recorded while sheepd was
down, run at start before anything is served.

Order matters (Cilium's deletion queue works the same way): sheepd holds the queue's
lock exclusively while it binds its socket and drains, and the plugin queues only
under the shared lock after a second failed connect. So a DEL either reaches the
socket (and waits in its backlog until the drain is done) or lands in the queue
before the drain reads it, never in between; and no ADD can slip in before a stale
queued DEL of the same key.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sheep_runtime.cni.plugin import QUEUE_DIR, QUEUE_LOCK, Failure
from sheep_runtime.cni.request import parse_call
from sheep_runtime.cni.service import CniOps
from sheep_runtime.errors import SheepError

log = logging.getLogger(__name__)

#: A plugin holds the shared lock for a connect and a file write; one that stays
#: longer (stopped, hung) must not keep sheepd from starting.
LOCK_WAIT_SECONDS = 10.0


@asynccontextmanager
async def locked_queue(state_dir: Path) -> AsyncIterator[Path]:
    """The queue directory, held exclusively for the duration."""
    qdir = state_dir / QUEUE_DIR
    qdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(qdir / QUEUE_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    log.warning("a CNI plugin holds %s; draining without the lock", qdir)
                    break
                await asyncio.sleep(0.01)
        yield qdir
    finally:
        os.close(fd)


async def drain(cni: CniOps, qdir: Path) -> int:
    """Run every queued DEL, oldest first, and remove it; return how many ran.

    An entry is tried once: kept for a later start, it could delete an attachment
    that a later ADD made under the same key. What a failed DEL leaves, the leak
    collector releases.
    """
    for tmp in qdir.glob(".tmp-*"):  # a plugin killed mid-write (we hold the lock)
        tmp.unlink(missing_ok=True)
    done = 0
    for entry in sorted(qdir.glob("*.json")):
        try:
            call = parse_call(entry.read_bytes())
            if call.command != "DEL" or call.key is None:
                raise ValueError(f"not a DEL but {call.command}")
            await cni.delete(call.key)
            done += 1
            log.info("ran the queued CNI DEL of %s/%s", call.key.container_id[:12],
                     call.key.ifname)
        except (Failure, SheepError, OSError, ValueError) as e:
            log.warning("dropping queued CNI DEL %s: %s", entry.name, e)
        entry.unlink(missing_ok=True)
    return done


async def drain_del_queue(cni: CniOps, *, state_dir: Path) -> int:
    """Drain the queue under its lock (for a sheepd that serves no CNI socket)."""
    async with locked_queue(state_dir) as qdir:
        return await drain(cni, qdir)
