"""Typed wrappers over every RPC of `sheep.runtime.v1.RuntimeService`.

`SheepClient` is blocking; `sheep_client.aio.AsyncSheepClient` is its asyncio twin.
Both return the protobuf messages (`Container`, `Network`, `NetworkAttachment`,
`Image`, `Event`, `LogEntry`, `ExecResponse`, `ContainerStats`, `VersionResponse`, ...),
plain ids where the reply is only an id, and raise `sheep_client.errors.SheepClientError`
subclasses on failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from sheep.runtime.v1 import runtime_pb2 as pb
from sheep.runtime.v1 import runtime_pb2_grpc as pb_grpc

from sheep_client import builders, connection
from sheep_client.builders import NetworkSpec, PortSpec, RestartSpec, Since
from sheep_client.errors import Unavailable, from_rpc_error

#: Deadline of a unary call unless the client or the call says otherwise, in seconds.
DEFAULT_TIMEOUT = 60.0
#: The daemon's own SIGTERM-to-SIGKILL delay when StopContainer gets 0.
DEFAULT_STOP_SECONDS = 10
#: The daemon's limit on an Exec command when ExecRequest.timeout_seconds is 0.
DEFAULT_EXEC_SECONDS = 60


def stop_deadline(base: float | None, timeout_seconds: int) -> float | None:
    """A StopContainer call lasts up to its grace period: extend the deadline by it."""
    return None if base is None else base + (timeout_seconds or DEFAULT_STOP_SECONDS)


def exec_deadline(base: float | None, timeout_seconds: int) -> float | None:
    """An Exec call lasts up to the command's timeout: extend the deadline by it."""
    return None if base is None else base + (timeout_seconds or DEFAULT_EXEC_SECONDS)


def quiet_end(err: grpc.RpcError, cancelled: bool) -> bool:
    """Whether a stream error is just its end: our own cancel or its duration ran out."""
    code = err.code()
    return bool((cancelled and code == grpc.StatusCode.CANCELLED)
                or code == grpc.StatusCode.DEADLINE_EXCEEDED)


T = TypeVar("T")


class Stream(Iterator[T]):
    """A live server stream: iterate it for its messages; `cancel()` (or leave its
    `with` block) to stop. Iteration ends quietly after a cancel or when its `duration`
    runs out; any other failure raises a typed error."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._cancelled = False

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> T:
        try:
            msg: T = next(self._call)
        except grpc.RpcError as e:
            if quiet_end(e, self._cancelled):
                raise StopIteration from None
            raise from_rpc_error(e) from None
        return msg

    def cancel(self) -> None:
        """Stop the stream; a pending or later `next()` ends the iteration."""
        self._cancelled = True
        self._call.cancel()

    close = cancel

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


class EventStream(Stream[pb.Event]):
    """A live WatchEvents stream of `Event` messages (see `Stream`)."""


class LogStream(Stream[pb.LogEntry]):
    """A Logs stream of `LogEntry` messages, oldest first (see `Stream`)."""


class SheepClient:
    """A blocking client of sheepd.

    Connects to the Unix socket `socket` (default: env SHEEP_SOCKET, else
    /run/sheep/sheep.sock), or to the address `host`: "tcp://127.0.0.1:50051" (or
    "127.0.0.1:50051"), "unix:///path/sheep.sock" or a socket path; or uses the given
    `channel`. TCP takes mutual TLS only: `tls_ca` (the CA of the daemon's certificate),
    `tls_cert` and `tls_key` (this client's), PEM file paths defaulting to env
    SHEEP_TLS_CA, SHEEP_TLS_CERT and SHEEP_TLS_KEY. `timeout` is the default deadline
    of unary calls in seconds (None: no deadline). Use it as a context manager, or call
    `close()`.
    """

    def __init__(self, *, socket: str = "", host: str = "",
                 channel: grpc.Channel | None = None,
                 timeout: float | None = DEFAULT_TIMEOUT,
                 options: connection.ChannelOptions | None = None,
                 tls_ca: str = "", tls_cert: str = "", tls_key: str = "") -> None:
        self._owns_channel = channel is None
        self._channel: grpc.Channel = channel if channel is not None else \
            connection.channel(socket=socket, host=host, options=options, tls_ca=tls_ca,
                               tls_cert=tls_cert, tls_key=tls_key)
        self._stub = pb_grpc.RuntimeServiceStub(self._channel)
        self.timeout = timeout

    @property
    def channel(self) -> grpc.Channel:
        """The underlying channel."""
        return self._channel

    @property
    def stub(self) -> pb_grpc.RuntimeServiceStub:
        """The generated stub, for anything the wrapper does not cover."""
        return self._stub

    def close(self) -> None:
        """Close the channel (if this client opened it)."""
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> SheepClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _call(self, method: str, request: Any, timeout: float | None) -> Any:
        try:
            return getattr(self._stub, method)(
                request, timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the channel is connected; `Unavailable` after `timeout` seconds."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise Unavailable(grpc.StatusCode.UNAVAILABLE,
                              f"sheepd not reachable after {timeout}s") from None

    # -- containers -----------------------------------------------------------------

    def create_container(self, command: Sequence[str] = (), *, name: str = "",
                         env: Mapping[str, str] | None = None, hostname: str = "",
                         networks: Sequence[NetworkSpec] = (), network_mode: str = "",
                         privileged: bool = False, cap_add: Sequence[str] = (),
                         image: str = "", rootfs: str = "", working_dir: str = "",
                         restart_policy: RestartSpec = None, stop_signal: str = "",
                         stop_timeout_seconds: int = 0,
                         resources: pb.Resources | None = None,
                         log: pb.LogConfig | None = None, auto_remove: bool = False,
                         timeout: float | None = None) -> pb.Container:
        """Create and start a container running `command` (an argv list); the RUNNING
        container. `networks` are names or `NetworkAttachmentRequest`s (empty: the
        default network unless `network_mode="none"`; DNS aliases go in the message).
        `cap_add` adds capabilities (e.g. "NET_ADMIN", or "ALL") to the default set;
        `privileged` gives every one and no seccomp filter. The root is the imported
        `image` (name or id prefix; its Cmd when `command` is empty), or the host
        directory `rootfs` (absolute), else a read-only view of the host's root;
        `working_dir` is the command's directory (default: the image's, else /).
        `restart_policy` is docker's spelling ("on-failure:3", "always",
        "unless-stopped") or a `RestartPolicy`; `stop_signal` ("SIGINT", "2") and
        `stop_timeout_seconds` are what a stop uses; `resources` (memory, CPUs, pids)
        and `log` (rotation) are messages; `auto_remove` removes it once it exits."""
        req = builders.create_container(
            command, name=name, env=env, hostname=hostname, networks=networks,
            network_mode=network_mode, privileged=privileged, cap_add=cap_add, image=image,
            rootfs=rootfs, working_dir=working_dir, restart_policy=restart_policy,
            stop_signal=stop_signal, stop_timeout_seconds=stop_timeout_seconds,
            resources=resources, log=log, auto_remove=auto_remove)
        c: pb.Container = self._call("CreateContainer", req, timeout)
        return c

    def start_container(self, id: str, *, timeout: float | None = None) -> pb.Container:
        """Start a created or exited container again (same id, root and networks); the
        RUNNING container (a running one as it is)."""
        c: pb.Container = self._call("StartContainer", pb.StartContainerRequest(id=id),
                                     timeout)
        return c

    def restart_container(self, id: str, *, timeout_seconds: int = 0,
                          timeout: float | None = None) -> pb.Container:
        """Stop (stop signal, SIGKILL after `timeout_seconds`; 0: the container's stop
        timeout) and start again; the RUNNING container."""
        req = pb.RestartContainerRequest(id=id, timeout_seconds=timeout_seconds)
        c: pb.Container = self._call("RestartContainer", req,
                                     timeout or stop_deadline(self.timeout, timeout_seconds))
        return c

    def wait_container(self, id: str, *,
                       timeout: float | None = None) -> pb.WaitContainerResponse:
        """Block until the container's command exits (at once if it is not running);
        its exit code and the container then. No deadline unless `timeout` (seconds)."""
        try:
            resp: pb.WaitContainerResponse = self._stub.WaitContainer(
                pb.WaitContainerRequest(id=id), timeout=timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        return resp

    def stop_container(self, id: str, *, timeout_seconds: int = 0,
                       timeout: float | None = None) -> pb.Container:
        """SIGTERM, then SIGKILL after `timeout_seconds` (0: 10 s); the EXITED container."""
        req = pb.StopContainerRequest(id=id, timeout_seconds=timeout_seconds)
        c: pb.Container = self._call("StopContainer", req,
                                     timeout or stop_deadline(self.timeout, timeout_seconds))
        return c

    def remove_container(self, id: str, *, force: bool = False,
                         timeout: float | None = None) -> str:
        """Remove a container (kill it first with `force`); its full id."""
        resp: pb.RemoveContainerResponse = self._call(
            "RemoveContainer", pb.RemoveContainerRequest(id=id, force=force), timeout)
        return resp.id

    def list_containers(self, *, all: bool = False, filters: Mapping[str, str] | None = None,
                        timeout: float | None = None) -> list[pb.Container]:
        """Running containers (every one with `all`); `filters`: name, network, state."""
        resp: pb.ListContainersResponse = self._call(
            "ListContainers", builders.list_containers(all=all, filters=filters), timeout)
        return list(resp.containers)

    def inspect(self, id: str, *, timeout: float | None = None) -> pb.Container:
        """One container by full id, unique id prefix or name."""
        c: pb.Container = self._call("Inspect", pb.InspectRequest(id=id), timeout)
        return c

    inspect_container = inspect

    def logs(self, id: str, *, follow: bool = False, tail: int | None = None,
             since: Since = None, until: Since = None,
             streams: Sequence[pb.LogEntry.Stream] = (),
             duration: float | None = None) -> LogStream:
        """Stream the container's output, oldest first: `LogEntry` messages (stream,
        time, bytes, partial). `tail`: only the last lines; `since` / `until`: only
        lines written in that window; `streams`: STDOUT and/or STDERR (default both).
        With `follow` it goes on until the container exits, or `duration` seconds."""
        req = builders.logs(id, follow=follow, tail=tail, since=since, until=until,
                            streams=streams)
        try:
            call = self._stub.Logs(req, timeout=duration)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        return LogStream(call)

    def exec(self, id: str, command: Sequence[str], *, env: Mapping[str, str] | None = None,
             working_dir: str = "", timeout_seconds: int = 0, max_output_bytes: int = 0,
             timeout: float | None = None) -> pb.ExecResponse:
        """Run `command` in the running container; its exit code, stdout and stderr
        (each at most `max_output_bytes`, 0: 1 MiB; truncation is flagged), and
        `timed_out` if it was killed after `timeout_seconds` (0: 60)."""
        req = builders.exec_request(id, command, env=env, working_dir=working_dir,
                                    timeout_seconds=timeout_seconds,
                                    max_output_bytes=max_output_bytes)
        resp: pb.ExecResponse = self._call(
            "Exec", req, timeout or exec_deadline(self.timeout, timeout_seconds))
        return resp

    def stats(self, id: str, *, timeout: float | None = None) -> pb.ContainerStats:
        """A running container's counters now: per interface, CPU time, memory, pids."""
        s: pb.ContainerStats = self._call("Stats", pb.StatsRequest(id=id), timeout)
        return s

    # -- attachments ----------------------------------------------------------------

    def attach_network(self, container_id: str, network: str, *, ip: str = "",
                       ports: Sequence[PortSpec] = (), interface_name: str = "",
                       aliases: Sequence[str] = (),
                       timeout: float | None = None) -> pb.NetworkAttachment:
        """Connect a running container to a network (idempotent); the attachment.
        `ports` are PortMappings or specs like "8080:80/tcp"; `aliases` are extra DNS
        names of the container on that network."""
        req = builders.attach_network(container_id, network, ip=ip, ports=ports,
                                      interface_name=interface_name, aliases=aliases)
        att: pb.NetworkAttachment = self._call("AttachNetwork", req, timeout)
        return att

    def detach_network(self, container_id: str, network: str, *,
                       timeout: float | None = None) -> None:
        """Disconnect a container from a network."""
        self._call("DetachNetwork", pb.DetachNetworkRequest(container_id=container_id,
                                                            network=network), timeout)

    # -- networks -------------------------------------------------------------------

    def create_network(self, name: str, subnet: str, *, gateway: str = "", bridge: str = "",
                       mtu: int = 0, internal: bool = False, icc: bool | None = None,
                       dns: bool | None = None, timeout: float | None = None) -> pb.Network:
        """Create a user network (its own bridge and IPv4 `subnet` in CIDR form).
        `icc` and `dns` (the embedded DNS on the gateway) default to on."""
        req = builders.create_network(name, subnet, gateway=gateway, bridge=bridge, mtu=mtu,
                                      internal=internal, icc=icc, dns=dns)
        n: pb.Network = self._call("CreateNetwork", req, timeout)
        return n

    def inspect_network(self, id: str, *, timeout: float | None = None) -> pb.Network:
        """One network by name, id or unique id prefix."""
        n: pb.Network = self._call("InspectNetwork", pb.InspectNetworkRequest(id=id), timeout)
        return n

    def list_networks(self, *, timeout: float | None = None) -> list[pb.Network]:
        """Every network."""
        resp: pb.ListNetworksResponse = self._call("ListNetworks", pb.ListNetworksRequest(),
                                                   timeout)
        return list(resp.networks)

    def remove_network(self, id: str, *, timeout: float | None = None) -> str:
        """Remove a network with nothing attached, and its bridge; its id."""
        resp: pb.RemoveNetworkResponse = self._call(
            "RemoveNetwork", pb.RemoveNetworkRequest(id=id), timeout)
        return resp.id

    # -- images ---------------------------------------------------------------------

    def import_image(self, name: str, source: str | os.PathLike[str], *,
                     trusted: bool = False, timeout: float | None = None) -> pb.Image:
        """Import the OCI layout, OCI archive or rootfs tarball at `source` (an absolute
        path on the daemon's host) as `name`, replacing an image of that name; the
        image. `trusted` keeps device nodes and setuid/setgid files."""
        req = pb.ImportImageRequest(name=name, source=os.fspath(source), trusted=trusted)
        image: pb.Image = self._call("ImportImage", req, timeout)
        return image

    def list_images(self, *, timeout: float | None = None) -> list[pb.Image]:
        """Every imported image, by name."""
        resp: pb.ListImagesResponse = self._call("ListImages", pb.ListImagesRequest(),
                                                 timeout)
        return list(resp.images)

    def remove_image(self, id: str, *, timeout: float | None = None) -> str:
        """Remove an image by name or id prefix (`FailedPrecondition` while a container
        is made from it); its id."""
        resp: pb.RemoveImageResponse = self._call(
            "RemoveImage", pb.RemoveImageRequest(id=id), timeout)
        return resp.id

    # -- events and version ---------------------------------------------------------

    def watch_events(self, filters: Mapping[str, str] | None = None, since: Since = None,
                     *, duration: float | None = None) -> EventStream:
        """Stream events (replaying retained ones newer than `since` first). `filters`:
        container (id or name), network (name), type (prefix such as "container.").
        The stream ends quietly after `duration` seconds, if given, or on `cancel()`.

        The daemon subscribes when the call reaches it: to be sure to see the events of
        something done right after this call, pass `since=time.time()` (retained
        events newer than it are replayed first, none twice)."""
        try:
            call = self._stub.WatchEvents(builders.watch_events(filters, since),
                                          timeout=duration)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        return EventStream(call)

    def version(self, *, timeout: float | None = None) -> pb.VersionResponse:
        """Daemon, API and kernel versions and the backends in use."""
        v: pb.VersionResponse = self._call("Version", pb.VersionRequest(), timeout)
        return v

    # -- cluster --------------------------------------------------------------------

    def get_cluster(self, *, timeout: float | None = None) -> pb.Cluster:
        """Cluster mode as this node sees it (`enabled` false on a single host)."""
        c: pb.Cluster = self._call("GetCluster", pb.GetClusterRequest(), timeout)
        return c

    def leave_cluster(self, *, timeout: float | None = None) -> str:
        """Release this node's subnet once nothing is attached to the cluster
        network; the subnet released."""
        resp: pb.LeaveClusterResponse = self._call("LeaveCluster", pb.LeaveClusterRequest(),
                                                   timeout)
        return resp.subnet
