"""Connection helpers: the Unix socket (plaintext), or TCP with mutual TLS."""

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

#: The client's TLS files over TCP, by keyword argument, and the variables that
#: stand in for them when not given.
TLS_ENV = {"tls_ca": "SHEEP_TLS_CA", "tls_cert": "SHEEP_TLS_CERT", "tls_key": "SHEEP_TLS_KEY"}


def _unix(path: str) -> str:
    if path.startswith("unix://"):  # unix:///run/x.sock -> unix:/run/x.sock
        return "unix:" + path[len("unix://"):]
    return path if path.startswith("unix:") else "unix:" + path


def target(*, socket: str = "", host: str = "") -> str:
    """The gRPC target. `host` is an address: `tcp://HOST:PORT` or `HOST:PORT` (TCP),
    `unix:///PATH`, `unix:PATH` or a path starting with / or . (a Unix socket).
    Without `host`: the Unix socket `socket`, else env SHEEP_SOCKET, else
    /run/sheep/sheep.sock."""
    if host.startswith("tcp://"):
        return host[len("tcp://"):]
    if host.startswith(("unix:", "/", ".")):
        return _unix(host)
    if host:
        return host
    return _unix(str(socket) or os.environ.get("SHEEP_SOCKET", "") or DEFAULT_SOCKET)


def is_tcp(grpc_target: str) -> bool:
    """Whether a target from `target()` is a TCP address (which needs TLS)."""
    return not grpc_target.startswith("unix:")


def tls_credentials(*, tls_ca: str = "", tls_cert: str = "",
                    tls_key: str = "") -> grpc.ChannelCredentials:
    """Mutual TLS credentials from PEM files: the CA that signed the daemon's
    certificate, this client's certificate and its key. Each defaults to its
    variable (SHEEP_TLS_CA, SHEEP_TLS_CERT, SHEEP_TLS_KEY); ValueError if one is
    missing or unreadable."""
    given = {"tls_ca": tls_ca, "tls_cert": tls_cert, "tls_key": tls_key}
    paths = {k: str(v) or os.environ.get(TLS_ENV[k], "") for k, v in given.items()}
    missing = [k for k, v in paths.items() if not v]
    if missing:
        raise ValueError(
            "sheepd over TCP takes mutual TLS only: give tls_ca, tls_cert and tls_key "
            "(sheepctl --tls-ca, --tls-cert, --tls-key; or SHEEP_TLS_CA, SHEEP_TLS_CERT, "
            f"SHEEP_TLS_KEY); missing: {', '.join(missing)}")
    pem = {k: _read(k, v) for k, v in paths.items()}
    return grpc.ssl_channel_credentials(root_certificates=pem["tls_ca"],
                                        private_key=pem["tls_key"],
                                        certificate_chain=pem["tls_cert"])


def _read(what: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"cannot read {what} {path}: {e.strerror}") from e


def channel(*, socket: str = "", host: str = "", options: ChannelOptions | None = None,
            tls_ca: str = "", tls_cert: str = "", tls_key: str = "") -> grpc.Channel:
    """A new channel to sheepd (see `target`): plaintext on the Unix socket, mutual
    TLS over TCP (see `tls_credentials`). Close it when done."""
    t = target(socket=socket, host=host)
    if not is_tcp(t):
        return grpc.insecure_channel(t, options=options)
    creds = tls_credentials(tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
    return grpc.secure_channel(t, creds, options=options)


def aio_channel(*, socket: str = "", host: str = "", options: ChannelOptions | None = None,
                tls_ca: str = "", tls_cert: str = "", tls_key: str = "") -> grpc.aio.Channel:
    """The grpc.aio twin of `channel`; `await channel.close()` when done."""
    t = target(socket=socket, host=host)
    if not is_tcp(t):
        return grpc.aio.insecure_channel(t, options=options)
    creds = tls_credentials(tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
    return grpc.aio.secure_channel(t, creds, options=options)


def connect(*, socket: str = "", host: str = "", tls_ca: str = "", tls_cert: str = "",
            tls_key: str = "") -> pb_grpc.RuntimeServiceStub:
    """A raw RuntimeService stub over a new channel (prefer `SheepClient`)."""
    return pb_grpc.RuntimeServiceStub(channel(socket=socket, host=host, tls_ca=tls_ca,
                                              tls_cert=tls_cert, tls_key=tls_key))
