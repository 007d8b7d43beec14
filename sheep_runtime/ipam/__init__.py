"""Pure IP address management: subnet parsing, bitmaps and per-network pools.

No I/O here: the daemon persists leases and the pool cursor in its store and
rebuilds each pool with ``restore`` at start. IPv4 pools are dense bitmaps
(``AddressPool``), IPv6 pools sparse ones (``AddressPool6``); ``pool_for`` picks.
"""

from sheep_runtime.ipam.bitmap import Bitmap
from sheep_runtime.ipam.pool import MAX_POOL_ADDRESSES, AddressPool
from sheep_runtime.ipam.pool6 import MAX_POOL_PREFIX6, AddressPool6, pool_for
from sheep_runtime.ipam.sparse import SparseBitmap
from sheep_runtime.ipam.subnets import (
    MAX_PREFIX,
    MAX_PREFIX6,
    MIN_PREFIX,
    MIN_PREFIX6,
    default_gateway,
    find_overlap,
    parse_address,
    parse_address6,
    parse_subnet,
    parse_subnet6,
    validate_gateway,
    validate_gateway6,
)

__all__ = [
    "MAX_POOL_ADDRESSES",
    "MAX_POOL_PREFIX6",
    "MAX_PREFIX",
    "MAX_PREFIX6",
    "MIN_PREFIX",
    "MIN_PREFIX6",
    "AddressPool",
    "AddressPool6",
    "Bitmap",
    "SparseBitmap",
    "default_gateway",
    "find_overlap",
    "parse_address",
    "parse_address6",
    "parse_subnet",
    "parse_subnet6",
    "pool_for",
    "validate_gateway",
    "validate_gateway6",
]
