"""An event-loop-neutral receive path for pyroute2's asyncio sockets.

pyroute2 receives through `loop.create_datagram_endpoint(sock=...)`, which uvloop
refuses for AF_NETLINK ("invalid family 16"). It sends on the socket directly, so
only the receive side needs a transport: this one reads with `loop.add_reader`,
which every loop supports, and feeds pyroute2's own datagram protocol.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.core import CoreDatagramProtocol

from sheep_runtime.poll import ErrorSafePoll

# Large enough for any netlink datagram the kernel sends (dump batches are <= 32 KiB).
_RECV_BUFFER = 1 << 17


class NetlinkReaderTransport(asyncio.DatagramTransport):
    """Reads datagrams from a non-blocking socket into a DatagramProtocol."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol: asyncio.DatagramProtocol) -> None:
        super().__init__()
        self._loop = loop
        self._sock = sock
        self._protocol = protocol
        self._buffer = bytearray(_RECV_BUFFER)
        self._closed = False
        sock.setblocking(False)
        self._poll = ErrorSafePoll(sock)
        loop.add_reader(self._poll.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        view = memoryview(self._buffer)
        while not self._closed:
            try:
                n, addr = self._sock.recvfrom_into(view)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # ENOBUFS: the kernel dropped messages; the protocol reports it.
                self._protocol.error_received(exc)
                if exc.errno != errno.ENOBUFS:
                    return
                continue
            self._protocol.datagram_received(bytes(view[:n]), addr)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._poll.fileno())
        self._poll.close()
        self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self._closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._sock if name == "socket" else default


class RouteSocket(AsyncIPRoute):  # type: ignore[misc]
    """`AsyncIPRoute` that works on uvloop as well as on the default loop."""

    async def setup_endpoint(self) -> None:
        if getattr(self.local, "transport", None) is not None:
            return
        protocol = CoreDatagramProtocol(self.connection_lost, self.enqueue,
                                        self._error_event, self.status)
        transport = NetlinkReaderTransport(self.event_loop, self.socket, protocol)
        protocol.connection_made(transport)
        self.local.transport, self.local.protocol = transport, protocol
