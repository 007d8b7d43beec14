"""The IPv6 address pool of one network subnet, and ``pool_for`` to pick by family.

An IPv6 /64 has 2**64 addresses, so the pool keeps its leases in a
``SparseBitmap``, whose memory follows the number of leases, not the subnet. The
subnet-router anycast address (the first one, RFC 4291) and the gateway are never
handed out; IPv6 has no broadcast, so the last address is an ordinary lease. The
leasing and cursor semantics are those of ``OffsetPool`` (see ``ipam/base.py``).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import overload

from sheep_runtime.errors import InvalidArgument
from sheep_runtime.ipam.base import OffsetPool
from sheep_runtime.ipam.pool import AddressPool
from sheep_runtime.ipam.sparse import SparseBitmap
from sheep_runtime.ipam.subnets import MIN_PREFIX6, parse_address6, validate_gateway6

__all__ = ["MAX_POOL_PREFIX6", "AddressPool6", "pool_for"]

MAX_POOL_PREFIX6 = 126
"""The smallest IPv6 subnet a pool covers: a /126 (anycast, gateway, two hosts)."""


class AddressPool6(OffsetPool[IPv6Address, IPv6Network]):
    """Leases of one IPv6 subnet (/64 to /126) but its anycast and gateway addresses."""

    __slots__ = ()

    def __init__(self, subnet: IPv6Network, *, gateway: IPv6Address | str) -> None:
        """Create an empty pool. Raises InvalidArgument (field ``subnet6`` or
        ``gateway6``) for a subnet outside /64 to /126 or an unusable gateway."""
        if not MIN_PREFIX6 <= subnet.prefixlen <= MAX_POOL_PREFIX6:
            raise InvalidArgument(
                f"subnet {subnet} has prefix /{subnet.prefixlen}; an IPv6 pool covers "
                f"/{MIN_PREFIX6} to /{MAX_POOL_PREFIX6}",
                field="subnet6",
            )
        gw = validate_gateway6(subnet, gateway)
        roles = {int(gw) - int(subnet.network_address): "gateway",
                 0: "subnet-router anycast address"}
        super().__init__(subnet, family=IPv6Address, gateway=gw,
                         bits=SparseBitmap(subnet.num_addresses), roles=roles)

    def _parse(self, text: IPv6Address | str, *, field: str = "address") -> IPv6Address:
        return parse_address6(text, field=field)


@overload
def pool_for(subnet: IPv4Network, *, gateway: IPv4Address | str) -> AddressPool: ...
@overload
def pool_for(subnet: IPv6Network, *, gateway: IPv6Address | str) -> AddressPool6: ...
def pool_for(subnet: IPv4Network | IPv6Network, *,
             gateway: IPv4Address | IPv6Address | str) -> AddressPool | AddressPool6:
    """The empty pool of ``subnet``'s family: ``AddressPool`` or ``AddressPool6``."""
    # The overloads pair the families; a mismatch is refused by the gateway's parser.
    if isinstance(subnet, IPv6Network):
        return AddressPool6(subnet, gateway=gateway)  # type: ignore[arg-type]
    return AddressPool(subnet, gateway=gateway)  # type: ignore[arg-type]
