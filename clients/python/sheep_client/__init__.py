"""Client of sheep-runtime's gRPC API. Never imports the daemon's package."""

from sheep_client.connection import DEFAULT_SOCKET, connect, target

__all__ = ["DEFAULT_SOCKET", "connect", "target"]
