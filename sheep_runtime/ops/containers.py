"""Containers: create (netns, networks, process), stop, remove, live attach and detach;
and the watchers that record each process's exit without polling."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from sheep_runtime.config import DEFAULT_NETWORK, Config
from sheep_runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from sheep_runtime.metrics import Metrics
from sheep_runtime.model import (
    Attachment,
    Container,
    ContainerState,
    Image,
    LinkState,
    ProcessHandle,
    ProcessSpec,
)
from sheep_runtime.names import generated_name, new_id
from sheep_runtime.ops.attach import Attacher
from sheep_runtime.ops.backends import Images, Links, Namespaces, Processes, Store
from sheep_runtime.ops.events import EventBus
from sheep_runtime.ops.lookup import ContainerLookup
from sheep_runtime.ops.networks import NetworkRegistry
from sheep_runtime.ops.plans import AttachPlan, plan_attachments
from sheep_runtime.ops.specs import AttachSpec, ContainerSpec, validate_exec
from sheep_runtime.ops.tasks import TaskSupervisor
from sheep_runtime.ops.undo import Teardown, UndoStack
from sheep_runtime.ops.views import AttachmentView, ContainerView

log = logging.getLogger(__name__)

DEFAULT_STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class RootPlan:
    """The container's own root: an image's layers or a directory, under an overlay."""

    image: Image | None
    directory: Path | None
    cwd: str


class ContainerService(ContainerLookup):
    """Owns the lifecycle of every container."""

    def __init__(self, *, config: Config, store: Store, networks: NetworkRegistry,
                 attacher: Attacher, links: Links, namespaces: Namespaces,
                 processes: Processes, images: Images, tasks: TaskSupervisor,
                 metrics: Metrics, events: EventBus,
                 etc_files: Callable[[Container, Path], tuple[str, ...]] | None = None
                 ) -> None:
        super().__init__(config=config, store=store, networks=networks, links=links)
        # Writes a container's own /etc files into its dir, before its process starts.
        self._etc_files = etc_files
        self._attacher = attacher
        self._namespaces = namespaces
        self._processes = processes
        self._images = images
        self._tasks = tasks
        self._metrics = metrics
        self._events = events
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._handles: dict[str, ProcessHandle] = {}

    # -- create -------------------------------------------------------------------

    def _plan(self, spec: ContainerSpec
              ) -> tuple[Container, tuple[AttachPlan, ...], RootPlan | None]:
        cid = new_id()
        name = spec.name or generated_name(cid)
        requests = spec.networks
        if not requests and spec.network_mode == "":
            requests = (AttachSpec(network=DEFAULT_NETWORK),)
        plans = plan_attachments(cid, requests, resolve=self._networks.get)
        root, command, env = self._plan_root(spec)
        c = Container(id=cid, name=name, command=command, env=env,
                      hostname=spec.hostname or name, network_mode=spec.network_mode,
                      state=ContainerState.CREATED, created_at=time.time(),
                      netns_path=str(self._config.netns_dir / cid),
                      privileged=spec.privileged, capabilities=self._grantable(spec))
        return c, plans, root

    def _plan_root(self, spec: ContainerSpec
                   ) -> tuple[RootPlan | None, tuple[str, ...], dict[str, str]]:
        """The root, and the command and env with the image's defaults filled in: its
        Entrypoint before the command (or its Cmd), its Env under the request's."""
        if spec.rootfs:
            directory = Path(spec.rootfs)
            for ours in (self._config.state_dir, self._config.run_dir):
                if ours.absolute().is_relative_to(directory):
                    raise InvalidArgument(f"rootfs {directory} holds sheepd's own {ours}",
                                          field="rootfs")
            return (RootPlan(image=None, directory=directory, cwd=spec.working_dir or "/"),
                    spec.command, dict(spec.env))
        if not spec.image:
            return None, spec.command, dict(spec.env)
        image = self._images.resolve(spec.image)
        command = image.entrypoint + (spec.command or image.cmd)
        env = dict(e.partition("=")[::2] for e in image.env)
        env.update(spec.env)
        if not command:
            raise InvalidArgument(f"image {image.name} has no Entrypoint or Cmd: give a "
                                  "command", field="command")
        validate_exec(command, env)
        return (RootPlan(image=image, directory=None,
                         cwd=spec.working_dir or image.working_dir or "/"), command, env)

    def _grantable(self, spec: ContainerSpec) -> tuple[str, ...]:
        """The capabilities to give: "ALL" and privileged mean all that sheepd itself
        holds; anything else it cannot grant is InvalidArgument."""
        available = self._processes.capabilities
        if spec.all_capabilities:
            return tuple(c for c in spec.capabilities if c in available)
        missing = [c for c in spec.capabilities if c not in available]
        if missing:
            raise InvalidArgument(f"cannot grant {', '.join(missing)}: sheepd itself does "
                                  "not hold it", field="cap_add")
        return spec.capabilities

    async def create(self, spec: ContainerSpec) -> ContainerView:
        """Record, pin a netns, attach networks, start the process; all or nothing."""
        t0 = time.perf_counter()
        c, plans, root = self._plan(spec)
        undo = UndoStack(self._metrics)
        async with self.locked(c.id):
            try:
                self._store.add_container(c)
                undo.push("remove container record", lambda: self._store.remove_container(c.id))
                cdir = self.container_dir(c.id)
                cdir.mkdir(parents=True)
                undo.push("remove container dir", lambda: shutil.rmtree(cdir, True))
                rootfs = await self._prepare_root(c, root, undo)
                netns = Path(c.netns_path)
                await self._namespaces.create(netns)
                undo.push("unpin netns", lambda: self._namespaces.delete(netns))
                await self._attach_all(c, plans, undo)
                handle = await self._processes.start(self._process_spec(
                    c, rootfs=rootfs, cwd=root.cwd if root else "/"))
                undo.push("kill process", lambda: self._processes.kill(handle))
                c = self.mark_running(c, handle)
            except BaseException:
                await undo.unwind()
                raise
        self._metrics.container_start_seconds.observe(time.perf_counter() - t0)
        self._events.publish("container.created", container_id=c.id,
                             attributes={"name": c.name})
        self._events.publish("container.started", container_id=c.id,
                             attributes={"name": c.name, "pid": str(c.pid)})
        self._update_gauges()
        return await self.view(c)

    async def _prepare_root(self, c: Container, root: RootPlan | None, undo: UndoStack
                            ) -> Path | None:
        if root is None:
            return None
        rootfs = await self._images.prepare_rootfs(
            c.id, container_dir=self.container_dir(c.id), image=root.image,
            directory=root.directory)
        undo.push("release rootfs", lambda: self._images.release_rootfs(c.id))
        return rootfs

    def _process_spec(self, c: Container, *, rootfs: Path | None, cwd: str) -> ProcessSpec:
        cdir = self.container_dir(c.id)
        return ProcessSpec(
            container_id=c.id, argv=c.command, env=c.env, hostname=c.hostname,
            netns_path=Path(c.netns_path), container_dir=cdir,
            capabilities=c.capabilities, privileged=c.privileged,
            hidden_paths=(self._config.state_dir, self._config.run_dir),
            etc_files=self._etc_files(c, cdir) if self._etc_files else (),
            rootfs=rootfs, cwd=cwd)

    async def _attach_all(self, c: Container, plans: tuple[AttachPlan, ...],
                          undo: UndoStack) -> None:
        if not plans:
            return
        inside = await self._links.open_container_netns(Path(c.netns_path))
        try:
            for plan in plans:
                a = await self._attacher.attach(c, plan, inside=inside)
                undo.push(f"detach {plan.network.name}", partial(self._undo_attach, a))
        finally:
            inside.close()

    async def _undo_attach(self, a: Attachment) -> None:
        (await self._attacher.detach([a])).raise_if_failed(f"detached {a.host_interface}")

    def mark_running(self, c: Container, handle: ProcessHandle) -> Container:
        c = replace(c, state=ContainerState.RUNNING, pid=handle.pid,
                    pid_start_time=handle.pid_start_time, shim_pid=handle.shim_pid,
                    shim_start_time=handle.shim_start_time, started_at=time.time(),
                    state_reason="")
        self._store.update_container(c)
        self.watch(c, handle)
        return c

    def watch(self, c: Container, handle: ProcessHandle) -> None:
        """Record the exit of `c`'s process when it happens."""
        self._handles[c.id] = handle
        self._watchers[c.id] = self._tasks.spawn(
            "exit-watcher", self._wait_exit(c.id, handle), name=f"watch-{c.id[:12]}")

    async def _wait_exit(self, cid: str, handle: ProcessHandle) -> None:
        try:
            status = await self._processes.wait_exit(handle)
        finally:
            self._handles.pop(cid, None)
            self._watchers.pop(cid, None)
        c = self._store.container(cid)
        if c is not None:
            self.mark_exited(c, code=status.code, finished_at=status.finished_at_ns / 1e9)

    def mark_exited(self, c: Container, *, code: int, finished_at: float,
                    reason: str = "") -> Container:
        c = replace(c, state=ContainerState.EXITED, pid=0, exit_code=code,
                    finished_at=finished_at, state_reason=reason)
        self._store.update_container(c)
        log.info("container %s exited with code %d", c.id[:12], code)
        self._events.publish("container.exited", container_id=c.id,
                             attributes={"name": c.name, "exit_code": str(code)})
        self._update_gauges()
        return c

    def mark_unknown(self, c: Container, *, reason: str) -> Container:
        """Recovery could not tell the container's state: say so instead of guessing."""
        c = replace(c, state=ContainerState.UNKNOWN, state_reason=reason)
        self._store.update_container(c)
        self._update_gauges()
        return c

    def _update_gauges(self) -> None:
        counts = self._store.count_containers_by_state()
        for state in ContainerState:
            self._metrics.containers.labels(state.value).set(counts.get(state, 0))

    # -- stop and remove ----------------------------------------------------------

    async def stop(self, ref: str, *, timeout: float = DEFAULT_STOP_TIMEOUT) -> ContainerView:
        """SIGTERM, SIGKILL after `timeout`. Holds no lock while it waits, so a forced
        removal (which kills at once) is never held up by a long stop."""
        c = self.resolve(ref)
        await self._stop_process(c.id, timeout=timeout)
        return await self.view(self._get(c.id))

    async def _stop_process(self, cid: str, *, timeout: float) -> None:
        handle, watcher = self._handles.get(cid), self._watchers.get(cid)
        if handle is None or watcher is None:
            return
        if timeout:
            await self._processes.stop(handle, timeout=timeout)
        else:
            self._processes.kill(handle)
        await asyncio.shield(watcher)

    async def remove(self, ref: str, *, force: bool) -> str:
        """Kill (with force), then tear everything of the container down."""
        c = self.resolve(ref)
        async with self.locked(c.id):
            c = self._get(c.id)
            if c.state == ContainerState.RUNNING and c.id in self._handles and not force:
                raise FailedPrecondition(
                    f"container {c.name} is running: stop it first or use force",
                    reason="CONTAINER_RUNNING", resource_type="container",
                    resource_name=c.name)
            self._store.mark_removing(c.id)
            await self._stop_process(c.id, timeout=0)
            t = await self.teardown(c)
        self._events.publish("container.removed", container_id=c.id,
                             attributes={"name": c.name})
        self._update_gauges()
        t.raise_if_failed(f"container {c.name} was removed")
        return c.id

    async def teardown(self, c: Container) -> Teardown:
        """Remove everything of a container that no longer runs, in a stated order: its
        attachments (port rules, veths, records, leases), its netns pin, its root
        (unmounted, its upper layer removed), its dir."""
        t = await self._attacher.detach(self._store.attachments(container_id=c.id),
                                        remove_records=lambda: self._store.remove_container(c.id))
        # A record kept (a veth that could not be deleted) keeps the netns for a retry;
        # a CNI sandbox's netns is its engine's.
        if c.owner == "sheep" and self._store.container(c.id) is None:
            await t.step("netns", lambda: self._namespaces.delete(Path(c.netns_path)))
            # A root still mounted keeps the dir (its removal would reach into it).
            if await t.step("rootfs", lambda: self._images.release_rootfs(c.id)):
                await t.step("container dir", lambda: _remove_dir(self.container_dir(c.id)))
        return t

    # -- attach and detach of a live container -----------------------------------

    async def attach(self, ref: str, s: AttachSpec) -> AttachmentView:
        c = self.resolve(ref)
        net = self._networks.get(s.network)
        async with self.locked(c.id):
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
            if c.state != ContainerState.RUNNING:
                raise FailedPrecondition(f"container {c.name} is {c.state.value}; networks "
                                         "can only be attached to a running container",
                                         reason="CONTAINER_NOT_RUNNING",
                                         resource_type="container", resource_name=c.name)
            (plan,) = plan_attachments(c.id, [s], resolve=self._networks.get,
                                       existing=existing)
            inside = await self._links.open_container_netns(Path(c.netns_path))
            try:
                a = await self._attacher.attach(c, plan, inside=inside)
            finally:
                inside.close()
        return AttachmentView(attachment=a, network_name=net.name, link_state=LinkState.UP)

    async def detach(self, ref: str, network: str) -> None:
        c = self.resolve(ref)
        net = self._networks.get(network)
        async with self.locked(c.id):
            found = [a for a in self._store.attachments(container_id=c.id)
                     if a.network_id == net.id]
            if not found:
                raise NotFound(f"container {c.name} is not attached to network {net.name}",
                               reason="ATTACHMENT_NOT_FOUND", resource_type="attachment",
                               resource_name=f"{c.name}/{net.name}")
            t = await self._attacher.detach(found)
        t.raise_if_failed(f"container {c.name} was detached from {net.name}")


def _remove_dir(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)
