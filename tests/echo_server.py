"""A container's test server: `echo_server.py NAME PROTO:PORT...` answers every TCP
connection or UDP datagram with "NAME:PORT PEER_IP" (see tests/traffic.py)."""

import selectors
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.traffic import answer


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
