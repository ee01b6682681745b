"""Benchmark of the shared-exponent FP8 MAC tree: throughput and latency in simulation, area against a
bfloat16 tree and an INT8 tree of the same K synthesized in the same run.

* Throughput/latency: the cocotb bench's ``throughput`` test on the generated Verilog (no stalls, every
  result checked against golden): latency of one block pair in cycles (``3 + stages``, the depth
  ``pipeline.fp8_tree`` of the configuration), and block pairs per cycle over a stream of dot products of
  1 to 4 blocks each (ideal and required: 1 at every depth; the script exits non-zero otherwise).
* Area: ``constraints/synth.ys`` on the FP8 tree, the bfloat16 tree (bf16 multipliers, binary32 adder
  tree, binary32 accumulation) and the INT8 tree (exact adder tree, 32-bit accumulation), all with the same
  K and the same stream/pipeline shell. Area per MAC = NAND2 equivalents / K.

Writes ``reports/bench/fp8_tree.json``. The bfloat16 tree is large: its synthesis takes several minutes.

Usage: ``python scripts/bench_fp8_tree.py [--preset P] [--set fp8.k=16] [--sim verilator|icarus]``
"""

import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchlib  # noqa: E402  (scripts/ is on sys.path when a script runs)

from hw.fp8_tree import BF16MacTree, FP8MacTree, Int8DotTree  # noqa: E402

TARGET_BF16_RATIO = 0.5


def main(argv=None):
    parser = benchlib.parser(__doc__.splitlines()[0], "fp8_tree.json")
    parser.add_argument("--dots", type=int, default=500, help="dot products in the throughput stream")
    args = parser.parse_args(argv)
    config = benchlib.resolve(parser, args)
    k = config.fp8.k
    stages = config.stages("fp8_tree")

    print(f"[1/2] simulating the K={k} FP8 tree, {stages} added stages ({args.sim})", flush=True)
    measured = benchlib.measure("fp8_tree", config, args, out_env="EDGETRAIN_PERF_OUT",
                                env={"EDGETRAIN_PERF_DOTS": str(args.dots)}, label="throughput")

    fp8 = FP8MacTree(k=k, stages=stages)
    designs = {"fp8_tree": fp8, "bf16_tree": BF16MacTree(k=k), "int8_tree": Int8DotTree(k=k)}
    area = benchlib.synthesize(designs, lambda i, name: print(f"[2/2] synthesizing {name} ({i}/3)", flush=True))
    per_mac = {name: area[name]["nand2_equivalents"] / k for name in area}
    bf16_ratio = per_mac["fp8_tree"] / per_mac["bf16_tree"]
    int8_ratio = per_mac["fp8_tree"] / per_mac["int8_tree"]

    report = {
        "config": config.to_dict(),
        "k": k,
        "simulator": args.sim,
        "seed": args.seed,
        "throughput": {
            "block_pairs": measured["block_pairs"],
            "cycles": measured["cycles"],
            "block_pairs_per_cycle": round(measured["block_pairs"] / measured["cycles"], 4),
            "ideal_block_pairs_per_cycle": 1.0,
            "macs_per_cycle": round(k * measured["block_pairs"] / measured["cycles"], 2),
            "latency_cycles": measured["latency_cycles"],
            "stages": stages,
            "expected_latency_cycles": fp8.latency,
        },
        "area": {
            "nand2_per_mac": {name: round(v, 1) for name, v in per_mac.items()},
            "fp8_over_bf16_per_mac": round(bf16_ratio, 3),
            "fp8_over_int8_per_mac": round(int8_ratio, 3),
            "target_fp8_over_bf16": TARGET_BF16_RATIO,
            "meets_target": bf16_ratio <= TARGET_BF16_RATIO,
            "synthesis": area,
        },
    }
    out = benchlib.write_json(args.out, report)

    t = report["throughput"]
    print(f"throughput: {t['block_pairs_per_cycle']:.4f} block pairs/cycle over {t['block_pairs']} blocks "
          f"(ideal 1), latency {t['latency_cycles']} cycles")
    for name in designs:
        print(f"{name:<10} {area[name]['nand2_equivalents']:>10.0f} NAND2 eq. = {per_mac[name]:8.1f} per MAC "
              f"({area[name]['flip_flops']} flip-flops, depth {area[name]['logic_depth_cells']})")
    print(f"FP8 / bf16 per MAC: {bf16_ratio:.3f} (target <= {TARGET_BF16_RATIO}); FP8 / INT8: {int8_ratio:.3f}")
    print(out)
    # The depth adds latency, never a bubble: one block pair per cycle at every depth.
    if t["block_pairs_per_cycle"] != t["ideal_block_pairs_per_cycle"] or t["latency_cycles"] != fp8.latency:
        sys.exit(f"throughput {t['block_pairs_per_cycle']} block pairs/cycle (ideal 1), latency "
                 f"{t['latency_cycles']} cycles (expected {fp8.latency} at {stages} stages)")


if __name__ == "__main__":
    main()
