"""Stats: a running container's network counters per attachment (read inside its
netns) and its cgroup usage, read together."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from sheep_runtime.errors import FailedPrecondition
from sheep_runtime.model import (
    Attachment,
    CgroupUsage,
    Container,
    ContainerState,
    InterfaceCounters,
)
from sheep_runtime.ops.backends import Links, Processes, Store
from sheep_runtime.ops.lookup import ContainerLookup


@dataclass(frozen=True)
class InterfaceStatsView:
    """The counters of one attachment's interface, as the container's side sees them."""

    interface_name: str
    network_name: str
    counters: InterfaceCounters


@dataclass(frozen=True)
class ContainerStatsView:
    """A container's usage at `time` (Unix seconds); `cgroup` None if unreadable."""

    container: Container
    time: float
    interfaces: tuple[InterfaceStatsView, ...]
    cgroup: CgroupUsage | None


class ContainerStatsReader:
    """Reads the usage of running containers."""

    def __init__(self, lookup: ContainerLookup, links: Links, processes: Processes,
                 store: Store) -> None:
        self._lookup = lookup
        self._links = links
        self._processes = processes
        self._store = store

    async def read(self, ref: str) -> ContainerStatsView:
        """Counters of each attachment's interface (one netns handle for all; an
        interface that is gone is left out) and the cgroup usage, read concurrently.
        NotFound, FailedPrecondition (CONTAINER_NOT_RUNNING) unless it runs."""
        c = self._lookup.resolve(ref)
        if c.state != ContainerState.RUNNING:
            raise FailedPrecondition(
                f"container {c.name} is not running ({c.state.value})",
                reason="CONTAINER_NOT_RUNNING", resource_type="container",
                resource_name=c.name)
        attachments = self._store.attachments(container_id=c.id)
        interfaces, cgroup = await asyncio.gather(self._interfaces(c, attachments),
                                                  self._processes.cgroup_usage(c.id))
        return ContainerStatsView(container=c, time=time.time(), interfaces=interfaces,
                                  cgroup=cgroup)

    async def _interfaces(self, c: Container, attachments: list[Attachment]
                          ) -> tuple[InterfaceStatsView, ...]:
        if not attachments:
            return ()
        names = {n.id: n.name for n in self._store.networks()}
        inside = await self._links.open_container_netns(Path(c.netns_path))
        try:
            found = []
            for a in attachments:
                counters = await inside.interface_counters(a.interface_name)
                if counters is not None:
                    found.append(InterfaceStatsView(
                        interface_name=a.interface_name,
                        network_name=names.get(a.network_id, a.network_id),
                        counters=counters))
            return tuple(found)
        finally:
            inside.close()
