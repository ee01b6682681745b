"""Dynamic fixed point (DFXP), the integer format of the bit-scalable PE (HNPU).

A DFXP tensor is a tensor of two's-complement integer codes of ``bits`` bits (4, 8, 12 or 16) and one
per-tensor fractional length ``frac``: the code ``q`` stands for ``q * 2**-frac``. A code is made of 4-bit
slices, least significant first; the low slices are unsigned and the top slice is signed, so
``q = sum(slice[i] * 16**i)`` with ``slice[top]`` in -8..7 and the others in 0..15.

Rounding to a code is round-to-nearest-even or stochastic. Stochastic rounding draws its random numbers
from :class:`Lfsr`, a documented 32-bit Galois LFSR, so the golden model and the RTL draw the same bits.
Out-of-range values saturate to the most negative / most positive code.

The fractional length follows the overflow-rate rule (Courbariaux et al.; HNPU): the overflow rate of a
tensor at a fractional length is the fraction of its elements that round outside the code range. After
each update of a tensor, :func:`update_frac` lowers ``frac`` by one (one more integer bit) when the rate
exceeds the threshold, and raises it by one when the rate at ``frac + 1`` is still within the threshold.
"""

import enum
import functools

import numpy as np


__all__ = [
    "PRECISIONS", "SLICE_BITS", "Rounding", "Lfsr",
    "code_range", "quantize", "dequantize", "overflow_rate", "update_frac", "initial_frac",
    "to_slices", "slice_values", "from_slices",
]

#: Word widths a DFXP tensor can have.
PRECISIONS = (4, 8, 12, 16)
#: Width of one slice.
SLICE_BITS = 4


class Rounding(enum.Enum):
    NEAREST_EVEN = "nearest"
    STOCHASTIC = "stochastic"


def _check_bits(bits):
    if bits not in PRECISIONS:
        raise ValueError(f"DFXP width must be one of {list(PRECISIONS)}, not {bits!r}")


def code_range(bits):
    """Most negative and most positive code of a ``bits``-bit word."""
    _check_bits(bits)
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


class Lfsr:
    """The random source of stochastic rounding: a 32-bit Galois LFSR.

    Polynomial x^32 + x^22 + x^2 + x + 1 (maximal length), right-shifting Galois form: one step is
    ``lsb = s & 1; s >>= 1; if lsb: s ^= 0x80200003``. Each rounded element consumes 16 steps and uses the
    low 16 bits of the state after them as its random number ``r``; elements are drawn in C order. In
    hardware the 16 steps are one XOR network (the state is linear over GF(2)), so one element per cycle
    per generator.

    Parameters
    ----------
    seed : int
        Initial state, a non-zero 32-bit value.
    """
    TAPS = 0x80200003
    STEPS_PER_DRAW = 16

    def __init__(self, seed=0xACE1_2024):
        if not isinstance(seed, (int, np.integer)) or not 0 < int(seed) < (1 << 32):
            raise ValueError(f"LFSR seed must be a non-zero 32-bit integer, not {seed!r}")
        self.state = int(seed)

    @classmethod
    def step(cls, state):
        lsb = state & 1
        state >>= 1
        return state ^ cls.TAPS if lsb else state

    @staticmethod
    def _tables(cols):
        """Byte tables of a GF(2) matrix given by its 32 columns: ``tables[b][v]`` is the XOR of the columns
        of the set bits of byte ``b`` of a state, so applying the matrix is four look-ups."""
        cols = np.asarray(cols, dtype=np.uint64)
        tables = np.zeros((4, 256), dtype=np.uint64)
        values = np.arange(256, dtype=np.uint64)
        for byte in range(4):
            for bit in range(8):
                tables[byte] ^= np.where((values >> np.uint64(bit)) & np.uint64(1), cols[8 * byte + bit],
                                         np.uint64(0))
        return tables

    @staticmethod
    def _apply_tables(tables, states):
        states = np.asarray(states, dtype=np.uint64)
        out = tables[0][states & np.uint64(0xFF)]
        out ^= tables[1][(states >> np.uint64(8)) & np.uint64(0xFF)]
        out ^= tables[2][(states >> np.uint64(16)) & np.uint64(0xFF)]
        out ^= tables[3][(states >> np.uint64(24)) & np.uint64(0xFF)]
        return out

    @classmethod
    def _apply(cls, cols, states):
        """Apply a GF(2) matrix (its 32 columns) to an array of states."""
        return cls._apply_tables(cls._tables(cols), states)

    @classmethod
    @functools.lru_cache(maxsize=None)
    def _jump_columns(cls, steps):
        """Columns of the matrix that advances the state by ``steps`` steps (by repeated squaring)."""
        one = np.array([cls.step(1 << b) for b in range(32)], dtype=np.uint64)
        result = np.array([1 << b for b in range(32)], dtype=np.uint64)      # identity
        power = one
        while steps:
            if steps & 1:
                result = cls._apply(power, result)
            power = cls._apply(power, power)
            steps >>= 1
        result.setflags(write=False)
        return result

    @classmethod
    @functools.lru_cache(maxsize=None)
    def _jump_tables(cls, steps):
        tables = cls._tables(cls._jump_columns(steps))
        tables.setflags(write=False)
        return tables

    def draw(self, count):
        """Return the next ``count`` 16-bit random numbers (uint32 array) and advance the state."""
        count = int(count)
        if count == 0:
            return np.empty(0, dtype=np.uint32)
        # Leapfrog: lane i holds draw i; the lanes are filled by doubling, then jump `lanes` draws at once
        # (a power of two, so that only a few jump matrices are ever made).
        lanes = min(1 << (count - 1).bit_length(), 4096)
        states = self._apply_tables(self._jump_tables(self.STEPS_PER_DRAW),
                                    np.array([self.state], dtype=np.uint64))
        while len(states) < lanes:
            ahead = self._apply_tables(self._jump_tables(self.STEPS_PER_DRAW * len(states)), states)
            states = np.concatenate([states, ahead])[:lanes]
        out = np.empty(count, dtype=np.uint64)
        jump = self._jump_tables(self.STEPS_PER_DRAW * lanes)
        for start in range(0, count, lanes):
            n = min(lanes, count - start)
            out[start:start + n] = states[:n]
            last = int(states[n - 1])
            if start + lanes < count:
                states = self._apply_tables(jump, states)
        self.state = last
        return (out & np.uint64(0xFFFF)).astype(np.uint32)


def quantize(x, bits, frac, rounding=Rounding.NEAREST_EVEN, lfsr=None):
    """Round real values to ``bits``-bit DFXP codes with fractional length ``frac``.

    Stochastic rounding rounds ``y = x * 2**frac`` up when ``r < floor(frac(y) * 2**16)``, with ``r`` the
    element's 16-bit LFSR draw, so ``y`` rounds up with probability ``frac(y)`` truncated to 16 bits.
    Results saturate to the code range. Returns an ``int32`` array of codes.
    """
    lo, hi = code_range(bits)
    rounding = Rounding(rounding)
    y = np.asarray(x, dtype=np.float64) * np.ldexp(1.0, int(frac))
    if not np.all(np.isfinite(y)):
        raise ValueError("DFXP cannot represent NaN or infinity")
    if rounding is Rounding.NEAREST_EVEN:
        q = np.rint(y)
    else:
        if lfsr is None:
            raise ValueError("stochastic rounding needs an Lfsr")
        fl = np.floor(y)
        f16 = np.floor((y - fl) * 65536.0)
        r = lfsr.draw(y.size).reshape(y.shape)
        q = fl + (r < f16)
    return np.clip(q, lo, hi).astype(np.int32)


def dequantize(codes, frac):
    """Real values (float64) of DFXP codes."""
    return np.asarray(codes, dtype=np.float64) * np.ldexp(1.0, -int(frac))


def overflow_rate(x, bits, frac):
    """Fraction of elements of ``x`` that round (to nearest) outside the ``bits``-bit code range."""
    lo, hi = code_range(bits)
    y = np.rint(np.asarray(x, dtype=np.float64) * np.ldexp(1.0, int(frac)))
    return float(np.mean((y < lo) | (y > hi))) if y.size else 0.0


def update_frac(x, bits, frac, threshold=1e-4):
    """One step of the overflow-rate rule: the fractional length to use for the next update of ``x``."""
    if overflow_rate(x, bits, frac) > threshold:
        return frac - 1
    if overflow_rate(x, bits, frac + 1) <= threshold:
        return frac + 1
    return frac


def initial_frac(x, bits, threshold=1e-4, lo=-64, hi=64):
    """The largest fractional length in ``[lo, hi]`` whose overflow rate is within ``threshold``."""
    for frac in range(hi, lo - 1, -1):
        if overflow_rate(x, bits, frac) <= threshold:
            return frac
    return lo


def to_slices(codes, bits):
    """4-bit slices of ``bits``-bit codes, least significant first: uint8 array of shape ``(..., bits//4)``."""
    _check_bits(bits)
    u = np.asarray(codes, dtype=np.int64) & ((1 << bits) - 1)
    shifts = np.arange(bits // SLICE_BITS, dtype=np.int64) * SLICE_BITS
    return ((u[..., None] >> shifts) & 0xF).astype(np.uint8)


def slice_values(codes, bits):
    """Slice values as the PE multiplies them: low slices unsigned (0..15), the top slice signed (-8..7)."""
    s = to_slices(codes, bits).astype(np.int64)
    s[..., -1] = np.where(s[..., -1] >= 8, s[..., -1] - 16, s[..., -1])
    return s


def from_slices(slices):
    """Codes from 4-bit slices (inverse of :func:`to_slices`)."""
    s = np.asarray(slices, dtype=np.int64)
    bits = s.shape[-1] * SLICE_BITS
    u = np.sum(s << (np.arange(s.shape[-1], dtype=np.int64) * SLICE_BITS), axis=-1)
    return np.where(u >= (1 << (bits - 1)), u - (1 << bits), u)
