"""The event bus: filters, replay of the retained window, and slow subscribers that
lose events but are told how many."""

from __future__ import annotations

import asyncio

from sheep_runtime.model import Event
from sheep_runtime.ops.events import DROPPED, EventBus, EventFilter


async def take(stream: object, n: int) -> list[Event]:
    out = []
    async for e in stream:  # type: ignore[attr-defined]
        out.append(e)
        if len(out) == n:
            break
    return out


async def test_filters_by_container_network_and_type_prefix() -> None:
    bus = EventBus()
    stream = bus.subscribe(EventFilter(container="abc", type_prefix="link."))
    task = asyncio.create_task(take(stream, 1))
    await asyncio.sleep(0)
    bus.publish("link.missing", container_id="zzz")
    bus.publish("container.exited", container_id="abc123")
    bus.publish("link.repaired", container_id="abc123", network="sheep0")
    [e] = await asyncio.wait_for(task, 1)
    assert (e.type, e.container_id, e.network) == ("link.repaired", "abc123", "sheep0")


async def test_replay_since_then_live_without_duplicates() -> None:
    bus = EventBus()
    old = bus.publish("container.created", container_id="a")
    bus.publish("container.started", container_id="a")
    stream = bus.subscribe(EventFilter(), since=old.time - 1)
    task = asyncio.create_task(take(stream, 3))
    await asyncio.sleep(0)
    bus.publish("container.exited", container_id="a")
    got = await asyncio.wait_for(task, 1)
    assert [e.type for e in got] == ["container.created", "container.started",
                                     "container.exited"]
    assert [e.id for e in got] == sorted({e.id for e in got})


async def test_slow_subscriber_gets_a_drop_marker_and_never_blocks_publishers() -> None:
    bus = EventBus(queue_size=10)
    stream = bus.subscribe(EventFilter())
    first = asyncio.create_task(take(stream, 1))
    await asyncio.sleep(0)
    for i in range(100):  # publishing never waits for the subscriber
        bus.publish("lease.allocated", attributes={"n": str(i)})
    [marker] = await asyncio.wait_for(first, 1)
    assert marker.type == DROPPED and marker.attributes["count"] == "90"
    rest = await asyncio.wait_for(take(stream, 10), 1)
    assert [e.attributes["n"] for e in rest] == [str(i) for i in range(90, 100)]
