"""Next-fit leasing over the integer offsets of one subnet, for either IP family.

Offset ``i`` stands for address ``network_address + i``. The offsets that are never
handed out (network, broadcast, gateway...) are set in the slot store at
construction and never cleared, so the allocator needs no special case for them.

Cursor semantics (what the caller persists to resume next-fit after a restart):

* ``allocate()`` searches from just after the cursor, wrapping around, and moves
  the cursor to the address it returns.
* ``reserve()`` (static addresses) and ``release()`` never move the cursor: a user's
  static choice says nothing about where dynamic allocation should continue, and
  a released address must not be handed out again before the pool wraps.
* ``restore()`` takes the persisted cursor; without one it puts the cursor on the
  highest restored address, so new leases go above every restored one first.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Generic, Protocol, TypeVar

from sheep_runtime.errors import AlreadyExists, InvalidArgument, ResourceExhausted

__all__ = ["BitStore", "OffsetPool"]

A = TypeVar("A", IPv4Address, IPv6Address)
N = TypeVar("N", IPv4Network, IPv6Network)


class BitStore(Protocol):
    """The bit store of a pool: ``Bitmap`` (dense, IPv4) or ``SparseBitmap`` (IPv6)."""

    @property
    def count(self) -> int: ...
    def test(self, i: int) -> bool: ...
    def set(self, i: int) -> bool: ...
    def clear(self, i: int) -> bool: ...
    def claim(self, start: int) -> int | None: ...
    def iter_set(self) -> Iterator[int]: ...


class OffsetPool(ABC, Generic[A, N]):
    """Leases of the addresses of one subnet but its reserved ones (see the module doc)."""

    __slots__ = ("_base", "_bits", "_cursor", "_family", "_gateway", "_roles", "_size",
                 "_subnet")
    _subnet: N
    _family: type[A]
    _gateway: A

    def __init__(self, subnet: N, *, family: type[A], gateway: A,
                 bits: BitStore, roles: Mapping[int, str]) -> None:
        """A pool over ``bits`` (empty, one bit per address of ``subnet``).

        ``family`` is the address class; ``roles`` names the offsets never handed
        out ("gateway", ...).
        """
        self._subnet = subnet
        self._family = family
        self._gateway = gateway
        self._base = int(subnet.network_address)
        self._size = subnet.num_addresses
        self._bits = bits
        self._roles = dict(roles)
        for i in self._roles:
            bits.set(i)
        self._cursor = -1  # index of the last allocated address, -1 for none

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self._subnet}, gateway={self._gateway}, "
            f"allocated={self.allocated}/{self.capacity})"
        )

    @property
    def subnet(self) -> N:
        """The subnet this pool hands addresses out of."""
        return self._subnet

    @property
    def gateway(self) -> A:
        """The gateway address, never handed out."""
        return self._gateway

    @property
    def capacity(self) -> int:
        """Usable addresses: all but the reserved ones."""
        return self._size - len(self._roles)

    @property
    def allocated(self) -> int:
        """How many addresses are currently leased."""
        return self._bits.count - len(self._roles)

    @property
    def available(self) -> int:
        """How many addresses are still free."""
        return self._size - self._bits.count

    @property
    def cursor(self) -> A | None:
        """The address last returned by ``allocate()``, or None; persist it."""
        if self._cursor < 0:
            return None
        return self._family(self._base + self._cursor)

    def allocate(self) -> A:
        """Lease the next free address after the cursor (next-fit, wrapping).

        Raises ResourceExhausted, leaving the pool unchanged, when it is full.
        """
        i = self._bits.claim(self._cursor + 1)
        if i is None:
            raise self._exhausted()
        self._cursor = i
        return self._family(self._base + i)

    def allocate_int(self) -> int:
        """Like ``allocate()`` but return the address as an integer."""
        i = self._bits.claim(self._cursor + 1)
        if i is None:
            raise self._exhausted()
        self._cursor = i
        return self._base + i

    def _exhausted(self) -> ResourceExhausted:
        return ResourceExhausted(
            f"all {self.capacity} usable addresses of {self._subnet} are allocated"
        )

    def reserve(self, address: A | str) -> None:
        """Lease a specific (static) address; the cursor does not move.

        Raises InvalidArgument if it is outside the subnet or is one of its
        reserved addresses, and AlreadyExists if it is already leased.
        """
        i = self._lease_index(address)
        if not self._bits.set(i):
            raise AlreadyExists(f"{self._addr(i)} is already allocated in {self._subnet}",
                                reason="ADDRESS_TAKEN", resource_type="address",
                                resource_name=str(self._addr(i)))

    def release(self, address: A | str) -> bool:
        """Free a leased address; True if it was leased, False if already free.

        Raises InvalidArgument for an address that can never be leased.
        """
        return self._bits.clear(self._lease_index(address))

    def is_allocated(self, address: A | str) -> bool:
        """Whether ``address`` is currently leased (False outside the subnet)."""
        i = int(self._parse(address)) - self._base
        if not 0 <= i < self._size or i in self._roles:
            return False
        return self._bits.test(i)

    def __contains__(self, item: object) -> bool:
        """``address in pool``: whether it is currently leased."""
        if not isinstance(item, str | self._family):
            return False
        try:
            return self.is_allocated(item)
        except InvalidArgument:
            return False

    def restore(self, addresses: Iterable[A | str], *, cursor: A | str | None = None) -> None:
        """Mark the leases read back from the store as allocated, all or nothing.

        The cursor becomes ``cursor`` if given (any address of the subnet),
        otherwise the highest restored address (unchanged if there is none).
        Raises InvalidArgument for an address that cannot be leased and
        AlreadyExists for a duplicate or an address already leased.
        """
        indices: set[int] = set()
        for address in addresses:
            i = self._lease_index(address)
            if i in indices or self._bits.test(i):
                raise AlreadyExists(f"{self._addr(i)} is restored twice in {self._subnet}")
            indices.add(i)
        new_cursor = self._cursor
        if cursor is not None:
            new_cursor = self._index(cursor, field="cursor")
        elif indices:
            new_cursor = max(indices)
        for i in indices:
            self._bits.set(i)
        self._cursor = new_cursor

    def leases(self) -> Iterator[A]:
        """Yield the leased addresses in increasing order."""
        for i in self._bits.iter_set():
            if i not in self._roles:
                yield self._addr(i)

    @abstractmethod
    def _parse(self, text: A | str, *, field: str = "address") -> A:
        """Parse an address of the pool's family, InvalidArgument (with ``field``) if not."""

    def _addr(self, i: int) -> A:
        return self._family(self._base + i)

    def _index(self, address: A | str, *, field: str = "address") -> int:
        """Offset of ``address`` in the subnet; InvalidArgument if outside."""
        addr = self._parse(address, field=field)
        i = int(addr) - self._base
        if not 0 <= i < self._size:
            raise InvalidArgument(f"{addr} is outside {self._subnet}", field=field)
        return i

    def _lease_index(self, address: A | str) -> int:
        """Offset of an address that may be leased; InvalidArgument otherwise."""
        i = self._index(address)
        role = self._roles.get(i)
        if role is not None:
            raise InvalidArgument(
                f"{self._addr(i)} is the {role} of {self._subnet}", field="address"
            )
        return i
