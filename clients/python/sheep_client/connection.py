"""Connection helpers for the Unix socket and TCP."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import grpc
from sheep.runtime.v1 import runtime_pb2_grpc as pb_grpc

#: Where sheepd listens unless told otherwise; `SHEEP_SOCKET` overrides it.
DEFAULT_SOCKET = "/run/sheep/sheep.sock"

#: gRPC channel arguments, e.g. [("grpc.max_receive_message_length", 8 << 20)].
ChannelOptions = Sequence[tuple[str, Any]]


def target(*, socket: str = "", host: str = "") -> str:
    """The gRPC target: TCP `host:port` if given, else `unix:` + the socket path
    (`socket`, else env SHEEP_SOCKET, else /run/sheep/sheep.sock)."""
    if host:
        return host
    path = str(socket) or os.environ.get("SHEEP_SOCKET", "") or DEFAULT_SOCKET
    return path if path.startswith("unix:") else "unix:" + path


def channel(*, socket: str = "", host: str = "",
            options: ChannelOptions | None = None) -> grpc.Channel:
    """A new insecure (plaintext) channel to sheepd; close it when done."""
    return grpc.insecure_channel(target(socket=socket, host=host), options=options)


def aio_channel(*, socket: str = "", host: str = "",
                options: ChannelOptions | None = None) -> grpc.aio.Channel:
    """A new insecure grpc.aio channel to sheepd; `await channel.close()` when done."""
    return grpc.aio.insecure_channel(target(socket=socket, host=host), options=options)


def connect(*, socket: str = "", host: str = "") -> pb_grpc.RuntimeServiceStub:
    """A raw RuntimeService stub over a new channel (prefer `SheepClient`)."""
    return pb_grpc.RuntimeServiceStub(channel(socket=socket, host=host))
