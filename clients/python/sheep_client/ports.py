"""Parsing of -p/--publish specs, and host addresses, as Docker writes them."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv6Address

from sheep.runtime.v1 import runtime_pb2 as pb

USAGE = ("[HOST_IP:]HOST_PORT[-END]:CONTAINER_PORT[-END][/tcp|/udp], "
         "an IPv6 HOST_IP in brackets")

_PORT_RE = re.compile(
    r"^(?:(?:\[(?P<ip6>[^\]]*)\]|(?P<ip4>[^:\[\]]+)):)?(?P<host>\d+)(?:-(?P<host_end>\d+))?"
    r":(?P<cont>\d+)(?:-(?P<cont_end>\d+))?(?:/(?P<proto>tcp|udp))?$")


def parse_port(spec: str) -> pb.PortMapping:
    """A -p spec (`USAGE`: 8080:80, 127.0.0.1:8080:80, [::1]:8080-8081:80-81/udp)
    as a PortMapping; ValueError naming the spec if it is not one."""
    m = _PORT_RE.match(spec)
    if not m:
        raise ValueError(f"bad port spec {spec!r}: use {USAGE}")
    host, cont = int(m["host"]), int(m["cont"])
    host_n = int(m["host_end"]) - host + 1 if m["host_end"] else 1
    cont_n = int(m["cont_end"]) - cont + 1 if m["cont_end"] else 1
    if host_n != cont_n or host_n < 1:
        raise ValueError(f"bad port spec {spec!r}: host and container ranges differ in size")
    return pb.PortMapping(protocol=m["proto"] or "tcp", host_ip=_host_ip(spec, m),
                          host_port=host, container_port=cont, count=host_n)


def _host_ip(spec: str, m: re.Match[str]) -> str:
    """The spec's host address in its canonical text, "" if it names none."""
    v6 = m["ip6"] is not None
    text = m["ip6"] if v6 else m["ip4"]
    if text is None:
        return ""
    try:
        return str(IPv6Address(text) if v6 else IPv4Address(text))
    except ValueError:
        raise ValueError(f"bad port spec {spec!r}: {text!r} is not an "
                         f"IPv{6 if v6 else 4} address") from None


def host_address(host_ip: str, port: str | int) -> str:
    """HOST:PORT as docker prints a published port: 0.0.0.0:8080, [::1]:8080."""
    host = host_ip or "0.0.0.0"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
