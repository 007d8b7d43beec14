"""Request builders shared by the sync and asyncio clients."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TypeAlias

from google.protobuf.timestamp_pb2 import Timestamp
from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_client.parsing import parse_restart_policy
from sheep_client.ports import parse_port

#: A network to attach at creation: its name or id, or a full request message.
NetworkSpec: TypeAlias = "str | pb.NetworkAttachmentRequest"
#: A published port: a Docker-style spec ("8080:80/tcp") or a PortMapping message.
PortSpec: TypeAlias = "str | pb.PortMapping"
#: A point in time: an aware (or UTC naive) datetime, Unix seconds, or a Timestamp.
Since: TypeAlias = "datetime | float | Timestamp | None"
#: A restart policy: docker's spelling ("on-failure:3", "always") or the message.
RestartSpec: TypeAlias = "str | pb.RestartPolicy | None"


def port_mappings(ports: Sequence[PortSpec]) -> list[pb.PortMapping]:
    """PortMapping messages from specs (strings are parsed like `docker -p`)."""
    return [parse_port(p) if isinstance(p, str) else p for p in ports]


def network_requests(networks: Sequence[NetworkSpec]) -> list[pb.NetworkAttachmentRequest]:
    """NetworkAttachmentRequest messages from network names or messages."""
    return [pb.NetworkAttachmentRequest(network=n) if isinstance(n, str) else n
            for n in networks]


def timestamp(when: Since) -> Timestamp | None:
    """A Timestamp for `since` arguments (None stays None)."""
    if when is None or isinstance(when, Timestamp):
        return when
    ts = Timestamp()
    if isinstance(when, datetime):
        ts.FromDatetime(when)
    else:
        ts.FromNanoseconds(int(when * 1e9))
    return ts


def _strings(value: Sequence[str], what: str, example: str) -> list[str]:
    if isinstance(value, str):
        raise TypeError(f"{what} is a list, e.g. {example}, not a string")
    return list(value)


def create_container(command: Sequence[str] = (), *, name: str = "",
                     env: Mapping[str, str] | None = None, hostname: str = "",
                     networks: Sequence[NetworkSpec] = (), network_mode: str = "",
                     privileged: bool = False, cap_add: Sequence[str] = (),
                     image: str = "", rootfs: str = "", working_dir: str = "",
                     restart_policy: RestartSpec = None, stop_signal: str = "",
                     stop_timeout_seconds: int = 0, resources: pb.Resources | None = None,
                     log: pb.LogConfig | None = None,
                     auto_remove: bool = False) -> pb.CreateContainerRequest:
    req = pb.CreateContainerRequest(
        name=name, command=_strings(command, "command", "['/bin/sleep', '30']"),
        env=dict(env or {}), hostname=hostname, networks=network_requests(networks),
        network_mode=network_mode, privileged=privileged,
        cap_add=_strings(cap_add, "cap_add", "['NET_ADMIN']"), image=image, rootfs=rootfs,
        working_dir=working_dir, stop_signal=stop_signal,
        stop_timeout_seconds=stop_timeout_seconds, auto_remove=auto_remove)
    if isinstance(restart_policy, str):
        restart_policy = parse_restart_policy(restart_policy)
    if restart_policy is not None:
        req.restart_policy.CopyFrom(restart_policy)
    if resources is not None:
        req.resources.CopyFrom(resources)
    if log is not None:
        req.log.CopyFrom(log)
    return req


def list_containers(*, all: bool = False,
                    filters: Mapping[str, str] | None = None) -> pb.ListContainersRequest:
    f = dict(filters or {})
    if all:
        f["all"] = "true"
    return pb.ListContainersRequest(filters=f)


def attach_network(container_id: str, network: str, *, ip: str = "",
                   ports: Sequence[PortSpec] = (), interface_name: str = "",
                   aliases: Sequence[str] = ()) -> pb.AttachNetworkRequest:
    return pb.AttachNetworkRequest(container_id=container_id, network=network, ip=ip,
                                   ports=port_mappings(ports), interface_name=interface_name,
                                   aliases=_strings(aliases, "aliases", "['db']"))


def create_network(name: str, subnet: str, *, gateway: str = "", bridge: str = "",
                   mtu: int = 0, internal: bool = False,
                   icc: bool | None = None, dns: bool | None = None
                   ) -> pb.CreateNetworkRequest:
    req = pb.CreateNetworkRequest(name=name, subnet=subnet, gateway=gateway, bridge=bridge,
                                  mtu=mtu, internal=internal)
    if icc is not None:
        req.icc = icc
    if dns is not None:
        req.dns = dns
    return req


def watch_events(filters: Mapping[str, str] | None = None,
                 since: Since = None) -> pb.WatchEventsRequest:
    req = pb.WatchEventsRequest(filters=dict(filters or {}))
    ts = timestamp(since)
    if ts is not None:
        req.since.CopyFrom(ts)
    return req


def logs(id: str, *, follow: bool = False, tail: int | None = None, since: Since = None,
         until: Since = None,
         streams: Sequence[pb.LogEntry.Stream] = ()) -> pb.LogsRequest:
    req = pb.LogsRequest(id=id, follow=follow, streams=list(streams))
    if tail is not None:
        req.tail = tail
    for field, when in (("since", since), ("until", until)):
        ts = timestamp(when)
        if ts is not None:
            getattr(req, field).CopyFrom(ts)
    return req


def exec_request(id: str, command: Sequence[str], *, env: Mapping[str, str] | None = None,
                 working_dir: str = "", timeout_seconds: int = 0,
                 max_output_bytes: int = 0) -> pb.ExecRequest:
    return pb.ExecRequest(id=id, command=_strings(command, "command", "['ls', '/']"),
                          env=dict(env or {}), working_dir=working_dir,
                          timeout_seconds=timeout_seconds, max_output_bytes=max_output_bytes)
