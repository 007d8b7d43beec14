"""The border between protobuf messages and ops' plain types, both ways."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable

from google.protobuf.timestamp_pb2 import Timestamp

from sheep_runtime.api.v1 import runtime_pb2 as pb
from sheep_runtime.errors import InvalidArgument, SheepError
from sheep_runtime.model import (
    ClusterNode,
    ClusterStatus,
    Container,
    ContainerState,
    Event,
    ExecResult,
    ExecSpec,
    Image,
    LogQuery,
    LogRecord,
    LogStream,
    PortMapping,
)
from sheep_runtime.ops.events import EventFilter
from sheep_runtime.ops.exec import exec_spec
from sheep_runtime.ops.networks import NetworkSpec
from sheep_runtime.ops.specs import (
    AttachSpec,
    ContainerSpec,
    attach_spec,
    container_spec,
    log_config,
    resources,
    restart_policy,
    stop_signal,
    stop_timeout,
)
from sheep_runtime.ops.stats import ContainerStatsView
from sheep_runtime.ops.views import AttachmentView, ContainerView, NetworkView

_STATE = {
    ContainerState.CREATED: pb.Container.CREATED,
    ContainerState.RUNNING: pb.Container.RUNNING,
    ContainerState.EXITED: pb.Container.EXITED,
    ContainerState.UNKNOWN: pb.Container.UNKNOWN,
}

EVENT_FILTERS = ("container", "network", "type")
# google.protobuf.Timestamp's valid range: 0001-01-01 to 9999-12-31; `since` before
# the epoch means nothing here.
_MAX_TIMESTAMP_SECONDS = 253402300799


def timestamp(seconds: float | None) -> Timestamp | None:
    if seconds is None:
        return None
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def port_from_pb(p: pb.PortMapping) -> PortMapping:
    proto = p.protocol.lower() or "tcp"
    if proto not in ("tcp", "udp"):
        raise InvalidArgument(f"unknown protocol {p.protocol!r}: use tcp or udp",
                              field="ports.protocol")
    return PortMapping(protocol=proto, host_ip=p.host_ip, host_port=p.host_port,
                       container_port=p.container_port, count=p.count or 1)


def port_to_pb(p: PortMapping) -> pb.PortMapping:
    return pb.PortMapping(protocol=p.protocol, host_ip=p.host_ip, host_port=p.host_port,
                          container_port=p.container_port, count=p.count)


def attach_spec_from_pb(*, network: str, ip: str, ports: list[pb.PortMapping],
                        interface_name: str, aliases: list[str], ip6: str = "") -> AttachSpec:
    return attach_spec(network=network, ip=ip, ports=[port_from_pb(p) for p in ports],
                       interface_name=interface_name, aliases=aliases, ip6=ip6)


def container_spec_from_pb(r: pb.CreateContainerRequest) -> ContainerSpec:
    nets = [attach_spec_from_pb(network=n.network, ip=n.ip, ports=list(n.ports),
                                interface_name=n.interface_name, aliases=list(n.aliases),
                                ip6=n.ip6)
            for n in r.networks]
    if r.auto_remove and r.restart_policy.name not in ("", "no"):
        raise InvalidArgument("auto_remove cannot be combined with a restart policy",
                              field="auto_remove")
    return container_spec(
        name=r.name, command=list(r.command), env=dict(r.env), hostname=r.hostname,
        networks=nets, network_mode=r.network_mode, privileged=r.privileged,
        cap_add=list(r.cap_add), image=r.image, rootfs=r.rootfs, working_dir=r.working_dir,
        restart=restart_policy(r.restart_policy.name, r.restart_policy.max_retries),
        signal_number=stop_signal(r.stop_signal),
        timeout=stop_timeout(r.stop_timeout_seconds),
        limits=resources(memory_bytes=r.resources.memory_bytes, cpus=r.resources.cpus,
                         pids_limit=r.resources.pids_limit),
        log=log_config(max_bytes=r.log.max_bytes, max_files=r.log.max_files),
        auto_remove=r.auto_remove)


def exec_spec_from_pb(r: pb.ExecRequest) -> ExecSpec:
    return exec_spec(command=list(r.command), env=dict(r.env), working_dir=r.working_dir,
                     timeout_seconds=r.timeout_seconds, max_output_bytes=r.max_output_bytes)


def exec_result_to_pb(r: ExecResult) -> pb.ExecResponse:
    return pb.ExecResponse(exit_code=r.exit_code, stdout=r.stdout, stderr=r.stderr,
                           stdout_truncated=r.stdout_truncated,
                           stderr_truncated=r.stderr_truncated, timed_out=r.timed_out)


_LOG_STREAMS: dict[pb.LogEntry.Stream, LogStream] = {pb.LogEntry.STDOUT: "stdout",
                                                     pb.LogEntry.STDERR: "stderr"}
_LOG_STREAMS_PB = {name: number for number, name in _LOG_STREAMS.items()}


def _time_ns(r: pb.LogsRequest, name: str) -> int:
    """A request's timestamp field in Unix ns; 0 if unset."""
    if not r.HasField(name):
        return 0
    ts: Timestamp = getattr(r, name)
    if not (0 <= ts.seconds <= _MAX_TIMESTAMP_SECONDS and 0 <= ts.nanos < 10**9):
        raise InvalidArgument(f"{name} is out of range: give a time after 1970-01-01",
                              field=name)
    return ts.seconds * 10**9 + ts.nanos


def log_query_from_pb(r: pb.LogsRequest) -> LogQuery:
    """What a Logs request asks for; an unknown stream is InvalidArgument (a negative
    tail is, in ops)."""
    if any(s not in _LOG_STREAMS for s in r.streams):
        raise InvalidArgument("streams must be STDOUT or STDERR", field="streams")
    streams = frozenset(_LOG_STREAMS[s] for s in r.streams) or LogQuery.streams
    return LogQuery(follow=r.follow, tail=r.tail if r.HasField("tail") else None,
                    since_ns=_time_ns(r, "since"), until_ns=_time_ns(r, "until"),
                    streams=streams)


def log_entry_to_pb(r: LogRecord) -> pb.LogEntry:
    seconds, nanos = divmod(r.time_ns, 10**9)
    return pb.LogEntry(stream=_LOG_STREAMS_PB[r.stream],
                       time=Timestamp(seconds=seconds, nanos=nanos), data=r.data,
                       partial=r.partial)


def stats_to_pb(v: ContainerStatsView) -> pb.ContainerStats:
    interfaces = [pb.InterfaceStats(
        interface_name=i.interface_name, network=i.network_name,
        rx_bytes=i.counters.rx_bytes, rx_packets=i.counters.rx_packets,
        rx_errors=i.counters.rx_errors, rx_dropped=i.counters.rx_dropped,
        tx_bytes=i.counters.tx_bytes, tx_packets=i.counters.tx_packets,
        tx_errors=i.counters.tx_errors, tx_dropped=i.counters.tx_dropped)
        for i in v.interfaces]
    out = pb.ContainerStats(container_id=v.container.id, name=v.container.name,
                            time=timestamp(v.time), interfaces=interfaces)
    if v.cgroup is not None:
        g = v.cgroup
        out.cgroup_readable = True
        out.cpu_usage_ns, out.memory_usage_bytes = g.cpu_usage_ns, g.memory_usage_bytes
        out.memory_limit_bytes, out.pids_current = g.memory_limit_bytes, g.pids_current
        out.pids_limit = g.pids_limit
    return out


def image_to_pb(i: Image) -> pb.Image:
    return pb.Image(id=i.id, name=i.name, layers=list(i.layers), size_bytes=i.size,
                    created_at=timestamp(i.created_at), env=list(i.env),
                    entrypoint=list(i.entrypoint), cmd=list(i.cmd),
                    working_dir=i.working_dir)


def request_stop_timeout(seconds: int) -> float | None:
    """A request's grace period; 0 (None) = the container's own stop timeout."""
    return stop_timeout(seconds) if seconds else None


def event_filter_from_pb(r: pb.WatchEventsRequest, *, resolve: Callable[[str], Container]
                         ) -> tuple[EventFilter, float | None]:
    """The filter and `since` of a WatchEvents request; unknown keys and timestamps out
    of range are InvalidArgument."""
    unknown = sorted(set(r.filters) - set(EVENT_FILTERS))
    if unknown:
        raise InvalidArgument(f"unknown event filter {unknown[0][:64]!r}: use "
                              + ", ".join(EVENT_FILTERS), field="filters")
    container = r.filters.get("container", "")
    if container:
        # A container that does not exist yet may still appear by id prefix.
        with contextlib.suppress(SheepError):
            container = resolve(container).id
    flt = EventFilter(container=container, network=r.filters.get("network", ""),
                      type_prefix=r.filters.get("type", ""))
    if not r.HasField("since"):
        return flt, None
    if not (0 <= r.since.seconds <= _MAX_TIMESTAMP_SECONDS and 0 <= r.since.nanos < 10**9):
        raise InvalidArgument("since is out of range: give a time after 1970-01-01",
                              field="since")
    return flt, r.since.seconds + r.since.nanos / 1e9


def network_spec_from_pb(r: pb.CreateNetworkRequest) -> NetworkSpec:
    return NetworkSpec(name=r.name, subnet=r.subnet, gateway=r.gateway, bridge=r.bridge,
                       mtu=r.mtu, internal=r.internal,
                       icc=r.icc if r.HasField("icc") else True,
                       dns=r.dns if r.HasField("dns") else True, subnet6=r.subnet6,
                       gateway6=r.gateway6)


def attachment_to_pb(v: AttachmentView) -> pb.NetworkAttachment:
    a = v.attachment
    return pb.NetworkAttachment(
        network=v.network_name, interface_name=a.interface_name,
        ip_address=str(a.address.ip), prefix_length=a.address.network.prefixlen,
        gateway=str(a.gateway), mac_address=a.mac, host_interface=a.host_interface,
        link_state=v.link_state.value, ports=[port_to_pb(p) for p in a.ports],
        container_id=a.container_id, aliases=list(a.aliases),
        ip6_address=str(a.address6.ip) if a.address6 else "",
        prefix6_length=a.address6.network.prefixlen if a.address6 else 0,
        gateway6=str(a.gateway6) if a.gateway6 else "")


def container_to_pb(v: ContainerView) -> pb.Container:
    c: Container = v.container
    return pb.Container(
        id=c.id, name=c.name, state=_STATE[c.state], pid=c.pid,
        exit_code=c.exit_code if c.exit_code is not None else 0,
        command=list(c.command), hostname=c.hostname,
        created_at=timestamp(c.created_at), started_at=timestamp(c.started_at),
        finished_at=timestamp(c.finished_at),
        networks=[attachment_to_pb(a) for a in v.attachments],
        ports=[port_to_pb(p) for a in v.attachments for p in a.attachment.ports],
        netns_path=c.netns_path, log_path=v.log_path, env=dict(c.env),
        state_reason=c.state_reason, privileged=c.privileged,
        capabilities=list(c.capabilities), image=c.image, rootfs=c.rootfs,
        working_dir=c.working_dir,
        restart_policy=pb.RestartPolicy(name=c.restart_policy.name,
                                        max_retries=c.restart_policy.max_retries),
        restart_count=c.restart_count, restarting=v.restarting,
        stop_signal=signal.Signals(c.stop_signal).name,
        stop_timeout_seconds=int(c.stop_timeout),
        resources=pb.Resources(memory_bytes=c.resources.memory_bytes, cpus=c.resources.cpus,
                               pids_limit=c.resources.pids_limit),
        log=pb.LogConfig(max_bytes=c.log.max_bytes, max_files=c.log.max_files),
        auto_remove=c.auto_remove)


def network_to_pb(v: NetworkView) -> pb.Network:
    n = v.network
    return pb.Network(
        id=n.id, name=n.name, bridge=n.bridge, subnet=str(n.subnet), gateway=str(n.gateway),
        mtu=n.mtu, internal=n.internal, icc=n.icc, leases_allocated=v.leases_allocated,
        leases_capacity=v.leases_capacity, created_at=timestamp(n.created_at),
        containers=list(v.containers), dns=n.dns,
        subnet6=str(n.subnet6) if n.subnet6 else "",
        gateway6=str(n.gateway6) if n.gateway6 else "", leases6_allocated=v.leases6_allocated)


def cluster_node_to_pb(n: ClusterNode) -> pb.ClusterNode:
    return pb.ClusterNode(name=n.name, underlay_address=str(n.underlay_address),
                          subnet=str(n.subnet), vtep_mac=n.vtep_mac, state=n.state)


def cluster_to_pb(c: ClusterStatus | None) -> pb.Cluster:
    """GetCluster's reply; a single host (None) is `enabled: false` and nothing else."""
    if c is None:
        return pb.Cluster(enabled=False)
    return pb.Cluster(enabled=True, backend=c.backend, network=str(c.network),
                      subnet_length=c.subnet_len, vni=c.vni, port=c.port,
                      self=cluster_node_to_pb(c.node),
                      nodes=[cluster_node_to_pb(n) for n in c.nodes],
                      etcd_endpoints=list(c.etcd_endpoints))


def event_to_pb(e: Event) -> pb.Event:
    return pb.Event(id=e.id, time=timestamp(e.time), type=e.type,
                    container_id=e.container_id, network=e.network,
                    attributes=dict(e.attributes))
