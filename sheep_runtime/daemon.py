"""sheepd: the composition root. Builds the backends from the config, recovers state,
serves the API until SIGTERM/SIGINT, then drains and exits 0."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version as dist_version
from typing import IO

import grpc
import uvloop
from prometheus_client import start_http_server
from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_runtime import __version__
from sheep_runtime.api.interceptor import MetricsInterceptor
from sheep_runtime.api.server import build_server
from sheep_runtime.api.servicer import RuntimeServicer
from sheep_runtime.config import Config, parse_args
from sheep_runtime.firewall import Firewall, FirewallMonitor
from sheep_runtime.logs import setup_logging
from sheep_runtime.metrics import Metrics
from sheep_runtime.netlink import LinkManager
from sheep_runtime.netlink.monitor import NetlinkMonitor
from sheep_runtime.ops.attach import Attacher
from sheep_runtime.ops.containers import ContainerService
from sheep_runtime.ops.events import EventBus
from sheep_runtime.ops.faults import Faults
from sheep_runtime.ops.firewall import FirewallSync
from sheep_runtime.ops.healer import Healer
from sheep_runtime.ops.networks import NetworkRegistry
from sheep_runtime.ops.ports import PortTable
from sheep_runtime.ops.recovery import collect_leaks, recover
from sheep_runtime.store import Store

log = logging.getLogger("sheepd")

DRAIN_SECONDS = 5.0
LEAK_COLLECTION_SECONDS = 60.0


class AlreadyRunning(Exception):
    """Another sheepd holds the state directory."""


def acquire_lock(config: Config) -> IO[str]:
    """Hold an exclusive lock on the state dir for the daemon's lifetime."""
    f = open(config.lock_path, "a+")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        raise AlreadyRunning(f"another sheepd (pid {f.read().strip() or '?'}) is using "
                             f"{config.state_dir}; stop it first or use --state-dir") from None
    f.truncate(0)
    f.write(str(os.getpid()))
    f.flush()
    return f


@dataclass
class Runtime:
    """The daemon's parts, wired together."""

    store: Store
    links: LinkManager
    firewall: Firewall
    networks: NetworkRegistry
    firewall_sync: FirewallSync
    attacher: Attacher
    containers: ContainerService
    healer: Healer

    async def close(self) -> None:
        await self.healer.close()
        await self.containers.close()
        await self.firewall.close()
        await self.links.close()
        self.store.close()


async def build(config: Config, *, metrics: Metrics, events: EventBus) -> Runtime:
    """Open the backends, load networks and leases, and build the ops layer."""
    store = Store(config.db_path)
    links = LinkManager()
    await links.start()
    firewall = Firewall()
    await firewall.start()
    networks = NetworkRegistry(store=store, links=links, metrics=metrics, events=events)
    await networks.load(default_bridge=config.default_bridge,
                        default_subnet=config.default_subnet)
    ports = PortTable()
    for a in store.attachments():
        ports.reserve(a.container_id, a.ports)
    firewall_sync = FirewallSync(firewall=firewall, store=store, networks=networks,
                                 metrics=metrics, events=events)
    networks.on_change = firewall_sync.sync
    faults = Faults(config.faults)
    attacher = Attacher(store=store, networks=networks, links=links, firewall=firewall_sync,
                        ports=ports, metrics=metrics, events=events, faults=faults)
    containers = ContainerService(config=config, store=store, networks=networks,
                                  attacher=attacher, links=links, metrics=metrics,
                                  events=events, faults=faults)
    healer = Healer(store=store, networks=networks, containers=containers, attacher=attacher,
                    links=links, metrics=metrics, events=events)
    return Runtime(store=store, links=links, firewall=firewall, networks=networks,
                   firewall_sync=firewall_sync, attacher=attacher, containers=containers,
                   healer=healer)


async def serve(config: Config) -> None:
    """Run the daemon until SIGTERM or SIGINT."""
    os.umask(0o077)
    for d in (config.state_dir, config.containers_dir, config.run_dir, config.netns_dir):
        d.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(config)
    metrics = Metrics()
    metrics.set_build_info(version=__version__, pyroute2=dist_version("pyroute2"))
    events = EventBus(on_publish=lambda e: metrics.events.labels(e.type).inc())
    rt = await build(config, metrics=metrics, events=events)
    try:
        await recover(config=config, store=rt.store, links=rt.links, containers=rt.containers,
                      networks=rt.networks, metrics=metrics)
        await rt.firewall_sync.sync()
        monitor = NetlinkMonitor(
            on_event=lambda kind, lag: _count_event(metrics, kind, lag),
            on_resync=metrics.netlink_resyncs.inc)
        async with asyncio.TaskGroup() as tasks:
            # Supervised: one that dies takes the daemon down instead of leaving it half
            # alive (the TaskGroup cancels the rest and raises).
            background = [
                tasks.create_task(monitor.run(rt.healer.handle), name="netlink-monitor"),
                tasks.create_task(FirewallMonitor(firewall=rt.firewall).run(
                    rt.firewall_sync.repair_if_broken), name="firewall-monitor"),
                tasks.create_task(_collect_leaks_periodically(config, rt, metrics),
                                  name="leak-collector"),
            ]
            server = await _start_api(config, rt, metrics, events)
            await _wait_for_signal()
            log.info("stopping: draining in-flight calls (up to %.0fs)", DRAIN_SECONDS)
            await server.stop(DRAIN_SECONDS)
            for task in background:
                task.cancel()
    finally:
        await rt.close()
        lock.close()
    log.info("stopped; containers keep running")


def _count_event(metrics: Metrics, kind: str, lag: float) -> None:
    metrics.netlink_events.labels(kind).inc()
    metrics.netlink_lag.observe(lag)


async def _start_api(config: Config, rt: Runtime, metrics: Metrics,
                     events: EventBus) -> grpc.aio.Server:
    servicer = RuntimeServicer(
        containers=rt.containers, networks=rt.networks, events=events,
        backends={"netlink": f"pyroute2 {dist_version('pyroute2')} + raw rtnetlink",
                  "firewall": "nftables (libnftables JSON)", "store": "sqlite",
                  "process": "shim (nsenter + unshare)"})
    interceptor = MetricsInterceptor(metrics)
    interceptor.initialize(pb.DESCRIPTOR.services_by_name["RuntimeService"])
    server, _health = await build_server(servicer, socket=config.socket, listen=config.listen,
                                         interceptors=[interceptor])
    if config.metrics_addr:
        host, _, port = config.metrics_addr.rpartition(":")
        start_http_server(int(port), addr=host or "127.0.0.1", registry=metrics.registry)
    log.info("sheepd %s serving on unix:%s%s", __version__, config.socket,
             f" and {config.listen}" if config.listen else "")
    return server


async def _collect_leaks_periodically(config: Config, rt: Runtime, metrics: Metrics) -> None:
    while True:
        await asyncio.sleep(LEAK_COLLECTION_SECONDS)
        await collect_leaks(config=config, store=rt.store, links=rt.links,
                            networks=rt.networks, metrics=metrics,
                            in_flight=rt.attacher.in_flight, bridges=False)


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `sheepd`."""
    config = parse_args(argv)
    setup_logging(level=config.log_level, fmt=config.log_format)
    try:
        uvloop.run(serve(config))
    except AlreadyRunning as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
