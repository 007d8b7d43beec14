"""A container's test server: `echo_server.py NAME PROTO:PORT...` answers every TCP
connection or UDP datagram with "NAME:PORT PEER_IP" (see tests/traffic.py). Standard
library only: containers run its source with Debian's python3 (tests/sandbox.py)."""

import selectors
import socket
import sys


def answer(sock: socket.socket, label: str, protocol: str) -> None:
    """Answer one connection or datagram on a ready server socket with
    "LABEL PEER_IP": who answered, and which source address it saw."""
    try:
        if protocol == "tcp":
            conn, peer = sock.accept()
            with conn:
                conn.sendall(f"{label} {peer[0]}".encode())
        else:
            _, peer = sock.recvfrom(512)
            sock.sendto(f"{label} {peer[0]}".encode(), peer)
    except OSError:
        pass


def main() -> None:
    name, specs = sys.argv[1], sys.argv[2:]
    sel = selectors.DefaultSelector()
    for spec in specs:
        proto, port = spec.split(":")
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(socket.AF_INET, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", int(port)))
        if proto == "tcp":
            sock.listen(16)
        sel.register(sock, selectors.EVENT_READ, (f"{name}:{port}", proto))
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            assert isinstance(key.fileobj, socket.socket)
            answer(key.fileobj, *key.data)


if __name__ == "__main__":
    main()
