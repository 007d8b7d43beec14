"""What ops needs from its backends, as small Protocols.

`ops/` never imports a backend package: the netlink, nftables, SQLite and process
backends implement these (checked by mypy where `daemon.py` wires them), and the fakes
under `tests/fakes/` implement them in memory for the fast tier. Kernel verbs follow
the house style: `ensure_` converges, `create_` fails on EEXIST, `delete_` treats
"already gone" as success.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from pathlib import Path
from typing import Protocol

from sheep_runtime.firewall.rules import FirewallState, PortRule
from sheep_runtime.model import (
    Attachment,
    CgroupUsage,
    ClusterChange,
    ClusterStatus,
    Container,
    ContainerState,
    ExecResult,
    ExecSpec,
    ExitStatus,
    Image,
    InterfaceCounters,
    InterfaceState,
    Link,
    LogQuery,
    LogRecord,
    NameTable,
    Network,
    PortEntries,
    ProcessHandle,
    ProcessSpec,
)

IPAddress = IPv4Address | IPv6Address


class ContainerLinks(Protocol):
    """Configuration steps inside one container netns; the caller closes the handle."""

    async def configure_interface(
        self, *, ifname: str, address: IPv4Interface, mtu: int | None = None,
        loopback: bool = False, neighbours: Sequence[tuple[IPAddress, str]] = (),
        address6: IPv6Interface | None = None, default_routes: Sequence[IPAddress] = (),
    ) -> None:
        """Address `ifname` (and `address6`, usable at once: no duplicate address
        detection), bring it up (no IPv6 link-local); with `loopback` also lo; each
        (address, mac) of `neighbours` becomes a permanent neighbour on it, each of
        `default_routes` the gateway of its family's default route out of it (replaced).
        All in one kernel round trip."""

    async def read_interface(self, ifname: str) -> InterfaceState | None:
        """`ifname`'s link, IPv4 addresses and the netns' default gateway; None if
        there is no such interface."""

    async def interface_counters(self, ifname: str) -> InterfaceCounters | None:
        """`ifname`'s link statistics; None if there is no such interface."""

    def close(self) -> None:
        """Release the handle."""


class Links(Protocol):
    """Interfaces of the daemon's own netns: bridges, host veth ends, bridge ports."""

    async def ensure_bridge(self, *, name: str, mac: str, gateway: IPv4Interface,
                            mtu: int, gateway6: IPv6Interface | None = None) -> int:
        """Converge the bridge (MAC, MTU, gateway addresses, up); return its ifindex."""

    async def delete_link(self, ifname: str) -> bool:
        """Delete `ifname` (a veth takes its peer along); False if already gone."""

    async def retire_veth(self, ifname: str, *, new_name: str, netns: Path | None = None,
                          peer_ifname: str = "", bridge_index: int | None = None,
                          neighbours: Sequence[IPAddress] = ()) -> bool:
        """Make the veth `ifname` answer for nothing now (down, off its bridge, both
        ends renamed `new_name`; the peer `peer_ifname` in the netns pinned at `netns`)
        and delete it in the background within a second; then remove the bridge
        `bridge_index`'s neighbours `neighbours` (also if the veth was gone), whose
        failure raises. False if the veth was already gone."""

    def pending_deletions(self) -> frozenset[str]:
        """Names of retired veths not deleted yet (leak collection leaves them)."""

    async def get_link(self, ifname: str) -> Link | None:
        """The link named `ifname`, or None."""

    async def list_links(self, prefix: str = "") -> list[Link]:
        """Every link whose name starts with `prefix`."""

    async def has_address(self, ifname: str, address: IPv4Interface) -> bool:
        """True if `ifname` exists and holds `address` with its prefix."""

    async def route_destinations(self) -> list[IPv4Network]:
        """Destinations of the IPv4 routes of every routing table."""

    async def route_destinations6(self) -> list[IPv6Network]:
        """Destinations of the IPv6 unicast routes of every routing table."""

    async def create_veth(self, *, host_ifname: str, bridge_index: int, mtu: int,
                          netns: Path, peer_ifname: str, peer_mac: str,
                          entries: PortEntries | None = None) -> int:
        """A veth: host end enslaved and up, the peer born in the netns pinned at
        `netns`, and with `entries` the port's entries (all or nothing: the veth is
        gone if they fail); returns the host end's ifindex. EEXIST on either name is
        an error."""

    async def add_bridge_entries(self, *, port_index: int, bridge_index: int,
                                 entries: PortEntries) -> None:
        """The port's flags (with PROXYARP), its static fdb entry and the permanent
        bridge neighbours of `entries` (idempotent)."""

    async def remove_bridge_entries(self, *, bridge_index: int, address: IPAddress
                                    ) -> bool:
        """Remove the bridge neighbour of `address`; False if there was none."""

    async def bridge_neighbours(self, bridge_index: int) -> list[IPAddress]:
        """The permanent IPv4 and IPv6 neighbours of the bridge `bridge_index`."""

    async def set_port(self, ifname: str, *, master: int) -> int:
        """Enslave `ifname` to the bridge `master` and set it up; return its index."""

    async def set_sysctl(self, name: str, value: str, *, ifname: str = "") -> None:
        """Write a net sysctl of the daemon's netns (per interface with `ifname`)."""

    async def open_container_netns(self, netns: Path) -> ContainerLinks:
        """A handle for the steps inside the netns pinned at `netns`."""


class Namespaces(Protocol):
    """Network namespaces pinned by a bind mount, one per container."""

    async def create(self, path: Path) -> None:
        """A new netns pinned at `path`."""

    async def delete(self, path: Path) -> None:
        """Unpin (and so free) the netns at `path`; already gone is success."""

    def exists(self, path: Path) -> bool:
        """True if a netns is pinned at `path`."""


class Firewall(Protocol):
    """The one nftables table of ours, replaced atomically."""

    async def apply(self, state: FirewallState) -> None:
        """Make the table exactly `state` in one transaction (all or nothing)."""

    async def update_ports(self, *, add: Sequence[PortRule] = (),
                           remove: Sequence[PortRule] = ()) -> None:
        """Delete the port elements of `remove` and add those of `add` in one
        transaction, nothing else touched (gone already is no error); FirewallError
        if the table cannot take it, and then nothing changed."""

    async def is_intact(self, state: FirewallState) -> bool:
        """True if the table in the kernel still matches `state`."""


class Processes(Protocol):
    """Container processes under a supervisor that outlives the daemon."""

    #: The capabilities a container can be given (those the daemon itself holds).
    capabilities: frozenset[str]

    async def start(self, spec: ProcessSpec) -> ProcessHandle:
        """Start the command in its namespaces; return once it runs."""

    def adopt(self, container_id: str, container_dir: Path, *, shim_pid: int | None,
              shim_start_time: int | None) -> ProcessHandle | None:
        """Re-attach to a container after a daemon restart; None if it is gone."""

    def kill(self, handle: ProcessHandle) -> None:
        """SIGKILL the command now (no-op if it is gone)."""

    async def stop(self, handle: ProcessHandle, *, timeout: float,
                   signal_number: int = 15) -> None:
        """`signal_number` (SIGTERM), then SIGKILL after `timeout` s; return once it
        exited."""

    async def wait_exit(self, handle: ProcessHandle) -> ExitStatus:
        """Wait for the exit and return its recorded status."""

    def read_exit_status(self, container_dir: Path) -> ExitStatus | None:
        """The recorded exit status, None if none yet; KernelError if unreadable."""

    def read_logs(self, container_dir: Path, query: LogQuery) -> AsyncIterator[LogRecord]:
        """The container's log records matching `query`, oldest first, over its
        rotated files; with `query.follow`, new ones until its exit is recorded."""

    async def exec(self, container_id: str, container_dir: Path, spec: ExecSpec
                   ) -> ExecResult:
        """Run `spec` in the running container (its namespaces, root, capabilities and
        seccomp filter) and return how it ended; InvalidArgument for a bad spec."""

    async def cgroup_usage(self, container_id: str) -> CgroupUsage | None:
        """The container's cgroup counters; None if they cannot be read."""


class Images(Protocol):
    """Imported images (layers unpacked once, shared) and the containers' roots made
    from them: an overlay of the layers under the container's own upper dir."""

    async def import_image(self, name: str, source: Path, *, trusted: bool = False
                           ) -> Image:
        """Import an OCI layout, OCI archive or rootfs tarball as `name` (replacing an
        image of that name); InvalidArgument if malformed or unsafe."""

    def list_images(self) -> list[Image]:
        """Every image, by name."""

    def resolve(self, ref: str) -> Image:
        """The image by name or id prefix; NotFound."""

    async def remove_image(self, ref: str) -> Image:
        """Remove it; FailedPrecondition while a container's root is made from it."""

    async def prepare_rootfs(self, container_id: str, *, container_dir: Path,
                             image: Image | None = None, directory: Path | None = None
                             ) -> Path:
        """Mount the container's root (an overlay of `image` or of `directory`,
        writes to its own upper dir in `container_dir`); return where."""

    async def release_rootfs(self, container_id: str) -> None:
        """Unmount the container's root and remove its upper dir; none: no-op."""

    def rootfs_owners(self) -> list[str]:
        """The containers that have a root prepared."""


class Resolver(Protocol):
    """Embedded DNS: UDP and TCP listeners on a network's gateway address, port 53."""

    async def serve(self, *, network_id: str, address: IPv4Address, subnet: IPv4Network,
                    names: NameTable, forward: bool, address6: IPv6Address | None = None,
                    subnet6: IPv6Network | None = None) -> None:
        """Answer askers in `subnet` (and `subnet6`, on `address6` too) from `names`,
        forwarding other names upstream if `forward`; replaces the network's listeners
        if it had some."""

    async def stop(self, network_id: str) -> None:
        """Stop the network's listeners (none: no-op)."""


class ClusterMember(Protocol):
    """This node's membership of an etcd-coordinated cluster (cluster/agent.py)."""

    def view(self) -> ClusterStatus:
        """The cluster as last seen (no request to etcd)."""

    async def fetch(self) -> ClusterStatus:
        """The cluster as etcd records it now; Unavailable if etcd does not answer."""

    async def run(self, on_change: Callable[[ClusterChange], None]) -> None:
        """Follow etcd and program the overlay, reporting each change, until cancelled."""

    async def leave(self) -> IPv4Network:
        """Release this node's subnet in etcd and remove the overlay; return the
        subnet. Unavailable (etcd) leaves everything as it was."""


class Store(Protocol):
    """Durable records: networks, containers and attachments (the leases). Reads skip
    rows that cannot be decoded and list them in `unreadable` ((table, key) -> error)."""

    unreadable: dict[tuple[str, str], str]

    def add_network(self, net: Network) -> None: ...
    def remove_network(self, network_id: str) -> None: ...
    def networks(self) -> list[Network]: ...
    def ipam_cursor(self, network_id: str) -> IPv4Address | None: ...
    def ipam_cursor6(self, network_id: str) -> IPv6Address | None: ...
    def add_container(self, c: Container) -> None: ...
    def update_container(self, c: Container) -> None: ...
    def mark_removing(self, container_id: str) -> None: ...
    def remove_container(self, container_id: str) -> None: ...
    def container(self, container_id: str) -> Container | None: ...
    def containers(self) -> list[Container]: ...
    def count_containers_by_state(self) -> dict[ContainerState, int]: ...
    def find_containers(self, ref: str) -> list[Container]: ...
    def add_attachment(self, a: Attachment, *, dynamic: bool, dynamic6: bool = False
                       ) -> None: ...
    def remove_attachment(self, container_id: str, network_id: str) -> None: ...
    def attachments(self, *, container_id: str | None = None,
                    network_id: str | None = None) -> list[Attachment]: ...
    def attachment(self, container_id: str, network_id: str) -> Attachment | None: ...
    def attachments_by_host_interface(self, host_interface: str) -> list[Attachment]: ...
    def lease_holder(self, network_id: str, address: IPAddress) -> str | None: ...
    def close(self) -> None: ...
