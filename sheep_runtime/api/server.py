"""Builds the grpc.aio server: RuntimeService, reflection, health, on a Unix socket
(mode 0600) and optionally a TCP address."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sheep.runtime.v1 import runtime_pb2 as pb
from sheep.runtime.v1 import runtime_pb2_grpc as pb_grpc

from sheep_runtime.api.servicer import RuntimeServicer
from sheep_runtime.errors import FailedPrecondition

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RuntimeService"].full_name


async def build_server(servicer: RuntimeServicer, *, socket: Path, listen: str,
                       interceptors: list[grpc.aio.ServerInterceptor] | None = None
                       ) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    """A started server bound to `socket` (0600) and `listen` (if set)."""
    server = grpc.aio.server(interceptors=interceptors or [])
    pb_grpc.add_RuntimeServiceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, reflection.SERVICE_NAME, health.SERVICE_NAME), server)
    socket.parent.mkdir(parents=True, exist_ok=True)
    socket.unlink(missing_ok=True)  # we hold the state lock: a leftover socket is stale
    server.add_insecure_port(f"unix:{socket}")
    if listen and not server.add_insecure_port(listen):
        raise FailedPrecondition(f"cannot listen on {listen}")
    await server.start()
    os.chmod(socket, 0o600)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    return server, health_servicer
