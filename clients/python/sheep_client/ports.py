"""Parsing of -p/--publish specs, as Docker writes them."""

from __future__ import annotations

import re

from sheep.runtime.v1 import runtime_pb2 as pb

_PORT_RE = re.compile(
    r"^(?:(?P<ip>\d{1,3}(?:\.\d{1,3}){3}):)?(?P<host>\d+)(?:-(?P<host_end>\d+))?"
    r":(?P<cont>\d+)(?:-(?P<cont_end>\d+))?(?:/(?P<proto>tcp|udp))?$")


def parse_port(spec: str) -> pb.PortMapping:
    """[HOST_IP:]HOST_PORT[-END]:CONTAINER_PORT[-END][/tcp|/udp] as a PortMapping."""
    m = _PORT_RE.match(spec)
    if not m:
        raise ValueError(f"bad port spec {spec!r}: use "
                         "[HOST_IP:]HOST_PORT[-END]:CONTAINER_PORT[-END][/tcp|/udp]")
    host, cont = int(m["host"]), int(m["cont"])
    host_n = int(m["host_end"]) - host + 1 if m["host_end"] else 1
    cont_n = int(m["cont_end"]) - cont + 1 if m["cont_end"] else 1
    if host_n != cont_n or host_n < 1:
        raise ValueError(f"bad port spec {spec!r}: host and container ranges differ in size")
    return pb.PortMapping(protocol=m["proto"] or "tcp", host_ip=m["ip"] or "",
                          host_port=host, container_port=cont, count=host_n)
