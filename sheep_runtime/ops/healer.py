"""Self-repair: follows the kernel's link and address events for our bridges and host
veths and puts back what someone else broke.

Every reaction re-reads the kernel under the owner's lock before acting, so stale or
duplicated events, and our own changes, never cause a wrong repair: an event is only a
hint of where to look.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from sheep_runtime.metrics import Metrics
from sheep_runtime.model import (
    AddressEvent,
    Attachment,
    Container,
    ContainerState,
    KernelEvent,
    Network,
    Resync,
)
from sheep_runtime.names import HOST_VETH_PREFIX
from sheep_runtime.ops.attach import RETIRED_VETH_PREFIX, Attacher
from sheep_runtime.ops.backends import Links, Store
from sheep_runtime.ops.containers import ContainerService
from sheep_runtime.ops.events import EventBus
from sheep_runtime.ops.networks import NetworkRegistry
from sheep_runtime.ops.tasks import TaskSupervisor

log = logging.getLogger(__name__)


class Healer:
    """Turns netlink events into checks, and checks into repairs."""

    def __init__(self, *, store: Store, networks: NetworkRegistry,
                 containers: ContainerService, attacher: Attacher, links: Links,
                 tasks: TaskSupervisor, metrics: Metrics, events: EventBus) -> None:
        self._store = store
        self._networks = networks
        self._containers = containers
        self._attacher = attacher
        self._links = links
        self._tasks = tasks
        self._metrics = metrics
        self._events = events
        self._bridge_of_index: dict[int, str] = {}  # ifindex -> network id
        self._running: dict[str, asyncio.Task[None]] = {}
        self._again: dict[str, bool] = {}  # key -> re-run with entries

    # -- events -------------------------------------------------------------------

    def ignores(self, name: str) -> bool:
        """True if no event of the link `name` can call for a check (the monitor then
        does not decode it): a veth being attached or detached, whose attach or detach
        makes the changes, or a retired one, deleted in the background."""
        return ((name in self._attacher.in_flight or name.startswith(RETIRED_VETH_PREFIX))
                and self._network_of_bridge(name) is None)

    async def handle(self, ev: KernelEvent) -> None:
        """Netlink monitor handler: schedule the checks an event calls for."""
        if isinstance(ev, AddressEvent):
            net_id = self._bridge_of_index.get(ev.index)
            if net_id and ev.action == "del":
                self._schedule_bridge(net_id)
            return
        if isinstance(ev, Resync):
            self.check_everything(entries=ev.reason == "start")
            return
        link = ev.link
        net = self._network_of_bridge(link.name)
        if net is not None:
            if ev.action == "new" and not ev.moved:
                self._bridge_of_index[link.index] = net.id
            if ev.action == "del" or not link.up:
                self._schedule_bridge(net.id)
            return
        if not link.name.startswith(HOST_VETH_PREFIX) or link.name in self._attacher.in_flight:
            return  # not ours, or being attached (no record yet) or detached (going)
        for a in self._store.attachments_by_host_interface(link.name):
            bridge_index = self._networks.bridge_index_or_none(a.network_id)
            if ev.action == "del" or not link.up or link.master != bridge_index:
                self._schedule_attachment(a)

    def _network_of_bridge(self, name: str) -> Network | None:
        return next((n for n in self._networks.all() if n.bridge == name), None)

    def check_everything(self, *, entries: bool = False) -> None:
        """Check every bridge, and through them every attachment; with `entries` also
        re-add each port's bridge entries (at start: older daemons did not make them)."""
        for net in self._networks.all():
            self._schedule_bridge(net.id, entries=entries)

    # -- scheduling: one check per object at a time, re-run once if asked meanwhile --

    def _schedule(self, key: str, check: Callable[[bool], Awaitable[None]],
                  entries: bool) -> None:
        """Run `check(entries)` for `key`, or once more after the running one (with
        `entries` if any request asked for it)."""
        if key in self._running:
            self._again[key] = self._again.get(key, False) or entries
            return

        async def run() -> None:
            try:
                await check(entries)
            finally:
                del self._running[key]
                if key in self._again:
                    self._schedule(key, check, self._again.pop(key))

        # Any error is logged and counted by the supervisor (kind "repair").
        self._running[key] = self._tasks.spawn("repair", run(), name=f"heal-{key}")

    def _schedule_bridge(self, network_id: str, *, entries: bool = False) -> None:
        self._schedule(f"bridge:{network_id}",
                       lambda e: self._check_bridge(network_id, entries=e), entries)

    def _schedule_attachment(self, a: Attachment, *, entries: bool = False) -> None:
        self._schedule(f"link:{a.host_interface}", lambda e: self._check_attachment(
            a.container_id, a.network_id, entries=e), entries)

    async def close(self) -> None:
        tasks = list(self._running.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- checks -------------------------------------------------------------------

    async def _check_bridge(self, network_id: str, *, entries: bool) -> None:
        net = self._networks.get_by_id_or_none(network_id)
        if net is None:
            return  # removed meanwhile
        before = await self._links.get_link(net.bridge)
        healthy = (before is not None and before.up
                   and before.index == self._networks.bridge_index_or_none(net.id)
                   and await self._links.has_address(net.bridge, net.gateway_interface))
        index = await self._networks.ensure_bridge(net)
        self._bridge_of_index[index] = net.id
        if not healthy:
            self._metrics.repairs.labels("bridge").inc()
            self._events.publish("bridge.repaired", network=net.name,
                                 attributes={"bridge": net.bridge,
                                             "was": "missing" if before is None else
                                             ("down" if not before.up else "address")})
            log.warning("bridge %s of network %s repaired", net.bridge, net.name)
        # A bridge re-made, or set down, has lost its neighbour and fdb entries.
        for a in self._store.attachments(network_id=net.id):
            self._schedule_attachment(a, entries=entries or not healthy)

    async def _check_attachment(self, container_id: str, network_id: str, *,
                                entries: bool) -> None:
        async with self._containers.locked(container_id):
            a = self._store.attachment(container_id, network_id)
            net = self._networks.get_by_id_or_none(network_id)
            if a is None or net is None:
                return  # detached or removed meanwhile
            bridge_index = self._networks.bridge_index_or_none(net.id)
            info = await self._links.get_link(a.host_interface)
            if info is None:
                await self._link_missing(a, net)
                return
            if bridge_index is None:
                self._schedule_bridge(net.id)
                return
            broken = not info.up or info.master != bridge_index
            if broken:
                if not info.up:
                    self._events.publish("link.down", container_id=a.container_id,
                                         network=net.name,
                                         attributes={"host_interface": a.host_interface})
                await self._links.set_port(a.host_interface, master=bridge_index)
            if broken or entries:
                await self._attacher.restore_bridge_entries(a, net, port_index=info.index)
            if broken:
                self._repaired(a, net, "nomaster" if info.master != bridge_index else "down")
            elif (entries and (c := self._store.container(a.container_id)) is not None
                  and not await self._container_side_intact(c, a)):
                # e.g. a re-plug cut short by a kill: the veth is back, its peer not
                # configured yet. Plug it again from scratch (the peer goes with it).
                await self._links.delete_link(a.host_interface)
                await self._attacher.replug(c, a, net)
                self._repaired(a, net, "unconfigured")

    async def _container_side_intact(self, c: Container, a: Attachment) -> bool:
        """True unless `c`, a running container of ours, lacks `a`'s interface up with
        its address (checked at start and on resyncs only: it opens the netns)."""
        if (c.owner == "cni" or c.state != ContainerState.RUNNING
                or not os.path.exists(c.netns_path)):
            return True
        inside = await self._links.open_container_netns(Path(c.netns_path))
        try:
            state = await inside.read_interface(a.interface_name)
        finally:
            inside.close()
        return state is not None and state.link.up and a.address in state.addresses

    async def _link_missing(self, a: Attachment, net: Network) -> None:
        self._events.publish("link.missing", container_id=a.container_id, network=net.name,
                             attributes={"host_interface": a.host_interface})
        c = self._store.container(a.container_id)
        if c is not None and c.state == ContainerState.RUNNING:
            if not os.path.exists(c.netns_path):
                # e.g. a CNI sandbox deleted before its DEL: leak collection releases it
                log.info("not re-plugging %s: netns %s is gone", a.host_interface,
                         c.netns_path)
                return
            await self._attacher.replug(c, a, net)
            self._repaired(a, net, "missing")
            return
        (await self._attacher.detach([a])).raise_if_failed(
            f"reclaimed the lease of {a.host_interface}")
        self._metrics.reclaimed.labels(net.name).inc()
        self._events.publish("lease.reclaimed", container_id=a.container_id, network=net.name,
                             attributes={"address": str(a.address.ip)})

    def _repaired(self, a: Attachment, net: Network, was: str) -> None:
        self._metrics.repairs.labels("link").inc()
        self._events.publish("link.repaired", container_id=a.container_id, network=net.name,
                             attributes={"host_interface": a.host_interface, "was": was})
        log.warning("link %s of container %s repaired (was %s)", a.host_interface,
                    a.container_id[:12], was)
