"""Real traffic between namespaces a test made: small TCP/UDP servers that answer
who they are and whom they saw, and a client that asks them."""

from __future__ import annotations

import selectors
import socket
import threading
from pathlib import Path

from sheep_runtime.netlink import run_in_netns
from tests.echo_server import answer


class Servers:
    """TCP/UDP servers in the world's namespaces answering "<ns>:<port> <peer ip>"."""

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._serve, name="fw-servers", daemon=True)

    def listen(self, netns: Path, name: str, protocol: str, number: int,
               *, address: str = "0.0.0.0") -> None:
        """An IPv6 `address` ("::": both families) answers with the peer's IPv6 form
        (an IPv4 peer as ::ffff:a.b.c.d)."""
        def make() -> socket.socket:
            kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
            sock = socket.socket(_family(address), kind)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if ":" in address:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((address, number))
            if protocol == "tcp":
                sock.listen(64)
            sock.setblocking(False)
            return sock
        self._sel.register(run_in_netns(netns, make), selectors.EVENT_READ,
                           (f"{name}:{number}", protocol))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._wake_w.send(b"x")
            self._thread.join(5)
        for key in list(self._sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._wake_w.close()
        self._sel.close()

    def _serve(self) -> None:
        while True:
            for key, _ in self._sel.select():
                if key.data is None:
                    return
                assert isinstance(key.fileobj, socket.socket)
                answer(key.fileobj, *key.data)


def connect(netns: Path, protocol: str, address: str, number: int,
            timeout: float) -> str | None:
    """The answer of the server at address:number, from `netns`; None if none came."""
    def talk() -> str | None:
        kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
        with socket.socket(_family(address), kind) as sock:
            sock.settimeout(timeout)
            try:
                if protocol == "tcp":
                    sock.connect((address, number))
                    return sock.recv(512).decode() or None
                sock.sendto(b"?", (address, number))
                return sock.recv(512).decode()
            except OSError:
                return None
    return run_in_netns(netns, talk)


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET
