import numpy as np
import pytest

from golden.dfxp import (Lfsr, Rounding, code_range, dequantize, from_slices, initial_frac, overflow_rate,
                         quantize, slice_values, to_slices, update_frac)


def test_code_range():
    assert code_range(4) == (-8, 7)
    assert code_range(12) == (-2048, 2047)
    with pytest.raises(ValueError, match="DFXP width must be one of"):
        code_range(5)


def test_nearest_even_matches_reference():
    # Ties go to even: 0.5 -> 0, 1.5 -> 2, -2.5 -> -2 (at frac 0); checked against Python's round().
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.25, 0.75, 3.49])
    assert list(quantize(x, 8, 0)) == [round(v) for v in x]
    rng = np.random.default_rng(0)
    y = rng.normal(size=1000).astype(np.float32)
    for frac in (0, 3, 7):
        ref = [max(-128, min(127, round(float(v) * 2 ** frac))) for v in y]
        assert list(quantize(y, 8, frac)) == ref


def test_saturation():
    assert list(quantize([1e9, -1e9, 7.9, -8.6], 4, 0)) == [7, -8, 7, -8]


def test_non_finite_rejected():
    with pytest.raises(ValueError, match="NaN or infinity"):
        quantize([np.nan], 8, 0)


def test_lfsr_sequence():
    # The documented step: right-shifting Galois form, mask 0x80200003, 16 steps per draw, low 16 bits.
    lfsr = Lfsr(1)
    s, ref = 1, []
    for _ in range(3000):
        for _ in range(16):
            s = (s >> 1) ^ (0x80200003 if s & 1 else 0)
        ref.append(s & 0xFFFF)
    assert list(lfsr.draw(1000)) + list(lfsr.draw(2000)) == ref
    assert lfsr.state == s


def test_lfsr_seed_wrong():
    with pytest.raises(ValueError, match="non-zero 32-bit"):
        Lfsr(0)


def test_stochastic_rounding_unbiased_and_deterministic():
    x = np.full(200_000, 0.3)
    q = quantize(x, 8, 0, Rounding.STOCHASTIC, Lfsr(123))
    assert set(np.unique(q)) == {0, 1}
    assert abs(q.mean() - 0.3) < 0.005
    q2 = quantize(x, 8, 0, Rounding.STOCHASTIC, Lfsr(123))
    assert np.array_equal(q, q2)
    # Exact values never move.
    assert list(quantize([1.0, -2.0, 0.0], 8, 0, "stochastic", Lfsr(5))) == [1, -2, 0]


def test_dequantize():
    assert list(dequantize([3, -4], 2)) == [0.75, -1.0]


def test_overflow_rule():
    x = np.concatenate([np.full(999, 0.1), [100.0]])
    assert overflow_rate(x, 8, 4) == pytest.approx(0.001)     # 100 * 16 > 127
    assert update_frac(x, 8, 4, threshold=1e-4) == 3          # too many overflows: one more integer bit
    assert update_frac(x, 8, 4, threshold=1e-2) == 5          # still fine one bit finer
    frac = initial_frac(x, 8, threshold=0.0)
    assert overflow_rate(x, 8, frac) == 0 and overflow_rate(x, 8, frac + 1) > 0


@pytest.mark.parametrize("bits", [4, 8, 12, 16])
def test_slices_exhaustive(bits):
    lo, hi = code_range(bits)
    codes = np.arange(lo, hi + 1)
    s = to_slices(codes, bits)
    assert s.shape == (codes.size, bits // 4) and s.max() <= 15
    assert np.array_equal(from_slices(s), codes)
    v = slice_values(codes, bits)
    assert np.array_equal((v * 16 ** np.arange(bits // 4)).sum(axis=1), codes)
    assert v[:, -1].min() == -8 and v[:, -1].max() == 7
