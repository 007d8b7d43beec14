"""Start-up reconcile: re-adopt running containers, finish or roll back what a killed
daemon left half-done, and collect kernel objects with our marks that nobody owns."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from sheep_runtime import process
from sheep_runtime.config import Config
from sheep_runtime.metrics import Metrics
from sheep_runtime.model import ContainerState
from sheep_runtime.netlink import LinkManager, delete_pinned_netns
from sheep_runtime.ops.containers import ContainerService
from sheep_runtime.ops.networks import NetworkRegistry
from sheep_runtime.store import Store

log = logging.getLogger(__name__)

OUR_VETH = re.compile(r"^shp[0-9a-f]{12}$")
OUR_BRIDGE = re.compile(r"^shpbr[0-9a-f]{10}$")


@dataclass
class RecoveryReport:
    """What recovery did, for the log and the tests."""

    adopted: list[str] = field(default_factory=list)
    exited: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    leaks: dict[str, int] = field(default_factory=dict)


async def recover(*, config: Config, store: Store, links: LinkManager,
                  containers: ContainerService, networks: NetworkRegistry,
                  metrics: Metrics) -> RecoveryReport:
    """Bring store and kernel back in line after a (possibly unclean) stop."""
    report = RecoveryReport()
    for c in store.containers():
        cdir = containers.container_dir(c.id)
        if c.removing:  # a removal cut short: finish it
            handle = process.adopt(c.id, cdir, shim_pid=c.shim_pid or None,
                                   shim_start_time=c.shim_start_time or None)
            if handle is not None:
                process.kill(handle)
                await process.wait_exit(handle)
            await containers.teardown(c)
            report.removed.append(c.id)
            continue
        if c.state == ContainerState.EXITED:
            continue
        known = c.state == ContainerState.RUNNING
        handle = process.adopt(c.id, cdir, shim_pid=c.shim_pid if known else None,
                               shim_start_time=c.shim_start_time if known else None)
        if handle is not None:
            if known:
                containers.watch(c, handle)
            else:
                containers.mark_running(c, handle)
            report.adopted.append(c.id)
        elif known:
            status = process.read_exit_status(cdir)
            containers.mark_exited(
                c, code=status.code if status else -1,
                finished_at=status.finished_at_ns / 1e9 if status else time.time())
            report.exited.append(c.id)
        else:
            # Its CreateContainer never returned: undo all of it.
            await containers.teardown(c)
            report.rolled_back.append(c.id)
    report.leaks = await collect_leaks(config=config, store=store, links=links,
                                       networks=networks, metrics=metrics)
    log.info("recovery: adopted %d, exited %d, rolled back %d, removed %d, leaks %s",
             len(report.adopted), len(report.exited), len(report.rolled_back),
             len(report.removed), report.leaks)
    return report


async def collect_leaks(*, config: Config, store: Store, links: LinkManager,
                        networks: NetworkRegistry, metrics: Metrics,
                        in_flight: Collection[str] = (), bridges: bool = True
                        ) -> dict[str, int]:
    """Delete veths, bridges, pinned netns and container dirs that carry our marks but
    belong to no record. Objects without our marks are never touched, nor veths still
    being set up (`in_flight`); bridges only when `bridges` (no network is being
    created: at start)."""
    # Look at the kernel and the dirs first, at the records second: whatever an
    # operation made before the listing is by then in the store or in `in_flight`
    # (both are written before the object is made and cleared after the commit).
    found_links = await links.list_links("shp")
    pins, cdirs = _children(config.netns_dir), _children(config.containers_dir)
    veths = {a.host_interface for a in store.attachments()}
    known_bridges = {n.bridge for n in networks.all()}
    ids = {c.id for c in store.containers()}
    counts = {"veth": 0, "bridge": 0, "netns": 0, "container_dir": 0}
    stale_links = []
    for link in found_links:
        if OUR_VETH.match(link.name) and link.name not in veths and link.name not in in_flight:
            stale_links.append(link.name)
            counts["veth"] += 1
        elif bridges and OUR_BRIDGE.match(link.name) and link.name not in known_bridges:
            stale_links.append(link.name)
            counts["bridge"] += 1
    await asyncio.gather(*(links.delete_link(name) for name in stale_links))
    for pin in pins:
        if pin.name not in ids:
            await asyncio.to_thread(delete_pinned_netns, pin)
            counts["netns"] += 1
    for cdir in cdirs:
        if cdir.name not in ids:
            shutil.rmtree(cdir, ignore_errors=True)
            counts["container_dir"] += 1
    for kind, n in counts.items():
        if n:
            metrics.leaks_collected.labels(kind).inc(n)
    return {k: n for k, n in counts.items() if n}


def _children(path: Path) -> list[Path]:
    return list(path.iterdir()) if path.is_dir() else []
