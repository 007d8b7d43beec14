"""Pure helpers to parse and check network subnets and gateways."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import overload

from sheep_runtime.errors import InvalidArgument

__all__ = [
    "MAX_PREFIX",
    "MAX_PREFIX6",
    "MIN_PREFIX",
    "MIN_PREFIX6",
    "default_gateway",
    "find_overlap",
    "parse_address",
    "parse_address6",
    "parse_subnet",
    "parse_subnet6",
    "validate_gateway",
    "validate_gateway6",
    "validate_host",
]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # newline, NUL, tab...: never part of an address
MIN_PREFIX = 8
"""Largest network accepted: a /8 (2**24 addresses)."""
MAX_PREFIX = 30
"""Smallest network accepted: a /30 (network, gateway, one host, broadcast)."""

MIN_PREFIX6 = 64
"""Largest IPv6 network accepted: a /64, the standard size of an IPv6 link."""
MAX_PREFIX6 = 120
"""Smallest IPv6 network accepted: a /120 (256 addresses)."""

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

#: IPv6 ranges that can never be a container network (RFC 6890, RFC 3849).
RESERVED_RANGES6: tuple[tuple[IPv6Network, str], ...] = (
    (IPv6Network("::/128"), "unspecified address"),
    (IPv6Network("::1/128"), "loopback"),
    (IPv6Network("::ffff:0:0/96"), "IPv4-mapped"),
    (IPv6Network("fe80::/10"), "link-local"),
    (IPv6Network("ff00::/8"), "multicast"),
    (IPv6Network("2001:db8::/32"), "documentation"),
)


def _split_cidr(text: str, *, example: str, field: str) -> tuple[str, Network]:
    """The stripped text and its network; InvalidArgument unless it is a CIDR."""
    if _CONTROL.search(text):
        raise InvalidArgument(f"subnet {text!r} holds control characters", field=field)
    text = text.strip(" ")
    if "/" not in text:
        raise InvalidArgument(
            f"subnet {text!r} needs a prefix length, e.g. '{example}'", field=field
        )
    if "%" in text:  # ipaddress accepts a zone (fe80::%eth0/64); a subnet has none
        raise InvalidArgument(f"subnet {text!r} holds a zone ('%...')", field=field)
    try:
        return text, ipaddress.ip_network(text, strict=False)
    except ValueError as e:
        raise InvalidArgument(
            f"subnet {text!r} is not a valid CIDR like '{example}': {e}", field=field
        ) from e


def _check_host_bits(text: str, net: Network, *, field: str) -> None:
    if ipaddress.ip_address(text.split("/", 1)[0]) != net.network_address:
        raise InvalidArgument(
            f"subnet {text!r} has host bits set; did you mean '{net}'?", field=field
        )


def parse_subnet(text: str) -> IPv4Network:
    """Parse a strict IPv4 CIDR such as ``"10.20.0.0/16"`` (prefix /8 to /30).

    Raises InvalidArgument (field ``subnet``) with a message saying how to fix it.
    """
    text, net = _split_cidr(text, example="10.20.0.0/16", field="subnet")
    if not isinstance(net, IPv4Network):
        raise InvalidArgument(
            f"subnet {text!r} is IPv6; give it as subnet6", field="subnet"
        )
    if not MIN_PREFIX <= net.prefixlen <= MAX_PREFIX:
        raise InvalidArgument(
            f"subnet {text!r} has prefix /{net.prefixlen}; "
            f"use a prefix between /{MIN_PREFIX} and /{MAX_PREFIX}",
            field="subnet",
        )
    _check_host_bits(text, net, field="subnet")
    for reserved, what in RESERVED_RANGES:
        if net.overlaps(reserved):
            raise InvalidArgument(
                f"subnet {net} overlaps {reserved}, the {what} range; use a private "
                "range such as 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16",
                field="subnet")
    return net


def parse_subnet6(text: str, *, field: str = "subnet6") -> IPv6Network:
    """Parse a strict IPv6 CIDR such as ``"fd00:30::/64"`` (prefix /64 to /120).

    Raises InvalidArgument (with ``field``) with a message saying how to fix it.
    """
    text, net = _split_cidr(text, example="fd00:30::/64", field=field)
    if not isinstance(net, IPv6Network):
        raise InvalidArgument(f"subnet {text!r} is IPv4; give it as subnet", field=field)
    if not MIN_PREFIX6 <= net.prefixlen <= MAX_PREFIX6:
        raise InvalidArgument(
            f"subnet {text!r} has prefix /{net.prefixlen}; "
            f"use an IPv6 prefix between /{MIN_PREFIX6} and /{MAX_PREFIX6}",
            field=field,
        )
    _check_host_bits(text, net, field=field)
    for reserved, what in RESERVED_RANGES6:
        if net.overlaps(reserved):
            raise InvalidArgument(
                f"subnet {net} overlaps {reserved}, the {what} range; use a unique "
                "local range inside fd00::/8, such as fd00:30::/64", field=field)
    return net


def parse_address(text: str | IPv4Address, *, field: str = "address") -> IPv4Address:
    """Parse an IPv4 address, raising InvalidArgument (with ``field``) if it is not one."""
    if isinstance(text, IPv4Address):
        return text
    try:
        if _CONTROL.search(text):
            raise ValueError("control characters")
        return IPv4Address(text.strip(" "))
    except (ValueError, AttributeError, TypeError) as e:  # TypeError: an IPv6Address
        raise InvalidArgument(f"{text!r} is not a valid IPv4 address", field=field) from e


def parse_address6(text: str | IPv6Address, *, field: str = "address") -> IPv6Address:
    """Parse an IPv6 address (no zone such as ``%eth0``), InvalidArgument if it is not one."""
    if isinstance(text, IPv6Address):
        return text
    try:
        if _CONTROL.search(text) or "%" in text:
            raise ValueError("control characters or a zone")
        return IPv6Address(text.strip(" "))
    except (ValueError, TypeError) as e:  # TypeError: an IPv4Address
        raise InvalidArgument(f"{text!r} is not a valid IPv6 address", field=field) from e


@overload
def default_gateway(subnet: IPv4Network) -> IPv4Address: ...
@overload
def default_gateway(subnet: IPv6Network) -> IPv6Address: ...
def default_gateway(subnet: Network) -> IPv4Address | IPv6Address:
    """The conventional gateway of ``subnet``: its first address after the network's."""
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


def validate_gateway6(subnet: IPv6Network, gateway: IPv6Address | str, *,
                      field: str = "gateway6") -> IPv6Address:
    """Check that ``gateway`` is an address of ``subnet`` other than its subnet-router
    anycast address (the first one); return it parsed, else InvalidArgument."""
    gw = parse_address6(gateway, field=field)
    if gw not in subnet:
        raise InvalidArgument(f"gateway {gw} is outside {subnet}", field=field)
    if gw == subnet.network_address:
        raise InvalidArgument(
            f"gateway {gw} is the subnet-router anycast address of {subnet}", field=field)
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
