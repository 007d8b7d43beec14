"""Builds the grpc.aio server: RuntimeService, reflection, health, on a Unix socket
(mode 0600, or 0660 for a socket group) and optionally a TCP address that takes
mutual TLS only: a client without a certificate signed by the client CA never gets
past the handshake."""

from __future__ import annotations

import grp
import os
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sheep_runtime.api.audit import AuditInterceptor
from sheep_runtime.api.servicer import RuntimeServicer
from sheep_runtime.api.v1 import runtime_pb2 as pb
from sheep_runtime.api.v1 import runtime_pb2_grpc as pb_grpc
from sheep_runtime.config import TLSFiles
from sheep_runtime.errors import FailedPrecondition
from sheep_runtime.ops.events import EventBus

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RuntimeService"].full_name


async def build_server(servicer: RuntimeServicer, *, socket: Path, events: EventBus,
                       listen: str = "", tls: TLSFiles | None = None,
                       socket_group: str = "",
                       interceptors: Sequence[grpc.aio.ServerInterceptor] = ()
                       ) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    """A started server bound to `socket` (0600; 0660 owned by `socket_group` if set)
    and, if set, to `listen` with mutual TLS from `tls` (required with `listen`).
    `interceptors` run first, then the audit of mutating calls (on `events`)."""
    gid = _group_id(socket_group) if socket_group else None
    credentials = _tls_credentials(tls, listen) if listen else None
    # No SO_REUSEPORT: a second daemon on the same port must fail, not share it.
    server = grpc.aio.server(interceptors=[*interceptors, AuditInterceptor(events)],
                             options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_RuntimeServiceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, reflection.SERVICE_NAME, health.SERVICE_NAME), server)
    socket.parent.mkdir(parents=True, exist_ok=True)
    socket.unlink(missing_ok=True)  # we hold the state lock: a leftover socket is stale
    server.add_insecure_port(f"unix:{socket}")
    if credentials is not None:
        _add_tls_port(server, listen, credentials)
    await server.start()
    # Under sheepd's umask (077) the socket is created 0700: there is no window in
    # which anyone but root can connect before this chmod.
    if gid is not None:
        os.chown(socket, -1, gid)
    os.chmod(socket, 0o600 if gid is None else 0o660)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    return server, health_servicer


def _group_id(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise FailedPrecondition(f"socket group {name!r} does not exist") from None


def _add_tls_port(server: grpc.aio.Server, listen: str,
                  credentials: grpc.ServerCredentials) -> None:
    try:
        bound = server.add_secure_port(listen, credentials)
    except RuntimeError as e:  # grpc.aio raises where grpc returns 0
        raise FailedPrecondition(
            f"cannot listen on {listen}: the address is in use or invalid, or the TLS "
            f"files are not PEM or the key does not match the certificate ({e})") from e
    if not bound:
        raise FailedPrecondition(f"cannot listen on {listen}")


def _tls_credentials(tls: TLSFiles | None, listen: str) -> grpc.ServerCredentials:
    """Server credentials that demand a client certificate signed by the client CA."""
    if tls is None:
        raise FailedPrecondition(f"refusing to listen on {listen} without mutual TLS")

    def read(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as e:
            raise FailedPrecondition(f"cannot read TLS file {path}: {e.strerror}") from e

    return grpc.ssl_server_credentials(
        [(read(tls.key), read(tls.cert))], root_certificates=read(tls.client_ca),
        require_client_auth=True)
