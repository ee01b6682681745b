"""Benchmark of the sparsity logic: zero-skip speedup against sparsity, ZVC compression, slice skipping, and
the skip logic's area next to the PE array it feeds.

* Zero skip (simulated, the cocotb bench's ``throughput`` test, every beat still checked against golden):
  cycles of the zero-skip unit for vectors of ``sparsity.depth`` elements at sparsity s in {0, 0.25, 0.5,
  0.75, 0.9} (random values, zeros placed at random) and for real tensors - the hidden ReLU activations and
  the errors of an MLP trained with DFA on scikit-learn's digits in DFXP-16 (:mod:`golden.training`).
  Dense reference: the same vectors at ``slots`` elements per cycle. The unit's pipeline stages
  (``config.stages("zero_skip")``, one cycle of latency each) fill once per set; ``cycles`` leaves that fill
  out (``measured_cycles`` keeps it), as the dense reference does. Reported: speedup = dense / cycles,
  the ideal 1 / (1 - s) with s the measured fraction of zeros, and their ratio (target >= 0.9 for s <= 0.8);
  at s = 0 the throughput against dense (target >= 0.98).
* EP row skip (simulated, the row skipper's ``throughput`` test): cycles to list the rows error
  propagation must compute, for the ReLU derivatives of every hidden layer of the trained MLP and for random
  masks; against the dense row count and the ideal (the rows whose bit is 1).
* ZVC (:func:`golden.sparsity.zvc_encode`, the format the encoder and decoder benches match bit for bit):
  compression ratio raw / compressed words for ``sparsity.zvc_n``-element vectors, against the ideal that
  stores the non-zeros only.
* Slice skipping (simulated, the slice-skipping PE's ``throughput`` test): cycles of the dot products of
  each training GEMM kind on the real DFXP-16 codes - WG ``d_i . a_j`` over the mini-batch, EP
  ``W[:, i] . e_b`` and FF ``W[i, :] . a_b`` over a layer - against a dense 16-bit PE (one pair per cycle on
  its 16 slice multipliers) and against the slice-product bound (needed slice products / slots,
  :func:`golden.sparsity.slice_products`); random full-range operands as the no-gain reference. As for the
  zero skip, ``cycles`` leaves out the fill of the PE's pipeline stages (``config.stages("slice_skip")``,
  once per set; ``measured_cycles`` keeps it). Summary:
  ``wg_speedup`` (and ``ep_speedup``, ``ff_speedup``: dense cycles over measured, all sets of the kind) and
  ``area_over_pe`` (the slice-skipping PE over the bit-scalable PE). Beside them, an analysis of what the
  lockstep PE array could skip (``lockstep_wg_speedup``): a beat goes to every PE row and column at once, so
  a slice is skippable there only when it is sign extension (or zero) in every operand of the beat; the
  figure is the WG beat count of the array at the training precision over the count with every beat sent
  at the narrowest precision pair its operands fit (:func:`lockstep_beats`).
* Area: the zero-skip unit, the row skipper, the ZVC encoder and decoder, the slice-skipping PE, the
  bit-scalable PE and the PE array synthesized in the same run.

Writes ``reports/bench/sparsity.json``.

Usage: ``python scripts/bench_sparsity.py [--preset P] [--set sparsity.window=64 ...] [--vectors N]
[--no-synth] [--sim verilator|icarus]``
"""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchlib  # noqa: E402  (scripts/ is on sys.path when a script runs)

from golden import sparsity                      # noqa: E402
from golden.pe_array import lanes                # noqa: E402
from hw.build import BLOCKS                      # noqa: E402

LEVELS = (0.0, 0.25, 0.5, 0.75, 0.9)
TARGET_RATIO, TARGET_DENSE = 0.9, 0.98


def training_tensors(epochs=3):
    """DFXP-16 codes of the hidden activations (ReLU outputs) and errors of a DFA-trained digits MLP."""
    from golden.training import TrainConfig, Trainer
    trainer = Trainer(TrainConfig(sizes=(64, 128, 128, 10), algorithm="dfa", arithmetic="dfxp16", epochs=epochs))
    for _ in range(epochs):
        trainer.epoch()
    record = {}
    trainer.step(trainer.data[0][:16], trainer.data[1][:16], record=record)
    return record


def lockstep_beats(left, right, p, rows, cols):
    """Beats of ``left @ right`` (``m x k`` by ``k x n`` codes of ``p`` bits) on a ``rows x cols`` array: at
    precision ``p`` throughout, and with each beat at the narrowest precision pair (most operand pairs per
    beat, :func:`golden.pe_array.lanes`) that every operand it carries fits. Returns the two counts."""
    def fits(v, q):
        return v.size == 0 or (v.min() >= -(1 << (q - 1)) and v.max() < 1 << (q - 1))
    narrower = sorted(((qa, qb) for qa in (4, 8, 12, 16) if qa <= p for qb in (4, 8, 12, 16) if qb <= p),
                      key=lambda q: -lanes(*q))
    m, k = left.shape
    static = dynamic = 0
    for m0 in range(0, m, rows):
        for n0 in range(0, right.shape[1], cols):
            lb, rb = left[m0:m0 + rows], right[:, n0:n0 + cols]
            static += -(-k // lanes(p, p))
            pos = 0
            while pos < k:
                n = next(lanes(qa, qb) for qa, qb in narrower
                         if fits(lb[:, pos:pos + lanes(qa, qb)], qa) and fits(rb[pos:pos + lanes(qa, qb)], qb))
                pos += n
                dynamic += 1
    return static, dynamic


def main(argv=None):
    parser = benchlib.parser(__doc__.splitlines()[0], "sparsity.json")
    parser.add_argument("--vectors", type=int, default=48, help="random vectors per sparsity level (default 48)")
    parser.add_argument("--no-synth", action="store_true", help="skip the area figures")
    args = parser.parse_args(argv)
    config = benchlib.resolve(parser, args)
    cfg = config.sparsity
    if args.vectors < 1:
        parser.error(f"--vectors must be a positive integer, not {args.vectors}")
    if cfg.width < 16:
        parser.error(f"sparsity.width must be at least 16 for the DFXP-16 training tensors, not {cfg.width}")
    if cfg.slice_pairs > 64:
        parser.error(f"sparsity.slice_pairs must be at most 64 for this benchmark, not {cfg.slice_pairs}")

    rng = np.random.default_rng(args.seed)
    lo, hi = -(1 << (cfg.width - 1)), (1 << (cfg.width - 1)) - 1
    sets = {}
    for s in LEVELS:
        values = rng.integers(lo, hi + 1, (args.vectors, cfg.depth))
        values[values == 0] = 1
        zeros = np.argsort(rng.random((args.vectors, cfg.depth)), axis=1)[:, :round(s * cfg.depth)]
        np.put_along_axis(values, zeros, 0, axis=1)
        sets[f"random_s{s}"] = values.tolist()
    print("[1/4] training the digits MLP for real activations and errors", flush=True)
    record = training_tensors()
    real = {"activations_a1": record["a1.codes"], "activations_a2": record["a2.codes"],
            "errors_e0": record["e0.codes"], "errors_e1": record["e1.codes"]}
    for name, codes in real.items():
        sets[name] = [codes[:cfg.depth, col].tolist() for col in range(codes.shape[1])]
    weights = rng.integers(-(1 << (cfg.weight_width - 1)), 1 << (cfg.weight_width - 1), cfg.depth).tolist()

    # The pipeline stages' fill (one cycle each, paid once per set: its vectors stream back to back) is
    # latency, not throughput: the speedups count the cycles without it, as the dense reference does.
    zs_fill, ss_fill = config.stages("zero_skip"), config.stages("slice_skip")
    print(f"[2/4] simulating the zero-skip unit: {sum(len(v) for v in sets.values())} vectors ({args.sim})",
          flush=True)
    measured = {r["name"]: r for r in benchlib.measure(
        "zero_skip", config, args, inputs={"weights": weights, "sets": sets}, inputs_env="EDGETRAIN_ZS_RUNS",
        out_env="EDGETRAIN_ZS_OUT", label="zero-skip")}

    zero_skip = []
    for name, vectors in sets.items():
        flat = np.concatenate([np.asarray(v) for v in vectors])
        s = float(np.mean(flat == 0))
        dense = sparsity.dense_cycles(vectors, cfg.slots)
        cycles = measured[name]["cycles"] - zs_fill
        speedup = dense / cycles
        ideal = 1 / (1 - s) if s < 1 else float("inf")
        bound = sparsity.zero_skip_ideal_cycles(vectors, cfg.slots, cfg.window)
        zero_skip.append({
            "set": name, "vectors": len(vectors), "sparsity": round(s, 4), "cycles": cycles,
            "measured_cycles": measured[name]["cycles"], "dense_cycles": dense,
            "speedup": round(speedup, 4), "ideal_speedup": round(ideal, 4),
            "speedup_over_ideal": round(speedup / ideal, 4),
            "schedule_bound_cycles": bound,
            "meets_target": (speedup / ideal >= TARGET_RATIO) if s <= 0.8 else None,
        })
    dense_run = next(z for z in zero_skip if z["set"] == "random_s0.0")

    print("[3/4] EP row skip, ZVC and slice skipping", flush=True)
    masks = {f"drelu{l}": [record[f"drelu{l}"][:cfg.max_rows, col].tolist()
                           for col in range(record[f"drelu{l}"].shape[1])] for l in (0, 1)}
    for s in (0.25, 0.5, 0.75):
        masks[f"random_s{s}"] = (rng.random((16, min(cfg.max_rows, 256))) >= s).astype(int).tolist()
    listed = {r["name"]: r["cycles"] for r in benchlib.measure(
        "row_skip", config, args, inputs=masks, inputs_env="EDGETRAIN_RS_RUNS", out_env="EDGETRAIN_RS_OUT",
        label="row-skip")}
    row_skip = []
    for name, mask_set in masks.items():
        dense = sum(len(mask) for mask in mask_set)
        needed = sum(len(sparsity.ep_rows(mask)) for mask in mask_set)
        row_skip.append({"set": name, "masks": len(mask_set), "rows": dense, "rows_to_compute": needed,
                         "listing_cycles": listed[name], "speedup": round(dense / listed[name], 4),
                         "ideal_speedup": round(dense / max(needed, 1), 4),
                         "speedup_over_ideal": round(needed / listed[name], 4)})

    zvc = []
    n, width = cfg.zvc_n, cfg.zvc_width
    zvc_sets = {name: np.asarray(v) for name, v in sets.items()}
    for name, values in zvc_sets.items():
        flat = values.ravel()
        flat = np.concatenate([flat, np.zeros(-len(flat) % n, dtype=flat.dtype)]).reshape(-1, n)
        compressed = sum(sparsity.zvc_words(v, width) for v in flat)
        nonzero = int(np.count_nonzero(flat))
        zvc.append({"set": name, "sparsity": round(float(np.mean(flat == 0)), 4), "raw_words": flat.size,
                    "compressed_words": compressed, "ratio": round(flat.size / compressed, 4),
                    "ideal_ratio": round(flat.size / max(nonzero, 1), 4),
                    "ratio_over_ideal": round((flat.size / compressed) / (flat.size / max(nonzero, 1)), 4)})
    bits, slots = cfg.slice_bits, cfg.slice_slots
    shift = 16 - bits
    ops = {}
    for layer in (0, 1):
        d, a = record[f"e{layer}.codes"] >> shift, record[f"a{layer}.codes"] >> shift   # WG: G = d a^T
        ops[f"wg_layer{layer}"] = [(d[i].tolist(), a[j].tolist()) for i in range(d.shape[0])
                                   for j in range(0, a.shape[0], 4)]
    lo_b, hi_b = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    w1, e1, a1 = record["w1.codes"] >> shift, record["e1.codes"] >> shift, record["a1.codes"] >> shift
    ops["ep_layer1"] = [(w1[:, i].tolist(), e1[:, b].tolist()) for i in range(0, w1.shape[1], 8)   # e0 = W1^T e1
                        for b in range(0, e1.shape[1], 4)]
    ops["ff_layer1"] = [(w1[i, :].tolist(), a1[:, b].tolist()) for i in range(0, w1.shape[0], 8)   # a2 = W1 a1
                        for b in range(0, a1.shape[1], 4)]
    ops["random_full_range"] = [(rng.integers(lo_b, hi_b + 1, 16).tolist(), rng.integers(lo_b, hi_b + 1, 16).tolist())
                                for _ in range(200)]
    ss_cycles = {r["name"]: r["cycles"] for r in benchlib.measure(
        "slice_skip", config, args, inputs=ops, inputs_env="EDGETRAIN_SS_RUNS", out_env="EDGETRAIN_SS_OUT",
        label="slice-skip")}
    slices = []
    for name, dots in ops.items():
        a_all = np.concatenate([np.asarray(x) for x, _ in dots])
        b_all = np.concatenate([np.asarray(y) for _, y in dots])
        dense_p, needed_p = sparsity.slice_products(a_all, b_all, bits, bits)
        dense_cycles = -(-int(a_all.size) * (bits // 4) ** 2 // slots)
        cycles = ss_cycles[name] - ss_fill
        slices.append({"set": name, "dot_products": len(dots), "pairs": int(a_all.size),
                       "dense_slice_products": dense_p, "needed_slice_products": needed_p,
                       "cycles": cycles, "measured_cycles": ss_cycles[name], "dense_cycles": dense_cycles,
                       "speedup": round(dense_cycles / cycles, 4),
                       "bound_speedup": round(dense_p / max(needed_p, 1), 4),
                       "speedup_over_bound": round((dense_cycles / cycles) / (dense_p / max(needed_p, 1)), 4)})
    summary = {}
    for kind in ("wg", "ep", "ff"):
        runs = [s for s in slices if s["set"].startswith(kind + "_")]
        summary[f"{kind}_speedup"] = round(sum(s["dense_cycles"] for s in runs) / sum(s["cycles"] for s in runs), 4)
    static = dynamic = 0
    for layer in (0, 1):        # WG: G = d a^T, d (out x batch) on the A side, a^T on the B side
        s_, d_ = lockstep_beats(record[f"e{layer}.codes"], record[f"a{layer}.codes"].T, 16, config.pe.rows,
                                config.pe.cols)
        static, dynamic = static + s_, dynamic + d_
    summary["lockstep_wg_beats"] = static
    summary["lockstep_wg_beats_narrowest"] = dynamic
    summary["lockstep_wg_speedup"] = round(static / dynamic, 4)

    area = None
    if not args.no_synth:
        print("[4/4] synthesizing the zero-skip unit, the ZVC encoder/decoder and the PE array", flush=True)
        area = benchlib.synthesize({block: BLOCKS[block].make(config) for block in
                                    ("zero_skip", "row_skip", "zvc_enc", "zvc_dec", "slice_skip", "pe", "pe_array")})
        skip = area["zero_skip"]["nand2_equivalents"]
        array = area["pe_array"]["nand2_equivalents"]
        area = {
            "zero_skip_nand2": skip, "zero_skip_memory_bits": area["zero_skip"]["memory_bits"],
            "row_skip_nand2": area["row_skip"]["nand2_equivalents"],
            "row_skip_memory_bits": area["row_skip"]["memory_bits"],
            "zvc_encoder_nand2": area["zvc_enc"]["nand2_equivalents"],
            "zvc_decoder_nand2": area["zvc_dec"]["nand2_equivalents"],
            "slice_skip_pe_nand2": area["slice_skip"]["nand2_equivalents"],
            "bit_scalable_pe_nand2": area["pe"]["nand2_equivalents"],
            "slice_skip_pe_over_bit_scalable_pe": round(area["slice_skip"]["nand2_equivalents"]
                                                        / area["pe"]["nand2_equivalents"], 4),
            "pe_array_nand2": array, "zero_skip_over_pe_array": round(skip / array, 4), "synthesis": area,
        }
        summary["area_over_pe"] = area["slice_skip_pe_over_bit_scalable_pe"]
    else:
        print("[4/4] synthesis skipped (--no-synth)", flush=True)

    report = {
        "config": config.to_dict(), "simulator": args.sim, "seed": args.seed,
        "zero_skip": {"window": cfg.window, "slots": cfg.slots, "depth": cfg.depth, "stages": zs_fill,
                      "runs": zero_skip,
                      "dense_throughput": round(dense_run["speedup"], 4),
                      "target_speedup_over_ideal": TARGET_RATIO, "target_dense_throughput": TARGET_DENSE},
        "row_skip": {"lanes": cfg.mask_lanes, "runs": row_skip},
        "zvc": {"n": n, "width": width, "runs": zvc},
        "slice_skip": {"stages": ss_fill, "runs": slices, **summary, "area_over_pe": summary.get("area_over_pe"),
                       "target_wg_speedup": 2.0, "target_area_over_pe": 2.0},
        "area": area,
    }
    path = benchlib.write_json(args.out, report)
    for z in zero_skip:
        print(f"{z['set']:<18} s={z['sparsity']:.3f} speedup {z['speedup']:.3f} ideal {z['ideal_speedup']:.3f} "
              f"ratio {z['speedup_over_ideal']:.3f}")
    for r in row_skip:
        print(f"EP row skip {r['set']:<14} speedup {r['speedup']:.3f} ideal {r['ideal_speedup']:.3f}")
    for z in zvc:
        print(f"ZVC {z['set']:<18} ratio {z['ratio']:.3f} ideal {z['ideal_ratio']:.3f}")
    for sl in slices:
        print(f"slice skip {sl['set']:<18} speedup {sl['speedup']:.3f} (slice-product bound {sl['bound_speedup']:.3f})")
    print(f"slice skip: WG {summary['wg_speedup']:.3f}x, EP {summary['ep_speedup']:.3f}x, FF {summary['ff_speedup']:.3f}x "
          f"on the slice-skipping PE; the lockstep array could skip to {summary['lockstep_wg_speedup']:.3f}x on WG")
    if area:
        print(f"zero-skip unit {area['zero_skip_nand2']:.0f} NAND2 eq. = {area['zero_skip_over_pe_array']:.4f} of the "
              f"PE array ({area['pe_array_nand2']:.0f}); slice-skipping PE {area['slice_skip_pe_nand2']:.0f} = "
              f"{area['slice_skip_pe_over_bit_scalable_pe']:.3f} x the bit-scalable PE")
    print(path)


if __name__ == "__main__":
    main()
