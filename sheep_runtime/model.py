"""Plain, immutable records shared by every layer (no I/O, no pb2 types)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from pathlib import Path
from typing import Literal, Protocol


class ContainerState(enum.StrEnum):
    """Lifecycle of a container's process."""

    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"  # recovery could not tell; `Container.state_reason` says why


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
    dns: bool = True  # sheepd answers DNS on the gateway address
    # Dual stack: an IPv6 subnet (/64 to /120) and its gateway on the bridge; None both
    # for an IPv4-only network.
    subnet6: IPv6Network | None = None
    gateway6: IPv6Address | None = None

    @property
    def gateway_interface(self) -> IPv4Interface:
        """The gateway address with the subnet's prefix, as set on the bridge."""
        return IPv4Interface(f"{self.gateway}/{self.subnet.prefixlen}")

    @property
    def gateway6_interface(self) -> IPv6Interface | None:
        """The IPv6 gateway with its subnet's prefix; None without IPv6."""
        if self.subnet6 is None or self.gateway6 is None:
            return None
        return IPv6Interface(f"{self.gateway6}/{self.subnet6.prefixlen}")


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
    aliases: tuple[str, ...] = ()  # extra DNS names of the container on this network
    address6: IPv6Interface | None = None  # on a dual-stack network
    gateway6: IPv6Address | None = None


RestartPolicyName = Literal["no", "on-failure", "always", "unless-stopped"]


@dataclass(frozen=True)
class RestartPolicy:
    """When an exited container is started again (`max_retries` 0: no limit)."""

    name: RestartPolicyName = "no"
    max_retries: int = 0


@dataclass(frozen=True)
class NetworkRequest:
    """What a container asked of one network, kept to attach it again at each start;
    `last_ip` is the dynamic address it had, preferred at the next start."""

    network_id: str
    ip: IPv4Address | None = None  # static
    ports: tuple[PortMapping, ...] = ()
    interface_name: str = ""
    aliases: tuple[str, ...] = ()
    last_ip: IPv4Address | None = None
    ip6: IPv6Address | None = None  # static
    last_ip6: IPv6Address | None = None


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
    state_reason: str = ""
    privileged: bool = False
    capabilities: tuple[str, ...] = ()
    # "sheep" (made through the API) or "cni" (a CNI sandbox: no process, and a netns
    # that is the container engine's, keyed by its CNI_CONTAINERID and CNI_IFNAME)
    owner: str = "sheep"
    cni_container_id: str = ""
    cni_ifname: str = ""
    # What it was created with, to start it again the same way:
    image: str = ""  # the image's name ("" = none)
    rootfs: str = ""  # a directory on the host ("" = none)
    working_dir: str = "/"
    requests: tuple[NetworkRequest, ...] = ()
    restart_policy: RestartPolicy = RestartPolicy()
    restart_count: int = 0  # restarts by the policy since the last API start
    restart_backoff: float = 0.0  # the last restart's delay (s); 0 after a long run
    stopped_by_user: bool = False  # StopContainer: "always"/"unless-stopped" stay down
    stop_signal: int = 15
    stop_timeout: float = 10.0
    resources: Resources = field(default_factory=lambda: Resources())
    log: LogConfig = field(default_factory=lambda: LogConfig())
    auto_remove: bool = False


@dataclass(frozen=True)
class Event:
    """Something that happened, from an API call or from the kernel."""

    id: int
    time: float
    type: str
    container_id: str = ""
    network: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)


# -- kernel state, as the netlink backend reports it ------------------------------

LinkAction = Literal["new", "del"]


@dataclass(frozen=True, slots=True)
class Link:
    """One network interface as the kernel reports it (dumps, lookups and events)."""

    index: int
    name: str
    kind: str | None
    master: int | None
    operstate: str
    mtu: int
    mac: str | None
    up: bool


@dataclass(frozen=True, slots=True)
class PortEntries:
    """What a bridge port carries for the container behind it: the port's flags, a
    static fdb entry for the container's `mac`, and permanent bridge neighbours
    `address` (and `address6`) -> `mac`, so that nothing is learnt or flooded."""

    mac: str
    address: IPv4Address
    address6: IPv6Address | None = None
    hairpin: bool = False
    isolated: bool = False


@dataclass(frozen=True, slots=True)
class InterfaceState:
    """An interface inside a container netns, as CNI CHECK verifies it."""

    link: Link
    addresses: tuple[IPv4Interface, ...]
    default_gateway: IPv4Address | None


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """RTM_NEWLINK (any change: flags, master, operstate, ...) or RTM_DELLINK.

    `moved`: a "del" because the link moved to another netns, not a deletion.
    `received_at`: `time.monotonic()` when the datagram was read from the socket.
    """

    action: LinkAction
    link: Link
    received_at: float
    moved: bool = False


@dataclass(frozen=True, slots=True)
class AddressEvent:
    """RTM_NEWADDR / RTM_DELADDR of an IPv4 address on the link `index`."""

    action: LinkAction
    index: int
    address: IPv4Interface
    received_at: float


@dataclass(frozen=True, slots=True)
class Resync:
    """A full snapshot of links and IPv4 addresses, at start and after the kernel dropped
    notifications ("overflow"). The events that follow are as new as or newer than it."""

    reason: Literal["start", "overflow"]
    links: tuple[Link, ...]
    addresses: tuple[tuple[int, IPv4Interface], ...]


KernelEvent = LinkEvent | AddressEvent | Resync


# -- container processes ------------------------------------------------------------

#: Every capability of Linux 6.x by number (linux/capability.h, up to
#: CAP_CHECKPOINT_RESTORE = 40).
ALL_CAPABILITIES: tuple[str, ...] = tuple(f"CAP_{n}" for n in (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
    "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
    "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
    "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
    "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
    "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"))

#: Docker's default capability set: what a container gets unless the request widens it.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
    "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)


@dataclass(frozen=True)
class Resources:
    """Cgroup limits of a container; 0 = no limit."""

    memory_bytes: int = 0
    cpus: float = 0.0  # cores: a CFS quota of cpus * 100 ms per 100 ms period
    pids_limit: int = 0


LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_MAX_FILES = 4


@dataclass(frozen=True)
class LogConfig:
    """Rotation of a container's log: at `max_bytes` the file moves to log.1 (log.1 to
    log.2, ...), keeping `max_files` files in all, the current one included."""

    max_bytes: int = LOG_MAX_BYTES
    max_files: int = LOG_MAX_FILES


LogStream = Literal["stdout", "stderr"]


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One line (or a part of a long one: `partial`) of a container's output."""

    stream: LogStream
    time_ns: int  # when the logger read it, Unix ns
    data: bytes  # with its newline unless partial
    partial: bool = False


@dataclass(frozen=True)
class LogQuery:
    """Which records to read: the last `tail` (None: all) of those in [since, until)
    (0: unbounded) of `streams`; with `follow`, then new ones until the container's
    exit is recorded."""

    follow: bool = False
    tail: int | None = None
    since_ns: int = 0
    until_ns: int = 0
    streams: frozenset[LogStream] = frozenset(("stdout", "stderr"))


@dataclass(frozen=True)
class ExecSpec:
    """A command to run inside a running container (its namespaces, root and
    confinement); `env` on top of the container's."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = ""  # "" = the container's
    timeout: float = 60.0
    max_output: int = 1024 * 1024  # bytes kept of each of stdout and stderr


@dataclass(frozen=True)
class ExecResult:
    """How an exec ended: exit code (128+N if killed by signal N) and its output."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class InterfaceCounters:
    """Link statistics of one interface (IFLA_STATS64), as its own side counts them."""

    rx_bytes: int = 0
    rx_packets: int = 0
    rx_errors: int = 0
    rx_dropped: int = 0
    tx_bytes: int = 0
    tx_packets: int = 0
    tx_errors: int = 0
    tx_dropped: int = 0


@dataclass(frozen=True, slots=True)
class CgroupUsage:
    """A container's cgroup counters; a limit of 0 means none."""

    cpu_usage_ns: int = 0
    memory_usage_bytes: int = 0
    memory_limit_bytes: int = 0
    pids_current: int = 0
    pids_limit: int = 0


@dataclass(frozen=True)
class ProcessSpec:
    """What to run, where, and how confined.

    `capabilities` is the effective set (bounding, effective, permitted); `privileged`
    also lifts seccomp and the masked paths; `hidden_paths` (the daemon's state and run
    dirs) are invisible inside the container.
    """

    container_id: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    hostname: str
    netns_path: Path
    container_dir: Path
    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES
    privileged: bool = False
    hidden_paths: tuple[Path, ...] = ()
    # Files of `container_dir/etc` (e.g. "resolv.conf") bind-mounted read-only at /etc.
    etc_files: tuple[str, ...] = ()
    # The container's own root (an image's overlay, prepared by the daemon); None: a
    # read-only view of the host's.
    rootfs: Path | None = None
    cwd: str = "/"
    resources: Resources = Resources()
    log: LogConfig = LogConfig()


@dataclass(frozen=True)
class Image:
    """An imported image: its layers (diff_ids, bottom first) and how it runs."""

    name: str
    id: str  # sha256 digest of its OCI config (of its one layer for a rootfs tarball)
    layers: tuple[str, ...]
    created_at: float
    size: int  # bytes of its unpacked layers
    env: tuple[str, ...] = ()  # KEY=VALUE
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    working_dir: str = ""


@dataclass(frozen=True)
class ProcessHandle:
    """A running container: its supervisor (shim) and its command, each as (pid,
    start time). `pid` is the command's host pid; 0 if it had already exited."""

    shim_pid: int
    shim_start_time: int
    pid: int
    pid_start_time: int
    container_dir: Path


@dataclass(frozen=True)
class ExitStatus:
    """How a container ended: exit code (128+N if killed by signal N), and when."""

    code: int
    finished_at_ns: int


# -- cluster mode (reported by the etcd agent, read by ops and the API) -------------

ClusterNodeState = Literal["self", "programmed", "pending"]


@dataclass(frozen=True)
class ClusterNode:
    """A node holding a subnet of the cluster network, as this node sees it:
    "programmed" once the data plane to it is in place, "pending" before."""

    name: str
    underlay_address: IPv4Address
    subnet: IPv4Network
    vtep_mac: str  # "" with host-gw
    state: ClusterNodeState


@dataclass(frozen=True)
class ClusterStatus:
    """Cluster mode: the agreed config, this node and every node holding a subnet
    (this one included), by subnet."""

    backend: str
    network: IPv4Network
    subnet_len: int
    vni: int
    port: int
    node: ClusterNode
    nodes: tuple[ClusterNode, ...]
    etcd_endpoints: tuple[str, ...]
    device: str  # where peer traffic enters: the VXLAN device, or the underlay link


@dataclass(frozen=True)
class ClusterChange:
    """What the agent saw: a peer's subnet record appeared (joined) or went (left),
    the data plane to a peer was put in place (programmed, `latency` seconds after
    its record arrived; `repaired` when the reconcile restored what was deleted), or
    a full re-list finished (synced; `node` is None)."""

    kind: Literal["joined", "left", "programmed", "synced"]
    node: ClusterNode | None = None
    latency: float = 0.0
    repaired: bool = False


# -- what DNS answers from (implemented by ops, read by the dns backend) -----------

class NameTable(Protocol):
    """The container names one network's DNS askers may resolve."""

    @property
    def version(self) -> int:
        """Bumped by every change: answers given before a change are stale after it."""

    def addresses(self, asker: IPv4Address | IPv6Address, name: str
                  ) -> tuple[IPv4Address, ...] | None:
        """`name`'s addresses for `asker` (its container is the one holding that IPv4
        or IPv6 address); () if it names only containers `asker` shares no network
        with (NXDOMAIN); None if it names no container (forward)."""

    def addresses6(self, asker: IPv4Address | IPv6Address, name: str
                   ) -> tuple[IPv6Address, ...]:
        """The IPv6 addresses of the containers `addresses` finds, on the same shared
        networks; () if they have none (NODATA when `addresses` found some)."""

    def name_of(self, asker: IPv4Address | IPv6Address,
                address: IPv4Address | IPv6Address) -> str | None:
        """The container name of `address` (IPv4 or IPv6) for `asker`; "" if it is a
        container's that `asker` may not see (NXDOMAIN); None if no container holds it
        (forward)."""
