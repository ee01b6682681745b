"""Benchmark of the bit-scalable PE array: MACs/cycle against peak, and PE area against a fixed 16x16 PE.

Throughput is measured in simulation (the cocotb bench's ``throughput`` test, no stalls, every output
still checked against golden): for every GEMM mode and every precision pair, one GEMM of full tiles
(``4*rows x 4*cols`` outputs, 64 beats per tile) and one ragged GEMM (partial tiles, a reduction that is
not a whole number of beats, 9 beats per tile). ``ratio = useful MACs / (cycles * peak)`` with
``peak = rows * cols * lanes(pa, pb)``, cycles counted from the first beat taken to the last output row.
The ratio is the product of ``padding_efficiency`` (useful MACs over the MAC slots of the beats sent:
partial tiles and reductions are zero-padded) and ``beats_per_cycle`` (pipeline fill, and commands shorter
than the drain of the previous tile, about ``rows + 4`` beats, stall).
Multiplier utilization (useful slice products / 16 per PE per cycle) is reported beside it: 12-bit
operands occupy four grid slots for three slices.

Training shapes: the GEMMs the TrainCore runs on its arrays to train the digits MLPs (``--net``, default
64-128-128-10 and its 4- and 5-layer versions), at the core's mini-batch (``core.max_batch``) and at every
layer precision the core runs (``p x p`` for the DFXP widths of ``pe.precisions`` and ``pdfa.precisions``
whose operand pairs fit a core tile): FF ``Y = W X`` (``out x batch`` over ``in``), EP ``E' = W^T E`` of
backpropagation (``in x batch`` over ``out``, for every layer above the first; DFA's error projection runs
on the DFA engine) and WG ``G = E X^T`` (``out x in`` over the batch). Each distinct GEMM is simulated
once, checked against golden like the others. Per GEMM the ratio to peak splits as above into padding (a
10-wide layer fills 10 of 16 rows of an 8-row array: geometry, no schedule recovers it) and
``beats_per_cycle`` (what the array's pipeline and drain deliver, the part this design controls);
``training_shapes_min_ratio_to_peak`` is the worst GEMM, ``training_shapes_min_beats_per_cycle`` the worst
delivery, and per net ``step_ratio_to_peak`` weighs a whole training step (every FF, EP and WG of one
mini-batch, MACs over cycles). The array's ``pe.drain_buffers`` and ``pe.drain_rows`` set how short a
reduction runs at full rate (:class:`hw.pe_array.PEArray`): the same GEMMs on the array without them (one
buffer, one row per transfer) are simulated in the same run (``baseline``), and their area against it is
reported.

Area: the bit-scalable PE and the fixed 16x16-bit baseline PE (same accumulator, same pipeline) are
synthesized in the same run by ``constraints/synth.ys``.

Writes ``reports/bench/pe_array.json``.

Usage: ``python scripts/bench_pe_array.py [--preset P] [--set k=v ...] [--sim verilator|icarus] [--seed N]
[--net 64-128-128-10 ...] [--out F.json]``
"""

import dataclasses
import itertools
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchlib  # noqa: E402  (scripts/ is on sys.path when a script runs)

from golden import pe_array as golden                      # noqa: E402
from hw import synth                                       # noqa: E402
from hw.build import elaborate, BLOCKS                     # noqa: E402
from hw.tile_gemm import core_precisions                   # noqa: E402

FULL_TILE_BEATS = 64
RAGGED_TILE_BEATS = 9
TARGET_RATIO = 0.95
TARGET_TRAINING_RATIO = 0.85
TARGET_AREA = 1.5
DIGITS_NETS = ("64-128-128-10", "64-128-128-128-10", "64-128-128-128-128-10")


def workload(cfg):
    cases = []
    for mode in golden.Mode:
        for pa, pb in itertools.product(cfg.precisions, cfg.precisions):
            n = golden.lanes(pa, pb)
            cases.append({"name": f"{mode.name} {pa}x{pb} full", "mode": mode.name, "pa": pa, "pb": pb,
                          "kind": "full", "m": 4 * cfg.rows, "n": 4 * cfg.cols, "k": FULL_TILE_BEATS * n})
            cases.append({"name": f"{mode.name} {pa}x{pb} ragged", "mode": mode.name, "pa": pa, "pb": pb,
                          "kind": "ragged", "m": cfg.rows + max(1, cfg.rows // 2), "n": cfg.cols + 1,
                          "k": RAGGED_TILE_BEATS * n - max(1, n // 2)})
    return cases


def training_precisions(config):
    """The layer precisions (bits) the TrainCore of ``config`` runs on its arrays."""
    return tuple(p for p in core_precisions(config.core.tile, config.pe.precisions)
                 if f"dfxp{p}" in config.pdfa.precisions)


def training_gemms(sizes, batch):
    """``[(kind, mode, m, n, k)]``: the PE-array GEMMs of one training step of the MLP ``sizes``."""
    gemms = []
    for l, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        gemms.append(("FF", "FF", n_out, batch, n_in))
        if l > 0:
            gemms.append(("EP", "EP", n_in, batch, n_out))
        gemms.append(("WG", "WG", n_out, n_in, batch))
    return gemms


def training_workload(config, nets):
    """The distinct training GEMMs of ``nets`` at every core precision, as bench cases."""
    cases = {}
    for sizes in nets:
        for kind, mode, m, n, k in training_gemms(sizes, config.core.max_batch):
            for p in training_precisions(config):
                name = f"{kind} {m}x{n} over {k} @{p}"
                cases[name] = {"name": name, "mode": mode, "pa": p, "pb": p, "kind": "training", "m": m, "n": n,
                               "k": k}
    return list(cases.values())


def parse_net(text):
    sizes = text.split("-")
    if len(sizes) < 2 or not all(s.isdigit() and 0 < int(s) <= 4096 for s in sizes):
        raise ValueError(f"--net must be layer sizes 1..4096 joined by '-', e.g. 64-128-10, not {text!r}")
    return tuple(int(s) for s in sizes)


def rate_rows(measured, cfg):
    """The report row of each measured case."""
    rows = []
    for case in measured:
        n = golden.lanes(case["pa"], case["pb"])
        peak = cfg.rows * cfg.cols * n
        macs = case["m"] * case["n"] * case["k"]
        slices = (case["pa"] // 4) * (case["pb"] // 4)
        rows.append({
            **{k: case[k] for k in ("name", "mode", "pa", "pb", "kind", "m", "n", "k", "tiles", "beats", "cycles")},
            "lanes": n,
            "peak_macs_per_cycle": peak,
            "macs_per_cycle": round(macs / case["cycles"], 3),
            "ratio_to_peak": round(macs / (case["cycles"] * peak), 4),
            # Where the rest goes: padding of partial tiles and reductions (geometry), and cycles beyond
            # one per beat (pipeline fill, and tiles shorter than the drain of the previous one).
            "padding_efficiency": round(macs / (case["beats"] * peak), 4),
            "beats_per_cycle": round(case["beats"] / case["cycles"], 4),
            "multiplier_utilization": round(macs * slices / (case["cycles"] * cfg.rows * cfg.cols * 16), 4),
        })
    return rows


def step_ratios(nets, rows, config):
    """Per net and precision: a whole training step's MACs over its cycles and peak."""
    by_name = {r["name"]: r for r in rows}
    out = {}
    for sizes in nets:
        for p in training_precisions(config):
            macs = cycles = 0
            for kind, mode, m, n, k in training_gemms(sizes, config.core.max_batch):
                r = by_name[f"{kind} {m}x{n} over {k} @{p}"]
                macs += m * n * k
                cycles += r["cycles"]
            peak = config.pe.rows * config.pe.cols * golden.lanes(p, p)
            out[f"{'-'.join(map(str, sizes))} @{p}"] = round(macs / (cycles * peak), 4)
    return out


def main(argv=None):
    parser = benchlib.parser(__doc__.splitlines()[0], "pe_array.json")
    parser.add_argument("--net", action="append", default=None, metavar="SIZES",
                        help=f"an MLP whose training GEMMs to measure (repeatable; default {', '.join(DIGITS_NETS)})")
    args = parser.parse_args(argv)
    config = benchlib.resolve(parser, args)
    cfg = config.pe
    try:
        nets = [parse_net(text) for text in (args.net or DIGITS_NETS)]
    except ValueError as exc:
        parser.error(str(exc))
    if not training_precisions(config):
        parser.error(f"the core of this configuration runs no layer precision on its arrays (pe.precisions "
                     f"{list(cfg.precisions)}, pdfa.precisions {list(config.pdfa.precisions)}, core.tile "
                     f"{config.core.tile})")
    baseline = dataclasses.replace(config, name=f"{config.name}-1buf-1row",
                                   pe=dataclasses.replace(cfg, drain_buffers=1, drain_rows=1))

    cases = workload(cfg)
    training = training_workload(config, nets)
    print(f"[1/3] simulating {len(cases)} GEMMs and {len(training)} training GEMMs on a {cfg.rows}x{cfg.cols} "
          f"array ({args.sim})", flush=True)
    start = time.monotonic()
    measured = benchlib.measure("pe_array", config, args, inputs=cases + training, inputs_env="EDGETRAIN_PERF_IN",
                                out_env="EDGETRAIN_PERF_OUT")
    sim_seconds = time.monotonic() - start
    # An array configured without the drain options is its own baseline: measured and synthesized once.
    same = (cfg.drain_buffers, min(cfg.drain_rows, cfg.rows)) == (1, 1)
    print("[2/3] the training GEMMs on the array with one drain buffer and one row per transfer"
          + (": the array itself" if same else ""), flush=True)
    measured_base = [c for c in measured if c["kind"] == "training"] if same else benchlib.measure(
        "pe_array", baseline, args, inputs=training, inputs_env="EDGETRAIN_PERF_IN", out_env="EDGETRAIN_PERF_OUT",
        label="pe_array (baseline)")

    rows = rate_rows(measured, cfg)
    base_rows = rate_rows(measured_base, cfg)
    full = [r for r in rows if r["kind"] == "full"]
    ragged = [r for r in rows if r["kind"] == "ragged"]
    trained = [r for r in rows if r["kind"] == "training"]

    print("[3/3] synthesizing the bit-scalable PE, the fixed 16x16-bit PE and the array with and without its "
          "drain options", flush=True)
    area = {}
    with tempfile.TemporaryDirectory() as tmp:
        for block in ("pe", "pe_fixed16"):
            area[block] = synth.synthesize(elaborate(block, config, "rtlil"), BLOCKS[block].top, Path(tmp) / block)
        array_area = {}
        for label, cfg_ in (("array", config), ("baseline", baseline))[:1 if same else 2]:
            array_area[label] = synth.synthesize(elaborate("pe_array", cfg_, "rtlil"), BLOCKS["pe_array"].top,
                                                 Path(tmp) / label)
        array_area.setdefault("baseline", array_area["array"])
    area_ratio = area["pe"]["nand2_equivalents"] / area["pe_fixed16"]["nand2_equivalents"]
    base_by_name = {r["name"]: r for r in base_rows}
    for r in trained:
        r["baseline_ratio_to_peak"] = base_by_name[r["name"]]["ratio_to_peak"]
        r["baseline_beats_per_cycle"] = base_by_name[r["name"]]["beats_per_cycle"]
    steps = step_ratios(nets, rows, config)
    base_steps = step_ratios(nets, base_rows, config)
    throughput_4bit = golden.lanes(4, 4) / 1        # the baseline does one MAC per cycle at any precision

    report = {
        "config": config.to_dict(),
        "simulator": args.sim,
        "seed": args.seed,
        "simulation_seconds": round(sim_seconds, 1),
        "cases": rows,
        "summary": {
            "full_tiles_min_ratio_to_peak": min(r["ratio_to_peak"] for r in full),
            "full_tiles_mean_ratio_to_peak": round(sum(r["ratio_to_peak"] for r in full) / len(full), 4),
            "ragged_tiles_min_ratio_to_peak": min(r["ratio_to_peak"] for r in ragged),
            "ragged_tiles_mean_ratio_to_peak": round(sum(r["ratio_to_peak"] for r in ragged) / len(ragged), 4),
            "target_ratio_to_peak": TARGET_RATIO,
            "full_tiles_meet_target": all(r["ratio_to_peak"] >= TARGET_RATIO for r in full),
            "training_shapes_min_ratio_to_peak": min(r["ratio_to_peak"] for r in trained),
            "training_shapes_min_padding_efficiency": min(r["padding_efficiency"] for r in trained),
            "training_shapes_min_beats_per_cycle": min(r["beats_per_cycle"] for r in trained),
            "training_step_min_ratio_to_peak": min(steps.values()),
            "target_training_ratio_to_peak": TARGET_TRAINING_RATIO,
            "baseline_training_shapes_min_ratio_to_peak": min(r["ratio_to_peak"] for r in base_rows),
            "baseline_training_shapes_min_beats_per_cycle": min(r["beats_per_cycle"] for r in base_rows),
            "baseline_training_step_min_ratio_to_peak": min(base_steps.values()),
        },
        "training": {
            "nets": ["-".join(map(str, sizes)) for sizes in nets],
            "batch": config.core.max_batch,
            "precisions": list(training_precisions(config)),
            "step_ratio_to_peak": steps,
            "baseline": {"drain_buffers": 1, "drain_rows": 1, "step_ratio_to_peak": base_steps},
            "array": {"drain_buffers": cfg.drain_buffers, "drain_rows": min(cfg.drain_rows, cfg.rows)},
        },
        "area": {
            "pe_nand2": area["pe"]["nand2_equivalents"],
            "pe_fixed16_nand2": area["pe_fixed16"]["nand2_equivalents"],
            "pe_over_fixed16": round(area_ratio, 3),
            "throughput_4x4_over_fixed16": throughput_4bit,
            "throughput_16x16_over_fixed16": golden.lanes(16, 16),
            "area_per_4x4_mac_over_fixed16": round(area_ratio / throughput_4bit, 4),
            "target_pe_over_fixed16": TARGET_AREA,
            "meets_target": area_ratio <= TARGET_AREA,
            "array_area_um2": array_area["array"]["area_um2"],
            "baseline_array_area_um2": array_area["baseline"]["area_um2"],
            "array_over_baseline": round(array_area["array"]["area_um2"] / array_area["baseline"]["area_um2"], 4),
            "synthesis": {**area, "pe_array": array_area["array"], "pe_array_baseline": array_area["baseline"]},
        },
    }
    out = benchlib.write_json(args.out, report)

    print(f"{'case':<24} {'MACs/cycle':>10} {'peak':>6} {'ratio':>7} {'padding':>8} {'beats/cyc':>9} "
          f"{'mult util':>9}")
    for r in rows:
        print(f"{r['name']:<24} {r['macs_per_cycle']:>10.2f} {r['peak_macs_per_cycle']:>6} "
              f"{r['ratio_to_peak']:>7.4f} {r['padding_efficiency']:>8.4f} {r['beats_per_cycle']:>9.4f} "
              f"{r['multiplier_utilization']:>9.4f}")
    s = report["summary"]
    print(f"full tiles: min {s['full_tiles_min_ratio_to_peak']:.4f} of peak (target {TARGET_RATIO}); "
          f"ragged: min {s['ragged_tiles_min_ratio_to_peak']:.4f}")
    print(f"training GEMMs: min {s['training_shapes_min_ratio_to_peak']:.4f} of peak (padding "
          f"{s['training_shapes_min_padding_efficiency']:.4f}, beats/cycle {s['training_shapes_min_beats_per_cycle']:.4f}); "
          f"training steps: min {s['training_step_min_ratio_to_peak']:.4f} (target {TARGET_TRAINING_RATIO}); "
          f"without the drain options: {s['baseline_training_shapes_min_ratio_to_peak']:.4f}, beats/cycle "
          f"{s['baseline_training_shapes_min_beats_per_cycle']:.4f}, steps {s['baseline_training_step_min_ratio_to_peak']:.4f}")
    print(f"array area {report['area']['array_area_um2']:.0f} um^2 = {report['area']['array_over_baseline']:.4f}x "
          f"the array without the drain options")
    print(f"PE area: {area['pe']['nand2_equivalents']:.0f} vs fixed 16x16 {area['pe_fixed16']['nand2_equivalents']:.0f}"
          f" NAND2 eq. = {area_ratio:.3f}x (target <= {TARGET_AREA}x) for {throughput_4bit}x the 4-bit throughput")
    print(out)


if __name__ == "__main__":
    main()
