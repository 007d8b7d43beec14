"""Pure IP address management: subnet parsing, bitmaps and per-network pools.

No I/O here: the daemon persists leases and the pool cursor in its store and
rebuilds each pool with ``AddressPool.restore`` at start.
"""

from sheep_runtime.ipam.bitmap import Bitmap
from sheep_runtime.ipam.pool import MAX_POOL_ADDRESSES, AddressPool
from sheep_runtime.ipam.subnets import (
    MAX_PREFIX,
    MIN_PREFIX,
    default_gateway,
    find_overlap,
    parse_address,
    parse_subnet,
    validate_gateway,
)

__all__ = [
    "MAX_POOL_ADDRESSES",
    "MAX_PREFIX",
    "MIN_PREFIX",
    "AddressPool",
    "Bitmap",
    "default_gateway",
    "find_overlap",
    "parse_address",
    "parse_subnet",
    "validate_gateway",
]
