"""Accuracy of SE-FP8 dot products on real training tensors, against float32.

Source of the tensors: a float32 ReLU MLP (64-256-256-10, softmax cross-entropy, SGD, batch 64) trained
by back-propagation for two epochs on scikit-learn's bundled handwritten digits (8x8 images, pixels
scaled to [0, 1]; the first 1500 images in a fixed shuffled order, seed 0). At the last step the script
takes the two gradient GEMMs of the middle layer: error propagation ``E' = W^T E`` (reduction over the
256 outputs) and the weight gradient ``G = E X^T`` (reduction over the batch of 64).

Each dot product is computed by :func:`golden.fp8.dot` (exact blocks, one rounding, binary32 accumulation)
from operands quantized along the reduction axis with the OCP MX rule, for K = 8, 16, 32 and one scale per
tensor (the ISSCC 2021 shared exponent bias), for both scale rules (OCP floor, which clamps each block's
largest elements to the max normal, and round-up, which never clamps), and for three format choices: both
operands E4M3, both E5M2, and the training recipe (weights and activations E4M3, errors E5M2). The reference is the exact dot
product of the float32 tensors, rounded to float32. Reported: norm-wise relative error
``||y - y_ref|| / ||y_ref||`` and the median element-wise relative error over 1024 sampled outputs.

Writes ``reports/bench/fp8_accuracy.json`` and ``reports/bench/fp8_accuracy.md``.
"""

import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from golden import fp8  # noqa: E402
from hw.build import CliParser, json_out_problem  # noqa: E402

SIZES = (64, 256, 256, 10)
BATCH = 64


def train_mlp(seed=0, epochs=2, lr=0.05):
    """Train the float32 MLP; return the tensors of the middle layer at the last step."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))[:1500]
    x_all = (digits.data[order] / 16.0).astype(np.float32)
    y_all = digits.target[order]
    rng = np.random.default_rng(seed + 1)
    weights = [(rng.normal(size=(o, i)) * np.sqrt(2.0 / i)).astype(np.float32) for i, o in zip(SIZES, SIZES[1:])]
    captured = None
    for _ in range(epochs):
        for start in range(0, len(y_all) - BATCH + 1, BATCH):
            x = x_all[start:start + BATCH].T                    # features x batch
            acts = [x]
            for w in weights[:-1]:
                acts.append(np.maximum(w @ acts[-1], 0))
            logits = weights[-1] @ acts[-1]
            p = np.exp(logits - logits.max(axis=0))
            p /= p.sum(axis=0)
            err = p.copy()
            err[y_all[start:start + BATCH], np.arange(BATCH)] -= 1
            err /= BATCH
            errors = [err]
            for w, a in zip(weights[:0:-1], acts[:0:-1]):
                errors.insert(0, (w.T @ errors[0]) * (a > 0))
            # Middle layer (index 1): W (256 x 256), its output error E and its input X.
            captured = {"w": weights[1].copy(), "e": errors[1].astype(np.float32), "x": acts[1].astype(np.float32)}
            for w, e, a in zip(weights, errors, acts):
                w -= np.float32(lr) * (e @ a.T)
    return captured


def quantize(vectors, fmt, k, rule):
    """Quantize rows (each a dot-product operand) in blocks of ``k`` (None: one scale for all rows).
    Returns codes ``(rows, n, 32 or k)`` and scales ``(rows, n)``."""
    rows, length = vectors.shape
    if k is None:
        codes, scale = fp8.quantize_blocks(vectors.ravel(), fmt, block=None, rule=rule)
        block = 32
        return codes.reshape(rows, length // block, block), np.full((rows, length // block), scale[0])
    codes, scales = fp8.quantize_blocks(vectors, fmt, block=k, axis=1, rule=rule)
    return codes.reshape(rows, length // k, k), scales


def evaluate(left, right, fmt_left, fmt_right, k, rule, pairs):
    """SE-FP8 and float32 dot products of ``left[i] . right[j]`` for the sampled pairs."""
    ql, sl = quantize(left, fmt_left, k, rule)
    qr, sr = quantize(right, fmt_right, k, rule)
    got, ref = [], []
    for i, j in pairs:
        bits = fp8.dot(ql[i], fmt_left, sl[i], qr[j], fmt_right, sr[j])
        got.append(float(np.uint32(bits).view(np.float32)))
        ref.append(float(np.float32(math.fsum(float(u) * float(v) for u, v in zip(left[i], right[j])))))
    got, ref = np.array(got), np.array(ref)
    nz = ref != 0
    return {
        "normwise_relative_error": float(np.linalg.norm(got - ref) / np.linalg.norm(ref)),
        "median_relative_error": float(np.median(np.abs(got[nz] - ref[nz]) / np.abs(ref[nz]))),
    }


def main(argv=None):
    parser = CliParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench" / "fp8_accuracy.json"))
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error(f"--samples must be a positive integer, not {args.samples}")
    problem = json_out_problem(Path(args.out), beside=(".md",))
    if problem:
        parser.error(problem)
    print("training the float32 MLP on the digits set", flush=True)
    t = train_mlp()
    rng = np.random.default_rng(7)
    # EP: E'[n, b] = sum_m W[m, n] E[m, b]: operands are columns of W and of E.
    ep = (np.ascontiguousarray(t["w"].T), np.ascontiguousarray(t["e"].T))
    # WG: G[m, n] = sum_b E[m, b] X[n, b]: operands are rows of E and of X.
    wg = (t["e"], t["x"])
    gemms = {"EP  W^T E": (ep, ("w", "e")), "WG  E X^T": (wg, ("e", "x"))}
    recipes = {
        "E4M3": {"w": "e4m3", "x": "e4m3", "e": "e4m3"},
        "E5M2": {"w": "e5m2", "x": "e5m2", "e": "e5m2"},
        "E4M3 fwd / E5M2 err": {"w": "e4m3", "x": "e4m3", "e": "e5m2"},
    }
    rows = []
    for gemm, ((left, right), (kind_l, kind_r)) in gemms.items():
        pairs = list(zip(rng.integers(0, left.shape[0], args.samples), rng.integers(0, right.shape[0], args.samples)))
        for recipe, fmts in recipes.items():
            for rule in fp8.ScaleRule:
                for k in (8, 16, 32, None):
                    print(f"{gemm} {recipe} {rule.value} K={k or 'tensor'}", flush=True)
                    r = evaluate(left, right, fmts[kind_l], fmts[kind_r], k, rule, pairs)
                    rows.append({"gemm": gemm.split()[0], "recipe": recipe, "scale_rule": rule.value,
                                 "k": k or "per-tensor", "reduction": left.shape[1], **r})
    report = {"source": "float32 ReLU MLP 64-256-256-10 on sklearn digits, middle layer, last step of 2 epochs",
              "samples_per_gemm": args.samples, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# SE-FP8 dot products on real gradient tensors: relative error against float32", "",
             report["source"] + f"; {args.samples} sampled outputs per GEMM.", "",
             "| GEMM | formats | scale rule | K | norm-wise rel. error | median rel. error |",
             "| --- | --- | --- | --- | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['gemm']} | {r['recipe']} | {r['scale_rule']} | {r['k']} "
                     f"| {r['normwise_relative_error']:.2e} | {r['median_relative_error']:.2e} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(out)


if __name__ == "__main__":
    main()
