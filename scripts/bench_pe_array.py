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

Area: the bit-scalable PE and the fixed 16x16-bit baseline PE (same accumulator, same pipeline) are
synthesized in the same run by ``constraints/synth.ys``.

Writes ``reports/bench/pe_array.json``.

Usage: ``python scripts/bench_pe_array.py [--preset P] [--set k=v ...] [--sim verilator|icarus] [--seed N]``
"""

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

FULL_TILE_BEATS = 64
RAGGED_TILE_BEATS = 9
TARGET_RATIO = 0.95
TARGET_AREA = 1.5


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


def main(argv=None):
    parser = benchlib.parser(__doc__.splitlines()[0], "pe_array.json")
    args = parser.parse_args(argv)
    config = benchlib.resolve(parser, args)
    cfg = config.pe

    cases = workload(cfg)
    print(f"[1/2] simulating {len(cases)} GEMMs on a {cfg.rows}x{cfg.cols} array ({args.sim})", flush=True)
    start = time.monotonic()
    measured = benchlib.measure("pe_array", config, args, inputs=cases, inputs_env="EDGETRAIN_PERF_IN",
                                out_env="EDGETRAIN_PERF_OUT")
    sim_seconds = time.monotonic() - start

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
    full = [r for r in rows if r["kind"] == "full"]
    ragged = [r for r in rows if r["kind"] == "ragged"]

    print("[2/2] synthesizing the bit-scalable PE and the fixed 16x16-bit PE", flush=True)
    area = {}
    with tempfile.TemporaryDirectory() as tmp:
        for block in ("pe", "pe_fixed16"):
            area[block] = synth.synthesize(elaborate(block, config, "rtlil"), BLOCKS[block].top, Path(tmp) / block)
    area_ratio = area["pe"]["nand2_equivalents"] / area["pe_fixed16"]["nand2_equivalents"]
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
            "synthesis": area,
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
    print(f"PE area: {area['pe']['nand2_equivalents']:.0f} vs fixed 16x16 {area['pe_fixed16']['nand2_equivalents']:.0f}"
          f" NAND2 eq. = {area_ratio:.3f}x (target <= {TARGET_AREA}x) for {throughput_4bit}x the 4-bit throughput")
    print(out)


if __name__ == "__main__":
    main()
