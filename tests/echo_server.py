"""A container's test server: `echo_server.py NAME PROTO:PORT...` answers every TCP
connection or UDP datagram with "NAME:PORT PEER_IP" (what a published port test needs:
who answered, and which source address it saw)."""

import selectors
import socket
import sys


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
        sel.register(sock, selectors.EVENT_READ, (proto, port))
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            sock, (proto, port) = key.fileobj, key.data
            assert isinstance(sock, socket.socket)
            try:
                if proto == "tcp":
                    conn, peer = sock.accept()
                    with conn:
                        conn.sendall(f"{name}:{port} {peer[0]}".encode())
                else:
                    _, peer = sock.recvfrom(512)
                    sock.sendto(f"{name}:{port} {peer[0]}".encode(), peer)
            except OSError:
                pass


if __name__ == "__main__":
    main()
