"""A pollable stand-in for a netlink socket that survives overruns on every loop."""

from __future__ import annotations

import select
import socket


class ErrorSafePoll:
    """An epoll fd holding one socket, to pass to `loop.add_reader` instead of it.

    After an overrun (ENOBUFS) a netlink socket reports EPOLLERR, and uvloop (libuv's
    uv_poll) then closes the reader for good: the watcher goes deaf. The inner epoll
    only reports readable, so the error reaches the reader's recv() as ENOBUFS.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._epoll = select.epoll()
        self._epoll.register(sock.fileno(), select.EPOLLIN)

    def fileno(self) -> int:
        return self._epoll.fileno()

    def close(self) -> None:
        self._epoll.close()
