"""Pure plans: what an attach or a create will do, decided and validated in full
before any lock is held for long or the kernel sees anything.

A CreateContainer and an AttachNetwork are two sources of the same `AttachPlan`; the
appliers (`attach.py`, `containers.py`) only execute plans.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from sheep_runtime.errors import InvalidArgument
from sheep_runtime.ipam.subnets import validate_host
from sheep_runtime.model import Attachment, Network, PortMapping
from sheep_runtime.names import host_veth_name
from sheep_runtime.ops.specs import AttachSpec


@dataclass(frozen=True)
class AttachPlan:
    """One attachment to make: every name and decision except the address, which the
    applier leases (a static `ip` is checked against the pool then)."""

    network: Network
    interface_name: str
    host_interface: str
    ip: IPv4Address | None
    ports: tuple[PortMapping, ...]
    default_route: bool
    seq: int
    aliases: tuple[str, ...] = ()
    preferred: IPv4Address | None = None  # leased if free when `ip` is None


def plan_attachments(container_id: str, requests: Sequence[AttachSpec], *,
                     resolve: Callable[[str], Network],
                     existing: Sequence[Attachment] = ()) -> tuple[AttachPlan, ...]:
    """Plans for `requests` on a container that already has `existing` attachments.

    Networks are compared by id, so one network given by name and by id is a duplicate.
    Interface names are chosen here and only here: explicit ones first, then each
    automatic one is the lowest free ethN. The first attachment of a container carries
    its default route.
    """
    networks = [resolve(s.network) for s in requests]
    seen = {a.network_id: "already attached" for a in existing}
    for spec, net in zip(requests, networks, strict=True):
        if net.id in seen:
            raise InvalidArgument(f"network {net.name!r} is listed twice (as {spec.network!r}"
                                  f" and {seen[net.id]})", field="networks")
        seen[net.id] = repr(spec.network)
        if spec.ports and net.internal:
            raise InvalidArgument(f"network {net.name!r} is internal: it cannot publish "
                                  "ports", field="ports")
        if spec.ip is not None:
            validate_host(net.subnet, net.gateway, spec.ip)
    names = interface_names([s.interface_name for s in requests],
                            taken=[a.interface_name for a in existing])
    first_seq = max((a.seq for a in existing), default=-1) + 1
    return tuple(
        AttachPlan(network=net, interface_name=name,
                   host_interface=host_veth_name(container_id, net.id), ip=spec.ip,
                   ports=spec.ports, default_route=not existing and i == 0,
                   seq=first_seq + i, aliases=spec.aliases,
                   preferred=spec.preferred if spec.preferred and spec.preferred in net.subnet
                   else None)
        for i, (spec, net, name) in enumerate(zip(requests, networks, names, strict=True)))


def interface_names(requested: Sequence[str], *, taken: Sequence[str] = ()) -> list[str]:
    """The interface name of each request: its own, or the lowest ethN free of every
    name taken or requested. An explicit name already taken is InvalidArgument."""
    used = set(taken)
    for name in requested:
        if name and name in used:
            raise InvalidArgument(f"interface {name} already exists in the container",
                                  field="interface_name")
        used.add(name)
    out = []
    for name in requested:
        if not name:
            name = next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
            used.add(name)
        out.append(name)
    return out
