"""golden.core: the hardware-exact training step, checked against independent references (exact rational
arithmetic, golden.dfxp's float quantizer, float softmax) and for its training semantics."""

from fractions import Fraction

import numpy as np
import pytest

from golden import dfxp
from golden.core import (
    EXP2_TABLE, FRAC_RANGE, LOG2E, CoreConfig, CoreTrainer, Rounding, Unit, calibrate_frac, convert, draw_in_order,
    lane_seed, next_frac, output_error, parse_precision, read_weights, shift_round, softmax_parts, tile_order,
    weight_update,
)


def exact_round(x, shift, mode, draw=None):
    """Reference rounding of x * 2**-shift with Fractions."""
    v = Fraction(int(x), 1) / (Fraction(2) ** shift)
    floor = v.numerator // v.denominator
    rem = v - floor
    if mode == "nearest":
        return floor + (1 if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and floor % 2) else 0)
    return floor + (1 if draw < int(rem * 65536) else 0)


def test_shift_round_against_fractions():
    rng = np.random.default_rng(0)
    xs = np.concatenate([rng.integers(-(1 << 43), 1 << 43, 300), rng.integers(-70, 70, 200),
                         [0, 1, -1, 2, -2, 3, -3, (1 << 43) - 1, -(1 << 43)]])
    for shift in (-40, -17, -3, 0, 1, 2, 5, 15, 16, 17, 30, 43, 44, 50, 62, 100):
        draws = rng.integers(0, 65536, xs.size)
        near = shift_round(xs, shift)
        sr = shift_round(xs, shift, Rounding.STOCHASTIC, draws)
        for x, n, s, d in zip(xs, near, sr, draws):
            if shift <= 0:
                assert n == s == int(np.clip(x, -(1 << 20), 1 << 20)) << -shift
            else:
                assert n == exact_round(x, shift, "nearest"), (x, shift)
                assert s == exact_round(x, shift, "sr", d), (x, shift, d)


@pytest.mark.parametrize("bits", [4, 8, 12, 16])
def test_convert_matches_dfxp_quantize(bits):
    # Independent reference: golden.dfxp's float quantizer on x * 2**-frac_in (exact in float64 here).
    rng = np.random.default_rng(bits)
    x = rng.integers(-(1 << 30), 1 << 30, 2000)
    x[:8] = [0, 1, -1, (1 << 30) - 1, -(1 << 30), 3 << 10, -(5 << 9), 1 << 9]
    frac_in, frac_out = 20, 20 - 12
    got = convert(x, frac_in, bits, frac_out)
    want = dfxp.quantize(x * 2.0 ** -frac_in, bits, frac_out)
    assert np.array_equal(got.codes, want)
    lo, hi = dfxp.code_range(bits)
    y0 = np.rint(x * 2.0 ** -(frac_in - frac_out))
    y1 = np.rint(x * 2.0 ** -(frac_in - frac_out - 1))
    assert np.array_equal(got.ovf0, (y0 < lo) | (y0 > hi))
    assert np.array_equal(got.ovf1, (y1 < lo) | (y1 > hi))
    # Stochastic rounding with the same LFSR draws as golden.dfxp.quantize.
    got_sr = convert(x, frac_in, bits, frac_out, rounding=Rounding.STOCHASTIC, draws=dfxp.Lfsr(99).draw(x.size))
    want_sr = dfxp.quantize(x * 2.0 ** -frac_in, bits, frac_out, Rounding.STOCHASTIC, dfxp.Lfsr(99))
    assert np.array_equal(got_sr.codes, want_sr)


def test_convert_relu_saturation_and_threshold():
    r = convert([-5, 0, 5, 1 << 20, -(1 << 20)], 0, 8, 0, relu=True)
    assert r.codes.tolist() == [0, 0, 5, 127, 0] and r.ovf0.tolist() == [False, False, False, True, False]
    assert convert([-(1 << 20)], 0, 8, 0).codes.tolist() == [-128]
    # Thresholding at 4 codes: |q| < 4 becomes 0 or +-4; the draw decides with probability |q| / 4.
    q = np.array([1, -2, 3, 4, -7, 0])
    keep = convert(q, 0, 8, 0, rounding="stochastic", draws=np.zeros(6), threshold=2,
                   threshold_draws=np.zeros(6))
    drop = convert(q, 0, 8, 0, rounding="stochastic", draws=np.zeros(6), threshold=2,
                   threshold_draws=np.full(6, 65535))
    assert keep.codes.tolist() == [4, -4, 4, 4, -7, 0]
    assert drop.codes.tolist() == [0, 0, 0, 4, -7, 0]
    # Unbiased on average: E[code] = q.
    draws = np.arange(65536)
    mean = convert(np.full(65536, 3), 0, 8, 0, rounding="stochastic", draws=draws, threshold=3,
                   threshold_draws=draws).codes.mean()
    assert mean == 3


def test_next_frac_rule():
    # limit = 1024 >> 8 = 4 overflowing elements
    assert next_frac(5, 5, 9, 1024, 8) == 4          # 5 overflow > 4 -> one more integer bit
    assert next_frac(5, 0, 4, 1024, 8) == 6          # room at frac + 1
    assert next_frac(5, 4, 5, 1024, 8) == 5
    assert next_frac(FRAC_RANGE[1], 0, 0, 10, 0) == FRAC_RANGE[1]
    assert next_frac(FRAC_RANGE[0], 9, 9, 10, 4) == FRAC_RANGE[0]


def test_next_frac_rule_stays():
    # ovf0 = 3 is within the limit 4; ovf1 = 9 is not: the length stays.
    assert next_frac(5, 3, 9, 1024, 8) == 5


def test_calibrate_frac_matches_initial_frac():
    rng = np.random.default_rng(3)
    x = rng.integers(-(1 << 24), 1 << 24, 4096)
    for bits in (8, 16):
        frac = calibrate_frac(x, 20, bits, 30)          # limit 0: everything fits
        assert frac == dfxp.initial_frac(x * 2.0 ** -20, bits, threshold=0.0)


def test_read_weights_rounds_half_up_and_saturates():
    master = np.array([0, 127, 128, 129, -129, -128, 32767, -32768, 0x7F80, -0x80])
    assert read_weights(master, 8).tolist() == [0, 0, 1, 1, -1, 0, 127, -128, 127, 0]
    assert read_weights(master, 16).tolist() == master.tolist()
    exact = [max(-8, min(7, int(np.floor(v / 4096 + 0.5)))) for v in master]
    assert read_weights(master, 4).tolist() == exact


def test_weight_update_against_fractions():
    rng = np.random.default_rng(4)
    w = rng.integers(-32768, 32768, 500)
    g = rng.integers(-32768, 32768, 500)
    draws = rng.integers(0, 65536, 500)
    for shift in (-3, 0, 4, 12, 20):
        got = weight_update(w, g, shift, draws)
        for wi, gi, d, out in zip(w, g, draws, got):
            delta = int(gi) << -shift if shift <= 0 else exact_round(gi, shift, "sr", d)
            assert out == max(-32768, min(32767, int(wi) - delta))


def test_softmax_parts_against_float():
    rng = np.random.default_rng(5)
    z = rng.integers(-3000, 3000, (10, 64))
    z[:, 0] = 0
    z[:, 1] = 32767
    z[3, 2], z[:, 3] = 32767, -32768
    for frac_z in (-4, 0, 6, 9, 20):
        e, s, r, p = softmax_parts(z, frac_z)
        assert e.max(axis=0).tolist() == [1 << 15] * z.shape[1]          # the largest logit
        assert np.all(s >= 1 << 15) and np.all(r == (1 << 35) // s)
        ref = np.exp((z - z.max(axis=0)) * 2.0 ** -frac_z)
        ref /= ref.sum(axis=0)
        assert np.max(np.abs(p / 65536 - ref)) < 2 ** -7
    assert EXP2_TABLE[0] == 1 << 15 and len(EXP2_TABLE) == 64 and LOG2E == 5909


def test_output_error_is_p_minus_onehot():
    z = np.array([[0, 10], [0, -10]])
    labels = np.array([1, 0])
    draws = np.zeros((2, 2), dtype=np.int64)
    res = output_error(z, 0, labels, 16, 14, draws)      # q = SR(g * 2**-2) with draw 0 rounds up
    _, _, _, p = softmax_parts(z, 0)
    g = p.copy()
    g[labels, [0, 1]] -= 1 << 16
    assert np.array_equal(res.codes, -((-g) >> 2))
    assert res.codes[1, 0] < 0 and res.codes[0, 0] > 0


def test_tile_order_and_draws():
    valid = np.ones((5, 7), dtype=bool)
    valid[1, 3] = False
    order = tile_order(valid, (2, 3))
    lane0 = list(zip(*order[0]))
    assert lane0[:6] == [(0, 0), (1, 0), (0, 3), (0, 6), (1, 6), (2, 0)]
    assert sum(len(o[0]) for o in order) == valid.sum()
    lfsrs = [dfxp.Lfsr(lane_seed(Unit.EP, lane)) for lane in range(3)]
    draws = draw_in_order(lfsrs, valid, (2, 3))[..., 0]
    ref = dfxp.Lfsr(lane_seed(Unit.EP, 0)).draw(len(lane0))
    assert [draws[i, j] for i, j in lane0] == ref.tolist()
    assert draws[1, 3] == 0


def test_parse_precision_and_config_errors():
    assert parse_precision("dfxp16,8", 2) == (16, 8)
    assert parse_precision(12, 3) == (12, 12, 12)
    with pytest.raises(ValueError, match="precision must be one of dfxp4, dfxp8, dfxp12, dfxp16"):
        parse_precision(5, 2)
    with pytest.raises(ValueError, match=r"precision must name one width or one per layer \(2\), not 3"):
        parse_precision("8,8,8", 2)
    for kwargs, message in [
        (dict(sizes=(64,)), "sizes must be at least two integers"),
        (dict(algorithm="sgd"), "algorithm must be one of bp, dfa, pdfa, not 'sgd'"),
        (dict(lr_shift=32), r"lr_shift must be an integer in \[0, 31\], not 32"),
        (dict(batch=0), r"batch must be an integer in \[1, 65535\], not 0"),
        (dict(grad_bits=6), r"grad_bits must be one of \[4, 8, 12, 16\], not 6"),
        (dict(array=(8, 0)), r"array must be \(rows, cols\)"),
        (dict(max_k=100), "max_k must be a power of two"),
        (dict(sizes=(64, 9000, 10), max_k=1024, precision=16), "needs more than max_k"),
    ]:
        with pytest.raises(ValueError, match=message):
            CoreConfig(**kwargs)


@pytest.mark.parametrize("sizes, shift", [
    ((64, 10), 3), ((64, 128, 10), 3), ((64, 128, 128, 128, 10), 3),     # 64 inputs: 3
    ((64, 128, 128, 128, 128, 10), 4),                                    # four hidden layers: one more
    ((784, 256, 256, 10), 4), ((784,) + (32,) * 16 + (10,), 6),
])
def test_default_feedback_shift(sizes, shift):
    assert CoreConfig(sizes=sizes).feedback_shift == shift
    assert CoreConfig(sizes=sizes, feedback_shift=1).feedback_shift == 1


@pytest.fixture(scope="module")
def small_data():
    from golden.training import load_digits_split
    x_train, y_train, x_test, y_test = load_digits_split()
    return x_train[:256], y_train[:256], x_test[:64], y_test[:64]


def test_state_is_integer_and_deterministic(small_data):
    cfg = CoreConfig(sizes=(64, 16, 10), algorithm="pdfa", batch=8, epochs=1)
    runs = []
    for _ in range(2):
        t = CoreTrainer(cfg, data=small_data)
        t.run()
        runs.append(t)
    for a, b in zip(runs[0].masters, runs[1].masters):
        assert a.dtype.kind == "i" and np.array_equal(a, b)
    assert runs[0].fracs == runs[1].fracs
    assert all(isinstance(v, int) for v in runs[0].fracs.values())
    assert [lf.state for lf in runs[0].lfsrs[Unit.WG]] == [lf.state for lf in runs[1].lfsrs[Unit.WG]]


def test_pdfa_reads_the_previous_version(small_data):
    # Step t of a PDFA run reads the weights after t - 1 updates: step 1 reads v0, like step 0.
    cfg = CoreConfig(sizes=(64, 16, 10), algorithm="pdfa", batch=8)
    t = CoreTrainer(cfg, data=small_data)
    v0 = [w.copy() for w in t.masters]
    seen = []
    forward = t.forward
    t.forward = lambda weights, *a, **k: (seen.append([w.copy() for w in weights]), forward(weights, *a, **k))[1]
    idx = t.batches()
    t.begin_run()
    for i in idx[:3]:
        t.step_codes(t.x_train[i].T, t.y_train[i])
    assert all(np.array_equal(a, b) for a, b in zip(seen[0], v0))
    assert all(np.array_equal(a, b) for a, b in zip(seen[1], v0))
    assert not all(np.array_equal(a, b) for a, b in zip(seen[2], v0))
    # A new run starts from the newest weights.
    newest = [w.copy() for w in t.masters]
    t.begin_run()
    t.step_codes(t.x_train[idx[3]].T, t.y_train[idx[3]])
    assert all(np.array_equal(a, b) for a, b in zip(seen[3], newest))


def test_trains(small_data):
    for algorithm in ("bp", "pdfa"):
        t = CoreTrainer(CoreConfig(sizes=(64, 32, 10), algorithm=algorithm, batch=8, lr_shift=6, epochs=6),
                        data=small_data)
        curve = t.run()
        assert curve["train_accuracy"][-1] > 0.8 and curve["loss"][-1] < curve["loss"][0] / 2, (algorithm, curve)


def test_data_checks():
    with pytest.raises(ValueError, match="data has 5 features per sample; sizes\\[0\\] is 64"):
        CoreTrainer(CoreConfig(), data=(np.zeros((4, 5)), np.zeros(4), np.zeros((2, 5)), np.zeros(2)))
    with pytest.raises(TypeError, match="config must be a CoreConfig"):
        CoreTrainer({"sizes": (64, 10)})
