"""Connection helpers for the Unix socket and TCP."""

from __future__ import annotations

import os

import grpc
from sheep.runtime.v1 import runtime_pb2_grpc as pb_grpc

DEFAULT_SOCKET = "/run/sheep/sheep.sock"


def target(*, socket: str = "", host: str = "") -> str:
    """The gRPC target for a TCP `host:port`, else a Unix socket path."""
    if host:
        return host
    return "unix:" + (socket or os.environ.get("SHEEP_SOCKET", DEFAULT_SOCKET))


def connect(*, socket: str = "", host: str = "") -> pb_grpc.RuntimeServiceStub:
    """A RuntimeService stub over a new channel."""
    return pb_grpc.RuntimeServiceStub(grpc.insecure_channel(target(socket=socket, host=host)))
