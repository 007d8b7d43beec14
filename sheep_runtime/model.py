"""Plain, immutable records shared by every layer (no I/O, no pb2 types)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network


class ContainerState(enum.StrEnum):
    """Lifecycle of a container's process."""

    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"


class LinkState(enum.StrEnum):
    """What the kernel reports for the host end of an attachment."""

    UP = "up"
    DOWN = "down"
    MISSING = "missing"


@dataclass(frozen=True)
class PortMapping:
    """Host ports [host_port, host_port+count) forwarded to container ports."""

    protocol: str
    host_ip: str
    host_port: int
    container_port: int
    count: int = 1


@dataclass(frozen=True)
class Network:
    """A bridge with its subnet and gateway."""

    id: str
    name: str
    bridge: str
    bridge_mac: str
    subnet: IPv4Network
    gateway: IPv4Address
    mtu: int
    internal: bool
    icc: bool
    created_at: float

    @property
    def gateway_interface(self) -> IPv4Interface:
        """The gateway address with the subnet's prefix, as set on the bridge."""
        return IPv4Interface(f"{self.gateway}/{self.subnet.prefixlen}")


@dataclass(frozen=True)
class Attachment:
    """A container's interface on one network; it holds the address lease."""

    container_id: str
    network_id: str
    interface_name: str
    address: IPv4Interface
    gateway: IPv4Address
    mac: str
    host_interface: str
    ports: tuple[PortMapping, ...] = ()
    seq: int = 0


@dataclass(frozen=True)
class Container:
    """A container record as kept in the store."""

    id: str
    name: str
    command: tuple[str, ...]
    env: Mapping[str, str]
    hostname: str
    network_mode: str
    state: ContainerState
    created_at: float
    netns_path: str
    pid: int = 0
    pid_start_time: int = 0
    shim_pid: int = 0
    shim_start_time: int = 0
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    removing: bool = False


@dataclass(frozen=True)
class Event:
    """Something that happened, from an API call or from the kernel."""

    id: int
    time: float
    type: str
    container_id: str = ""
    network: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)
