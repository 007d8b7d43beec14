"""RuntimeService: decode the request, make one ops call, encode the reply.
Every RPC, streaming ones included, maps daemon errors to gRPC statuses through one
table (status.py); client input never comes back UNKNOWN or INTERNAL."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import platform
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc

from sheep_runtime import __version__
from sheep_runtime.api import convert, richstatus
from sheep_runtime.api.status import status_code
from sheep_runtime.api.v1 import runtime_pb2 as pb
from sheep_runtime.api.v1 import runtime_pb2_grpc as pb_grpc
from sheep_runtime.errors import SheepError
from sheep_runtime.ops.cluster import ClusterService
from sheep_runtime.ops.runtime import Runtime

log = logging.getLogger(__name__)

R = TypeVar("R")
Handler = Callable[..., Awaitable[R]]
StreamHandler = Callable[..., AsyncIterator[R]]


async def _abort(context: grpc.aio.ServicerContext, name: str, e: Exception) -> None:
    if isinstance(e, SheepError):
        await richstatus.abort(context, e, status_code(e))
    log.exception("%s failed", name)
    await richstatus.abort(context, e, grpc.StatusCode.INTERNAL,
                           message=f"{type(e).__name__}: {e}")


def mapped(fn: Handler[R]) -> Handler[R]:
    """Turn SheepError into the matching status; anything else is INTERNAL and logged."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> R:
        try:
            return await fn(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as e:
            await _abort(context, fn.__name__, e)
        raise AssertionError("unreachable")  # abort always raises

    return wrapper


def mapped_stream(fn: StreamHandler[R]) -> StreamHandler[R]:
    """`mapped` for server-streaming RPCs."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext
                      ) -> AsyncIterator[R]:
        try:
            async for item in fn(self, request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as e:
            await _abort(context, fn.__name__, e)

    return wrapper


class RuntimeServicer(pb_grpc.RuntimeServiceServicer):  # type: ignore[misc]
    """The v1 API over the ops layer."""

    def __init__(self, *, runtime: Runtime, backends: Mapping[str, str] | None = None,
                 cluster: ClusterService | None = None) -> None:
        self._containers = runtime.containers
        self._cluster = cluster or ClusterService(
            member=None, store=runtime.backends.store, networks=runtime.networks,
            firewall=runtime.firewall, tasks=runtime.tasks, events=runtime.events)
        self._networks = runtime.networks
        self._images = runtime.images
        self._exec = runtime.exec
        self._stats = runtime.stats
        self._logs = runtime.logs
        self._events = runtime.events
        self._backends = dict(backends or {})
        self._closing = asyncio.Event()
        self._streams = 0
        self._no_streams = asyncio.Event()
        self._no_streams.set()

    async def close_streams(self, timeout: float) -> None:
        """End every event stream with UNAVAILABLE (the daemon is stopping), and wait
        (up to `timeout`) until each has sent it, before the server goes away."""
        self._closing.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._no_streams.wait(), timeout)

    @mapped
    async def CreateContainer(self, request: pb.CreateContainerRequest,
                              context: grpc.aio.ServicerContext) -> pb.Container:
        spec = convert.container_spec_from_pb(request)
        return convert.container_to_pb(await self._containers.create(spec))

    @mapped
    async def StopContainer(self, request: pb.StopContainerRequest,
                            context: grpc.aio.ServicerContext) -> pb.Container:
        timeout = convert.request_stop_timeout(request.timeout_seconds)
        return convert.container_to_pb(await self._containers.stop(request.id,
                                                                   timeout=timeout))

    @mapped
    async def StartContainer(self, request: pb.StartContainerRequest,
                             context: grpc.aio.ServicerContext) -> pb.Container:
        return convert.container_to_pb(await self._containers.start(request.id))

    @mapped
    async def RestartContainer(self, request: pb.RestartContainerRequest,
                               context: grpc.aio.ServicerContext) -> pb.Container:
        timeout = convert.request_stop_timeout(request.timeout_seconds)
        return convert.container_to_pb(await self._containers.restart(request.id,
                                                                      timeout=timeout))

    @mapped
    async def WaitContainer(self, request: pb.WaitContainerRequest,
                            context: grpc.aio.ServicerContext) -> pb.WaitContainerResponse:
        c = await self._containers.wait(request.id)
        view = convert.container_to_pb(await self._containers.view(c))
        return pb.WaitContainerResponse(
            exit_code=c.exit_code if c.exit_code is not None else -1, container=view)

    @mapped
    async def Exec(self, request: pb.ExecRequest,
                   context: grpc.aio.ServicerContext) -> pb.ExecResponse:
        spec = convert.exec_spec_from_pb(request)
        return convert.exec_result_to_pb(await self._exec.run(request.id, spec))

    @mapped
    async def Stats(self, request: pb.StatsRequest,
                    context: grpc.aio.ServicerContext) -> pb.ContainerStats:
        return convert.stats_to_pb(await self._stats.read(request.id))

    @mapped
    async def RemoveContainer(self, request: pb.RemoveContainerRequest,
                              context: grpc.aio.ServicerContext
                              ) -> pb.RemoveContainerResponse:
        cid = await self._containers.remove(request.id, force=request.force)
        return pb.RemoveContainerResponse(id=cid)

    @mapped
    async def ListContainers(self, request: pb.ListContainersRequest,
                             context: grpc.aio.ServicerContext
                             ) -> pb.ListContainersResponse:
        views = await self._containers.list_containers(dict(request.filters))
        return pb.ListContainersResponse(containers=[convert.container_to_pb(v)
                                                     for v in views])

    @mapped
    async def Inspect(self, request: pb.InspectRequest,
                      context: grpc.aio.ServicerContext) -> pb.Container:
        return convert.container_to_pb(await self._containers.inspect(request.id))

    @mapped
    async def AttachNetwork(self, request: pb.AttachNetworkRequest,
                            context: grpc.aio.ServicerContext) -> pb.NetworkAttachment:
        spec = convert.attach_spec_from_pb(network=request.network, ip=request.ip,
                                           ports=list(request.ports),
                                           interface_name=request.interface_name,
                                           aliases=list(request.aliases), ip6=request.ip6)
        view = await self._containers.attach(request.container_id, spec)
        return convert.attachment_to_pb(view)

    @mapped
    async def DetachNetwork(self, request: pb.DetachNetworkRequest,
                            context: grpc.aio.ServicerContext) -> pb.DetachNetworkResponse:
        await self._containers.detach(request.container_id, request.network)
        return pb.DetachNetworkResponse()

    @mapped
    async def CreateNetwork(self, request: pb.CreateNetworkRequest,
                            context: grpc.aio.ServicerContext) -> pb.Network:
        net = await self._networks.create(convert.network_spec_from_pb(request))
        return convert.network_to_pb(self._networks.view(net))

    @mapped
    async def InspectNetwork(self, request: pb.InspectNetworkRequest,
                             context: grpc.aio.ServicerContext) -> pb.Network:
        return convert.network_to_pb(self._networks.view(self._networks.get(request.id)))

    @mapped
    async def ListNetworks(self, request: pb.ListNetworksRequest,
                           context: grpc.aio.ServicerContext) -> pb.ListNetworksResponse:
        return pb.ListNetworksResponse(networks=[
            convert.network_to_pb(self._networks.view(n)) for n in self._networks.all()])

    @mapped
    async def RemoveNetwork(self, request: pb.RemoveNetworkRequest,
                            context: grpc.aio.ServicerContext) -> pb.RemoveNetworkResponse:
        net = await self._networks.remove(request.id)
        return pb.RemoveNetworkResponse(id=net.id)

    async def _until_closing(self, stream: AsyncIterator[R],
                             context: grpc.aio.ServicerContext) -> AsyncIterator[R]:
        """`stream`'s items until it ends, or UNAVAILABLE once the daemon is stopping
        (`close_streams` waits for that)."""
        closing = asyncio.ensure_future(self._closing.wait())
        self._streams += 1
        self._no_streams.clear()
        nxt: asyncio.Future[R] | None = None
        try:
            while True:
                nxt = asyncio.ensure_future(anext(stream))
                await asyncio.wait((nxt, closing), return_when=asyncio.FIRST_COMPLETED)
                if not nxt.done():
                    nxt.cancel()
                    await context.abort(grpc.StatusCode.UNAVAILABLE,
                                        "sheepd is shutting down; reconnect and resume "
                                        "with `since`")
                try:
                    item = nxt.result()
                except StopAsyncIteration:
                    return
                yield item
        finally:
            closing.cancel()
            if nxt is not None and not nxt.done():  # the client went away meanwhile
                nxt.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await nxt
            if isinstance(stream, AsyncGenerator):
                await stream.aclose()
            self._streams -= 1
            if not self._streams:
                self._no_streams.set()

    @mapped_stream
    async def WatchEvents(self, request: pb.WatchEventsRequest,
                          context: grpc.aio.ServicerContext) -> AsyncIterator[pb.Event]:
        flt, since = convert.event_filter_from_pb(request, resolve=self._containers.resolve)
        async for event in self._until_closing(self._events.subscribe(flt, since=since),
                                               context):
            yield convert.event_to_pb(event)

    @mapped_stream
    async def Logs(self, request: pb.LogsRequest,
                   context: grpc.aio.ServicerContext) -> AsyncIterator[pb.LogEntry]:
        records = self._logs.stream(request.id, convert.log_query_from_pb(request))
        async for record in self._until_closing(records, context):
            yield convert.log_entry_to_pb(record)

    @mapped
    async def ImportImage(self, request: pb.ImportImageRequest,
                          context: grpc.aio.ServicerContext) -> pb.Image:
        return convert.image_to_pb(await self._images.import_image(
            request.name, request.source, trusted=request.trusted))

    @mapped
    async def ListImages(self, request: pb.ListImagesRequest,
                         context: grpc.aio.ServicerContext) -> pb.ListImagesResponse:
        return pb.ListImagesResponse(images=[convert.image_to_pb(i)
                                             for i in self._images.list()])

    @mapped
    async def RemoveImage(self, request: pb.RemoveImageRequest,
                          context: grpc.aio.ServicerContext) -> pb.RemoveImageResponse:
        return pb.RemoveImageResponse(id=(await self._images.remove(request.id)).id)

    @mapped
    async def GetCluster(self, request: pb.GetClusterRequest,
                         context: grpc.aio.ServicerContext) -> pb.Cluster:
        return convert.cluster_to_pb(await self._cluster.status())

    @mapped
    async def LeaveCluster(self, request: pb.LeaveClusterRequest,
                           context: grpc.aio.ServicerContext) -> pb.LeaveClusterResponse:
        return pb.LeaveClusterResponse(subnet=str(await self._cluster.leave()))

    @mapped
    async def Version(self, request: pb.VersionRequest,
                      context: grpc.aio.ServicerContext) -> pb.VersionResponse:
        return pb.VersionResponse(version=__version__, api_version="v1",
                                  kernel=platform.release() or os.uname().release,
                                  backends=self._backends)
