"""A sparse bitmap for huge ranges (up to an IPv6 /64): memory follows the set bits.

The bits live in 64-bit words held in a dict by ``i >> 6``; a word that is all
clear is not stored. Above the words sit summary levels, a 64-ary tree whose
level-``k`` node ``i >> 6(k+1)`` has bit ``(i >> 6k) & 63`` set when the child
below it is completely set; a node that is all clear is not stored either. So a
lease costs at most one word, and a summary node exists only over a full child
(64**k set bits), which keeps memory proportional to the number of set bits.

``find_clear`` tests the word of ``start``, then climbs the summary until a node
has a non-full child to the right and descends to the lowest non-full child at
each level: at most two passes over the depth (11 levels for 2**64 bits), so
every operation is O(log_64 n) dict lookups whatever the bits look like.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["SparseBitmap"]

_ALL = (1 << 64) - 1


def _lowest_clear(word: int) -> int:
    """Index of the lowest clear bit of a word that is not ``_ALL``."""
    return (~word & (word + 1)).bit_length() - 1


class SparseBitmap:
    """A set of integers ``0 <= i < n`` for ``n`` up to 2**64 and beyond, as bits."""

    __slots__ = ("_count", "_depth", "_full", "_n", "_words")

    def __init__(self, n: int) -> None:
        """Create an all-clear bitmap of ``n`` bits (``n >= 1``)."""
        if n < 1:
            raise ValueError(f"bitmap size must be positive, got {n}")
        self._n = n
        self._count = 0
        self._words: dict[int, int] = {}
        # Summary levels above the words, until one node covers all n bits.
        depth = 0
        while 64 ** (depth + 1) < n:
            depth += 1
        self._depth = depth
        self._full: list[dict[int, int]] = [{} for _ in range(depth)]

    @property
    def size(self) -> int:
        """The number of bits ``n`` (not ``len()``, which stops at 2**63 - 1)."""
        return self._n

    @property
    def count(self) -> int:
        """How many bits are set."""
        return self._count

    @property
    def nodes(self) -> int:
        """How many words and summary nodes are stored: memory is proportional to it."""
        return len(self._words) + sum(len(level) for level in self._full)

    def _check(self, i: int) -> None:
        if not 0 <= i < self._n:
            raise IndexError(f"bit {i} out of range 0..{self._n - 1}")

    def test(self, i: int) -> bool:
        """Whether bit ``i`` is set."""
        self._check(i)
        return bool(self._words.get(i >> 6, 0) >> (i & 63) & 1)

    def set(self, i: int) -> bool:
        """Set bit ``i``; return True if it was clear before."""
        self._check(i)
        return self._set(i)

    def _set(self, i: int) -> bool:
        key = i >> 6
        word = self._words.get(key, 0)
        bit = 1 << (i & 63)
        if word & bit:
            return False
        word |= bit
        self._words[key] = word
        self._count += 1
        if word == _ALL:
            for level in self._full:  # mark the child full, upwards while nodes fill up
                pos = key & 63
                key >>= 6
                mask = level.get(key, 0) | (1 << pos)
                level[key] = mask
                if mask != _ALL:
                    break
        return True

    def clear(self, i: int) -> bool:
        """Clear bit ``i``; return True if it was set before."""
        self._check(i)
        key = i >> 6
        word = self._words.get(key, 0)
        bit = 1 << (i & 63)
        if not word & bit:
            return False
        if word == bit:
            del self._words[key]
        else:
            self._words[key] = word & ~bit
        self._count -= 1
        if word == _ALL:
            for level in self._full:  # the child is no longer full, upwards while it was
                pos = key & 63
                key >>= 6
                mask = level[key]
                if mask == 1 << pos:
                    del level[key]
                else:
                    level[key] = mask & ~(1 << pos)
                if mask != _ALL:
                    break
        return True

    def find_clear(self, start: int) -> int | None:
        """First clear bit at index >= ``start``, wrapping to 0; None if full.

        ``start`` is taken modulo ``n``, so ``start == n`` means 0.
        """
        if self._count == self._n:
            return None
        found = self._find_from(start % self._n)
        if found is None or found >= self._n:  # nothing in [start, n): wrap around
            found = self._find_from(0)
        return found

    def claim(self, start: int) -> int | None:
        """Set the first clear bit found by ``find_clear(start)``; return it or None."""
        found = self.find_clear(start)
        if found is not None:
            self._set(found)
        return found

    def _find_from(self, start: int) -> int | None:
        """First clear bit at index >= ``start`` below 64**(depth+1) (maybe >= n), or None."""
        key = start >> 6
        word = self._words.get(key, 0) | ((1 << (start & 63)) - 1)
        if word != _ALL:
            return (key << 6) | _lowest_clear(word)
        level = 0
        while True:  # climb to the first node with a non-full child right of ours
            if level == self._depth:
                return None
            pos = key & 63
            key >>= 6
            mask = self._full[level].get(key, 0) | ((2 << pos) - 1)
            level += 1
            if mask != _ALL:
                break
        key = (key << 6) | _lowest_clear(mask)
        while level > 1:  # descend through the lowest non-full children
            level -= 1
            key = (key << 6) | _lowest_clear(self._full[level - 1].get(key, 0))
        return (key << 6) | _lowest_clear(self._words.get(key, 0))

    def iter_set(self) -> Iterator[int]:
        """Yield the indices of the set bits in increasing order."""
        words = self._words
        for key in sorted(words):
            x = words[key]
            while x:
                low = x & -x
                yield (key << 6) | (low.bit_length() - 1)
                x ^= low
