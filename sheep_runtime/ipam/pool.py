"""The IPv4 address pool of one network subnet: next-fit allocation over a bitmap.

The network, broadcast and gateway addresses are never handed out. The leasing
and cursor semantics are those of ``OffsetPool`` (see ``ipam/base.py``); IPv6
subnets have their own pool, ``AddressPool6``, and ``pool_for`` picks by family.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Network

from sheep_runtime.errors import InvalidArgument
from sheep_runtime.ipam.base import OffsetPool
from sheep_runtime.ipam.bitmap import Bitmap
from sheep_runtime.ipam.subnets import MAX_PREFIX, parse_address, validate_gateway

__all__ = ["MAX_POOL_ADDRESSES", "AddressPool"]

MAX_POOL_ADDRESSES = 1 << 24
"""The largest subnet a pool covers (an IPv4 /8)."""


class AddressPool(OffsetPool[IPv4Address, IPv4Network]):
    """Leases of the usable addresses of one subnet (not network, broadcast, gateway)."""

    __slots__ = ()

    def __init__(self, subnet: IPv4Network | IPv6Network, *,
                 gateway: IPv4Address | str) -> None:
        """Create an empty pool; ``subnet`` must be an IPv4 /8 to /30.

        Raises InvalidArgument for an unsupported subnet or an unusable gateway.
        """
        if not isinstance(subnet, IPv4Network):
            raise InvalidArgument(
                f"subnet {subnet} is IPv6: use AddressPool6 (or pool_for)", field="subnet"
            )
        if subnet.num_addresses > MAX_POOL_ADDRESSES:
            raise InvalidArgument(
                f"subnet {subnet} has more than {MAX_POOL_ADDRESSES} addresses; "
                "use a /8 or smaller",
                field="subnet",
            )
        if subnet.prefixlen > MAX_PREFIX:
            raise InvalidArgument(
                f"subnet {subnet} is too small; use a /{MAX_PREFIX} or larger",
                field="subnet",
            )
        gw = validate_gateway(subnet, gateway)
        size = subnet.num_addresses
        roles = {int(gw) - int(subnet.network_address): "gateway", 0: "network address",
                 size - 1: "broadcast address"}
        super().__init__(subnet, family=IPv4Address, gateway=gw, bits=Bitmap(size),
                         roles=roles)

    def _parse(self, text: IPv4Address | str, *, field: str = "address") -> IPv4Address:
        return parse_address(text, field=field)
