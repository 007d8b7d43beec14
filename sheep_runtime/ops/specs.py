"""Validated requests: API input becomes one of these, or InvalidArgument, before any
kernel or store change."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from sheep_runtime.errors import InvalidArgument
from sheep_runtime.ipam.subnets import parse_address
from sheep_runtime.model import PortMapping
from sheep_runtime.names import validate_ifname, validate_name
from sheep_runtime.ops.ports import validate_ports

HOSTNAME_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
                         r"(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$")
NETWORK_MODES = ("", "none")


@dataclass(frozen=True)
class AttachSpec:
    """One network to attach: by name or id, with an optional static address."""

    network: str
    ip: IPv4Address | None = None
    ports: tuple[PortMapping, ...] = ()
    interface_name: str = ""


@dataclass(frozen=True)
class ContainerSpec:
    """A validated CreateContainer request."""

    name: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    hostname: str = ""
    networks: tuple[AttachSpec, ...] = ()
    network_mode: str = ""


def attach_spec(*, network: str, ip: str, ports: Sequence[PortMapping],
                interface_name: str) -> AttachSpec:
    """Validate one attachment request."""
    if not network:
        raise InvalidArgument("a network name or id is required", field="network")
    return AttachSpec(
        network=network,
        ip=parse_address(ip, field="ip") if ip else None,
        ports=validate_ports(ports),
        interface_name=validate_ifname(interface_name) if interface_name else "")


def container_spec(*, name: str, command: Sequence[str], env: Mapping[str, str],
                   hostname: str, networks: Sequence[AttachSpec],
                   network_mode: str) -> ContainerSpec:
    """Validate a CreateContainer request."""
    if name:
        validate_name(name, what="container")
    if not command or not command[0]:
        raise InvalidArgument("command is required: give the program and its arguments",
                              field="command")
    if any("\0" in arg for arg in command):
        raise InvalidArgument("command arguments cannot contain NUL bytes", field="command")
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise InvalidArgument(f"invalid environment variable name {key!r}", field="env")
    if hostname and (len(hostname) > 64 or not HOSTNAME_RE.match(hostname)):
        raise InvalidArgument(f"invalid hostname {hostname!r}: at most 64 characters of "
                              "letters, digits, '-' and '.'", field="hostname")
    if network_mode not in NETWORK_MODES:
        raise InvalidArgument(f"unknown network_mode {network_mode!r}: use \"\" or \"none\"",
                              field="network_mode")
    if network_mode == "none" and networks:
        raise InvalidArgument("network_mode \"none\" cannot be combined with networks",
                              field="networks")
    seen_nets = [n.network for n in networks]
    if len(set(seen_nets)) != len(seen_nets):
        raise InvalidArgument("a network is listed twice", field="networks")
    ifnames = [n.interface_name for n in networks if n.interface_name]
    if len(set(ifnames)) != len(ifnames):
        raise InvalidArgument("an interface name is listed twice", field="networks")
    return ContainerSpec(name=name, command=tuple(command), env=dict(env),
                         hostname=hostname, networks=tuple(networks),
                         network_mode=network_mode)
