"""CNI attachments: the second front door onto the same plans as AttachNetwork.

A CNI ADD names a netns we did not create (`CNI_NETNS`) and a key (`CNI_CONTAINERID`,
`CNI_IFNAME`). Each key gets a sandbox record (a container row owned by "cni", with no
process and a netns that is not ours to unpin), so leases, the healer, the leak
collector, recovery and the firewall treat CNI attachments exactly like our own.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from pathlib import Path

from sheep_runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    KernelError,
    NotFound,
)
from sheep_runtime.metrics import Metrics
from sheep_runtime.model import Attachment, Container, ContainerState, Network, PortMapping
from sheep_runtime.names import validate_ifname
from sheep_runtime.ops.attach import Attacher
from sheep_runtime.ops.backends import Links, Store
from sheep_runtime.ops.containers import ContainerService
from sheep_runtime.ops.events import EventBus
from sheep_runtime.ops.networks import NetworkRegistry
from sheep_runtime.ops.plans import plan_attachments
from sheep_runtime.ops.ports import validate_ports
from sheep_runtime.ops.specs import AttachSpec


@dataclass(frozen=True)
class CniKey:
    """What libcni identifies an attachment by."""

    container_id: str
    ifname: str


@dataclass(frozen=True)
class CniAdd:
    """A validated ADD: attach `key` in `netns` to the sheepd network `network`."""

    key: CniKey
    netns: str
    network: str
    ports: tuple[PortMapping, ...] = ()


@dataclass(frozen=True)
class CniResult:
    """What an ADD made (or CHECK found): enough for any CNI result version."""

    key: CniKey
    netns: str
    network: str
    host_interface: str
    host_mac: str
    container_interface: str
    container_mac: str
    address: IPv4Interface
    gateway: IPv4Address
    mtu: int
    address6: IPv6Interface | None = None  # on a dual-stack network
    gateway6: IPv6Address | None = None


def sandbox_id(key: CniKey) -> str:
    """The id of the sandbox record of a CNI key (64 hex characters, like ours)."""
    return hashlib.sha256(f"cni/{key.container_id}/{key.ifname}".encode()).hexdigest()


class CniService:
    """ADD, DEL, CHECK and GC of CNI attachments; one operation per key at a time."""

    def __init__(self, *, containers: ContainerService, attacher: Attacher,
                 networks: NetworkRegistry, store: Store, links: Links,
                 metrics: Metrics, events: EventBus) -> None:
        self._containers = containers
        self._attacher = attacher
        self._networks = networks
        self._store = store
        self._links = links
        self._metrics = metrics
        self._events = events
        self.started = False  # set once networks are loaded and recovery is done

    def ready(self) -> bool:
        """True when an ADD can be served (STATUS)."""
        return self.started

    async def add(self, req: CniAdd) -> CniResult:
        """Attach `req.key` in its netns; repeating an ADD with the same netns returns
        the same result, any other existing key or interface is AlreadyExists."""
        validate_ifname(req.key.ifname, field="CNI_IFNAME")
        if not req.key.container_id:
            raise InvalidArgument("CNI_CONTAINERID is required", field="CNI_CONTAINERID")
        if not req.netns.startswith("/"):
            raise InvalidArgument(f"CNI_NETNS {req.netns[:128]!r} is not an absolute path",
                                  field="CNI_NETNS")
        net = self._networks.get(req.network)
        validate_ports(req.ports)
        sid = sandbox_id(req.key)
        async with self._containers.locked(sid):
            found = self._store.container(sid)
            if found is not None:
                return await self._same_add(found, req, net)
            c = Container(id=sid, name=f"cni-{sid[:16]}", command=(), env={}, hostname="",
                          network_mode="cni", state=ContainerState.RUNNING,
                          created_at=time.time(), netns_path=req.netns, owner="cni",
                          cni_container_id=req.key.container_id, cni_ifname=req.key.ifname)
            (plan,) = plan_attachments(sid, [AttachSpec(network=net.id, ports=req.ports,
                                                        interface_name=req.key.ifname)],
                                       resolve=self._networks.get)
            self._store.add_container(c)
            try:
                inside = await self._links.open_container_netns(Path(req.netns))
                try:
                    a = await self._attacher.attach(c, plan, inside=inside)
                finally:
                    inside.close()
            except KernelError as e:
                self._store.remove_container(sid)
                if e.errno == errno.EEXIST:
                    raise AlreadyExists(
                        f"CNI ADD: an interface named {req.key.ifname} already exists in "
                        f"{req.netns[:128]}", reason="INTERFACE_TAKEN",
                        resource_type="interface", resource_name=req.key.ifname) from e
                raise
            except BaseException:
                self._store.remove_container(sid)
                raise
        self._events.publish("cni.added", container_id=sid, network=net.name,
                             attributes={"cni_container_id": req.key.container_id,
                                         "interface": req.key.ifname,
                                         "address": str(a.address)})
        return await self._result(c, a, net)

    def _same_add(self, found: Container, req: CniAdd, net: Network) -> Awaitable[CniResult]:
        a = self._store.attachment(found.id, net.id)
        if found.netns_path != req.netns or a is None:
            raise AlreadyExists(
                f"CNI attachment {req.key.container_id[:64]}/{req.key.ifname} already exists "
                f"in netns {found.netns_path[:128]}; DEL it first",
                reason="CNI_ATTACHMENT_EXISTS", resource_type="attachment",
                resource_name=f"{req.key.container_id}/{req.key.ifname}")
        return self._result(found, a, net)

    async def _result(self, c: Container, a: Attachment, net: Network) -> CniResult:
        host = await self._links.get_link(a.host_interface)
        return CniResult(key=CniKey(c.cni_container_id, c.cni_ifname), netns=c.netns_path,
                         network=net.name, host_interface=a.host_interface,
                         host_mac=(host.mac or "") if host else "",
                         container_interface=a.interface_name, container_mac=a.mac,
                         address=a.address, gateway=a.gateway, mtu=net.mtu,
                         address6=a.address6, gateway6=a.gateway6)

    async def delete(self, key: CniKey) -> None:
        """Release the attachment of `key` (veth, leases, ports, record); unknown keys
        and a netns that is gone are fine. Leftovers of a failed step are logged and
        collected later; only a record that could not be removed is an error."""
        sid = sandbox_id(key)
        async with self._containers.locked(sid):
            c = self._store.container(sid)
            if c is None:
                return
            t = await self._attacher.detach(
                self._store.attachments(container_id=sid),
                remove_records=lambda: self._store.remove_container(sid))
        if self._store.container(sid) is not None:
            t.raise_if_failed(f"CNI DEL of {key.container_id[:64]}/{key.ifname}")
        self._events.publish("cni.deleted", container_id=sid,
                             attributes={"cni_container_id": key.container_id,
                                         "interface": key.ifname})

    async def check(self, key: CniKey) -> CniResult:
        """The recorded attachment, verified against the kernel: FailedPrecondition
        says what differs."""
        sid = sandbox_id(key)
        async with self._containers.locked(sid):
            c = self._store.container(sid)
            attachments = self._store.attachments(container_id=sid)
            if c is None or not attachments:
                raise NotFound(f"no CNI attachment {key.container_id[:64]}/{key.ifname}",
                               reason="CNI_ATTACHMENT_NOT_FOUND", resource_type="attachment",
                               resource_name=f"{key.container_id}/{key.ifname}")
            a = attachments[0]
            net = self._networks.get_by_id(a.network_id)
            problem = await self._verify(c, a, net)
        if problem:
            raise FailedPrecondition(f"CNI CHECK of {key.container_id[:64]}/{key.ifname}: "
                                     f"{problem}", reason="CNI_CHECK_FAILED",
                                     resource_type="attachment",
                                     resource_name=f"{key.container_id}/{key.ifname}")
        return await self._result(c, a, net)

    async def _verify(self, c: Container, a: Attachment, net: Network) -> str:
        host = await self._links.get_link(a.host_interface)
        if host is None:
            return f"host interface {a.host_interface} is missing"
        if host.master != self._networks.bridge_index_or_none(net.id) or not host.up:
            return f"host interface {a.host_interface} is not up on bridge {net.bridge}"
        inside = await self._links.open_container_netns(Path(c.netns_path))
        try:
            state = await inside.read_interface(a.interface_name)
        finally:
            inside.close()
        if state is None:
            return f"interface {a.interface_name} is missing in {c.netns_path}"
        if a.address not in state.addresses:
            return f"interface {a.interface_name} does not hold {a.address}"
        if a.seq == 0 and state.default_gateway != a.gateway:
            return f"the default route is not via {a.gateway}"
        return ""

    async def gc(self, network: str, valid: set[CniKey]) -> list[CniKey]:
        """DEL every CNI attachment of `network` whose key is not in `valid`."""
        net = self._networks.get(network)
        stale = []
        for c in self._store.containers():
            key = CniKey(c.cni_container_id, c.cni_ifname)
            if (c.owner == "cni" and key not in valid
                    and self._store.attachment(c.id, net.id) is not None):
                stale.append(key)
        for key in stale:
            await self.delete(key)
        return stale

    async def release_gone(self) -> list[CniKey]:
        """DEL the CNI attachments whose netns is gone for good (leak collection)."""
        gone = [CniKey(c.cni_container_id, c.cni_ifname) for c in self._store.containers()
                if c.owner == "cni" and not os.path.exists(c.netns_path)]
        for key in gone:
            await self.delete(key)
        return gone
