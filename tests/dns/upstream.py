"""A fake upstream resolver for the tests: a dnspython UDP+TCP server in a thread that
joined a given netns. It answers A and AAAA for the names it was given (NODATA for a
family a name has no address of), NXDOMAIN for the rest."""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from collections.abc import Mapping
from ipaddress import ip_address
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

CLONE_NEWNET = 0x40000000


def _setns(path: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


Records = Mapping[str, str | tuple[str, ...]]  # name -> its IPv4 and IPv6 addresses


def answer(wire: bytes, records: Records) -> bytes:
    query = dns.message.from_wire(wire)
    response = dns.message.make_response(query)
    q = query.question[0]
    found = records.get(q.name.to_text(omit_final_dot=True).lower())
    if found is None:
        response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()
    family = {dns.rdatatype.A: 4, dns.rdatatype.AAAA: 6}.get(q.rdtype)
    addresses = [a for a in ((found,) if isinstance(found, str) else found)
                 if ip_address(a).version == family]
    if addresses:
        response.answer.append(dns.rrset.from_text_list(
            q.name, 300, "IN", dns.rdatatype.to_text(q.rdtype), addresses))
    return response.to_wire()


class FakeUpstream:
    """UDP and TCP on `address`:`port` inside the netns at `netns`; `queries` counts."""

    def __init__(self, netns: Path, address: str, records: Records, *,
                 port: int = 53) -> None:
        self.records = dict(records)
        self.queries = 0
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._threads = [threading.Thread(target=self._run, args=(netns, address, port),
                                          daemon=True)]
        self._threads[0].start()
        assert self._ready.wait(5), "fake upstream did not start"

    def _run(self, netns: Path, address: str, port: int) -> None:
        _setns(netns)  # this thread only; sockets stay in the netns they were made in
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind((address, port))
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._tcp.bind((address, port))
        self._tcp.listen()
        self._udp.settimeout(0.1)
        self._tcp.settimeout(0.1)
        tcp = threading.Thread(target=self._serve_tcp, args=(self._tcp,), daemon=True)
        tcp.start()
        self._threads.append(tcp)
        self._ready.set()
        udp = self._udp
        while not self._stop.is_set():
            try:
                wire, peer = udp.recvfrom(4096)
            except TimeoutError:
                continue
            self.queries += 1
            udp.sendto(answer(wire, self.records), peer)

    def _serve_tcp(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                head = conn.recv(2)
                wire = conn.recv(int.from_bytes(head, "big"))
                self.queries += 1
                reply = answer(wire, self.records)
                conn.sendall(len(reply).to_bytes(2, "big") + reply)

    def stop(self) -> None:
        """Stop answering and close both sockets (queries then go unanswered)."""
        self._stop.set()
        for t in self._threads:
            t.join(5)
        for s in (self._udp, self._tcp):
            if s is not None:
                s.close()
