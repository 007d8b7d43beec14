"""The ops layer wired over a set of backends: what `daemon.py` builds from the real
kernel, and the fast tests from fakes."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sheep_runtime.config import Config
from sheep_runtime.metrics import Metrics
from sheep_runtime.ops.attach import Attacher
from sheep_runtime.ops.backends import (
    Firewall,
    Images,
    Links,
    Namespaces,
    Processes,
    Resolver,
    Store,
)
from sheep_runtime.ops.cni import CniService
from sheep_runtime.ops.containers import ContainerService
from sheep_runtime.ops.dns import DnsService
from sheep_runtime.ops.events import EventBus
from sheep_runtime.ops.exec import ContainerExec
from sheep_runtime.ops.firewall import FirewallSync
from sheep_runtime.ops.healer import Healer
from sheep_runtime.ops.images import ImageService
from sheep_runtime.ops.logs import ContainerLogs
from sheep_runtime.ops.networks import NetworkRegistry
from sheep_runtime.ops.ports import PortTable
from sheep_runtime.ops.recovery import Recovery, RecoveryReport, collect_leaks
from sheep_runtime.ops.stats import ContainerStatsReader
from sheep_runtime.ops.tasks import TaskSupervisor, measure_loop_lag

log = logging.getLogger(__name__)

LEAK_COLLECTION_SECONDS = 60.0


@dataclass(frozen=True)
class Backends:
    """Everything ops needs from outside, behind its Protocols."""

    links: Links
    namespaces: Namespaces
    firewall: Firewall
    store: Store
    processes: Processes
    images: Images
    resolver: Resolver | None = None  # embedded DNS; None: containers keep the host's


@dataclass(frozen=True)
class Runtime:
    """The ops services over one set of backends."""

    config: Config
    backends: Backends
    metrics: Metrics
    events: EventBus
    tasks: TaskSupervisor
    networks: NetworkRegistry
    firewall: FirewallSync
    attacher: Attacher
    containers: ContainerService
    healer: Healer
    recovery: Recovery
    cni: CniService
    dns: DnsService
    images: ImageService
    exec: ContainerExec
    stats: ContainerStatsReader
    logs: ContainerLogs

    async def start(self) -> RecoveryReport:
        """Load networks (ensuring their bridges), recover containers, apply the
        firewall, and start the periodic leak collection."""
        await self.networks.load(default_bridge=self.config.default_bridge,
                                 default_subnet=self.config.default_subnet,
                                 default_subnet6=self.config.default_subnet6,
                                 default_mtu=self.config.default_mtu)
        report = await self.recovery.run()
        await self.cni.release_gone()
        await self.firewall.sync()
        await self.dns.start()
        self.containers.resume_policies()  # after recovery: its leak collection is done
        self.cni.started = True
        self.tasks.service("leak-collector", self._collect_leaks_periodically)
        self.tasks.service("loop-lag", lambda: measure_loop_lag(self.metrics))
        return report

    async def _collect_leaks_periodically(self) -> None:
        while True:
            await asyncio.sleep(LEAK_COLLECTION_SECONDS)
            await self.cni.release_gone()
            await collect_leaks(recovery=self.recovery, in_flight=self.attacher.in_flight)

    async def close(self) -> None:
        """Stop every background task; containers keep running."""
        await self.tasks.close()


async def build_runtime(config: Config, backends: Backends, *, metrics: Metrics,
                        events: EventBus) -> Runtime:
    """Wire the ops services over `backends` (nothing is loaded or started yet)."""
    b = backends
    tasks = TaskSupervisor(metrics)
    firewall = FirewallSync(firewall=b.firewall, store=b.store, tasks=tasks, metrics=metrics,
                            events=events)
    networks = NetworkRegistry(store=b.store, links=b.links, firewall=firewall,
                               metrics=metrics, events=events)
    ports = PortTable()
    for a in b.store.attachments():
        ports.reserve(a.container_id, a.ports)
    attacher = Attacher(store=b.store, networks=networks, links=b.links, firewall=firewall,
                        ports=ports, metrics=metrics, events=events)
    dns = DnsService(store=b.store, networks=networks, events=events, tasks=tasks,
                     resolver=b.resolver)
    containers = ContainerService(
        config=config, store=b.store, networks=networks, attacher=attacher, links=b.links,
        namespaces=b.namespaces, processes=b.processes, images=b.images, tasks=tasks,
        metrics=metrics, events=events, etc_files=dns.write_etc_files)
    healer = Healer(store=b.store, networks=networks, containers=containers,
                    attacher=attacher, links=b.links, tasks=tasks, metrics=metrics,
                    events=events)
    recovery = Recovery(config=config, store=b.store, links=b.links, namespaces=b.namespaces,
                        processes=b.processes, images=b.images, containers=containers,
                        networks=networks, metrics=metrics, events=events)
    cni = CniService(containers=containers, attacher=attacher, networks=networks,
                     store=b.store, links=b.links, metrics=metrics, events=events)
    return Runtime(config=config, backends=b, metrics=metrics, events=events, tasks=tasks,
                   networks=networks, firewall=firewall, attacher=attacher,
                   containers=containers, healer=healer, recovery=recovery, cni=cni,
                   dns=dns, images=ImageService(images=b.images, events=events),
                   exec=ContainerExec(containers, b.processes),
                   stats=ContainerStatsReader(containers, b.links, b.processes, b.store),
                   logs=ContainerLogs(containers, b.processes))
