"""Embedded DNS: a UDP+TCP server per network on its gateway address, answering
containers' names from the ops layer's name table and forwarding the rest upstream."""

from sheep_runtime.dns.forward import Forwarder
from sheep_runtime.dns.server import DnsServer
from sheep_runtime.dns.upstreams import host_upstreams, parse_upstreams

__all__ = ["DnsServer", "Forwarder", "host_upstreams", "parse_upstreams"]
