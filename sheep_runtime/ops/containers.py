"""Containers: create (netns, networks, process), stop, remove, inspect; and the
watchers that record each process's exit without polling."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from functools import partial
from pathlib import Path

from sheep_runtime import process
from sheep_runtime.config import DEFAULT_NETWORK, Config
from sheep_runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from sheep_runtime.metrics import Metrics
from sheep_runtime.model import Attachment, Container, ContainerState, LinkState, Network
from sheep_runtime.names import generated_name, new_id
from sheep_runtime.netlink import LinkManager, create_pinned_netns, delete_pinned_netns
from sheep_runtime.ops.attach import Attacher
from sheep_runtime.ops.events import EventBus
from sheep_runtime.ops.faults import Faults
from sheep_runtime.ops.locks import KeyedLocks
from sheep_runtime.ops.networks import NetworkRegistry
from sheep_runtime.ops.specs import AttachSpec, ContainerSpec
from sheep_runtime.ops.undo import UndoStack
from sheep_runtime.ops.views import AttachmentView, ContainerView
from sheep_runtime.store import Store

log = logging.getLogger(__name__)

DEFAULT_STOP_TIMEOUT = 10.0


class ContainerService:
    """Owns the lifecycle of every container."""

    def __init__(self, *, config: Config, store: Store, networks: NetworkRegistry,
                 attacher: Attacher, links: LinkManager, metrics: Metrics,
                 events: EventBus, faults: Faults) -> None:
        self._config = config
        self._store = store
        self._networks = networks
        self._attacher = attacher
        self._links = links
        self._metrics = metrics
        self._events = events
        self._faults = faults
        self._locks = KeyedLocks()
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._handles: dict[str, process.ProcessHandle] = {}

    # -- lookups ------------------------------------------------------------------

    def resolve(self, ref: str) -> Container:
        """A container by full id, name or unique id prefix."""
        if not ref:
            raise InvalidArgument("a container id or name is required", field="id")
        found = self._store.find_containers(ref)
        if not found:
            raise NotFound(f"no container with id or name {ref!r}", reason="CONTAINER_NOT_FOUND",
                           resource_type="container", resource_name=ref)
        if len(found) > 1:
            raise InvalidArgument(f"id prefix {ref!r} is ambiguous: it matches "
                                  + ", ".join(f"{c.id[:12]} ({c.name})" for c in found),
                                  field="id")
        return found[0]

    def locked(self, container_id: str) -> AbstractAsyncContextManager[None]:
        """Hold the container's lock: its operations and repairs are serialized."""
        return self._locks.hold(container_id)

    def container_dir(self, container_id: str) -> Path:
        return self._config.containers_dir / container_id

    async def view(self, c: Container, *, links: Mapping[str, bool] | None = None
                   ) -> ContainerView:
        """The container with its attachments and their live link state."""
        if links is None:
            links = await self._link_states(self._store.attachments(container_id=c.id))
        views = []
        for a in self._store.attachments(container_id=c.id):
            up = links.get(a.host_interface)
            state = LinkState.MISSING if up is None else (LinkState.UP if up else LinkState.DOWN)
            views.append(AttachmentView(attachment=a, link_state=state,
                                        network_name=self._networks.get_by_id(a.network_id).name))
        return ContainerView(container=c, attachments=tuple(views),
                             log_path=str(self.container_dir(c.id) / "log"))

    async def _link_states(self, attachments: list[Attachment]) -> dict[str, bool]:
        infos = [await self._links.get_link(a.host_interface) for a in attachments]
        return {i.name: i.up for i in infos if i is not None}

    async def host_link_states(self) -> dict[str, bool]:
        return {link.name: link.up for link in await self._links.list_links("shp")}

    async def inspect(self, ref: str) -> ContainerView:
        return await self.view(self.resolve(ref))

    async def list_containers(self, filters: Mapping[str, str]) -> list[ContainerView]:
        show_all = filters.get("all", "").lower() in ("1", "true", "yes")
        links = await self.host_link_states()
        out = []
        for c in self._store.containers():
            if not show_all and "state" not in filters and c.state != ContainerState.RUNNING:
                continue
            if "state" in filters and c.state.value != filters["state"].lower():
                continue
            if "name" in filters and c.name != filters["name"]:
                continue
            v = await self.view(c, links=links)
            if "network" in filters and filters["network"] not in (
                    a.network_name for a in v.attachments):
                continue
            out.append(v)
        return out

    # -- create -------------------------------------------------------------------

    async def create(self, spec: ContainerSpec) -> ContainerView:
        """Record, pin a netns, attach networks, start the process; all or nothing."""
        t0 = time.perf_counter()
        cid = new_id()
        name = spec.name or generated_name(cid)
        attach_specs = spec.networks
        if not attach_specs and spec.network_mode == "":
            attach_specs = (AttachSpec(network=DEFAULT_NETWORK),)
        targets = [(self._networks.get(s.network), s) for s in attach_specs]
        netns = self._config.netns_dir / cid
        c = Container(id=cid, name=name, command=spec.command, env=dict(spec.env),
                      hostname=spec.hostname or name, network_mode=spec.network_mode,
                      state=ContainerState.CREATED, created_at=time.time(),
                      netns_path=str(netns))
        undo = UndoStack()
        async with self._locks.hold(cid):
            try:
                self._store.add_container(c)
                undo.push("remove container record", lambda: self._store.remove_container(cid))
                cdir = self.container_dir(cid)
                cdir.mkdir(parents=True)
                undo.push("remove container dir", lambda: shutil.rmtree(cdir, True))
                await asyncio.to_thread(create_pinned_netns, netns)
                undo.push("unpin netns", lambda: asyncio.to_thread(delete_pinned_netns, netns))
                self._faults.check("netns")
                if targets:
                    await self._attach_all(c, targets, undo)
                self._faults.check("attach")
                handle = await process.start(process.ProcessSpec(
                    container_id=cid, argv=c.command, env=c.env, hostname=c.hostname,
                    netns_path=netns, container_dir=cdir))
                undo.push("kill process", lambda: process.kill(handle))
                self._faults.check("process")
                c = self.mark_running(c, handle)
            except BaseException:
                await undo.unwind()
                raise
        self._metrics.container_start_seconds.observe(time.perf_counter() - t0)
        self._events.publish("container.created", container_id=cid,
                             attributes={"name": name})
        self._events.publish("container.started", container_id=cid,
                             attributes={"name": name, "pid": str(c.pid)})
        self._update_gauges()
        return await self.view(c)

    async def _attach_all(self, c: Container, targets: list[tuple[Network, AttachSpec]],
                          undo: UndoStack) -> None:
        inside = await self._links.open_container_netns(Path(c.netns_path))
        try:
            for seq, (net, s) in enumerate(targets):
                a = await self._attacher.attach(
                    c, net, inside=inside, ip=s.ip,
                    interface_name=s.interface_name or f"eth{seq}",
                    default_route=seq == 0, ports=s.ports, seq=seq)
                undo.push(f"detach {net.name}", partial(self._attacher.detach, a, net))
        finally:
            inside.close()

    def mark_running(self, c: Container, handle: process.ProcessHandle) -> Container:
        c = replace(c, state=ContainerState.RUNNING, pid=handle.pid,
                    pid_start_time=handle.pid_start_time, shim_pid=handle.shim_pid,
                    shim_start_time=handle.shim_start_time, started_at=time.time())
        self._store.update_container(c)
        self.watch(c, handle)
        return c

    def watch(self, c: Container, handle: process.ProcessHandle) -> None:
        """Record the exit of `c`'s process when it happens."""
        self._handles[c.id] = handle
        self._watchers[c.id] = asyncio.create_task(self._wait_exit(c.id, handle),
                                                   name=f"watch-{c.id[:12]}")

    async def _wait_exit(self, cid: str, handle: process.ProcessHandle) -> None:
        status = await process.wait_exit(handle)
        self._handles.pop(cid, None)
        self._watchers.pop(cid, None)
        c = self._store.container(cid)
        if c is None:
            return
        self.mark_exited(c, code=status.code, finished_at=status.finished_at_ns / 1e9)

    def mark_exited(self, c: Container, *, code: int, finished_at: float) -> Container:
        c = replace(c, state=ContainerState.EXITED, pid=0, exit_code=code,
                    finished_at=finished_at)
        self._store.update_container(c)
        log.info("container %s exited with code %d", c.id[:12], code)
        self._events.publish("container.exited", container_id=c.id,
                             attributes={"name": c.name, "exit_code": str(code)})
        self._update_gauges()
        return c

    def _update_gauges(self) -> None:
        counts = self._store.count_containers_by_state()
        for state in ContainerState:
            self._metrics.containers.labels(state.value).set(counts.get(state, 0))

    # -- stop and remove ----------------------------------------------------------

    async def stop(self, ref: str, *, timeout: float = DEFAULT_STOP_TIMEOUT) -> ContainerView:
        c = self.resolve(ref)
        async with self._locks.hold(c.id):
            await self._stop_process(c.id, timeout=timeout)
        return await self.view(self._get(c.id))

    async def _stop_process(self, cid: str, *, timeout: float) -> None:
        handle, watcher = self._handles.get(cid), self._watchers.get(cid)
        if handle is None or watcher is None:
            return
        await process.stop(handle, timeout=timeout)
        await asyncio.shield(watcher)

    def _get(self, cid: str) -> Container:
        c = self._store.container(cid)
        if c is None:
            raise NotFound(f"container {cid[:12]} was removed", reason="CONTAINER_NOT_FOUND",
                           resource_type="container", resource_name=cid)
        return c

    async def remove(self, ref: str, *, force: bool) -> str:
        """Kill (with force), detach every network, release leases, unpin the netns."""
        c = self.resolve(ref)
        async with self._locks.hold(c.id):
            c = self._get(c.id)
            if c.state == ContainerState.RUNNING and c.id in self._handles and not force:
                raise FailedPrecondition(
                    f"container {c.name} is running: stop it first or use force",
                    reason="CONTAINER_RUNNING", resource_type="container",
                    resource_name=c.name)
            self._store.mark_removing(c.id)
            await self._stop_process(c.id, timeout=0)
            await self.teardown(c)
        self._events.publish("container.removed", container_id=c.id,
                             attributes={"name": c.name})
        self._update_gauges()
        return c.id

    async def teardown(self, c: Container) -> None:
        """Remove everything of a container that is no longer running."""
        attachments = self._store.attachments(container_id=c.id)
        await asyncio.gather(*(self._attacher.unplug(a, self._networks.get_by_id(a.network_id))
                               for a in attachments))
        self._store.remove_container(c.id)
        await self._attacher.release_all(attachments)
        await asyncio.to_thread(delete_pinned_netns, Path(c.netns_path))
        shutil.rmtree(self.container_dir(c.id), ignore_errors=True)

    # -- attach and detach of a live container -----------------------------------

    async def attach(self, ref: str, s: AttachSpec) -> AttachmentView:
        c = self.resolve(ref)
        net = self._networks.get(s.network)
        async with self._locks.hold(c.id):
            c = self._get(c.id)
            existing = self._store.attachments(container_id=c.id)
            for a in existing:
                if a.network_id == net.id:
                    if s.ip and s.ip != a.address.ip:
                        raise FailedPrecondition(
                            f"container {c.name} is already on {net.name} with address "
                            f"{a.address.ip}; detach it first to change the address",
                            reason="ADDRESS_CONFLICT", resource_type="container",
                            resource_name=c.name)
                    return (await self.view(c)).attachments[existing.index(a)]
            if c.state == ContainerState.EXITED:
                raise FailedPrecondition(f"container {c.name} has exited; networks can "
                                         "only be attached to a running container",
                                         reason="CONTAINER_EXITED", resource_type="container",
                                         resource_name=c.name)
            ifname = s.interface_name or _next_ifname(existing)
            if any(a.interface_name == ifname for a in existing):
                raise InvalidArgument(f"interface {ifname} already exists in container "
                                      f"{c.name}", field="interface_name")
            inside = await self._links.open_container_netns(Path(c.netns_path))
            try:
                a = await self._attacher.attach(
                    c, net, inside=inside, ip=s.ip, interface_name=ifname,
                    default_route=not existing, ports=s.ports,
                    seq=max((x.seq for x in existing), default=-1) + 1)
            finally:
                inside.close()
        return AttachmentView(attachment=a, network_name=net.name, link_state=LinkState.UP)

    async def detach(self, ref: str, network: str) -> None:
        c = self.resolve(ref)
        net = self._networks.get(network)
        async with self._locks.hold(c.id):
            found = [a for a in self._store.attachments(container_id=c.id)
                     if a.network_id == net.id]
            if not found:
                raise NotFound(f"container {c.name} is not attached to network {net.name}",
                               reason="ATTACHMENT_NOT_FOUND", resource_type="attachment",
                               resource_name=f"{c.name}/{net.name}")
            await self._attacher.detach(found[0], net)

    async def close(self) -> None:
        """Stop watching processes; the processes themselves keep running."""
        for task in list(self._watchers.values()):
            task.cancel()
        await asyncio.gather(*self._watchers.values(), return_exceptions=True)


def _next_ifname(existing: list[Attachment]) -> str:
    used = {a.interface_name for a in existing}
    return next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
