"""Client of sheep-runtime's gRPC API (`sheep.runtime.v1`). Never imports the daemon.

    from sheep_client import SheepClient, NotFound

    with SheepClient() as sheep:             # /run/sheep/sheep.sock or $SHEEP_SOCKET
        c = sheep.create_container(["/bin/sleep", "30"], name="demo")
        print(c.id, c.networks[0].ip_address)
        sheep.remove_container("demo", force=True)
"""

from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_client.aio import AsyncEventStream, AsyncLogStream, AsyncSheepClient, AsyncStream
from sheep_client.builders import NetworkSpec, PortSpec, RestartSpec, Since
from sheep_client.client import DEFAULT_TIMEOUT, EventStream, LogStream, SheepClient, Stream
from sheep_client.connection import (
    DEFAULT_SOCKET,
    aio_channel,
    channel,
    connect,
    target,
    tls_credentials,
)
from sheep_client.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    PreconditionViolation,
    ResourceExhausted,
    ResourceRef,
    SheepClientError,
    Unavailable,
    from_rpc_error,
)
from sheep_client.ports import parse_port

#: The version of this package (`sheepctl --version`).
__version__ = "0.1.0"

__all__ = [
    "DEFAULT_SOCKET",
    "DEFAULT_TIMEOUT",
    "AlreadyExists",
    "AsyncEventStream",
    "AsyncLogStream",
    "AsyncSheepClient",
    "AsyncStream",
    "EventStream",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "LogStream",
    "NetworkSpec",
    "NotFound",
    "PortSpec",
    "PreconditionViolation",
    "ResourceExhausted",
    "ResourceRef",
    "RestartSpec",
    "SheepClient",
    "SheepClientError",
    "Since",
    "Stream",
    "Unavailable",
    "__version__",
    "aio_channel",
    "channel",
    "connect",
    "from_rpc_error",
    "parse_port",
    "pb",
    "target",
    "tls_credentials",
]
