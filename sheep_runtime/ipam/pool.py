"""The address pool of one network subnet: next-fit allocation over a bitmap.

Bit ``i`` of the bitmap stands for address ``network_address + i``. The network,
broadcast and gateway bits are set at construction and never cleared, so the
allocator cannot hand them out and needs no special case on the hot path.

Cursor semantics (what the caller persists to resume next-fit after a restart):

* ``allocate()`` searches from just after the cursor, wrapping around, and moves
  the cursor to the address it returns.
* ``reserve()`` (static addresses) and ``release()`` never move the cursor: a user's
  static choice says nothing about where dynamic allocation should continue, and
  a released address must not be handed out again before the pool wraps.
* ``restore()`` takes the persisted cursor; without one it puts the cursor on the
  highest restored address, so new leases go above every restored one first.

The pool is written in integer offsets so IPv6 can follow; for now an IPv6 subnet
is rejected with InvalidArgument, as is any subnet larger than 2**24 addresses.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Network

from sheep_runtime.errors import AlreadyExists, InvalidArgument, ResourceExhausted
from sheep_runtime.ipam.bitmap import Bitmap
from sheep_runtime.ipam.subnets import MAX_PREFIX, parse_address, validate_gateway

__all__ = ["MAX_POOL_ADDRESSES", "AddressPool"]

MAX_POOL_ADDRESSES = 1 << 24
"""The largest subnet a pool covers (an IPv4 /8)."""

Address = IPv4Address | str


class AddressPool:
    """Leases of the usable addresses of one subnet (not network, broadcast, gateway)."""

    __slots__ = (
        "_base",
        "_bitmap",
        "_cursor",
        "_gateway",
        "_gw_index",
        "_size",
        "_subnet",
    )

    def __init__(self, subnet: IPv4Network | IPv6Network, *, gateway: Address) -> None:
        """Create an empty pool; ``subnet`` must be an IPv4 /8 to /30.

        Raises InvalidArgument for an unsupported subnet or an unusable gateway.
        """
        if not isinstance(subnet, IPv4Network):
            raise InvalidArgument(
                f"subnet {subnet} is IPv6, which is not supported yet", field="subnet"
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
        self._subnet = subnet
        self._gateway = gw
        self._base = int(subnet.network_address)
        self._size = subnet.num_addresses
        self._gw_index = int(gw) - self._base
        self._bitmap = Bitmap(self._size)
        for i in (0, self._size - 1, self._gw_index):
            self._bitmap.set(i)
        self._cursor = -1  # index of the last allocated address, -1 for none

    def __repr__(self) -> str:
        return (
            f"AddressPool({self._subnet}, gateway={self._gateway}, "
            f"allocated={self.allocated}/{self.capacity})"
        )

    @property
    def subnet(self) -> IPv4Network:
        """The subnet this pool hands addresses out of."""
        return self._subnet

    @property
    def gateway(self) -> IPv4Address:
        """The gateway address, never handed out."""
        return self._gateway

    @property
    def capacity(self) -> int:
        """Usable addresses: all but the network, broadcast and gateway addresses."""
        return self._size - 3

    @property
    def allocated(self) -> int:
        """How many addresses are currently leased."""
        return self._bitmap.count - 3

    @property
    def available(self) -> int:
        """How many addresses are still free."""
        return self._size - self._bitmap.count

    @property
    def cursor(self) -> IPv4Address | None:
        """The address last returned by ``allocate()``, or None; persist it."""
        if self._cursor < 0:
            return None
        return IPv4Address(self._base + self._cursor)

    def allocate(self) -> IPv4Address:
        """Lease the next free address after the cursor (next-fit, wrapping).

        Raises ResourceExhausted, leaving the pool unchanged, when it is full.
        """
        i = self._bitmap.claim(self._cursor + 1)
        if i is None:
            raise self._exhausted()
        self._cursor = i
        return IPv4Address(self._base + i)

    def allocate_int(self) -> int:
        """Like ``allocate()`` but return the address as an integer."""
        i = self._bitmap.claim(self._cursor + 1)
        if i is None:
            raise self._exhausted()
        self._cursor = i
        return self._base + i

    def _exhausted(self) -> ResourceExhausted:
        return ResourceExhausted(
            f"all {self.capacity} usable addresses of {self._subnet} are allocated"
        )

    def reserve(self, address: Address) -> None:
        """Lease a specific (static) address; the cursor does not move.

        Raises InvalidArgument if it is outside the subnet or is its network,
        broadcast or gateway address, and AlreadyExists if it is already leased.
        """
        i = self._lease_index(address)
        if not self._bitmap.set(i):
            raise AlreadyExists(f"{self._addr(i)} is already allocated in {self._subnet}",
                                reason="ADDRESS_TAKEN", resource_type="address",
                                resource_name=str(self._addr(i)))

    def release(self, address: Address) -> bool:
        """Free a leased address; True if it was leased, False if already free.

        Raises InvalidArgument for an address that can never be leased.
        """
        return self._bitmap.clear(self._lease_index(address))

    def is_allocated(self, address: Address) -> bool:
        """Whether ``address`` is currently leased (False outside the subnet)."""
        addr = parse_address(address)
        i = int(addr) - self._base
        if not 0 <= i < self._size or self._reserved_role(i) is not None:
            return False
        return self._bitmap.test(i)

    def __contains__(self, item: object) -> bool:
        """``address in pool``: whether it is currently leased."""
        if not isinstance(item, IPv4Address | str):
            return False
        try:
            return self.is_allocated(item)
        except InvalidArgument:
            return False

    def restore(self, addresses: Iterable[Address], *, cursor: Address | None = None) -> None:
        """Mark the leases read back from the store as allocated, all or nothing.

        The cursor becomes ``cursor`` if given (any address of the subnet),
        otherwise the highest restored address (unchanged if there is none).
        Raises InvalidArgument for an address that cannot be leased and
        AlreadyExists for a duplicate or an address already leased.
        """
        indices: set[int] = set()
        for address in addresses:
            i = self._lease_index(address)
            if i in indices or self._bitmap.test(i):
                raise AlreadyExists(f"{self._addr(i)} is restored twice in {self._subnet}")
            indices.add(i)
        new_cursor = self._cursor
        if cursor is not None:
            new_cursor = self._index(cursor, field="cursor")
        elif indices:
            new_cursor = max(indices)
        for i in indices:
            self._bitmap.set(i)
        self._cursor = new_cursor

    def leases(self) -> Iterator[IPv4Address]:
        """Yield the leased addresses in increasing order."""
        for i in self._bitmap.iter_set():
            if self._reserved_role(i) is None:
                yield self._addr(i)

    def _addr(self, i: int) -> IPv4Address:
        return IPv4Address(self._base + i)

    def _index(self, address: Address, *, field: str = "address") -> int:
        """Offset of ``address`` in the subnet; InvalidArgument if outside."""
        addr = parse_address(address, field=field)
        i = int(addr) - self._base
        if not 0 <= i < self._size:
            raise InvalidArgument(f"{addr} is outside {self._subnet}", field=field)
        return i

    def _lease_index(self, address: Address) -> int:
        """Offset of an address that may be leased; InvalidArgument otherwise."""
        i = self._index(address)
        role = self._reserved_role(i)
        if role is not None:
            raise InvalidArgument(
                f"{self._addr(i)} is the {role} of {self._subnet}", field="address"
            )
        return i

    def _reserved_role(self, i: int) -> str | None:
        if i == self._gw_index:
            return "gateway"
        if i == 0:
            return "network address"
        if i == self._size - 1:
            return "broadcast address"
        return None
