"""Pure plans: what an attach or a create will do, decided and validated in full
before any lock is held for long or the kernel sees anything.

A CreateContainer and an AttachNetwork are two sources of the same `AttachPlan`; the
appliers (`attach.py`, `containers.py`) only execute plans.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

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
    ip6: IPv6Address | None = None  # static, on a dual-stack network
    preferred6: IPv6Address | None = None
    default_route6: bool = False  # the container's first dual-stack attachment


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
        if spec.ip6 is not None:
            if net.subnet6 is None or net.gateway6 is None:
                raise InvalidArgument(f"network {net.name!r} has no IPv6 subnet: ip6 "
                                      f"{spec.ip6} cannot be given", field="ip6")
            if (spec.ip6 not in net.subnet6
                    or spec.ip6 in (net.subnet6.network_address, net.gateway6)):
                raise InvalidArgument(f"ip6 {spec.ip6} is not a host address of "
                                      f"{net.subnet6} other than its gateway", field="ip6")
    names = interface_names([s.interface_name for s in requests],
                            taken=[a.interface_name for a in existing])
    first_seq = max((a.seq for a in existing), default=-1) + 1
    dual = [i for i, net in enumerate(networks) if net.subnet6 is not None]
    first6 = dual[0] if dual and not any(a.address6 for a in existing) else None
    return tuple(
        AttachPlan(network=net, interface_name=name,
                   host_interface=host_veth_name(container_id, net.id), ip=spec.ip,
                   ports=spec.ports, default_route=not existing and i == 0,
                   seq=first_seq + i, aliases=spec.aliases,
                   preferred=_inside(spec.preferred, net.subnet), ip6=spec.ip6,
                   preferred6=_inside(spec.preferred6, net.subnet6),
                   default_route6=i == first6)
        for i, (spec, net, name) in enumerate(zip(requests, networks, names, strict=True)))


def _inside(address: IPv4Address | IPv6Address | None,
            subnet: IPv4Network | IPv6Network | None) -> Any:
    """`address` if it is in `subnet`, else None (a preference that no longer fits)."""
    if address is None or subnet is None or address.version != subnet.version:
        return None
    return address if address in subnet else None


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
