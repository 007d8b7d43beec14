"""Identifiers, user-visible name rules and kernel object names derived from ids.

Kernel names carry a prefix that marks them ours, so reconcile and leak collection
find every object we made and never touch anyone else's.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from ipaddress import IPv4Address

from sheep_runtime.errors import InvalidArgument

NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")
IFNAME_RE = re.compile(r"[a-zA-Z0-9_.-]{1,15}")
# Names the kernel gives a meaning: "lo" exists in every netns, "all" and "default" are
# the sysctl directories /proc/sys/net/*/conf/{all,default}.
RESERVED_IFNAMES = frozenset({".", "..", "lo", "all", "default"})
HOST_VETH_PREFIX = "shp"
BRIDGE_PREFIX = "shpbr"
ID_LENGTH = 64


def new_id() -> str:
    """A fresh 64-hex-character id."""
    return secrets.token_hex(ID_LENGTH // 2)


def validate_name(name: str, *, what: str) -> str:
    """Return `name` if it is a valid container or network name, else InvalidArgument."""
    if not NAME_RE.fullmatch(name):
        raise InvalidArgument(
            f"invalid {what} name {name!r}: use 1-63 characters from [a-zA-Z0-9_.-], "
            "starting with a letter or digit", field="name")
    return name


def validate_ifname(name: str, *, field: str = "interface_name") -> str:
    """Return `name` if it is a valid Linux interface name, else InvalidArgument."""
    if not IFNAME_RE.fullmatch(name):
        raise InvalidArgument(
            f"invalid interface name {name!r}: use 1-15 characters from [a-zA-Z0-9_.-]",
            field=field)
    if name in RESERVED_IFNAMES:
        raise InvalidArgument(f"interface name {name!r} is reserved by the kernel",
                              field=field)
    return name


def validate_bridge_name(name: str) -> str:
    """A user-chosen bridge name: a valid interface name without our prefix, which
    marks the kernel objects sheepd makes (and collects when it finds no record)."""
    validate_ifname(name, field="bridge")
    if name.startswith(HOST_VETH_PREFIX):
        raise InvalidArgument(f"bridge name {name!r} starts with {HOST_VETH_PREFIX!r}, "
                              "which sheepd keeps for its own interfaces", field="bridge")
    return name


def generated_name(container_id: str) -> str:
    """A default container name when the request gives none."""
    return f"sheep-{container_id[:12]}"


def host_veth_name(container_id: str, network_id: str) -> str:
    """Host end of a container's veth on a network: 'shp' + 12 hex = 15 characters."""
    digest = hashlib.sha256(f"{container_id}/{network_id}".encode()).hexdigest()
    return HOST_VETH_PREFIX + digest[:12]


def bridge_name(network_id: str) -> str:
    """Bridge of a user network: 'shpbr' + 10 hex = 15 characters."""
    return BRIDGE_PREFIX + network_id[:10]


def container_mac(address: IPv4Address) -> str:
    """Locally administered MAC derived from the address, like Docker's 02:42:<ip>."""
    return "02:5e:" + ":".join(f"{b:02x}" for b in address.packed)


def bridge_mac(network_id: str) -> str:
    """Fixed, locally administered bridge MAC; a bridge without one takes its lowest
    port's MAC and wipes its neighbour table whenever that changes."""
    digest = hashlib.sha256(network_id.encode()).digest()
    return "06:" + ":".join(f"{b:02x}" for b in digest[:5])
