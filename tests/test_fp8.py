import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from golden import fp8
from golden.fp8 import E4M3, E5M2, F32_NAN, SCALE_NAN

REFERENCE = {"e4m3": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2}
FMTS = [E4M3, E5M2]


def ref_encode(x, fmt):
    # ml_dtypes casts round to nearest even but do not saturate: clip first.
    x = np.asarray(x, dtype=np.float32)
    return np.clip(x, -fmt.max_normal, fmt.max_normal).astype(REFERENCE[fmt.name]).view(np.uint8)


@pytest.mark.parametrize("fmt", FMTS, ids=lambda f: f.name)
def test_decode_every_code(fmt):
    codes = np.arange(256, dtype=np.uint8)
    ours, ref = fp8.decode(codes, fmt), codes.view(REFERENCE[fmt.name]).astype(np.float64)
    assert np.array_equal(np.isnan(ours), np.isnan(ref))
    ok = ~np.isnan(ref)
    assert np.array_equal(ours[ok], ref[ok]) and np.array_equal(np.signbit(ours[ok]), np.signbit(ref[ok]))
    assert np.nanmax(ours[np.isfinite(ours)]) == fmt.max_normal


def test_format_facts():
    assert fp8.decode(0x7F, E4M3) != fp8.decode(0x7F, E4M3)            # S.1111.111 is NaN
    assert fp8.decode(0x7E, E4M3) == 448 and fp8.decode(0x01, E4M3) == 2.0 ** -9
    assert fp8.decode(0x7C, E5M2) == np.inf and fp8.decode(0xFC, E5M2) == -np.inf
    assert fp8.decode(0x7B, E5M2) == 57344 and fp8.decode(0x01, E5M2) == 2.0 ** -16
    with pytest.raises(ValueError, match="Element format must be one of \\['e4m3', 'e5m2'\\], not 'e3m4'"):
        fp8.decode(0, "e3m4")


@pytest.mark.parametrize("fmt", FMTS, ids=lambda f: f.name)
def test_encode_matches_reference(fmt):
    rng = np.random.default_rng(0)
    values = fp8.decode(np.arange(256, dtype=np.uint8), fmt)
    grid = np.unique(values[np.isfinite(values)])
    midpoints = (grid[1:] + grid[:-1]) / 2                      # every tie
    x = np.concatenate([
        rng.normal(size=50_000) * rng.choice([1e-7, 1e-4, 1e-2, 1, 1e2, 1e4, 1e6], 50_000),
        grid, midpoints, np.nextafter(midpoints, 0), np.nextafter(midpoints, np.inf),
        [0.0, -0.0, fmt.max_normal * 1.01, -1e30, np.inf, -np.inf, 3e38],
    ]).astype(np.float32)
    assert np.array_equal(fp8.encode(x, fmt), ref_encode(x, fmt))
    assert fp8.encode(np.nan, fmt) == fmt.nan_code and fp8.encode(-np.nan, fmt) == fmt.nan_code | 0x80


def test_scale_codes():
    codes = np.arange(255, dtype=np.uint8)
    assert np.array_equal(fp8.decode_scale(codes), codes.view(ml_dtypes.float8_e8m0fnu).astype(np.float64))
    assert math.isnan(fp8.decode_scale(SCALE_NAN))
    assert fp8.encode_scale(-127) == 0 and fp8.encode_scale(127) == 254 and fp8.encode_scale(None) == SCALE_NAN


def ref_shared_exponent(amax, fmt, rule):
    # Independent derivation: the exponent of amax from frexp (ml_dtypes' e8m0 cast rounds to nearest).
    m, e = np.frexp(amax)
    x = int(e) - 1 - fmt.emax
    if rule == "ceil" and amax / 2.0 ** x > fmt.max_normal:
        x += 1
    return max(x, -127)


@pytest.mark.parametrize("fmt", FMTS, ids=lambda f: f.name)
@pytest.mark.parametrize("rule", ["floor", "ceil"])
@pytest.mark.parametrize("k", [8, 16, 32, None])
def test_quantize_blocks(fmt, rule, k):
    rng = np.random.default_rng(1)
    x = (rng.standard_t(3, size=(6, 64)) * 10.0 ** rng.integers(-8, 6, size=(6, 1))).astype(np.float32)
    codes, scales = fp8.quantize_blocks(x, fmt, block=k, axis=1, rule=rule)
    k = k or 64
    assert scales.shape == (6, 64 // k)
    blocks = x.reshape(6, -1, k)
    for i in range(6):
        for j in range(64 // k):
            xs = ref_shared_exponent(np.max(np.abs(blocks[i, j])), fmt, rule)
            assert scales[i, j] == xs + 127
            ref = ref_encode(np.float32(blocks[i, j] / 2.0 ** xs), fmt)
            assert np.array_equal(codes[i, j * k:(j + 1) * k], ref)
            if rule == "ceil":     # the round-up rule never clamps the block maximum
                assert np.max(np.abs(blocks[i, j])) / 2.0 ** xs <= fmt.max_normal
    if rule == "ceil":
        # Nothing clamps: every element is within half a quantum of its value.
        back = fp8.dequantize_blocks(codes, scales, fmt, block=k, axis=1)
        x_exp = np.repeat(scales.astype(np.int64) - 127, k, axis=1)
        half_ulp = np.ldexp(1.0, np.maximum(np.frexp(np.abs(x) / 2.0 ** x_exp)[1] - 1, fmt.emin) - fmt.mbits - 1)
        assert np.all(np.abs(back - x) <= half_ulp * 2.0 ** x_exp)


def test_quantize_axis0_and_specials():
    x = np.zeros((16, 2), dtype=np.float32)
    x[:, 1] = np.arange(16)
    x[3, 1] = np.nan
    codes, scales = fp8.quantize_blocks(x, E4M3, block=8, axis=0)
    assert scales.shape == (2, 2)
    assert scales[0, 0] == 0                                     # all zero: X = -127
    assert scales[0, 1] == SCALE_NAN and np.all(codes[:8, 1] == E4M3.nan_code)
    assert scales[1, 1] == (3 - 8) + 127                         # amax 15: floor(log2) = 3
    tiny = np.full(8, 1e-45, dtype=np.float32)
    assert fp8.quantize_blocks(tiny, E5M2, block=8)[1][0] == 0  # clamped at -127
    with pytest.raises(ValueError, match="Block size must be a power of two >= 2, not 6"):
        fp8.quantize_blocks(np.zeros(12), E4M3, block=6)
    with pytest.raises(ValueError, match="Axis length of 12 is not a whole number of blocks of 8"):
        fp8.quantize_blocks(np.zeros(12), E4M3, block=8)


@pytest.mark.parametrize("fmt", FMTS, ids=lambda f: f.name)
def test_tiles_survive_transposition(fmt):
    rng = np.random.default_rng(2)
    w = (rng.normal(size=(16, 24)) * rng.lognormal(0, 3, size=(16, 24))).astype(np.float32)
    codes, scales = fp8.quantize_tiles(w, fmt, tile=8)
    codes_t, scales_t = fp8.quantize_tiles(w.T, fmt, tile=8)
    assert np.array_equal(codes_t, codes.T) and np.array_equal(scales_t, scales.T)
    assert np.array_equal(fp8.dequantize_tiles(codes, scales, fmt).T, fp8.dequantize_tiles(codes_t, scales_t, fmt))
    # 1-D blocks along rows do not: W^T would need different scales (a re-quantization).
    _, row_scales = fp8.quantize_blocks(w, fmt, block=8, axis=1)
    _, col_scales = fp8.quantize_blocks(w, fmt, block=8, axis=0)
    assert row_scales.shape != col_scales.shape or not np.array_equal(row_scales, col_scales.T)


def test_round_to_f32():
    rng = np.random.default_rng(3)
    for _ in range(20_000):
        n = int(rng.integers(-(1 << 52), 1 << 52))
        e = int(rng.integers(-210, 110))
        with np.errstate(over="ignore"):      # float64 holds n * 2**e exactly; one float32 rounding
            ref = np.float32(np.float64(math.ldexp(n, e)))
        assert fp8.round_to_f32(n, e) == int(ref.view(np.uint32)) or (n == 0)


def ref_is_rne(bits, exact):
    """Independent check of one rounding: ``bits`` is the binary32 nearest to ``exact``, ties to even."""
    r = np.uint32(bits).view(np.float32)
    if np.isinf(r):
        return abs(exact) >= Fraction(2) ** 128 - Fraction(2) ** 103   # at or past max + half ulp
    lo = np.nextafter(r, np.float32(-np.inf))
    hi = np.nextafter(r, np.float32(np.inf))
    fr = Fraction(float(r))
    d_lo = fr - Fraction(float(lo)) if np.isfinite(lo) else None
    d_hi = Fraction(float(hi)) - fr if np.isfinite(hi) else None
    err = exact - fr
    if d_hi is not None and err > d_hi / 2:
        return False
    if d_lo is not None and -err > d_lo / 2:
        return False
    if (d_hi is not None and err == d_hi / 2) or (d_lo is not None and -err == d_lo / 2):
        return int(bits) & 1 == 0
    return True


def _exact(a, fa, xa, b, fb, xb):
    total = sum(Fraction(float(u)) * Fraction(float(v)) for u, v in zip(fp8.decode(a, fa), fp8.decode(b, fb)))
    return total * Fraction(2) ** (int(xa) - 127 + int(xb) - 127)


@pytest.mark.parametrize("fa, fb", [(E4M3, E4M3), (E4M3, E5M2), (E5M2, E4M3), (E5M2, E5M2)],
                         ids=lambda f: f.name)
def test_block_dot_exact(fa, fb):
    rng = np.random.default_rng(4)
    finite_a = [c for c in range(256) if np.isfinite(fp8.decode(c, fa))]
    finite_b = [c for c in range(256) if np.isfinite(fp8.decode(c, fb))]
    for trial in range(300):
        k = int(rng.choice([8, 16, 32]))
        a = rng.choice(finite_a, k).astype(np.uint8)
        b = rng.choice(finite_b, k).astype(np.uint8)
        xa, xb = rng.integers(0, 255, 2) if trial % 3 else rng.integers(100, 150, 2)
        bits = fp8.block_dot(a, fa, xa, b, fb, xb)
        exact = _exact(a, fa, xa, b, fb, xb)
        if exact == 0:
            assert bits in (0, 0x80000000)
        else:
            assert ref_is_rne(bits, exact), (trial, hex(bits), float(exact))
        if fa is E4M3 and fb is E4M3:
            # Products of E4M3 span few binades: the float64 sum is exact, one float32 rounding follows.
            with np.errstate(over="ignore"):
                ref = np.float32(math.fsum(float(u) * float(v) for u, v in zip(fp8.decode(a, fa), fp8.decode(b, fb)))
                                 * 2.0 ** (int(xa) + int(xb) - 254))
            assert bits == int(np.float32(ref).view(np.uint32)) or not np.isfinite(ref)


def test_block_dot_specials():
    z = np.zeros(4, dtype=np.uint8)
    one4, one5 = fp8.encode(1.0, E4M3), fp8.encode(1.0, E5M2)
    inf, ninf = np.uint8(0x7C), np.uint8(0xFC)
    blk = lambda *v: np.array(v, dtype=np.uint8)
    assert fp8.block_dot(blk(one4, 0, 0, 0), E4M3, 127, blk(one5, 0, 0, 0), E5M2, 127) == 0x3F800000
    assert fp8.block_dot(blk(0x7F, 0, 0, 0), E4M3, 127, z, E5M2, 127) == F32_NAN          # NaN element
    assert fp8.block_dot(z, E4M3, SCALE_NAN, z, E5M2, 127) == F32_NAN                     # NaN scale
    assert fp8.block_dot(blk(inf, 0, 0, 0), E5M2, 127, z, E4M3, 127) == F32_NAN           # inf * 0
    assert fp8.block_dot(blk(inf, ninf, 0, 0), E5M2, 127, blk(one5, one5, 0, 0), E5M2, 127) == F32_NAN
    assert fp8.block_dot(blk(ninf, one5, 0, 0), E5M2, 127, blk(one5, one5, 0, 0), E5M2, 127) == 0xFF800000
    assert fp8.block_dot(blk(0x80, 0x80), E4M3, 127, blk(0, 0), E4M3, 127) == 0x80000000     # all -0
    assert fp8.block_dot(blk(0x80, 0), E4M3, 127, blk(0, 0), E4M3, 127) == 0                 # +0
    big = fp8.encode(448.0, E4M3)
    assert fp8.block_dot(blk(big, big), E4M3, 254, blk(big, big), E4M3, 254) == 0x7F800000   # overflow
    tiny = np.uint8(0x01)                                        # 2**-9
    assert fp8.block_dot(blk(tiny), E4M3, 0, blk(tiny), E4M3, 0) == 0                        # underflow to 0


def test_dot_accumulates_in_binary32():
    rng = np.random.default_rng(5)
    a = fp8.encode(rng.normal(size=(6, 16)), E4M3)
    b = fp8.encode(rng.normal(size=(6, 16)) * 1000, E5M2)
    sa, sb = rng.integers(110, 140, 6), rng.integers(110, 140, 6)
    blocks = [np.uint32(fp8.block_dot(a[i], E4M3, sa[i], b[i], E5M2, sb[i])).view(np.float32) for i in range(6)]
    acc = blocks[0]
    for v in blocks[1:]:
        acc = np.float32(acc + v)
    assert fp8.dot(a, E4M3, sa, b, E5M2, sb) == int(np.float32(acc).view(np.uint32))


@pytest.mark.parametrize("fa, fb", [(E4M3, E4M3), (E4M3, E5M2), (E5M2, E4M3), (E5M2, E5M2)],
                         ids=lambda f: f.name)
def test_lane_products_match_block_dot(fa, fb):
    # Every code pair in lane 2 of a 4-lane block, the other lanes +0.
    a, b = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8))
    a, b = a.ravel(), b.ravel()
    for xa, xb in [(127, 127), (5, 60), (250, 240)]:
        fast = fp8.lane_products(a, fa, xa, b, fb, xb)
        for i in range(0, a.size, 7 if (xa, xb) == (127, 127) else 61):
            blk_a = np.array([0, 0, a[i], 0], dtype=np.uint8)
            blk_b = np.array([0, 0, b[i], 0], dtype=np.uint8)
            assert fast[i] == fp8.block_dot(blk_a, fa, xa, blk_b, fb, xb), (hex(a[i]), hex(b[i]), xa, xb)


def test_shared_exponent_scalar():
    assert fp8.shared_exponent(15.0, E4M3) == 3 - 8
    assert fp8.shared_exponent(500.0, E4M3, "floor") == 0 and fp8.shared_exponent(500.0, E4M3, "ceil") == 1
    assert fp8.shared_exponent(0.0, E5M2) == -127 and fp8.shared_exponent(1e-45, E5M2) == -127
    assert fp8.shared_exponent(math.inf, E4M3) is None and fp8.shared_exponent(math.nan, E5M2) is None
