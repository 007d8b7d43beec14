"""Event bus: publishes events to live subscribers and keeps a window for replay.

A slow subscriber never blocks the daemon: each has a bounded queue; when it
overflows, its oldest pending events are dropped and it gets one `events.dropped`
marker carrying the number lost.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass

from sheep_runtime.model import Event

DROPPED = "events.dropped"


@dataclass(frozen=True)
class EventFilter:
    """Matches events by container id (or its prefix), network name and type prefix."""

    container: str = ""
    network: str = ""
    type_prefix: str = ""

    def matches(self, e: Event) -> bool:
        if e.type == DROPPED:
            return True
        return ((not self.container or e.container_id.startswith(self.container))
                and (not self.network or e.network == self.network)
                and e.type.startswith(self.type_prefix))


class _Subscriber:
    def __init__(self, flt: EventFilter, maxsize: int) -> None:
        self.filter = flt
        self.queue: collections.deque[Event] = collections.deque()
        self.maxsize = maxsize
        self.dropped = 0
        self.wakeup = asyncio.Event()

    def offer(self, e: Event) -> None:
        if len(self.queue) >= self.maxsize:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(e)
        self.wakeup.set()


class EventBus:
    """Fan-out of events with a bounded replay window."""

    def __init__(self, *, retain: int = 10_000, queue_size: int = 1_000,
                 on_publish: Callable[[Event], None] | None = None) -> None:
        self._history: collections.deque[Event] = collections.deque(maxlen=retain)
        self._subscribers: set[_Subscriber] = set()
        self._queue_size = queue_size
        self._next_id = 1
        self._on_publish = on_publish

    def publish(self, type_: str, *, container_id: str = "", network: str = "",
                attributes: Mapping[str, str] | None = None) -> Event:
        e = Event(id=self._next_id, time=time.time(), type=type_, container_id=container_id,
                  network=network, attributes=dict(attributes or {}))
        self._next_id += 1
        self._history.append(e)
        for sub in self._subscribers:
            if sub.filter.matches(e):
                sub.offer(e)
        if self._on_publish:
            self._on_publish(e)
        return e

    def recent(self, flt: EventFilter, *, since: float | None = None) -> list[Event]:
        return [e for e in self._history
                if (since is None or e.time > since) and flt.matches(e)]

    async def subscribe(self, flt: EventFilter, *,
                        since: float | None = None) -> AsyncGenerator[Event, None]:
        """Yield retained events newer than `since` (if given), then live ones."""
        sub = _Subscriber(flt, self._queue_size)
        self._subscribers.add(sub)
        try:
            last_id = 0
            if since is not None:
                for e in self.recent(flt, since=since):
                    last_id = e.id
                    yield e
            while True:
                if not sub.queue:
                    sub.wakeup.clear()
                    await sub.wakeup.wait()
                if sub.dropped:
                    n, sub.dropped = sub.dropped, 0
                    yield Event(id=0, time=time.time(), type=DROPPED,
                                attributes={"count": str(n)})
                while sub.queue:
                    e = sub.queue.popleft()
                    if e.id > last_id:
                        yield e
        finally:
            self._subscribers.discard(sub)
