"""Golden models of sparsity (golden.sparsity): ZVC, zero-skip beats, dReLU row skipping, slice skipping."""

import random

import numpy as np
import pytest

from golden import sparsity

def test_zvc_round_trip_and_format():
    rng = np.random.default_rng(0)
    for n, width in ((16, 16), (37, 8), (5, 16), (64, 4)):
        for s in (0.0, 0.5, 0.9, 1.0):
            v = rng.integers(1, 1 << width, n) * (rng.random(n) >= s)
            words = sparsity.zvc_encode(v, width)
            assert len(words) == sparsity.zvc_words(v, width) == -(-n // width) + np.count_nonzero(v)
            assert sparsity.zvc_decode(words, n, width) == list(v)
    assert sparsity.zvc_encode([0, 7, 0, 0, 9], 8) == [0b10010, 7, 9]
    assert sparsity.zvc_encode([5] * 10, 8) == [0xFF, 0x03] + [5] * 10


@pytest.mark.parametrize("words, message", [
    ([0b100], "ZVC mask has bits set beyond element 1"),
    ([0b01, 3, 4], "does not match its mask"),
])
def test_zvc_decode_wrong(words, message):
    with pytest.raises(ValueError, match=message):
        sparsity.zvc_decode(words, 2, 8)


def test_zero_skip_beats():
    beats = sparsity.zero_skip_beats([[0, 3, 0, 5, 6, 0, 0, 7, 1], [0, 0], [2]], 2)
    assert beats == [([(3, 1), (5, 3)], False), ([(6, 4), (7, 7)], False), ([(1, 8)], True),
                     ([], True), ([(2, 0)], True)]
    assert sparsity.dense_cycles([[0] * 9, [0] * 2], 2) == 5 + 1
    # 1 non-zero in 64 elements read 16 per cycle: input-bound, 4 cycles.
    assert sparsity.zero_skip_ideal_cycles([[1] + [0] * 63], 4, 16) == 4


def test_beats_and_mask_words():
    assert sparsity.beats([1, 2, 3], 2) == [[1, 2], [3, 0]] and sparsity.beats([], 3) == [[0, 0, 0]]
    assert sparsity.mask_words([1, 0, 1, 1, 0], 2) == [0b01, 0b11, 0b00] and sparsity.mask_words([], 4) == [0]


def test_drelu_rows():
    pre = np.array([[-1.0, 0.0, 2.5, 1e-9]])
    assert sparsity.drelu_mask(pre).tolist() == [[0, 0, 1, 1]]
    assert sparsity.ep_rows([0, 1, 1, 0, 1]) == [1, 2, 4]


def brute_needed(v, bits):
    """Slices needed, by trying every (low, top) window on the exact value."""
    total = bits // 4
    if v == 0:
        return 0
    best = total
    for low in range(total):
        for top in range(low + 1, total + 1):
            # Slices low..top-1 of the pattern, top one signed: exact when it reproduces v.
            pattern = v & ((1 << bits) - 1)
            value = 0
            for k in range(low, top):
                sl = (pattern >> (4 * k)) & 0xF
                if k == top - 1 and sl >= 8:
                    sl -= 16
                value += sl << (4 * k)
            if value == v:
                best = min(best, top - low)
    return best


@pytest.mark.parametrize("bits", [4, 8, 12, 16])
def test_needed_slices_exhaustive_or_random(bits):
    rng = random.Random(bits)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    values = list(range(lo, hi + 1)) if bits <= 8 else [rng.randint(lo, hi) for _ in range(3000)] + [lo, hi, 0, -1]
    got = sparsity.needed_slices(values, bits)
    assert [int(g) for g in got] == [brute_needed(v, bits) for v in values]


def test_slice_products():
    dense, skipped = sparsity.slice_products([1, -1, 0, 256], [3, 0, 7, -300], 16, 16)
    assert dense == 4 * 16
    assert skipped == 1 * 1 + 0 + 0 + 1 * 3
