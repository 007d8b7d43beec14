"""Start-up reconcile: re-adopt running containers, finish or roll back what a killed
daemon left half-done, and collect kernel objects with our marks that nobody owns.

One bad record never stops the daemon: a corrupt exit file, a missing netns pin or an
unreadable row is logged, counted in `sheep_recovery_errors_total{kind}`, published as a
`recovery.error` event and shown on the container; recovery goes on with the rest.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Awaitable, Collection
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from sheep_runtime.config import Config
from sheep_runtime.errors import SheepError
from sheep_runtime.metrics import Metrics
from sheep_runtime.model import Container, ContainerState, Network, ProcessHandle
from sheep_runtime.names import HOST_VETH_PREFIX
from sheep_runtime.ops.attach import RETIRED_VETH_PREFIX
from sheep_runtime.ops.backends import Images, Links, Namespaces, Processes, Store
from sheep_runtime.ops.containers import ContainerService
from sheep_runtime.ops.events import EventBus
from sheep_runtime.ops.networks import NetworkRegistry

log = logging.getLogger(__name__)

OUR_VETH = re.compile(r"shp[0-9a-f]{12}")
RETIRED_VETH = re.compile(RETIRED_VETH_PREFIX + r"[0-9a-f]{12}")  # awaiting deletion
OUR_BRIDGE = re.compile(r"shpbr[0-9a-f]{10}")
_OUR_LINKS = "sh"  # one dump for both veth prefixes and the bridges
assert HOST_VETH_PREFIX.startswith(_OUR_LINKS) and RETIRED_VETH_PREFIX.startswith(_OUR_LINKS)
EXIT_CODE_UNKNOWN = -1


@dataclass
class RecoveryReport:
    """What recovery did, for the log and the tests."""

    adopted: list[str] = field(default_factory=list)
    exited: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    leaks: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Recovery:
    """The parts recovery looks at and repairs."""

    config: Config
    store: Store
    links: Links
    namespaces: Namespaces
    processes: Processes
    images: Images
    containers: ContainerService
    networks: NetworkRegistry
    metrics: Metrics
    events: EventBus

    async def run(self) -> RecoveryReport:
        """Bring store and kernel back in line after a (possibly unclean) stop."""
        report = RecoveryReport()
        for c in self.store.containers():
            try:
                await self._recover(c, report)
            except SheepError as e:
                self._error(report, "container", c, f"{e}")
        for (table, key), why in sorted(self.store.unreadable.items()):
            self._error(report, "row", None, f"unreadable {table} row {key}: {why}")
        report.leaks = await collect_leaks(recovery=self)
        log.info("recovery: adopted %d, exited %d, rolled back %d, removed %d, errors %d, "
                 "leaks %s", len(report.adopted), len(report.exited),
                 len(report.rolled_back), len(report.removed), len(report.errors),
                 report.leaks)
        return report

    async def _recover(self, c: Container, report: RecoveryReport) -> None:
        if c.owner == "cni":
            return  # no process; a netns gone for good is released by leak collection
        cdir = self.containers.container_dir(c.id)
        if c.removing:  # a removal cut short: finish it
            handle = self.processes.adopt(c.id, cdir, shim_pid=c.shim_pid or None,
                                          shim_start_time=c.shim_start_time or None)
            await self._kill_and_tear_down(c, handle)
            report.removed.append(c.id)
            return
        if c.state == ContainerState.EXITED:
            await self.containers.release_network(c)  # e.g. from a version that kept them
            return
        known = c.state in (ContainerState.RUNNING, ContainerState.UNKNOWN)
        handle = self.processes.adopt(c.id, cdir, shim_pid=c.shim_pid if known else None,
                                      shim_start_time=c.shim_start_time if known else None)
        if handle is not None and not known and not handle.pid:
            # Its CreateContainer never returned and runc is still starting the command:
            # undo it rather than wait for an outcome nobody asked for.
            await self._kill_and_tear_down(c, handle)
            report.rolled_back.append(c.id)
        elif handle is not None:
            if not self.namespaces.exists(Path(c.netns_path)):
                self._error(report, "netns_pin", c, "network namespace pin missing")
                self.containers.mark_unknown(c, reason="network namespace pin missing")
            elif c.state == ContainerState.CREATED:
                c = self.containers.mark_running(c, handle)
            report.adopted.append(c.id)
            self.containers.watch(c, handle)
        elif known:
            await self.containers.release_network(self._exited(c, cdir, report))
        else:
            # Its CreateContainer never returned: undo all of it.
            (await self.containers.teardown(c)).raise_if_failed(f"rolled back {c.id[:12]}")
            report.rolled_back.append(c.id)

    async def _kill_and_tear_down(self, c: Container, handle: ProcessHandle | None) -> None:
        if handle is not None:
            self.processes.kill(handle)
            await self.processes.wait_exit(handle)
        (await self.containers.teardown(c)).raise_if_failed(f"removed {c.id[:12]}")

    def _exited(self, c: Container, cdir: Path, report: RecoveryReport) -> Container:
        """The process ended while the daemon was away: take its exit record."""
        report.exited.append(c.id)
        try:
            status = self.processes.read_exit_status(cdir)
        except SheepError as e:
            self._error(report, "exit_record", c, f"corrupt exit record: {e}")
            return self.containers.mark_exited(c, code=EXIT_CODE_UNKNOWN,
                                               finished_at=time.time(),
                                               reason=f"corrupt exit record: {e}")
        return self.containers.mark_exited(
            c, code=status.code if status else EXIT_CODE_UNKNOWN,
            finished_at=status.finished_at_ns / 1e9 if status else time.time(),
            reason="" if status else "no exit record")

    def _error(self, report: RecoveryReport, kind: str, c: Container | None,
               why: str) -> None:
        who = f"container {c.id[:12]}" if c else "state store"
        log.error("recovery: %s: %s", who, why)
        self.metrics.recovery_errors.labels(kind).inc()
        self.events.publish("recovery.error", container_id=c.id if c else "",
                            attributes={"kind": kind, "reason": why[:256]})
        report.errors.append(f"{who}: {why}")


async def collect_leaks(*, recovery: Recovery, in_flight: Collection[str] = ()
                        ) -> dict[str, int]:
    """Delete veths, bridges, bridge neighbours, pinned netns, container roots and
    container dirs that carry our marks but belong to no record. Objects without our
    marks are never touched, nor veths (`in_flight`) and bridges still being set up,
    nor retired veths the backend is about to delete (a killed daemon's are collected)."""
    r = recovery
    # Look at the kernel and the dirs first, at the records second: whatever an
    # operation made before the listing is by then in the store or in `in_flight`
    # (both are written before the object is made and cleared after the commit).
    found_links = await r.links.list_links(_OUR_LINKS)
    # Read after the listing: a veth retired before it is pending by then (it is
    # reserved before its rename), and one deleted since is gone anyway.
    pending = r.links.pending_deletions()
    pins = _children(r.config.netns_dir)
    cdirs = _children(r.config.containers_dir)
    roots = r.images.rootfs_owners()
    veths = {a.host_interface for a in r.store.attachments()}
    known_bridges = {n.bridge for n in r.networks.all()} | r.networks.in_flight
    ids = {c.id for c in r.store.containers()} | {key for (table, key) in r.store.unreadable
                                                   if table == "containers"}
    counts = {"veth": 0, "bridge": 0, "netns": 0, "rootfs": 0, "container_dir": 0,
              "neighbour": await _collect_neighbours(r)}
    for link in found_links:
        kind = ("veth" if OUR_VETH.fullmatch(link.name) and link.name not in veths
                and link.name not in in_flight else
                "veth" if RETIRED_VETH.fullmatch(link.name) and link.name not in pending else
                "bridge" if OUR_BRIDGE.fullmatch(link.name)
                and link.name not in known_bridges else None)
        if kind and await _try(f"delete leaked {kind} {link.name}",
                               r.links.delete_link(link.name)):
            counts[kind] += 1
    for pin in pins:
        if pin.name not in ids and await _try(f"unpin leaked netns {pin}",
                                              r.namespaces.delete(pin)):
            counts["netns"] += 1
    mounted = set()  # a root that could not be unmounted keeps its dir for a retry
    for cid in roots:
        if cid in ids:
            continue
        if await _try(f"release leaked rootfs of {cid[:12]}", r.images.release_rootfs(cid)):
            counts["rootfs"] += 1
        else:
            mounted.add(cid)
    for cdir in cdirs:
        if cdir.name not in ids and cdir.name not in mounted:
            shutil.rmtree(cdir, ignore_errors=True)
            counts["container_dir"] += 1
    for kind, n in counts.items():
        if n:
            r.metrics.leaks_collected.labels(kind).inc(n)
    return {k: n for k, n in counts.items() if n}


async def _try(what: str, step: Awaitable[object]) -> bool:
    try:
        await step
    except SheepError as e:
        log.error("%s: %s", what, e)
        return False
    return True


async def _collect_neighbours(r: Recovery) -> int:
    """Remove bridge neighbours of addresses the pool does not hold (left by a failed
    removal). The pool counts attaches in flight too, so none of theirs goes."""
    removed = 0
    for net in r.networks.all():
        bridge = r.networks.bridge_index_or_none(net.id)
        if bridge is None:
            continue
        for address in await r.links.bridge_neighbours(bridge):
            if (_stray(r.networks, net, address)
                    and await _try(f"remove stray neighbour {address} of {net.bridge}",
                                   r.links.remove_bridge_entries(bridge_index=bridge,
                                                                 address=address))):
                removed += 1
    return removed


def _stray(networks: NetworkRegistry, net: Network, address: IPv4Address | IPv6Address
           ) -> bool:
    """True if `address` is in `net`'s subnets but its pool does not hold it."""
    if isinstance(address, IPv4Address):
        return address in net.subnet and not networks.pool(net).is_allocated(address)
    pool6 = networks.pool6(net)
    return pool6 is not None and address in pool6.subnet and not pool6.is_allocated(address)


def _children(path: Path) -> list[Path]:
    return list(path.iterdir()) if path.is_dir() else []
