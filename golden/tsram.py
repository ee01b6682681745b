"""Transposable SRAM: a store of T tiles of N x N words, written and read a whole row or column at a time.

Behaviour
---------
The store holds ``T`` tiles of ``N x N`` words of ``width`` bits, all zero at reset. Per cycle it takes at
most one write (a row or a column of one tile) and at most one read (a row or a column of one tile).

Read-during-write: a read sees the store as it was *before* the write of the same cycle (read-first, as a
synchronous SRAM read port that is not transparent). A read's words are those of the cycle that takes
the read request, whatever is written while its response waits for the consumer.

Storage (the hardware's, documented here so that tests can check the layout): word ``(r, c)`` of tile ``t``
lives in bank ``(r + c) mod N`` at address ``t * N + r``. A row then touches every bank at one address,
and a column every bank at a different address, so either is one access to each of the N banks: the
skewed (diagonal) pattern. Row words are rotated by ``r`` between element order and bank order, column
words by ``c``.
"""

import dataclasses
import enum

import numpy as np


__all__ = ["Axis", "Access", "TransposableStore", "bank_of", "address_of", "check_params"]


class Axis(enum.IntEnum):
    ROW = 0
    COL = 1


@dataclasses.dataclass(frozen=True)
class Access:
    """A row or column access: ``axis``, ``tile``, ``index`` (the row or column number)."""
    axis: Axis
    tile: int
    index: int


def check_params(n, width, tiles):
    for name, value in (("Tile size N", n), ("Word width", width), ("Tile count", tiles)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError(f"{name} must be an integer, not {value!r}")
    if n < 2 or n & (n - 1):
        raise ValueError(f"Tile size N must be a power of two >= 2, not {n!r}")
    if width < 1:
        raise ValueError(f"Word width must be a positive integer, not {width!r}")
    if tiles < 1:
        raise ValueError(f"Tile count must be a positive integer, not {tiles!r}")


def bank_of(r, c, n):
    return (r + c) % n


def address_of(tile, r, c, n):
    return tile * n + r


class TransposableStore:
    """Cycle-level golden model of the wrapper."""

    def __init__(self, n, width, tiles):
        check_params(n, width, tiles)
        self.n, self.width, self.tiles = n, width, tiles
        self.words = np.zeros((tiles, n, n), dtype=np.uint64)

    def _check(self, access):
        if not 0 <= access.tile < self.tiles or not 0 <= access.index < self.n:
            raise ValueError(f"access {access} outside {self.tiles} tiles of {self.n}x{self.n}")

    def read(self, access):
        """The N words of a row (left to right) or column (top to bottom)."""
        self._check(access)
        tile = self.words[access.tile]
        line = tile[access.index, :] if access.axis == Axis.ROW else tile[:, access.index]
        return [int(v) for v in line]

    def write(self, access, words):
        self._check(access)
        if len(words) != self.n:
            raise ValueError(f"a row or column has {self.n} words, not {len(words)}")
        mask = (1 << self.width) - 1
        data = np.array([int(w) & mask for w in words], dtype=np.uint64)
        if access.axis == Axis.ROW:
            self.words[access.tile, access.index, :] = data
        else:
            self.words[access.tile, :, access.index] = data

    def cycle(self, write=None, read=None):
        """One cycle: ``write`` is ``(access, words)`` or None, ``read`` an access or None. Returns the read
        words (read-first: before this cycle's write) or None."""
        out = self.read(read) if read is not None else None
        if write is not None:
            self.write(*write)
        return out
