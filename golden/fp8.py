"""Shared-exponent FP8 (SE-FP8): element formats, E8M0 scales, MX block quantization and dot products.

Formats (data, :class:`FP8Format`)
----------------------------------
* ``E4M3`` (OCP "fn"): bias 7, no infinities, ``S.1111.111`` is NaN, max normal 448, min subnormal 2**-9.
* ``E5M2`` (IEEE-like): bias 15, ``S.11111.00`` is infinity, ``S.11111.{01,10,11}`` NaN, max normal 57344,
  min subnormal 2**-16.
* ``E8M0`` scales: the code ``c`` stands for ``2**(c - 127)``; ``0xFF`` is NaN.

Encoding from real values rounds to nearest, ties to even, and saturates: finite values (and infinities)
beyond the max normal become the signed max normal; NaN becomes the format's NaN (``0x7F`` in E4M3,
``0x7E`` in E5M2, sign kept).

Block quantization (OCP Microscaling v1.0)
------------------------------------------
A block of K values shares one E8M0 scale ``2**X``. With ``amax = max |x|`` over the block:

* ``ScaleRule.FLOOR`` (OCP): ``X = floor(log2(amax)) - emax(element)``; elements ``x / 2**X`` are rounded
  and saturated, so the block maximum may clamp to the max normal.
* ``ScaleRule.CEIL`` (the round-up rule of FP8 training recipes): the smallest ``X`` with
  ``amax / 2**X <= max normal``, so nothing clamps.

``X`` is clamped below at -127; a block whose ``X`` would exceed 127, or that holds a NaN or an infinity,
gets the NaN scale (0xFF) and NaN elements. An all-zero block gets ``X = -127``. Blocks run along one axis
(:func:`quantize_blocks`; a block of the whole axis gives the per-tensor shared exponent bias of the ISSCC
2021 chip) or are square 2-D tiles (:func:`quantize_tiles`), which survive transposition: ``W^T`` reads the
same codes and scales, transposed.

Dot products
------------
A block pair's dot product is exact (every product and the sum, times both scales), then rounded once to
IEEE binary32, nearest-even, with subnormals and overflow to infinity (:func:`block_dot`). Across blocks,
results are added in binary32 in order, the first block starting the sum (:func:`dot`). Specials: a NaN
element or scale, ``inf * 0`` or ``inf - inf`` give NaN; an infinite product otherwise gives that infinity.
Every NaN result is the canonical binary32 quiet NaN ``0x7FC00000``. An exact zero sum is ``-0`` only when
every product is ``-0`` (IEEE's rule for sums), else ``+0``.
"""

import dataclasses
import enum
import math

import numpy as np


__all__ = [
    "FP8Format", "E4M3", "E5M2", "FORMATS", "ScaleRule", "SCALE_NAN", "F32_NAN",
    "decode", "encode", "decode_scale", "encode_scale", "shared_exponent",
    "quantize_blocks", "dequantize_blocks", "quantize_tiles", "dequantize_tiles",
    "exact_value", "round_to_f32", "f32_add", "block_dot", "dot", "lane_products", "bits_to_f32",
]

SCALE_NAN = 0xFF
SCALE_BIAS = 127
F32_NAN = 0x7FC00000


@dataclasses.dataclass(frozen=True)
class FP8Format:
    """An 8-bit floating-point element format."""
    name: str
    ebits: int
    mbits: int
    bias: int
    emax: int           # exponent of the largest binade
    max_normal: float
    has_inf: bool
    nan_code: int       # the NaN that encoding produces (positive sign)

    @property
    def emin(self):
        """Exponent of the smallest normal binade."""
        return 1 - self.bias


E4M3 = FP8Format("e4m3", ebits=4, mbits=3, bias=7, emax=8, max_normal=448.0, has_inf=False, nan_code=0x7F)
E5M2 = FP8Format("e5m2", ebits=5, mbits=2, bias=15, emax=15, max_normal=57344.0, has_inf=True, nan_code=0x7E)
FORMATS = {"e4m3": E4M3, "e5m2": E5M2}


def _fmt(fmt):
    if isinstance(fmt, FP8Format):
        return fmt
    if fmt in FORMATS:
        return FORMATS[fmt]
    raise ValueError(f"Element format must be one of {sorted(FORMATS)}, not {fmt!r}")


class ScaleRule(enum.Enum):
    FLOOR = "floor"     #: OCP MX v1.0: floor(log2(amax)) - emax
    CEIL = "ceil"       #: round up: no element clamps


# -- elements -------------------------------------------------------------------------------------------

def _fields(codes, fmt):
    c = np.asarray(codes, dtype=np.int64)
    sign = (c >> 7) & 1
    exp = (c >> fmt.mbits) & ((1 << fmt.ebits) - 1)
    man = c & ((1 << fmt.mbits) - 1)
    return sign, exp, man


def _is_nan(codes, fmt):
    sign, exp, man = _fields(codes, fmt)
    top = exp == (1 << fmt.ebits) - 1
    if fmt.has_inf:
        return top & (man != 0)
    return top & (man == (1 << fmt.mbits) - 1)


def _is_inf(codes, fmt):
    if not fmt.has_inf:
        return np.zeros(np.shape(codes), dtype=bool)
    sign, exp, man = _fields(codes, fmt)
    return (exp == (1 << fmt.ebits) - 1) & (man == 0)


def exact_value(codes, fmt):
    """Exact integer form of finite codes: ``(sign, M, q)`` arrays with value ``(-1)**sign * M * 2**q``."""
    fmt = _fmt(fmt)
    sign, exp, man = _fields(codes, fmt)
    normal = exp > 0
    m = np.where(normal, man + (1 << fmt.mbits), man)
    q = np.where(normal, exp, 1) - fmt.bias - fmt.mbits
    return sign, m, q


def decode(codes, fmt):
    """Real values (float64) of FP8 codes: NaN, infinities and signed zeros included."""
    fmt = _fmt(fmt)
    sign, m, q = exact_value(codes, fmt)
    value = np.ldexp(m.astype(np.float64), q) * np.where(sign == 1, -1.0, 1.0)
    value = np.where(_is_inf(codes, fmt), np.where(sign == 1, -np.inf, np.inf), value)
    return np.where(_is_nan(codes, fmt), np.nan, value)


def encode(x, fmt):
    """FP8 codes (uint8) of real values: round to nearest even, saturate to the max normal."""
    fmt = _fmt(fmt)
    x = np.asarray(x, dtype=np.float64)
    sign = np.signbit(x).astype(np.int64)
    a = np.abs(x)
    nan = np.isnan(x)
    a = np.where(nan, 0.0, np.minimum(a, fmt.max_normal))
    # Binade of each value, no lower than the smallest normal one (subnormals share its quantum).
    _, e = np.frexp(a)
    e = np.maximum(e - 1, fmt.emin)
    quantum = np.ldexp(1.0, e - fmt.mbits)
    q = np.rint(a / quantum) * quantum           # exact: a / quantum has few significant bits
    q = np.minimum(q, fmt.max_normal)            # rounding up past the max normal saturates too
    _, eq = np.frexp(q)
    eq = eq - 1
    normal = q >= np.ldexp(1.0, fmt.emin)
    exp_field = np.where(normal, eq + fmt.bias, 0)
    man = np.where(normal, q / np.ldexp(1.0, eq - fmt.mbits) - (1 << fmt.mbits),
                   q / np.ldexp(1.0, fmt.emin - fmt.mbits)).astype(np.int64)
    codes = (sign << 7) | (exp_field.astype(np.int64) << fmt.mbits) | man
    codes = np.where(nan, (sign << 7) | fmt.nan_code, codes)
    return codes.astype(np.uint8)


# -- scales ---------------------------------------------------------------------------------------------

def decode_scale(codes):
    """Values of E8M0 scale codes: ``2**(c - 127)``, NaN for 0xFF."""
    c = np.asarray(codes, dtype=np.int64)
    return np.where(c == SCALE_NAN, np.nan, np.ldexp(1.0, c - SCALE_BIAS))


def encode_scale(x_exp):
    """E8M0 code of a shared exponent ``X`` in -127..127 (None or NaN: the NaN scale)."""
    if x_exp is None or (isinstance(x_exp, float) and math.isnan(x_exp)):
        return SCALE_NAN
    if not -127 <= x_exp <= 127:
        raise ValueError(f"Shared exponent must be in -127..127, not {x_exp!r}")
    return int(x_exp) + SCALE_BIAS


def shared_exponent(amax, fmt, rule=ScaleRule.FLOOR):
    """Shared exponent ``X`` of a block with maximum magnitude ``amax`` (None for the NaN scale)."""
    x = int(_shared_exponents(np.array([amax], dtype=np.float64), _fmt(fmt), ScaleRule(rule))[0])
    return None if x == SCALE_NAN - SCALE_BIAS else x


def _shared_exponents(amax, fmt, rule):
    """Shared exponents of an array of block maxima (int64), ``SCALE_NAN - SCALE_BIAS`` (128) marking the
    NaN scale: see the module docstring for the two rules."""
    amax = np.asarray(amax, dtype=np.float64)
    finite = np.isfinite(amax)
    safe = np.where(finite & (amax > 0), amax, 1.0)
    _, e = np.frexp(safe)
    x = (e.astype(np.int64) - 1) - fmt.emax
    if rule is ScaleRule.CEIL:
        x = x + (safe > np.ldexp(fmt.max_normal, x))
    x = np.where(amax == 0, -127, np.maximum(x, -127))
    return np.where(~finite | (x > 127), SCALE_NAN - SCALE_BIAS, x)


def _quantize_rows(blocks, fmt, rule):
    """Quantize each row of a 2-D array as one block: ``(codes, scale codes)``."""
    blocks = np.asarray(blocks, dtype=np.float64)
    bad = np.any(~np.isfinite(blocks), axis=1)
    amax = np.where(bad, np.nan, np.max(np.abs(np.where(np.isfinite(blocks), blocks, 0.0)), axis=1)
                    if blocks.shape[1] else 0.0)
    x = _shared_exponents(amax, fmt, rule)
    nan_scale = x == SCALE_NAN - SCALE_BIAS
    codes = encode(np.ldexp(blocks, -np.where(nan_scale, 0, x)[:, None]), fmt)
    codes[nan_scale] = fmt.nan_code
    return codes, (x + SCALE_BIAS).astype(np.uint8)


def _check_block(length, block, what):
    if block is None:
        return length
    if not isinstance(block, (int, np.integer)) or isinstance(block, bool) or block < 2 or block & (block - 1):
        raise ValueError(f"Block size must be a power of two >= 2, not {block!r}")
    if length % block:
        raise ValueError(f"{what} of {length} is not a whole number of blocks of {block}")
    return int(block)


def quantize_blocks(x, fmt, block=32, axis=-1, rule=ScaleRule.FLOOR):
    """Quantize along ``axis`` in blocks of ``block`` elements (None: the whole axis, one scale per tensor
    row). Returns ``(codes, scales)``: uint8 codes shaped like ``x`` and uint8 E8M0 scales shaped like ``x``
    with ``axis`` divided by the block size."""
    fmt, rule = _fmt(fmt), ScaleRule(rule)
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    k = _check_block(x.shape[-1], block, "Axis length")
    codes, scales = _quantize_rows(x.reshape(-1, k), fmt, rule)
    codes = np.moveaxis(codes.reshape(x.shape), -1, axis)
    scales = np.moveaxis(scales.reshape(x.shape[:-1] + (x.shape[-1] // k,)), -1, axis)
    return codes, scales


def dequantize_blocks(codes, scales, fmt, block=32, axis=-1):
    """Real values of block-quantized codes (float64)."""
    codes = np.moveaxis(np.asarray(codes), axis, -1)
    k = _check_block(codes.shape[-1], block, "Axis length")
    s = np.repeat(decode_scale(np.moveaxis(np.asarray(scales), axis, -1)), k, axis=-1)
    return np.moveaxis(decode(codes, fmt) * s, -1, axis)


def quantize_tiles(x, fmt, tile=8, rule=ScaleRule.FLOOR):
    """Quantize a matrix in square ``tile x tile`` blocks (one scale per tile). Returns ``(codes, scales)``
    with scales of shape ``(rows / tile, cols / tile)``. ``quantize_tiles(x.T)`` is the transpose of
    ``quantize_tiles(x)``, codes and scales alike."""
    fmt, rule = _fmt(fmt), ScaleRule(rule)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"Tiled quantization takes a matrix, not an array of shape {x.shape}")
    _check_block(x.shape[0], tile, "Row count")
    _check_block(x.shape[1], tile, "Column count")
    rows, cols = x.shape[0] // tile, x.shape[1] // tile
    tiles = x.reshape(rows, tile, cols, tile).transpose(0, 2, 1, 3).reshape(rows * cols, tile * tile)
    codes, scales = _quantize_rows(tiles, fmt, rule)
    codes = codes.reshape(rows, cols, tile, tile).transpose(0, 2, 1, 3).reshape(x.shape)
    return codes, scales.reshape(rows, cols)


def dequantize_tiles(codes, scales, fmt, tile=8):
    s = np.repeat(np.repeat(decode_scale(scales), tile, axis=0), tile, axis=1)
    return decode(codes, fmt) * s


# -- binary32 -------------------------------------------------------------------------------------------

def bits_to_f32(bits):
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def round_to_f32(n, e):
    """Bits of ``n * 2**e`` (``n`` a Python int) rounded to binary32, nearest even; ``n == 0`` gives +0."""
    sign = 1 if n < 0 else 0
    m = abs(n)
    if m == 0:
        return 0
    top = m.bit_length() - 1 + e                 # exponent of the leading bit
    qexp = max(top, -126) - 23                   # exponent of the result's last bit
    shift = qexp - e
    if shift > 0:
        q, r = m >> shift, m & ((1 << shift) - 1)
        half = 1 << (shift - 1)
        if r > half or (r == half and q & 1):
            q += 1
    else:
        q = m << -shift
    if q >> 24:                                  # rounded up to the next binade
        q >>= 1
        qexp += 1
    if q >> 23:
        biased = qexp + 23 + 127
        if biased >= 255:
            return (sign << 31) | 0x7F800000
        return (sign << 31) | (biased << 23) | (q & 0x7FFFFF)
    return (sign << 31) | q                      # subnormal


def f32_add(x_bits, y_bits):
    """Binary32 sum of two bit patterns (IEEE, nearest even), NaN made canonical."""
    with np.errstate(all="ignore"):
        s = np.float32(bits_to_f32(x_bits)) + np.float32(bits_to_f32(y_bits))
    return F32_NAN if np.isnan(s) else int(np.float32(s).view(np.uint32))


# -- dot products ---------------------------------------------------------------------------------------

def block_dot(a_codes, a_fmt, a_scale, b_codes, b_fmt, b_scale):
    """Binary32 bits of the exact dot product of two SE-FP8 blocks, rounded once."""
    a_fmt, b_fmt = _fmt(a_fmt), _fmt(b_fmt)
    a_codes, b_codes = np.asarray(a_codes), np.asarray(b_codes)
    if a_codes.shape != b_codes.shape or a_codes.ndim != 1:
        raise ValueError(f"Blocks must be 1-D and of one length, not {a_codes.shape} and {b_codes.shape}")
    if a_scale == SCALE_NAN or b_scale == SCALE_NAN:
        return F32_NAN
    if np.any(_is_nan(a_codes, a_fmt)) or np.any(_is_nan(b_codes, b_fmt)):
        return F32_NAN
    sa, ma, qa = exact_value(a_codes, a_fmt)
    sb, mb, qb = exact_value(b_codes, b_fmt)
    ia, ib = _is_inf(a_codes, a_fmt), _is_inf(b_codes, b_fmt)
    sign = sa ^ sb
    inf = ia | ib
    if np.any(inf):
        other_zero = (ia & (mb == 0) & ~ib) | (ib & (ma == 0) & ~ia)
        if np.any(other_zero):
            return F32_NAN
        signs = set(sign[inf].tolist())
        if len(signs) == 2:
            return F32_NAN
        return (signs.pop() << 31) | 0x7F800000
    low = int(min(qa.min() + qb.min(), 0))
    total = 0
    for s, m_a, m_b, q in zip(sign.tolist(), ma.tolist(), mb.tolist(), (qa + qb).tolist()):
        term = (m_a * m_b) << (q - low)
        total += -term if s else term
    if total == 0:
        all_negative_zero = bool(np.all(sign == 1))
        return 0x80000000 if all_negative_zero else 0
    return round_to_f32(total, low + (int(a_scale) - SCALE_BIAS) + (int(b_scale) - SCALE_BIAS))


def dot(a_codes, a_fmt, a_scales, b_codes, b_fmt, b_scales):
    """Binary32 bits of a dot product over ``n`` block pairs (arrays ``(n, K)`` of codes, ``(n,)`` of
    scales): each block exact and rounded once, then added in binary32 in order."""
    acc = None
    for i in range(len(a_scales)):
        r = block_dot(a_codes[i], a_fmt, a_scales[i], b_codes[i], b_fmt, b_scales[i])
        acc = r if acc is None else f32_add(acc, r)
    return acc


def lane_products(a_codes, a_fmt, a_scale, b_codes, b_fmt, b_scale):
    """Vectorized :func:`block_dot` of blocks with a single non-zero lane: binary32 bits of
    ``a * b * 2**(Xa + Xb)`` for arrays of codes (one scale pair for all). The product of two FP8 values is
    exact in float64 and the scales are powers of two, so one float64-to-float32 conversion is the single
    rounding (a non-zero product that underflows keeps its sign). The other lanes are taken to hold ``+0``
    codes, so an exact zero product gives ``+0``."""
    a_fmt, b_fmt = _fmt(a_fmt), _fmt(b_fmt)
    a_codes, b_codes = np.broadcast_arrays(np.asarray(a_codes), np.asarray(b_codes))
    if a_scale == SCALE_NAN or b_scale == SCALE_NAN:
        return np.full(a_codes.shape, F32_NAN, dtype=np.uint32)
    with np.errstate(all="ignore"):
        exact = decode(a_codes, a_fmt) * decode(b_codes, b_fmt)
        value = np.float32(1.0) * (exact * np.ldexp(1.0, int(a_scale) + int(b_scale) - 2 * SCALE_BIAS)).astype(np.float32)
    bits = value.view(np.uint32).copy()
    bits[np.isnan(value)] = F32_NAN
    bits[exact == 0] = 0                         # +0 lanes elsewhere: an exact zero sum is +0
    return bits
