"""A flat bitmap with a one-level summary, for address pools of up to 2**24 slots.

Bit ``i`` lives in byte ``i >> 3`` at bit ``i & 7``. The bits are grouped in blocks
of 4096 bits (512 bytes); the summary holds one byte per block, 1 when the block is
full, kept in O(1) per set/clear from a per-block count of bytes not yet 0xff.
``find_clear`` first looks at the bit itself, then the rest of its block
(``bytes.lstrip`` skips full bytes at C speed), then asks ``bytearray.find`` for
the next non-full block, so no call scans more than two blocks and the summary.
The padding bits past ``n`` in the last byte are kept set so they are never found.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["Bitmap"]

_BLOCK_SHIFT = 12  # 4096 bits per block
_BLOCK_BITS = 1 << _BLOCK_SHIFT
_BLOCK_BYTES = _BLOCK_BITS >> 3
_FF = b"\xff"

# _LOW_ZERO[v] is the index of the lowest clear bit of byte v (8 for 0xff).
_LOW_ZERO = bytes(((~v & (v + 1)).bit_length() - 1) for v in range(256))


class Bitmap:
    """A fixed-size set of small integers ``0 <= i < n``, stored as bits."""

    __slots__ = ("_count", "_data", "_full", "_n", "_open")

    def __init__(self, n: int) -> None:
        """Create an all-clear bitmap of ``n`` bits (``n >= 1``)."""
        if n < 1:
            raise ValueError(f"bitmap size must be positive, got {n}")
        self._n = n
        nbytes = (n + 7) >> 3
        self._data = bytearray(nbytes)
        tail = n & 7
        if tail:  # padding bits past n are permanently set
            self._data[-1] = 0xFF & ~((1 << tail) - 1)
        nblocks = (n + _BLOCK_BITS - 1) >> _BLOCK_SHIFT
        self._full = bytearray(nblocks)  # summary: 1 = block has no clear bit
        # Bytes that are not 0xff, per block; the block is full when this hits 0.
        self._open = [_BLOCK_BYTES] * nblocks
        self._open[-1] = nbytes - (nblocks - 1) * _BLOCK_BYTES
        self._count = 0

    def __len__(self) -> int:
        """The number of bits ``n``."""
        return self._n

    @property
    def count(self) -> int:
        """How many bits are set."""
        return self._count

    def _check(self, i: int) -> None:
        if not 0 <= i < self._n:
            raise IndexError(f"bit {i} out of range 0..{self._n - 1}")

    def test(self, i: int) -> bool:
        """Whether bit ``i`` is set."""
        self._check(i)
        return bool(self._data[i >> 3] >> (i & 7) & 1)

    def set(self, i: int) -> bool:
        """Set bit ``i``; return True if it was clear before."""
        self._check(i)
        return self._set(i)

    def _set(self, i: int) -> bool:
        data = self._data
        b = i >> 3
        m = 1 << (i & 7)
        v = data[b]
        if v & m:
            return False
        v |= m
        data[b] = v
        self._count += 1
        if v == 0xFF:
            self._byte_filled(i >> _BLOCK_SHIFT)
        return True

    def clear(self, i: int) -> bool:
        """Clear bit ``i``; return True if it was set before."""
        self._check(i)
        data = self._data
        b = i >> 3
        m = 1 << (i & 7)
        v = data[b]
        if not v & m:
            return False
        data[b] = v & ~m
        self._count -= 1
        if v == 0xFF:
            blk = i >> _BLOCK_SHIFT
            self._open[blk] += 1
            self._full[blk] = 0
        return True

    def find_clear(self, start: int) -> int | None:
        """First clear bit at index >= ``start``, wrapping to 0; None if full.

        ``start`` is taken modulo ``n``, so ``start == n`` means 0.
        """
        n = self._n
        if self._count == n:
            return None
        start %= n
        if not self._data[start >> 3] >> (start & 7) & 1:
            return start
        return self._search(start)

    def claim(self, start: int) -> int | None:
        """Set the first clear bit found by ``find_clear(start)``; return it or None."""
        # The allocator's hot path: the common case (bit at start is clear) inline.
        if not 0 <= start < self._n:
            start %= self._n
        data = self._data
        b = start >> 3
        v = data[b]
        m = 1 << (start & 7)
        if v & m:
            found = None if self._count == self._n else self._search(start)
            if found is None:
                return None
            start = found
            b = start >> 3
            v = data[b]
            m = 1 << (start & 7)
        v |= m
        data[b] = v
        self._count += 1
        if v == 0xFF:
            self._byte_filled(start >> _BLOCK_SHIFT)
        return start

    def _byte_filled(self, blk: int) -> None:
        """A byte of block ``blk`` became 0xff; mark the block full if it was the last."""
        left = self._open[blk] - 1
        self._open[blk] = left
        if not left:
            self._full[blk] = 1

    def _search(self, start: int) -> int | None:
        """``find_clear`` past the fast path: from ``start``, then from 0."""
        found = self._find_from(start)
        if found is None:  # nothing in [start, n): wrap around
            found = self._find_from(0)
        return found

    def _find_from(self, start: int) -> int | None:
        """First clear bit in ``[start, n)``, or None."""
        blk = start >> _BLOCK_SHIFT
        if not self._full[blk]:
            found = self._scan_block(blk, start)
            if found is not None:
                return found
        blk = self._full.find(0, blk + 1)
        if blk < 0:
            return None
        return self._scan_block(blk, blk << _BLOCK_SHIFT)

    def _scan_block(self, blk: int, start: int) -> int | None:
        """First clear bit in block ``blk`` at index >= ``start``, or None."""
        data = self._data
        lo = start >> 3
        # The first byte, with the bits below start treated as set.
        v = data[lo] | ((1 << (start & 7)) - 1)
        if v != 0xFF:
            return (lo << 3) + _LOW_ZERO[v]
        lo += 1
        hi = min((blk + 1) * _BLOCK_BYTES, len(data))
        if lo >= hi:
            return None
        chunk = data[lo:hi]
        rest = chunk.lstrip(_FF)
        if not rest:
            return None
        b = lo + len(chunk) - len(rest)
        return (b << 3) + _LOW_ZERO[rest[0]]

    def iter_set(self) -> Iterator[int]:
        """Yield the indices of the set bits in increasing order."""
        data = self._data
        n = self._n
        for blk in range(len(self._full)):
            base = blk * _BLOCK_BYTES
            x = int.from_bytes(data[base : base + _BLOCK_BYTES], "little")
            bit0 = base << 3
            while x:
                low = x & -x
                i = bit0 + low.bit_length() - 1
                if i >= n:
                    return
                yield i
                x ^= low
