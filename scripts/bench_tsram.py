"""Benchmark of the transposable SRAM wrapper: sustained throughput in simulation, and its logic overhead
next to a register-file transpose buffer of the same capacity synthesized in the same run.

* Throughput: the cocotb bench's ``throughput`` test streams 10k random row/column operations (half
  writes, half reads, random tiles) with no back-pressure; each response is still checked against golden.
  Reported: writes per cycle on ``w`` and reads per cycle on ``rreq`` (each ideally 1: the wrapper takes one
  of each per cycle), and all operations over all cycles.
* Area: ``constraints/synth.ys`` keeps the wrapper's N memories as macros (``memory_bits``) and maps its
  logic (rotators, address logic, response path) to gates; the register-file baseline is all flip-flops
  and multiplexers. Reported: logic NAND2 equivalents of both, and the wrapper's logic per stored bit.

Writes ``reports/bench/tsram.json``.

Usage: ``python scripts/bench_tsram.py [--preset P] [--set tsram.n=16 ...] [--sim verilator|icarus]``
"""

import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchlib  # noqa: E402  (scripts/ is on sys.path when a script runs)

from hw.tsram import RegisterFileTranspose, TransposableSRAM  # noqa: E402

TARGET_OPS_PER_CYCLE = 0.99


def main(argv=None):
    parser = benchlib.parser(__doc__.splitlines()[0], "tsram.json")
    parser.add_argument("--ops", type=int, default=10_000, help="random operations in the throughput run")
    args = parser.parse_args(argv)
    config = benchlib.resolve(parser, args)
    cfg = config.tsram

    print(f"[1/2] simulating {args.ops} random operations on N={cfg.n}, {cfg.width}-bit words, "
          f"{cfg.tiles} tiles ({args.sim})", flush=True)
    m = benchlib.measure("tsram", config, args, out_env="EDGETRAIN_PERF_OUT",
                         env={"EDGETRAIN_PERF_OPS": str(args.ops)}, label="throughput")

    print("[2/2] synthesizing the wrapper and the register-file baseline", flush=True)
    area = benchlib.synthesize({"tsram": TransposableSRAM(n=cfg.n, width=cfg.width, tiles=cfg.tiles),
                                "register_file": RegisterFileTranspose(n=cfg.n, width=cfg.width, tiles=cfg.tiles)})
    bits = cfg.tiles * cfg.n * cfg.n * cfg.width
    writes_per_cycle = m["writes"] / m["write_cycles"]
    reads_per_cycle = m["reads"] / m["read_cycles"]
    report = {
        "config": config.to_dict(),
        "simulator": args.sim,
        "seed": args.seed,
        "throughput": {
            **m,
            "writes_per_cycle": round(writes_per_cycle, 4),
            "reads_per_cycle": round(reads_per_cycle, 4),
            "operations_per_cycle": round((m["writes"] + m["reads"]) / m["total_cycles"], 4),
            "target_per_port": TARGET_OPS_PER_CYCLE,
            "meets_target": min(writes_per_cycle, reads_per_cycle) >= TARGET_OPS_PER_CYCLE,
        },
        "area": {
            "stored_bits": bits,
            "tsram_memory_bits": area["tsram"]["memory_bits"],
            "tsram_logic_nand2": area["tsram"]["nand2_equivalents"],
            "register_file_nand2": area["register_file"]["nand2_equivalents"],
            "tsram_logic_nand2_per_stored_bit": round(area["tsram"]["nand2_equivalents"] / bits, 3),
            "register_file_nand2_per_stored_bit": round(area["register_file"]["nand2_equivalents"] / bits, 3),
            "tsram_logic_over_register_file": round(area["tsram"]["nand2_equivalents"]
                                                    / area["register_file"]["nand2_equivalents"], 4),
            "synthesis": area,
        },
    }
    out = benchlib.write_json(args.out, report)
    t, a = report["throughput"], report["area"]
    print(f"writes/cycle {t['writes_per_cycle']:.4f}, reads/cycle {t['reads_per_cycle']:.4f} "
          f"(target >= {TARGET_OPS_PER_CYCLE} each), all operations/cycle {t['operations_per_cycle']:.4f}")
    print(f"wrapper: {a['tsram_memory_bits']} memory bits in {cfg.n} macros + {a['tsram_logic_nand2']:.0f} NAND2 eq. "
          f"of logic ({a['tsram_logic_nand2_per_stored_bit']} per stored bit); register file: "
          f"{a['register_file_nand2']:.0f} NAND2 eq. ({a['register_file_nand2_per_stored_bit']} per bit)")
    print(out)


if __name__ == "__main__":
    main()
