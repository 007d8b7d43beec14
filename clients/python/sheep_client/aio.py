"""The asyncio client (grpc.aio): `AsyncSheepClient`, the methods of `SheepClient` as
coroutines, and its streams `AsyncEventStream` and `AsyncLogStream`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from sheep.runtime.v1 import runtime_pb2 as pb
from sheep.runtime.v1 import runtime_pb2_grpc as pb_grpc

from sheep_client import builders, connection
from sheep_client.builders import NetworkSpec, PortSpec, RestartSpec, Since
from sheep_client.client import DEFAULT_TIMEOUT, exec_deadline, quiet_end, stop_deadline
from sheep_client.errors import Unavailable, from_rpc_error

T = TypeVar("T")


class AsyncStream(AsyncIterator[T]):
    """The asyncio twin of `Stream`: `async for msg in stream`."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._cancelled = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        if self._cancelled:
            raise StopAsyncIteration
        try:
            msg = await self._call.read()
        except grpc.RpcError as e:
            if quiet_end(e, self._cancelled):
                raise StopAsyncIteration from None
            raise from_rpc_error(e) from None
        except asyncio.CancelledError:
            if self._cancelled:  # our own cancel(), not the task's
                raise StopAsyncIteration from None
            raise
        if msg is grpc.aio.EOF:
            raise StopAsyncIteration
        item: T = msg
        return item

    def cancel(self) -> None:
        """Stop the stream; a pending or later read ends the iteration."""
        self._cancelled = True
        self._call.cancel()

    close = cancel

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cancel()


class AsyncEventStream(AsyncStream[pb.Event]):
    """The asyncio twin of `EventStream`: `async for event in stream`."""


class AsyncLogStream(AsyncStream[pb.LogEntry]):
    """The asyncio twin of `LogStream`: `async for entry in stream`."""


class AsyncSheepClient:
    """The asyncio client: the methods of `SheepClient` as coroutines, over grpc.aio.

    Create it inside a running event loop; `async with AsyncSheepClient() as c:` or
    `await c.close()`. `watch_events()` returns an `AsyncEventStream`. Connects like
    `SheepClient` (the same arguments).
    """

    def __init__(self, *, socket: str = "", host: str = "",
                 channel: grpc.aio.Channel | None = None,
                 timeout: float | None = DEFAULT_TIMEOUT,
                 options: connection.ChannelOptions | None = None,
                 tls_ca: str = "", tls_cert: str = "", tls_key: str = "") -> None:
        self._owns_channel = channel is None
        self._channel: grpc.aio.Channel = channel if channel is not None else \
            connection.aio_channel(socket=socket, host=host, options=options,
                                   tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
        self._stub = pb_grpc.RuntimeServiceStub(self._channel)
        self.timeout = timeout

    @property
    def channel(self) -> grpc.aio.Channel:
        """The underlying grpc.aio channel."""
        return self._channel

    @property
    def stub(self) -> pb_grpc.RuntimeServiceStub:
        """The generated stub (its calls are awaitable)."""
        return self._stub

    async def close(self) -> None:
        """Close the channel (if this client opened it)."""
        if self._owns_channel:
            await self._channel.close()

    async def __aenter__(self) -> AsyncSheepClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def _call(self, method: str, request: Any, timeout: float | None) -> Any:
        try:
            return await getattr(self._stub, method)(
                request, timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the channel is connected; `Unavailable` after `timeout` seconds."""
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout)
        except TimeoutError:
            raise Unavailable(grpc.StatusCode.UNAVAILABLE,
                              f"sheepd not reachable after {timeout}s") from None

    # -- containers -----------------------------------------------------------------

    async def create_container(self, command: Sequence[str] = (), *, name: str = "",
                               env: Mapping[str, str] | None = None, hostname: str = "",
                               networks: Sequence[NetworkSpec] = (), network_mode: str = "",
                               privileged: bool = False, cap_add: Sequence[str] = (),
                               image: str = "", rootfs: str = "", working_dir: str = "",
                               restart_policy: RestartSpec = None, stop_signal: str = "",
                               stop_timeout_seconds: int = 0,
                               resources: pb.Resources | None = None,
                               log: pb.LogConfig | None = None, auto_remove: bool = False,
                               timeout: float | None = None) -> pb.Container:
        """See `SheepClient.create_container`."""
        req = builders.create_container(
            command, name=name, env=env, hostname=hostname, networks=networks,
            network_mode=network_mode, privileged=privileged, cap_add=cap_add, image=image,
            rootfs=rootfs, working_dir=working_dir, restart_policy=restart_policy,
            stop_signal=stop_signal, stop_timeout_seconds=stop_timeout_seconds,
            resources=resources, log=log, auto_remove=auto_remove)
        c: pb.Container = await self._call("CreateContainer", req, timeout)
        return c

    async def start_container(self, id: str, *,
                              timeout: float | None = None) -> pb.Container:
        """See `SheepClient.start_container`."""
        c: pb.Container = await self._call("StartContainer",
                                           pb.StartContainerRequest(id=id), timeout)
        return c

    async def restart_container(self, id: str, *, timeout_seconds: int = 0,
                                timeout: float | None = None) -> pb.Container:
        """See `SheepClient.restart_container`."""
        req = pb.RestartContainerRequest(id=id, timeout_seconds=timeout_seconds)
        c: pb.Container = await self._call(
            "RestartContainer", req, timeout or stop_deadline(self.timeout, timeout_seconds))
        return c

    async def wait_container(self, id: str, *,
                             timeout: float | None = None) -> pb.WaitContainerResponse:
        """See `SheepClient.wait_container` (no deadline unless `timeout`)."""
        try:
            resp: pb.WaitContainerResponse = await self._stub.WaitContainer(
                pb.WaitContainerRequest(id=id), timeout=timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        return resp

    async def stop_container(self, id: str, *, timeout_seconds: int = 0,
                             timeout: float | None = None) -> pb.Container:
        """See `SheepClient.stop_container`."""
        req = pb.StopContainerRequest(id=id, timeout_seconds=timeout_seconds)
        c: pb.Container = await self._call(
            "StopContainer", req, timeout or stop_deadline(self.timeout, timeout_seconds))
        return c

    async def remove_container(self, id: str, *, force: bool = False,
                               timeout: float | None = None) -> str:
        """See `SheepClient.remove_container`."""
        resp: pb.RemoveContainerResponse = await self._call(
            "RemoveContainer", pb.RemoveContainerRequest(id=id, force=force), timeout)
        return resp.id

    async def list_containers(self, *, all: bool = False,
                              filters: Mapping[str, str] | None = None,
                              timeout: float | None = None) -> list[pb.Container]:
        """See `SheepClient.list_containers`."""
        resp: pb.ListContainersResponse = await self._call(
            "ListContainers", builders.list_containers(all=all, filters=filters), timeout)
        return list(resp.containers)

    async def inspect(self, id: str, *, timeout: float | None = None) -> pb.Container:
        """See `SheepClient.inspect`."""
        c: pb.Container = await self._call("Inspect", pb.InspectRequest(id=id), timeout)
        return c

    inspect_container = inspect

    def logs(self, id: str, *, follow: bool = False, tail: int | None = None,
             since: Since = None, until: Since = None,
             streams: Sequence[pb.LogEntry.Stream] = (),
             duration: float | None = None) -> AsyncLogStream:
        """See `SheepClient.logs`; iterate it with `async for`."""
        req = builders.logs(id, follow=follow, tail=tail, since=since, until=until,
                            streams=streams)
        return AsyncLogStream(self._stub.Logs(req, timeout=duration))

    async def exec(self, id: str, command: Sequence[str], *,
                   env: Mapping[str, str] | None = None, working_dir: str = "",
                   timeout_seconds: int = 0, max_output_bytes: int = 0,
                   timeout: float | None = None) -> pb.ExecResponse:
        """See `SheepClient.exec`."""
        req = builders.exec_request(id, command, env=env, working_dir=working_dir,
                                    timeout_seconds=timeout_seconds,
                                    max_output_bytes=max_output_bytes)
        resp: pb.ExecResponse = await self._call(
            "Exec", req, timeout or exec_deadline(self.timeout, timeout_seconds))
        return resp

    async def stats(self, id: str, *, timeout: float | None = None) -> pb.ContainerStats:
        """See `SheepClient.stats`."""
        s: pb.ContainerStats = await self._call("Stats", pb.StatsRequest(id=id), timeout)
        return s

    # -- attachments ----------------------------------------------------------------

    async def attach_network(self, container_id: str, network: str, *, ip: str = "",
                             ports: Sequence[PortSpec] = (), interface_name: str = "",
                             aliases: Sequence[str] = (),
                             timeout: float | None = None) -> pb.NetworkAttachment:
        """See `SheepClient.attach_network`."""
        req = builders.attach_network(container_id, network, ip=ip, ports=ports,
                                      interface_name=interface_name, aliases=aliases)
        att: pb.NetworkAttachment = await self._call("AttachNetwork", req, timeout)
        return att

    async def detach_network(self, container_id: str, network: str, *,
                             timeout: float | None = None) -> None:
        """See `SheepClient.detach_network`."""
        await self._call("DetachNetwork", pb.DetachNetworkRequest(container_id=container_id,
                                                                  network=network), timeout)

    # -- networks -------------------------------------------------------------------

    async def create_network(self, name: str, subnet: str, *, gateway: str = "",
                             bridge: str = "", mtu: int = 0, internal: bool = False,
                             icc: bool | None = None, dns: bool | None = None,
                             timeout: float | None = None) -> pb.Network:
        """See `SheepClient.create_network`."""
        req = builders.create_network(name, subnet, gateway=gateway, bridge=bridge, mtu=mtu,
                                      internal=internal, icc=icc, dns=dns)
        n: pb.Network = await self._call("CreateNetwork", req, timeout)
        return n

    async def inspect_network(self, id: str, *, timeout: float | None = None) -> pb.Network:
        """See `SheepClient.inspect_network`."""
        n: pb.Network = await self._call("InspectNetwork", pb.InspectNetworkRequest(id=id),
                                         timeout)
        return n

    async def list_networks(self, *, timeout: float | None = None) -> list[pb.Network]:
        """See `SheepClient.list_networks`."""
        resp: pb.ListNetworksResponse = await self._call(
            "ListNetworks", pb.ListNetworksRequest(), timeout)
        return list(resp.networks)

    async def remove_network(self, id: str, *, timeout: float | None = None) -> str:
        """See `SheepClient.remove_network`."""
        resp: pb.RemoveNetworkResponse = await self._call(
            "RemoveNetwork", pb.RemoveNetworkRequest(id=id), timeout)
        return resp.id

    # -- images ---------------------------------------------------------------------

    async def import_image(self, name: str, source: str | os.PathLike[str], *,
                           trusted: bool = False, timeout: float | None = None) -> pb.Image:
        """See `SheepClient.import_image`."""
        req = pb.ImportImageRequest(name=name, source=os.fspath(source), trusted=trusted)
        image: pb.Image = await self._call("ImportImage", req, timeout)
        return image

    async def list_images(self, *, timeout: float | None = None) -> list[pb.Image]:
        """See `SheepClient.list_images`."""
        resp: pb.ListImagesResponse = await self._call("ListImages", pb.ListImagesRequest(),
                                                       timeout)
        return list(resp.images)

    async def remove_image(self, id: str, *, timeout: float | None = None) -> str:
        """See `SheepClient.remove_image`."""
        resp: pb.RemoveImageResponse = await self._call(
            "RemoveImage", pb.RemoveImageRequest(id=id), timeout)
        return resp.id

    # -- events and version ---------------------------------------------------------

    def watch_events(self, filters: Mapping[str, str] | None = None, since: Since = None,
                     *, duration: float | None = None) -> AsyncEventStream:
        """See `SheepClient.watch_events`; iterate it with `async for`."""
        call = self._stub.WatchEvents(builders.watch_events(filters, since), timeout=duration)
        return AsyncEventStream(call)

    async def version(self, *, timeout: float | None = None) -> pb.VersionResponse:
        """See `SheepClient.version`."""
        v: pb.VersionResponse = await self._call("Version", pb.VersionRequest(), timeout)
        return v

    # -- cluster --------------------------------------------------------------------

    async def get_cluster(self, *, timeout: float | None = None) -> pb.Cluster:
        """See `SheepClient.get_cluster`."""
        c: pb.Cluster = await self._call("GetCluster", pb.GetClusterRequest(), timeout)
        return c

    async def leave_cluster(self, *, timeout: float | None = None) -> str:
        """See `SheepClient.leave_cluster`."""
        resp: pb.LeaveClusterResponse = await self._call(
            "LeaveCluster", pb.LeaveClusterRequest(), timeout)
        return resp.subnet
