"""sheepd: the composition root. Builds the backends from the config, recovers state,
serves the API until SIGTERM/SIGINT, then drains and exits 0."""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import version as dist_version
from ipaddress import IPv4Address
from typing import IO

import grpc
import uvloop
from prometheus_client import start_http_server

from sheep_runtime import __version__, notify
from sheep_runtime.api.interceptor import runtime_service_interceptor
from sheep_runtime.api.server import build_server
from sheep_runtime.api.servicer import RuntimeServicer
from sheep_runtime.cluster import ClusterAgent, ClusterConfig, NodeSettings
from sheep_runtime.cluster.etcd import route_source
from sheep_runtime.cluster.model import EtcdTLS
from sheep_runtime.cni.queue import drain_del_queue
from sheep_runtime.cni.server import CniServer, start_cni_server
from sheep_runtime.config import DEFAULT_NETWORK, Config, parse_args
from sheep_runtime.dns import DnsServer, Forwarder, host_upstreams, parse_upstreams
from sheep_runtime.errors import SheepError
from sheep_runtime.firewall import Firewall, FirewallMonitor
from sheep_runtime.images import ImageStore
from sheep_runtime.logs import setup_logging
from sheep_runtime.metrics import Metrics
from sheep_runtime.netlink import LinkManager, NetlinkMonitor, PinnedNamespaces
from sheep_runtime.netlink.vxlan import Overlay
from sheep_runtime.ops.cluster import ClusterService
from sheep_runtime.ops.events import EventBus
from sheep_runtime.ops.runtime import Backends, Runtime, build_runtime
from sheep_runtime.process import OciProcesses
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


async def open_backends(config: Config, metrics: Metrics) -> Backends:
    """The real backends: netlink, pinned namespaces, nftables, SQLite, runc, the image
    store, DNS."""
    links = LinkManager()
    await links.start()
    firewall = Firewall()
    await firewall.start()
    upstreams = parse_upstreams(config.dns_upstreams) or host_upstreams()
    resolver = DnsServer(forwarder=Forwarder(upstreams, metrics=metrics), metrics=metrics)
    return Backends(links=links, namespaces=PinnedNamespaces(), firewall=firewall,
                    store=Store(config.db_path),
                    processes=OciProcesses(root=config.run_dir / "runc"),
                    images=ImageStore(config.state_dir / "images"), resolver=resolver)


async def close_backends(backends: Backends) -> None:
    assert isinstance(backends.firewall, Firewall)
    assert isinstance(backends.links, LinkManager)
    assert isinstance(backends.resolver, DnsServer)
    await backends.resolver.close()
    await backends.firewall.close()
    await backends.links.close()
    backends.store.close()


async def serve(config: Config) -> str | None:
    """Run the daemon until SIGTERM or SIGINT; return why it stopped if it failed."""
    os.umask(0o077)
    for d in (config.state_dir, config.containers_dir, config.run_dir, config.netns_dir):
        d.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(config)
    metrics = Metrics()
    metrics.set_build_info(version=__version__, pyroute2=dist_version("pyroute2"))
    events = EventBus(on_publish=lambda e: metrics.events.labels(e.type).inc())
    backends = await open_backends(config, metrics)
    try:
        config, cluster = await _join_cluster(config, backends, metrics)
    except BaseException:
        await close_backends(backends)
        raise
    rt = await build_runtime(config, backends, metrics=metrics, events=events)
    membership = ClusterService(member=cluster, store=backends.store, networks=rt.networks,
                                firewall=rt.firewall, tasks=rt.tasks, events=events)
    try:
        membership.prime()  # the first firewall sync already opens VXLAN to the peers
        await rt.start()
        _start_monitors(rt, backends)
        membership.start()
        servicer = RuntimeServicer(runtime=rt, cluster=membership, backends={
            "netlink": "raw rtnetlink (netlink/codec.py)",
            "firewall": "nftables (libnftables JSON)", "store": "sqlite",
            "process": "runc (OCI runtime) under a per-container shim"})
        cni = await _start_cni(config, rt)  # queued DELs run before anything is served
        server = await _start_api(config, rt, servicer)
        # What start-up made lives on: out of the collector's sight, a full collection
        # (which stalls the loop, ~16 ms seen under load) has that much less to walk.
        gc.freeze()
        _notify(notify.ready, status=f"serving on unix:{config.socket}")
        failure = await _wait_for_signal_or(rt.tasks.failed)
        _notify(notify.stopping)
        log.info("stopping: draining in-flight calls (up to %.0fs)", DRAIN_SECONDS)
        await servicer.close_streams(timeout=1.0)
        await server.stop(DRAIN_SECONDS)
        if cni is not None:
            await cni.close(DRAIN_SECONDS)
    finally:
        await rt.close()
        await close_backends(backends)
        if cluster is not None:
            await cluster.close()
        lock.close()
    log.info("stopped; containers keep running")
    return failure


async def _join_cluster(config: Config, backends: Backends, metrics: Metrics
                        ) -> tuple[Config, ClusterAgent | None]:
    """Cluster mode: join (config CAS, this node's subnet) and converge the overlay
    device before the runtime is built; the default network becomes this node's slice
    of the cluster network, with the overlay's MTU (underlay - 50 with vxlan)."""
    flags = config.cluster
    if flags is None:
        return config, None
    stored = next((n.subnet for n in backends.store.networks() if n.name == DEFAULT_NETWORK),
                  None)
    settings = NodeSettings(
        name=flags.node_name, endpoints=flags.etcd,
        underlay=IPv4Address(flags.underlay_address or route_source(flags.etcd[0])),
        config=ClusterConfig(network=flags.network, subnet_len=flags.subnet_len,
                             backend=flags.backend, vni=flags.vni, port=flags.port),
        reconcile_seconds=flags.reconcile_seconds,
        tls=(EtcdTLS(cacert=flags.etcd_cacert, cert=flags.etcd_cert, key=flags.etcd_key)
             if flags.etcd_cacert or flags.etcd_cert else None))
    overlay = Overlay(backend=flags.backend)
    await overlay.start()
    agent = ClusterAgent(settings, dataplane=overlay, metrics=metrics, on_close=overlay.close)
    try:
        subnet = await agent.join(stored)
        _, mtu = await agent.start_overlay()
    except BaseException:
        await agent.close()
        raise
    return dataclasses.replace(config, default_subnet=subnet, default_mtu=mtu), agent


def _start_monitors(rt: Runtime, backends: Backends) -> None:
    """Follow the kernel: link events feed the healer, nftables events the firewall
    repair. A monitor that dies takes the daemon down (it would be blind otherwise)."""
    metrics = rt.metrics
    monitor = NetlinkMonitor(on_event=lambda kind, lag: _count_event(metrics, kind, lag),
                             on_resync=metrics.netlink_resyncs.inc, skip=rt.healer.ignores,
                             on_skip=lambda kind: metrics.netlink_events.labels(kind).inc())
    rt.tasks.service("netlink-monitor", lambda: monitor.run(rt.healer.handle), restart=False)
    assert isinstance(backends.firewall, Firewall)
    fw_monitor = FirewallMonitor(firewall=backends.firewall)
    rt.tasks.service("firewall-monitor", lambda: fw_monitor.run(rt.firewall.repair_if_broken),
                     restart=False)


async def _start_cni(config: Config, rt: Runtime) -> CniServer | None:
    """Drain the DELs the plugin queued while sheepd was down, then serve the CNI
    socket (unless disabled)."""
    if config.cni_socket is None:
        await drain_del_queue(rt.cni, state_dir=config.state_dir)
        return None
    return await start_cni_server(rt.cni, socket=config.cni_socket, state_dir=config.state_dir)


def _notify(send: Callable[..., object], **fields: str) -> None:
    """Tell systemd (Type=notify) where we are; a notify socket gone is only logged."""
    try:
        send(**fields)
    except OSError as e:
        log.warning("cannot notify systemd: %s", e)


def _count_event(metrics: Metrics, kind: str, lag: float) -> None:
    metrics.netlink_events.labels(kind).inc()
    metrics.netlink_lag.observe(lag)


async def _start_api(config: Config, rt: Runtime, servicer: RuntimeServicer
                     ) -> grpc.aio.Server:
    metrics, events = rt.metrics, rt.events
    interceptor = runtime_service_interceptor(metrics)
    server, _health = await build_server(
        servicer, socket=config.socket, socket_group=config.socket_group,
        listen=config.listen, tls=config.tls, events=events, interceptors=[interceptor])
    if config.metrics_addr:
        host, _, port = config.metrics_addr.rpartition(":")
        start_http_server(int(port), addr=host or "127.0.0.1", registry=metrics.registry)
    log.info("sheepd %s serving on unix:%s (mode %s)%s", __version__, config.socket,
             f"0660, group {config.socket_group}" if config.socket_group else "0600",
             f" and {config.listen} (mutual TLS)" if config.listen else "")
    return server


async def _wait_for_signal_or(failed: asyncio.Future[str]) -> str | None:
    """Wait for SIGTERM/SIGINT (None) or a fatal task failure (its reason)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait((stopped, failed), return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    return failed.result() if failed.done() else None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `sheepd`."""
    config = parse_args(argv)  # a usage error exits 2 with argparse's message
    setup_logging(level=config.log_level, fmt=config.log_format)
    try:
        failure = uvloop.run(serve(config))
    except (AlreadyRunning, SheepError) as e:
        log.error("cannot start: %s", e)
        return 1
    if failure:
        log.error("%s", failure)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
