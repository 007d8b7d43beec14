"""Embedded DNS, the ops side: which names resolve for whom, the per-network listeners,
and each container's /etc/resolv.conf, /etc/hosts and /etc/hostname.

A container is found by its name, hostname, short (12 characters) id, and by the aliases
of each attachment (on that attachment's network only), by askers that share a network
with it; the asker is the container holding the query's source address (IPv4, or IPv6
on a dual-stack network) on the network whose gateway was asked. A and AAAA answers
hold its addresses on the networks the asker shares with it. The index lives in memory
and follows the events the ops code paths publish (attach, detach, create, removal):
an event is handled on the next turn of the event loop, well within 100 ms of the API
call returning. A gap in the events (a subscriber overflow) rebuilds it from the store.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from sheep_runtime.errors import NotFound, SheepError
from sheep_runtime.model import Attachment, Container, Event, Network
from sheep_runtime.offload import in_thread
from sheep_runtime.ops.backends import Resolver, Store
from sheep_runtime.ops.events import DROPPED, EventBus, EventFilter
from sheep_runtime.ops.networks import NetworkRegistry
from sheep_runtime.ops.tasks import TaskSupervisor

log = logging.getLogger(__name__)

ETC_DIR = "etc"
HOST_ETC = Path("/etc")
IPAddress = IPv4Address | IPv6Address
_REINDEX = frozenset({"network.attached", "network.detached", "container.created",
                      "container.removed"})


def names_of(c: Container, a: Attachment) -> set[str]:
    """The DNS names of `c` on the network of `a` (lower case). The full id is none: 64
    characters are over DNS's limit of 63 for a label (RFC 1035), no query can hold it."""
    return {n.lower() for n in (c.name, c.hostname, c.id[:12], *a.aliases) if n}


def _ips(a: Attachment) -> list[IPAddress]:
    return [a.address.ip, *([a.address6.ip] if a.address6 else [])]


class NameIndex:
    """Container names and addresses per network, and who may see them."""

    def __init__(self) -> None:
        # (network id, name) -> {container id: its addresses on that network}
        self._names: dict[tuple[str, str], dict[str, Attachment]] = {}
        # (network id, IPv4 or IPv6 address) -> container id
        self._owner: dict[tuple[str, IPAddress], str] = {}
        self._networks: dict[str, frozenset[str]] = {}  # container id -> network ids
        self._keys: dict[str, list[tuple[str, str]]] = {}  # container id -> its names
        self._held: dict[str, list[tuple[str, IPAddress]]] = {}  # -> its addresses
        self._primary: dict[str, str] = {}  # container id -> its name
        self._anywhere: collections.Counter[str] = collections.Counter()
        self._addresses: collections.Counter[IPAddress] = collections.Counter()
        self.version = 0

    def __len__(self) -> int:
        return len(self._primary)

    def set(self, c: Container, attachments: Sequence[Attachment]) -> None:
        """Index `c` with exactly `attachments` (replacing what it had)."""
        self.drop(c.id)
        self.version += 1
        keys: list[tuple[str, str]] = []
        held = self._held[c.id] = []
        for a in attachments:
            for ip in _ips(a):
                self._owner[(a.network_id, ip)] = c.id
                self._addresses[ip] += 1
                held.append((a.network_id, ip))
            for name in names_of(c, a):
                self._names.setdefault((a.network_id, name), {})[c.id] = a
                self._anywhere[name] += 1
                keys.append((a.network_id, name))
        self._keys[c.id] = keys
        self._networks[c.id] = frozenset(a.network_id for a in attachments)
        self._primary[c.id] = c.name

    def drop(self, container_id: str) -> None:
        """Forget the container (unknown: no-op)."""
        self.version += 1
        for key in self._keys.pop(container_id, ()):
            holders = self._names.get(key, {})
            holders.pop(container_id, None)
            if not holders:
                self._names.pop(key, None)
            self._anywhere[key[1]] -= 1
            if self._anywhere[key[1]] <= 0:
                del self._anywhere[key[1]]
        for held in self._held.pop(container_id, ()):
            if self._owner.get(held) == container_id:
                del self._owner[held]
            self._addresses[held[1]] -= 1
            if self._addresses[held[1]] <= 0:
                del self._addresses[held[1]]
        self._networks.pop(container_id, None)
        self._primary.pop(container_id, None)

    def clear(self) -> None:
        """Forget every container."""
        for cid in list(self._primary):
            self.drop(cid)

    def _visible(self, network_id: str, asker: IPAddress) -> list[str]:
        """The networks whose containers `asker` may resolve, the asked one first. An
        address of the subnet that no container holds sees the asked network only."""
        cid = self._owner.get((network_id, asker))
        others = self._networks.get(cid, frozenset()) if cid else frozenset()
        return [network_id, *sorted(others - {network_id})]

    def _found(self, network_id: str, asker: IPAddress, name: str) -> list[Attachment]:
        """The attachments `name` finds for `asker`, the asked network's first."""
        return [a for net in self._visible(network_id, asker)
                for a in self._names.get((net, name), {}).values()]

    def addresses(self, network_id: str, asker: IPAddress, name: str
                  ) -> tuple[IPv4Address, ...] | None:
        """See `NameTable.addresses`; `network_id` is the network that was asked."""
        found = self._found(network_id, asker, name)
        if found:
            return tuple(dict.fromkeys(a.address.ip for a in found))
        return () if name in self._anywhere else None

    def addresses6(self, network_id: str, asker: IPAddress, name: str
                   ) -> tuple[IPv6Address, ...]:
        """See `NameTable.addresses6`."""
        return tuple(dict.fromkeys(a.address6.ip for a in self._found(network_id, asker, name)
                                   if a.address6 is not None))

    def name_of(self, network_id: str, asker: IPAddress, address: IPAddress
                ) -> str | None:
        """See `NameTable.name_of`."""
        for net in self._visible(network_id, asker):
            cid = self._owner.get((net, address))
            if cid is not None:
                return self._primary[cid]
        return "" if address in self._addresses else None


class NetworkNames:
    """The `NameTable` of one network: the index as its askers see it."""

    def __init__(self, index: NameIndex, network_id: str) -> None:
        self._index = index
        self._network_id = network_id

    @property
    def version(self) -> int:
        return self._index.version

    def addresses(self, asker: IPAddress, name: str) -> tuple[IPv4Address, ...] | None:
        return self._index.addresses(self._network_id, asker, name)

    def addresses6(self, asker: IPAddress, name: str) -> tuple[IPv6Address, ...]:
        return self._index.addresses6(self._network_id, asker, name)

    def name_of(self, asker: IPAddress, address: IPAddress) -> str | None:
        return self._index.name_of(self._network_id, asker, address)


class DnsService:
    """Keeps the index current and a resolver listening on every network with DNS."""

    def __init__(self, *, store: Store, networks: NetworkRegistry, events: EventBus,
                 tasks: TaskSupervisor, resolver: Resolver | None) -> None:
        self._store = store
        self._networks = networks
        self._events = events
        self._tasks = tasks
        self._resolver = resolver
        self.index = NameIndex()
        self._served: dict[str, str] = {}  # network name -> id
        self._since: float | None = None

    async def start(self) -> None:
        """Index every container, listen on every network with DNS, follow events."""
        self._since = time.time()
        self.rebuild()
        for net in self._networks.all():
            await self._serve(net)
        self._tasks.service("dns-index", self._follow)

    def rebuild(self) -> None:
        """Re-read every container and attachment from the store."""
        self.index.clear()
        by_container: dict[str, list[Attachment]] = collections.defaultdict(list)
        for a in self._store.attachments():
            by_container[a.container_id].append(a)
        for c in self._store.containers():
            if not c.removing:
                self.index.set(c, by_container.get(c.id, []))

    def reindex(self, container_id: str) -> None:
        """Re-read one container from the store (gone or being removed: dropped)."""
        c = self._store.container(container_id)
        if c is None or c.removing:
            self.index.drop(container_id)
        else:
            self.index.set(c, self._store.attachments(container_id=container_id))

    async def _follow(self) -> None:
        since, self._since = self._since, None
        if since is None:  # a restart after a failure: events may have been missed
            since = time.time()
            self.rebuild()
        async for e in self._events.subscribe(EventFilter(), since=since):
            await self.handle(e)

    async def handle(self, e: Event) -> None:
        """Apply one event to the index and the listeners."""
        if e.type in _REINDEX and e.container_id:
            self.reindex(e.container_id)
        elif e.type == DROPPED:
            self.rebuild()
        elif e.type == "network.created":
            try:
                net = self._networks.get(e.network)
            except NotFound:
                return
            await self._serve(net)
        elif e.type == "network.removed":
            network_id = self._served.pop(e.network, None)
            if network_id is not None and self._resolver is not None:
                await self._resolver.stop(network_id)

    async def _serve(self, net: Network) -> None:
        if self._resolver is None or not net.dns:
            return
        try:
            await self._resolver.serve(
                network_id=net.id, address=net.gateway, subnet=net.subnet,
                names=NetworkNames(self.index, net.id), forward=not net.internal,
                address6=net.gateway6 if net.subnet6 is not None else None,
                subnet6=net.subnet6 if net.gateway6 is not None else None)
        except SheepError as e:  # the network works without; its containers lack DNS
            log.error("no DNS on network %s: %s", net.name, e)
            return
        self._served[net.name] = net.id

    # -- the container's own /etc files -----------------------------------------

    def nameserver(self, attachments: Iterable[Attachment]) -> IPv4Address | None:
        """The gateway of the first network (by attach order) that has DNS.

        Only its IPv4 gateway, even on a dual-stack network, where it also listens on
        gateway6: both are the same listener with the same names and upstreams, so a
        second `nameserver` line adds no redundancy, only a second wait when an
        upstream fails (glibc asks the next server again after a SERVFAIL or timeout).
        Every container with IPv6 has IPv4 too (no IPv6-only networks), so the IPv4
        address always works; gateway6 serves clients that pick their server."""
        for a in sorted(attachments, key=lambda a: a.seq):
            net = self._networks.get_by_id_or_none(a.network_id)
            if net is not None and net.dns and net.id in self._served.values():
                return net.gateway
        return None

    async def write_etc_files(self, c: Container, container_dir: Path) -> tuple[str, ...]:
        """Write `c`'s resolv.conf (only when a network of it has DNS: else it keeps
        the host's), hosts and hostname under `container_dir/etc`; return the names
        written, each to be bind-mounted read-only over the host's /etc file."""
        attachments = self._store.attachments(container_id=c.id)
        files = {"hostname": f"{c.hostname}\n", "hosts": hosts_file(c, attachments)}
        server = self.nameserver(attachments)
        if server is not None:
            files["resolv.conf"] = f"nameserver {server}\n"
        return await in_thread(_write_etc_files, container_dir / ETC_DIR, files)


def _write_etc_files(etc: Path, files: dict[str, str]) -> tuple[str, ...]:
    """Write `files` in `etc` (blocking); the names written."""
    etc.mkdir(exist_ok=True)
    written: list[str] = []
    for name, text in files.items():
        # runc cannot make a mount point on the read-only root: mount only over files
        # the host has.
        if not (HOST_ETC / name).exists():
            continue
        path = etc / name
        path.write_text(text)
        os.chmod(path, 0o644)
        written.append(name)
    return tuple(written)


def hosts_file(c: Container, attachments: Sequence[Attachment]) -> str:
    """/etc/hosts of `c`: localhost, and its own IPv4 and IPv6 addresses with its
    names."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    own = " ".join(dict.fromkeys(n for n in (c.hostname, c.name) if n))
    ordered = sorted(attachments, key=lambda a: a.seq)
    lines += [f"{a.address.ip}\t{own}" for a in ordered]
    lines += [f"{a.address6.ip}\t{own}" for a in ordered if a.address6 is not None]
    if not attachments:
        lines.append(f"127.0.1.1\t{own}")
    return "\n".join(lines) + "\n"
