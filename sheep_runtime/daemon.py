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
from importlib.metadata import version as dist_version
from typing import IO

import uvloop
from prometheus_client import start_http_server

from sheep_runtime import __version__
from sheep_runtime.api.server import build_server
from sheep_runtime.api.servicer import RuntimeServicer
from sheep_runtime.config import Config, parse_args
from sheep_runtime.logs import setup_logging
from sheep_runtime.metrics import Metrics
from sheep_runtime.netlink import LinkManager
from sheep_runtime.ops.attach import Attacher
from sheep_runtime.ops.containers import ContainerService
from sheep_runtime.ops.events import EventBus
from sheep_runtime.ops.faults import Faults
from sheep_runtime.ops.networks import NetworkRegistry
from sheep_runtime.ops.recovery import recover
from sheep_runtime.store import Store

log = logging.getLogger("sheepd")

DRAIN_SECONDS = 5.0


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


async def serve(config: Config) -> None:
    """Run the daemon until SIGTERM or SIGINT."""
    os.umask(0o077)
    for d in (config.state_dir, config.containers_dir, config.run_dir, config.netns_dir):
        d.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(config)
    metrics = Metrics()
    metrics.set_build_info(version=__version__, pyroute2=dist_version("pyroute2"))
    events = EventBus(on_publish=lambda e: metrics.events.labels(e.type).inc())
    store = Store(config.db_path)
    links = LinkManager()
    await links.start()
    try:
        networks = NetworkRegistry(store=store, links=links, metrics=metrics, events=events)
        await networks.load(default_bridge=config.default_bridge,
                            default_subnet=config.default_subnet)
        attacher = Attacher(store=store, networks=networks, links=links, metrics=metrics,
                            events=events, faults=Faults(config.faults))
        containers = ContainerService(config=config, store=store, networks=networks,
                                      attacher=attacher, links=links, metrics=metrics,
                                      events=events, faults=Faults(config.faults))
        await recover(config=config, store=store, links=links, containers=containers,
                      networks=networks, metrics=metrics)
        servicer = RuntimeServicer(
            containers=containers, networks=networks, events=events,
            backends={"netlink": f"pyroute2 {dist_version('pyroute2')}",
                      "store": "sqlite", "process": "shim (nsenter + unshare)"})
        server, _health = await build_server(servicer, socket=config.socket,
                                             listen=config.listen)
        if config.metrics_addr:
            host, _, port = config.metrics_addr.rpartition(":")
            start_http_server(int(port), addr=host or "127.0.0.1", registry=metrics.registry)
        log.info("sheepd %s serving on unix:%s%s", __version__, config.socket,
                 f" and {config.listen}" if config.listen else "")
        await _wait_for_signal()
        log.info("stopping: draining in-flight calls (up to %.0fs)", DRAIN_SECONDS)
        await server.stop(DRAIN_SECONDS)
        await containers.close()
    finally:
        await links.close()
        store.close()
        lock.close()
    log.info("stopped; containers keep running")


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
