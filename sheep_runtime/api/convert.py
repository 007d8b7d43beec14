"""The border between protobuf messages and ops' plain types, both ways."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable

from google.protobuf.timestamp_pb2 import Timestamp

from sheep_runtime.api.v1 import runtime_pb2 as pb
from sheep_runtime.errors import InvalidArgument, SheepError
from sheep_runtime.model import Container, ContainerState, Event, Image, PortMapping
from sheep_runtime.ops.events import EventFilter
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
                        interface_name: str, aliases: list[str]) -> AttachSpec:
    return attach_spec(network=network, ip=ip, ports=[port_from_pb(p) for p in ports],
                       interface_name=interface_name, aliases=aliases)


def container_spec_from_pb(r: pb.CreateContainerRequest) -> ContainerSpec:
    nets = [attach_spec_from_pb(network=n.network, ip=n.ip, ports=list(n.ports),
                                interface_name=n.interface_name, aliases=list(n.aliases))
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
                       dns=r.dns if r.HasField("dns") else True)


def attachment_to_pb(v: AttachmentView) -> pb.NetworkAttachment:
    a = v.attachment
    return pb.NetworkAttachment(
        network=v.network_name, interface_name=a.interface_name,
        ip_address=str(a.address.ip), prefix_length=a.address.network.prefixlen,
        gateway=str(a.gateway), mac_address=a.mac, host_interface=a.host_interface,
        link_state=v.link_state.value, ports=[port_to_pb(p) for p in a.ports],
        container_id=a.container_id, aliases=list(a.aliases))


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
        containers=list(v.containers), dns=n.dns)


def event_to_pb(e: Event) -> pb.Event:
    return pb.Event(id=e.id, time=timestamp(e.time), type=e.type,
                    container_id=e.container_id, network=e.network,
                    attributes=dict(e.attributes))
