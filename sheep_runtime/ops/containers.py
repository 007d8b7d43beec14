"""Containers: create (netns, networks, process), start again, stop, wait, remove, live
attach and detach; the watchers that record each process's exit without polling, and
what follows an exit: its networks released, its restart policy applied.

A container that exits keeps what it asked for (networks, static addresses, ports,
aliases, its root's writable layer) and gives back what it held: veths, leases, host
ports and its netns. Each start attaches it again the same way."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from sheep_runtime.config import DEFAULT_NETWORK, Config
from sheep_runtime.errors import FailedPrecondition, InvalidArgument, NotFound, SheepError
from sheep_runtime.metrics import Metrics
from sheep_runtime.model import (
    Attachment,
    Container,
    ContainerState,
    Image,
    LinkState,
    NetworkRequest,
    ProcessHandle,
    ProcessSpec,
)
from sheep_runtime.names import generated_name, new_id
from sheep_runtime.offload import in_thread
from sheep_runtime.ops.attach import Attacher
from sheep_runtime.ops.backends import Images, Links, Namespaces, Processes, Store
from sheep_runtime.ops.events import EventBus
from sheep_runtime.ops.lookup import ContainerLookup
from sheep_runtime.ops.networks import NetworkRegistry
from sheep_runtime.ops.plans import AttachPlan, plan_attachments
from sheep_runtime.ops.restarts import restart_delay
from sheep_runtime.ops.specs import AttachSpec, ContainerSpec, validate_exec
from sheep_runtime.ops.tasks import TaskSupervisor
from sheep_runtime.ops.undo import Teardown, UndoStack
from sheep_runtime.ops.views import AttachmentView, ContainerView

log = logging.getLogger(__name__)
EtcWriter = Callable[[Container, Path], Awaitable[tuple[str, ...]]]


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
                 etc_files: EtcWriter | None = None) -> None:
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
        self._releases: dict[str, asyncio.Task[None]] = {}  # after an exit
        self._restarts: dict[str, asyncio.Task[None]] = {}  # pending, by policy
        self._waiters: dict[str, list[asyncio.Future[Container]]] = {}

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
                      privileged=spec.privileged, capabilities=self._grantable(spec),
                      image=root.image.name if root and root.image else "",
                      rootfs=spec.rootfs,
                      working_dir=root.cwd if root else spec.working_dir or "/",
                      requests=tuple(_request_of(p) for p in plans),
                      restart_policy=spec.restart_policy, stop_signal=spec.stop_signal,
                      stop_timeout=spec.stop_timeout, resources=spec.resources,
                      log=spec.log, auto_remove=spec.auto_remove)
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
                undo.push("remove container dir", lambda: shutil.rmtree(cdir, True))
                await in_thread(cdir.mkdir, parents=True)  # can wait on the fs journal
                rootfs = await self._prepare_root(c, root, undo)
                c = await self._launch(c, plans, rootfs, undo)
            except BaseException:
                await undo.unwind()
                raise
        self._metrics.container_start_seconds.observe(time.perf_counter() - t0)
        self._events.publish("container.created", container_id=c.id,
                             attributes={"name": c.name})
        self._started(c)
        return await self.view(c)

    async def _launch(self, c: Container, plans: tuple[AttachPlan, ...],
                      rootfs: Path | None, undo: UndoStack) -> Container:
        """Pin a netns, attach `plans`, start the process (each step on `undo`)."""
        netns = Path(c.netns_path)
        await self._namespaces.create(netns)
        undo.push("unpin netns", lambda: self._namespaces.delete(netns))
        await self._attach_all(c, plans, undo)
        handle = await self._processes.start(await self._process_spec(c, rootfs=rootfs))
        undo.push("kill process", lambda: self._processes.kill(handle))
        return self.mark_running(c, handle)

    def _started(self, c: Container) -> None:
        self._events.publish("container.started", container_id=c.id,
                             attributes={"name": c.name, "pid": str(c.pid)})
        self._update_gauges()

    # -- start again, restart, wait -------------------------------------------------

    async def start(self, ref: str) -> ContainerView:
        """Start a created or exited container again; a running one is returned as it
        is. Resets its restart count (a start through the API begins a new series)."""
        c = self.resolve(ref)
        self._cancel_restart(c.id)
        async with self.locked(c.id):
            c = self._get(c.id)
            if c.id not in self._handles:
                c = await self._start_again(replace(c, restart_count=0, restart_backoff=0.0,
                                                    stopped_by_user=False))
        return await self.view(c)

    async def restart(self, ref: str, *, timeout: float | None = None) -> ContainerView:
        """Stop (if running) and start again."""
        await self.stop(ref, timeout=timeout)
        return await self.start(ref)

    async def wait(self, ref: str) -> Container:
        """The container once its command exits; at once if it is not running."""
        c = self.resolve(ref)
        if c.id not in self._handles:
            return self._get(c.id)
        waiter: asyncio.Future[Container] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(c.id, []).append(waiter)
        try:
            return await waiter
        finally:
            if waiter in self._waiters.get(c.id, []):
                self._waiters[c.id].remove(waiter)

    async def _start_again(self, c: Container) -> Container:
        """Start exited `c` (under its lock) as it was created; all or nothing: on
        failure it stays exited, holding nothing."""
        if c.owner != "sheep" or c.removing:
            raise FailedPrecondition(f"container {c.name} cannot be started: it is "
                                     + ("being removed" if c.removing else
                                        "a CNI sandbox"), reason="CONTAINER_NOT_STARTABLE",
                                     resource_type="container", resource_name=c.name)
        await self.release_network(c)  # an exit whose release has not run yet
        plans = self._replan(c)
        undo = UndoStack(self._metrics)
        try:
            rootfs = await self._prepare_root(c, self._root_of(c), undo=None)
            c = await self._launch(c, plans, rootfs, undo)
        except BaseException:
            await undo.unwind()
            raise
        self._started(c)
        return c

    def _replan(self, c: Container) -> tuple[AttachPlan, ...]:
        specs = []
        for r in c.requests:
            try:
                net = self._networks.get_by_id(r.network_id)
            except NotFound:
                raise FailedPrecondition(
                    f"container {c.name} cannot be started: its network {r.network_id[:12]} "
                    "was removed", reason="NETWORK_REMOVED", resource_type="container",
                    resource_name=c.name) from None
            specs.append(AttachSpec(network=net.id, ip=r.ip, ports=r.ports,
                                    interface_name=r.interface_name, aliases=r.aliases,
                                    preferred=r.last_ip, ip6=r.ip6, preferred6=r.last_ip6))
        return plan_attachments(c.id, specs, resolve=self._networks.get)

    def _root_of(self, c: Container) -> RootPlan | None:
        if c.image:
            try:
                image = self._images.resolve(c.image)
            except NotFound:
                raise FailedPrecondition(
                    f"container {c.name} cannot be started: its image {c.image} was "
                    "removed", reason="IMAGE_REMOVED", resource_type="container",
                    resource_name=c.name) from None
            return RootPlan(image=image, directory=None, cwd=c.working_dir)
        if c.rootfs:
            return RootPlan(image=None, directory=Path(c.rootfs), cwd=c.working_dir)
        return None

    async def _prepare_root(self, c: Container, root: RootPlan | None,
                            undo: UndoStack | None) -> Path | None:
        """Mount the root (kept mounted from a previous run: reused); with `undo`, a
        new root is released again on failure."""
        if root is None:
            return None
        rootfs = await self._images.prepare_rootfs(
            c.id, container_dir=self.container_dir(c.id), image=root.image,
            directory=root.directory)
        if undo is not None:
            undo.push("release rootfs", lambda: self._images.release_rootfs(c.id))
        return rootfs

    async def _process_spec(self, c: Container, *, rootfs: Path | None) -> ProcessSpec:
        cdir = self.container_dir(c.id)
        etc_files = await self._etc_files(c, cdir) if self._etc_files else ()
        return ProcessSpec(
            container_id=c.id, argv=c.command, env=c.env, hostname=c.hostname,
            netns_path=Path(c.netns_path), container_dir=cdir,
            capabilities=c.capabilities, privileged=c.privileged,
            hidden_paths=(self._config.state_dir, self._config.run_dir),
            etc_files=etc_files,
            rootfs=rootfs, cwd=c.working_dir, resources=c.resources, log=c.log)

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
        if c is None:
            return
        c = self.mark_exited(c, code=status.code, finished_at=status.finished_at_ns / 1e9)
        for waiter in self._waiters.pop(cid, []):
            if not waiter.done():
                waiter.set_result(c)
        if not c.removing:
            self._releases[cid] = self._tasks.spawn(
                "after-exit", self._after_exit(cid), name=f"exit-{cid[:12]}")

    async def _after_exit(self, cid: str) -> None:
        """Release the networks of an exited container, then restart or remove it as
        its policy says. Its own task: the exit watcher must not wait for the lock
        (a removal holds it while it waits for the watcher)."""
        try:
            async with self.locked(cid):
                c = self._store.container(cid)
                if c is None or c.removing or cid in self._handles:
                    return
                c = await self.release_network(c)
        finally:
            self._releases.pop(cid, None)
        self.apply_policy(c)

    def resume_policies(self) -> None:
        """At daemon start: apply the policy of every exited container."""
        for c in self._store.containers():
            if c.owner == "sheep" and c.state == ContainerState.EXITED and not c.removing:
                self.apply_policy(c, daemon_start=True)

    def apply_policy(self, c: Container, *, daemon_start: bool = False) -> None:
        """Schedule the restart of exited `c` if its policy says so, or its removal
        with auto_remove."""
        delay = restart_delay(c, daemon_start=daemon_start)
        if delay is not None:
            if c.stopped_by_user:  # "always" at a daemon start
                c = replace(c, stopped_by_user=False)
                self._store.update_container(c)
            self._schedule_restart(c, delay)
        elif c.auto_remove:
            self._tasks.spawn("auto-remove", self._auto_remove(c.id),
                              name=f"rm-{c.id[:12]}")

    async def _auto_remove(self, cid: str) -> None:
        with contextlib.suppress(NotFound):
            await self.remove(cid, force=True)

    def _schedule_restart(self, c: Container, delay: float) -> None:
        self._events.publish("container.restarting", container_id=c.id, attributes={
            "name": c.name, "restart_count": str(c.restart_count + 1),
            "delay_ms": str(round(delay * 1000))})
        self._restarts[c.id] = self._tasks.spawn(
            "restart", self._restart_later(c.id, delay), name=f"restart-{c.id[:12]}")

    def _cancel_restart(self, cid: str) -> None:
        task = self._restarts.pop(cid, None)
        if task is not None:
            task.cancel()

    def restart_pending(self, container_id: str) -> bool:
        return container_id in self._restarts

    async def _restart_later(self, cid: str, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self.locked(cid):
            self._restarts.pop(cid, None)
            c = self._store.container(cid)
            if (c is None or c.removing or cid in self._handles
                    or restart_delay(c) is None):
                return
            c = replace(c, restart_count=c.restart_count + 1, restart_backoff=delay)
            self._store.update_container(c)
            try:
                await self._start_again(c)
                self._metrics.container_restarts.inc()
                return
            except SheepError as e:
                log.error("restart of container %s failed: %s", c.name, e)
                c = replace(c, finished_at=time.time(), state_reason=f"restart failed: {e}")
                self._store.update_container(c)
        self.apply_policy(c)

    async def release_network(self, c: Container) -> Container:
        """Detach every network of exited `c` (remembering the dynamic addresses for
        the next start) and unpin its netns; a veth that cannot be deleted keeps its
        lease and the netns (leak collection retries)."""
        attachments = self._store.attachments(container_id=c.id)
        if not attachments and not self._namespaces.exists(Path(c.netns_path)):
            return c
        had = {a.network_id: a for a in attachments}
        c = replace(c, requests=tuple(_remember(r, had.get(r.network_id)) for r in c.requests))
        self._store.update_container(c)
        t = await self._attacher.detach(attachments)
        if not self._store.attachments(container_id=c.id):
            await t.step("netns", lambda: self._namespaces.delete(Path(c.netns_path)))
        if t.errors:
            log.error("container %s exited; releasing its networks: %s", c.name,
                      "; ".join(t.errors))
        return c

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

    async def stop(self, ref: str, *, timeout: float | None = None) -> ContainerView:
        """The stop signal, SIGKILL after `timeout` (None: the container's own); returns
        once its networks are released. Its restart policy no longer applies (until a
        start). Holds no lock while it waits, so a forced removal (which kills at once)
        is never held up by a long stop."""
        c = self.resolve(ref)
        self._cancel_restart(c.id)
        async with self.locked(c.id):
            c = replace(self._get(c.id), stopped_by_user=True)
            self._store.update_container(c)
        await self._stop_process(c.id, timeout=c.stop_timeout if timeout is None else timeout,
                                 signal_number=c.stop_signal)
        release = self._releases.get(c.id)
        if release is not None:
            await asyncio.shield(release)
        # auto_remove may have removed it meanwhile: then its last known state
        after = self._store.container(c.id)
        return await self.view(after or replace(c, state=ContainerState.EXITED, pid=0))

    async def _stop_process(self, cid: str, *, timeout: float, signal_number: int = 15
                            ) -> None:
        handle, watcher = self._handles.get(cid), self._watchers.get(cid)
        if handle is None or watcher is None:
            return
        if timeout:
            await self._processes.stop(handle, timeout=timeout, signal_number=signal_number)
        else:
            self._processes.kill(handle)
        await asyncio.shield(watcher)

    async def remove(self, ref: str, *, force: bool) -> str:
        """Kill (with force), then tear everything of the container down."""
        c = self.resolve(ref)
        self._cancel_restart(c.id)
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
                # off the loop: a few hundred unlinks that can wait on the journal
                await t.step("container dir",
                             lambda: in_thread(_remove_dir, self.container_dir(c.id)))
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
            # Attached again at each start, as Docker keeps connected networks.
            self._store.update_container(replace(c, requests=(*c.requests,
                                                              _request_of(plan))))
            try:
                inside = await self._links.open_container_netns(Path(c.netns_path))
                try:
                    a = await self._attacher.attach(c, plan, inside=inside)
                finally:
                    inside.close()
            except BaseException:
                self._store.update_container(c)
                raise
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
            c = self._get(c.id)
            self._store.update_container(replace(c, requests=tuple(
                r for r in c.requests if r.network_id != net.id)))
            t = await self._attacher.detach(found)
        t.raise_if_failed(f"container {c.name} was detached from {net.name}")


def _request_of(plan: AttachPlan) -> NetworkRequest:
    return NetworkRequest(network_id=plan.network.id, ip=plan.ip, ports=plan.ports,
                          interface_name=plan.interface_name, aliases=plan.aliases,
                          ip6=plan.ip6)


def _remember(r: NetworkRequest, a: Attachment | None) -> NetworkRequest:
    """`r` with the addresses `a` held, preferred at the next start."""
    if a is None:
        return r
    return replace(r, last_ip=a.address.ip,
                   last_ip6=a.address6.ip if a.address6 else r.last_ip6)


def _remove_dir(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)
