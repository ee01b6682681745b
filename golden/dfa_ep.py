"""DFA error propagation as the hardware computes it: ``d = (B e) * mask`` with B generated on the fly.

B is ``rows x cols`` of +1/-1 (``cols`` = output classes). It is never stored: element ``(i, j)`` is the
least significant bit of the 32-bit Galois LFSR of :class:`golden.dfxp.Lfsr` after step ``i*cols + j + 1``
from the layer's seed (1 -> +1, 0 -> -1), so each row takes ``cols`` consecutive steps. The error ``e`` is a
vector of integer codes (DFXP, with the tensor's fractional length kept beside it); the result is the exact
integer ``sum_j B[i, j] e[j]``, zeroed where the ReLU-derivative mask bit is 0. No rounding: the feedback
shift of :mod:`golden.training` is a change of the result's fractional length, not an operation here.
"""

import functools

import numpy as np

from .dfxp import Lfsr


__all__ = ["feedback_bits", "dfa_ep"]


@functools.lru_cache(maxsize=64)
def _bits(seed, count):
    state = seed
    bits = np.empty(count, dtype=np.uint8)
    for i in range(count):
        state = Lfsr.step(state)
        bits[i] = state & 1
    bits.setflags(write=False)
    return bits


def feedback_bits(seed, rows, cols):
    """The ``rows x cols`` feedback bits (1 for +1, 0 for -1) of an LFSR seed."""
    if not isinstance(seed, (int, np.integer)) or not 0 < int(seed) < (1 << 32):
        raise ValueError(f"LFSR seed must be a non-zero 32-bit integer, not {seed!r}")
    return _bits(int(seed), rows * cols).reshape(rows, cols)


def dfa_ep(e, seed, rows, mask=None):
    """Exact ``(B e) * mask`` for an integer error vector ``e`` (length ``cols``); int64 array of ``rows``."""
    e = np.asarray(e, dtype=np.int64)
    signs = np.where(feedback_bits(seed, rows, len(e)) == 1, 1, -1).astype(np.int64)
    out = signs @ e
    if mask is not None:
        out = np.where(np.asarray(mask, dtype=bool), out, 0)
    return out
