"""Pure helpers to parse and check network subnets and gateways."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Network

from sheep_runtime.errors import InvalidArgument

__all__ = [
    "MAX_PREFIX",
    "MIN_PREFIX",
    "default_gateway",
    "find_overlap",
    "parse_address",
    "parse_subnet",
    "validate_gateway",
    "validate_host",
]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # newline, NUL, tab...: never part of an address
MIN_PREFIX = 8
"""Largest network accepted: a /8 (2**24 addresses)."""
MAX_PREFIX = 30
"""Smallest network accepted: a /30 (network, gateway, one host, broadcast)."""

Network = IPv4Network | IPv6Network


#: IPv4 ranges that can never be a container network (RFC 6890 special purpose):
#: a bridge there would break the host's loopback, multicast or link-local traffic.
RESERVED_RANGES: tuple[tuple[IPv4Network, str], ...] = (
    (IPv4Network("0.0.0.0/8"), "'this network'"),
    (IPv4Network("127.0.0.0/8"), "loopback"),
    (IPv4Network("169.254.0.0/16"), "link-local"),
    (IPv4Network("224.0.0.0/4"), "multicast"),
    (IPv4Network("240.0.0.0/4"), "reserved (including broadcast)"),
)


def parse_subnet(text: str) -> IPv4Network:
    """Parse a strict IPv4 CIDR such as ``"10.20.0.0/16"`` (prefix /8 to /30).

    Raises InvalidArgument (field ``subnet``) with a message saying how to fix it.
    """
    if _CONTROL.search(text):
        raise InvalidArgument(f"subnet {text!r} holds control characters", field="subnet")
    text = text.strip(" ")
    if "/" not in text:
        raise InvalidArgument(
            f"subnet {text!r} needs a prefix length, e.g. '10.20.0.0/16'",
            field="subnet",
        )
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as e:
        raise InvalidArgument(
            f"subnet {text!r} is not a valid CIDR like '10.20.0.0/16': {e}",
            field="subnet",
        ) from e
    if not isinstance(net, IPv4Network):
        raise InvalidArgument(
            f"subnet {text!r} is IPv6, which is not supported yet", field="subnet"
        )
    if not MIN_PREFIX <= net.prefixlen <= MAX_PREFIX:
        raise InvalidArgument(
            f"subnet {text!r} has prefix /{net.prefixlen}; "
            f"use a prefix between /{MIN_PREFIX} and /{MAX_PREFIX}",
            field="subnet",
        )
    address = ipaddress.ip_address(text.split("/", 1)[0])
    if address != net.network_address:
        raise InvalidArgument(
            f"subnet {text!r} has host bits set; did you mean '{net}'?",
            field="subnet",
        )
    for reserved, what in RESERVED_RANGES:
        if net.overlaps(reserved):
            raise InvalidArgument(
                f"subnet {net} overlaps {reserved}, the {what} range; use a private "
                "range such as 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16",
                field="subnet")
    return net


def parse_address(text: str | IPv4Address, *, field: str = "address") -> IPv4Address:
    """Parse an IPv4 address, raising InvalidArgument (with ``field``) if it is not one."""
    if isinstance(text, IPv4Address):
        return text
    try:
        if _CONTROL.search(text):
            raise ValueError("control characters")
        return IPv4Address(text.strip(" "))
    except (ValueError, AttributeError) as e:
        raise InvalidArgument(f"{text!r} is not a valid IPv4 address", field=field) from e


def default_gateway(subnet: IPv4Network) -> IPv4Address:
    """The conventional gateway of ``subnet``: its first usable address."""
    return subnet.network_address + 1


def validate_gateway(subnet: IPv4Network, gateway: IPv4Address | str) -> IPv4Address:
    """Check that ``gateway`` is a usable host address of ``subnet``; return it parsed.

    Raises InvalidArgument (field ``gateway``) if it is outside the subnet or is
    its network or broadcast address.
    """
    gw = parse_address(gateway, field="gateway")
    if gw not in subnet:
        raise InvalidArgument(f"gateway {gw} is outside {subnet}", field="gateway")
    if gw == subnet.network_address:
        raise InvalidArgument(f"gateway {gw} is the network address of {subnet}", field="gateway")
    if gw == subnet.broadcast_address:
        raise InvalidArgument(f"gateway {gw} is the broadcast address of {subnet}", field="gateway")
    return gw


def validate_host(subnet: IPv4Network, gateway: IPv4Address, address: IPv4Address, *,
                  field: str = "ip") -> IPv4Address:
    """A static container address must be a host address of `subnet` other than its
    gateway; InvalidArgument (with `field`) says which rule it breaks."""
    if address not in subnet:
        raise InvalidArgument(f"address {address} is outside {subnet}", field=field)
    for special, what in ((subnet.network_address, "the network address"),
                          (subnet.broadcast_address, "the broadcast address"),
                          (gateway, "the gateway")):
        if address == special:
            raise InvalidArgument(f"address {address} is {what} of {subnet}", field=field)
    return address


def find_overlap(candidate: Network, existing: Mapping[str, Network]) -> str | None:
    """Name of the first network in ``existing`` overlapping ``candidate``, or None.

    Networks of the other IP version never overlap.
    """
    for name, net in existing.items():
        if net.version == candidate.version and candidate.overlaps(net):
            return name
    return None
