"""RuntimeService: decode the request, make one ops call, encode the reply.
Daemon errors become gRPC statuses through one table (status.py)."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from sheep.runtime.v1 import runtime_pb2 as pb
from sheep.runtime.v1 import runtime_pb2_grpc as pb_grpc

from sheep_runtime import __version__
from sheep_runtime.api import convert, richstatus
from sheep_runtime.api.status import status_code
from sheep_runtime.errors import SheepError
from sheep_runtime.ops.containers import DEFAULT_STOP_TIMEOUT, ContainerService
from sheep_runtime.ops.events import EventBus, EventFilter
from sheep_runtime.ops.networks import NetworkRegistry

log = logging.getLogger(__name__)

R = TypeVar("R")
Handler = Callable[..., Awaitable[R]]


def _mapped(fn: Handler[R]) -> Handler[R]:
    """Turn SheepError into the matching status; anything else is INTERNAL and logged."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> R:
        try:
            return await fn(self, request, context)
        except SheepError as e:
            await richstatus.abort(context, e, status_code(e))
        except Exception as e:
            log.exception("%s failed", fn.__name__)
            await richstatus.abort(context, e, grpc.StatusCode.INTERNAL,
                                   message=f"{type(e).__name__}: {e}")
        raise AssertionError("unreachable")  # abort always raises

    return wrapper


class RuntimeServicer(pb_grpc.RuntimeServiceServicer):  # type: ignore[misc]
    """The v1 API over the ops layer."""

    def __init__(self, *, containers: ContainerService, networks: NetworkRegistry,
                 events: EventBus, backends: dict[str, str]) -> None:
        self._containers = containers
        self._networks = networks
        self._events = events
        self._backends = backends

    @_mapped
    async def CreateContainer(self, request: pb.CreateContainerRequest,
                              context: grpc.aio.ServicerContext) -> pb.Container:
        spec = convert.container_spec_from_pb(request)
        return convert.container_to_pb(await self._containers.create(spec))

    @_mapped
    async def StopContainer(self, request: pb.StopContainerRequest,
                            context: grpc.aio.ServicerContext) -> pb.Container:
        timeout = float(request.timeout_seconds) if request.timeout_seconds else \
            DEFAULT_STOP_TIMEOUT
        return convert.container_to_pb(await self._containers.stop(request.id,
                                                                   timeout=timeout))

    @_mapped
    async def RemoveContainer(self, request: pb.RemoveContainerRequest,
                              context: grpc.aio.ServicerContext
                              ) -> pb.RemoveContainerResponse:
        cid = await self._containers.remove(request.id, force=request.force)
        return pb.RemoveContainerResponse(id=cid)

    @_mapped
    async def ListContainers(self, request: pb.ListContainersRequest,
                             context: grpc.aio.ServicerContext
                             ) -> pb.ListContainersResponse:
        views = await self._containers.list_containers(dict(request.filters))
        return pb.ListContainersResponse(containers=[convert.container_to_pb(v)
                                                     for v in views])

    @_mapped
    async def Inspect(self, request: pb.InspectRequest,
                      context: grpc.aio.ServicerContext) -> pb.Container:
        return convert.container_to_pb(await self._containers.inspect(request.id))

    @_mapped
    async def AttachNetwork(self, request: pb.AttachNetworkRequest,
                            context: grpc.aio.ServicerContext) -> pb.NetworkAttachment:
        spec = convert.attach_spec_from_pb(network=request.network, ip=request.ip,
                                           ports=list(request.ports),
                                           interface_name=request.interface_name)
        view = await self._containers.attach(request.container_id, spec)
        return convert.attachment_to_pb(view)

    @_mapped
    async def DetachNetwork(self, request: pb.DetachNetworkRequest,
                            context: grpc.aio.ServicerContext) -> pb.DetachNetworkResponse:
        await self._containers.detach(request.container_id, request.network)
        return pb.DetachNetworkResponse()

    @_mapped
    async def CreateNetwork(self, request: pb.CreateNetworkRequest,
                            context: grpc.aio.ServicerContext) -> pb.Network:
        net = await self._networks.create(convert.network_spec_from_pb(request))
        return convert.network_to_pb(self._networks.view(net))

    @_mapped
    async def InspectNetwork(self, request: pb.InspectNetworkRequest,
                             context: grpc.aio.ServicerContext) -> pb.Network:
        return convert.network_to_pb(self._networks.view(self._networks.get(request.id)))

    @_mapped
    async def ListNetworks(self, request: pb.ListNetworksRequest,
                           context: grpc.aio.ServicerContext) -> pb.ListNetworksResponse:
        return pb.ListNetworksResponse(networks=[
            convert.network_to_pb(self._networks.view(n)) for n in self._networks.all()])

    @_mapped
    async def RemoveNetwork(self, request: pb.RemoveNetworkRequest,
                            context: grpc.aio.ServicerContext) -> pb.RemoveNetworkResponse:
        net = await self._networks.remove(request.id)
        return pb.RemoveNetworkResponse(id=net.id)

    async def WatchEvents(self, request: pb.WatchEventsRequest,
                          context: grpc.aio.ServicerContext) -> AsyncIterator[pb.Event]:
        f = dict(request.filters)
        container = f.get("container", "")
        if container:
            # A container that does not exist yet may still appear by id prefix.
            with contextlib.suppress(SheepError):
                container = self._containers.resolve(container).id
        flt = EventFilter(container=container, network=f.get("network", ""),
                          type_prefix=f.get("type", ""))
        since = (request.since.ToNanoseconds() / 1e9) if request.HasField("since") else None
        async for e in self._events.subscribe(flt, since=since):
            yield convert.event_to_pb(e)

    @_mapped
    async def Version(self, request: pb.VersionRequest,
                      context: grpc.aio.ServicerContext) -> pb.VersionResponse:
        return pb.VersionResponse(version=__version__, api_version="v1",
                                  kernel=platform.release() or os.uname().release,
                                  backends=self._backends)
