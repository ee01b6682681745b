import numpy as np
import pytest

from golden import dfxp, fp8
from golden.training import (Algorithm, TrainConfig, Trainer, export_trace, feedback_matrix, feedback_seed,
                             load_digits_split)


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


@pytest.fixture(scope="module")
def small(digits):
    # 256 training samples: fast steps with real data.
    x, y, xt, yt = digits
    return x[:256], y[:256], xt, yt


def test_split(digits):
    x, y, xt, yt = digits
    assert x.shape == (1437, 64) and xt.shape == (360, 64) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and set(y) == set(range(10)) == set(yt)
    again = load_digits_split()
    assert np.array_equal(again[0], x) and np.array_equal(again[3], yt)


def ref_forward_loss(weights, x, labels):
    """Float64 forward pass and mean softmax cross-entropy, written out independently."""
    a = x.astype(np.float64)
    for l, w in enumerate(weights):
        z = w.astype(np.float64) @ a
        a = np.maximum(z, 0) if l < len(weights) - 1 else z
    z = a - a.max(axis=0)
    logp = z - np.log(np.exp(z).sum(axis=0))
    return -np.mean(logp[labels, np.arange(x.shape[1])])


def test_bp_gradients_match_finite_differences(small):
    trainer = Trainer(TrainConfig(sizes=(64, 16, 12, 10), algorithm="bp", lr=0.0), small)
    x, y = small[0][:8], small[1][:8]
    record = {}
    trainer.step(x, y, record=record)
    weights = [record[f"W{l}"].astype(np.float64) for l in range(3)]
    rng = np.random.default_rng(0)
    for l in range(3):
        for _ in range(12):
            i, j = rng.integers(weights[l].shape[0]), rng.integers(weights[l].shape[1])
            h = 1e-6
            plus = [w.copy() for w in weights]
            minus = [w.copy() for w in weights]
            plus[l][i, j] += h
            minus[l][i, j] -= h
            fd = (ref_forward_loss(plus, x.T, y) - ref_forward_loss(minus, x.T, y)) / (2 * h)
            assert record[f"g{l}"][i, j] == pytest.approx(fd, rel=2e-3, abs=2e-6), (l, i, j)


def test_feedback_matrix_is_the_documented_lfsr():
    rows, cols = 7, 5
    b = feedback_matrix(3, rows, cols, seed=11)
    state, bits = feedback_seed(3, 11), []
    for _ in range(rows * cols):
        state = (state >> 1) ^ (0x80200003 if state & 1 else 0)
        bits.append(state & 1)
    assert np.array_equal(b, np.where(np.array(bits).reshape(rows, cols) == 1, 1.0, -1.0))
    assert set(np.unique(b)) == {-1.0, 1.0}
    assert not np.array_equal(b, feedback_matrix(2, rows, cols, seed=11))


def test_dfa_update_matches_independent_implementation(small):
    cfg = TrainConfig(sizes=(64, 20, 16, 10), algorithm="dfa", lr=0.0)
    trainer = Trainer(cfg, small)
    x, y = small[0][:6], small[1][:6]
    record = {}
    trainer.step(x, y, record=record)
    w = [record[f"W{l}"].astype(np.float64) for l in range(3)]
    grads = [np.zeros_like(m) for m in w]
    for n in range(len(y)):                     # one sample at a time, plain loops of the DFA rule
        a0 = x[n].astype(np.float64)
        z1 = w[0] @ a0
        a1 = np.maximum(z1, 0)
        z2 = w[1] @ a1
        a2 = np.maximum(z2, 0)
        z3 = w[2] @ a2
        p = np.exp(z3 - z3.max())
        p /= p.sum()
        e = p.copy()
        e[y[n]] -= 1
        e /= len(y)
        d2 = (feedback_matrix(1, 16, 10) @ e) / 4 * (z2 > 0)
        d1 = (feedback_matrix(0, 20, 10) @ e) / 4 * (z1 > 0)
        grads[2] += np.outer(e, a2)
        grads[1] += np.outer(d2, a1)
        grads[0] += np.outer(d1, a0)
    for l in range(3):
        assert np.allclose(record[f"g{l}"], grads[l], rtol=1e-4, atol=1e-7), l


def test_pdfa_reads_stale_weights(small):
    trainer = Trainer(TrainConfig(sizes=(64, 16, 10), algorithm="pdfa", staleness=1, lr=0.1), small)
    versions = [[w.copy() for w in trainer.weights]]
    x, y = small[0], small[1]
    records = []
    for t in range(4):
        record = {}
        trainer.step(x[t * 32:(t + 1) * 32], y[t * 32:(t + 1) * 32], record=record)
        records.append(record)
        versions.append([w.copy() for w in trainer.weights])
    for t in range(4):           # the forward pass of mini-batch t reads version max(0, t - 1)
        assert np.array_equal(records[t]["W0"], versions[max(0, t - 1)][0])
    dfa = Trainer(TrainConfig(sizes=(64, 16, 10), algorithm="dfa", staleness=1), small)
    assert dfa.config.effective_staleness == 0


@pytest.mark.parametrize("arithmetic", ["dfxp8", "sefp8"])
def test_deterministic(small, arithmetic):
    def run(seed):
        trainer = Trainer(TrainConfig(sizes=(64, 32, 10), algorithm="pdfa", arithmetic=arithmetic, epochs=1,
                                      seed=seed), small)
        trainer.run()
        return b"".join(w.tobytes() for w in trainer.weights)
    assert run(3) == run(3)
    assert run(3) != run(4)


def test_learns(small):
    # Six epochs on 256 samples in every arithmetic: far above chance (10 %).
    for arithmetic in ("fp32", "dfxp16", "dfxp12", "dfxp8", "sefp8"):
        curve = Trainer(TrainConfig(sizes=(64, 32, 10), algorithm="pdfa", arithmetic=arithmetic, epochs=6,
                                    batch=8, lr=0.1), small).run()
        assert curve["test_accuracy"][-1] > 0.6, (arithmetic, curve["test_accuracy"])


def test_trace_export(tmp_path, small):
    cfg = TrainConfig(sizes=(64, 32, 10), algorithm="pdfa", arithmetic="sefp8")
    npz, manifest = export_trace(tmp_path / "t", cfg, step=3, data=small)
    arrays = np.load(npz)
    for name in ("x", "labels", "W0", "W1", "a0", "a1", "drelu0", "logits", "e", "d0", "d1", "g0", "g1",
                 "a1.codes", "a1.scales", "w0.codes", "w0.scales", "e0.codes"):
        assert name in arrays.files, name
    # The recorded codes and scales are the quantized values the step used.
    codes, scales = arrays["a1.codes"], arrays["a1.scales"]
    assert np.array_equal(fp8.dequantize_blocks(codes, scales, "e4m3", block=32, axis=0), arrays["a1"])
    assert arrays["drelu0"].dtype == bool and arrays["a1"].shape == (32, 32)
    text = manifest.read_text()
    assert '"step": 3' in text and "a<l>" in text

    npz, _ = export_trace(tmp_path / "d", TrainConfig(sizes=(64, 32, 10), arithmetic="dfxp8"), step=1, data=small)
    arrays = np.load(npz)
    assert np.array_equal(dfxp.dequantize(arrays["a1.codes"], int(arrays["a1.frac"])), arrays["a1"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(sizes=(64,)), "Layer sizes must be at least two positive integers"),
    (dict(batch=0), "batch must be a positive integer, not 0"),
    (dict(staleness=-1), "Staleness must be a non-negative integer, not -1"),
    (dict(feedback_shift=16), "Feedback shift must be an integer in 0..15, not 16"),
    (dict(algorithm="sgd"), "'sgd' is not a valid Algorithm"),
])
def test_config_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_algorithm_enum():
    assert TrainConfig(algorithm="pdfa").algorithm is Algorithm.PDFA
