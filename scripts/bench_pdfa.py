"""Benchmark of the PDFA controller: training-step throughput of pipelined DFA against BP on the same
engines, for MLPs of 2 to 5 weight layers, with the engines' utilization in each mode.

The generated controller runs in simulation (the cocotb bench's ``benchmark`` test) with three engine
models that never stall: FF, EP and WG each do ``T`` operations per cycle (MACs of 8-bit operands, or the
additions of a DFA EP), ``T = 4 * pe.rows * pe.cols`` by default (the bit-scalable array at 8 x 8 bits), plus
an optional fixed latency per command. Every command, cycle count and counter of every run is also checked
against :mod:`golden.pdfa_schedule`.

Modes, per MLP (``samples`` mini-batches each):

* ``bp_serial``: BP as the architecture defines it, stage-sequential (FF, then EP, then WG);
* ``bp``: BP with EP(l-1) overlapping WG(l) (a WG commits only after the EP that reads its W_l);
* ``dfa``: DFA without pipelining;
* ``pdfa``: DFA pipelined (the forward pass of t+1 overlaps EP and WG of t; staleness 1).

Reported: cycles, samples per 1000 cycles, busy/stall/idle fractions of each engine, and the ratios
``pdfa_over_bp_serial`` (the target's, >= 2.5), ``pdfa_over_bp`` and ``pdfa_over_dfa``.

Writes ``reports/bench/pdfa.json``.

Usage: ``python scripts/bench_pdfa.py [--preset P] [--set pdfa.max_layers=8 ...] [--samples N]
[--throughput T] [--latency C] [--sim verilator|icarus]``
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchlib  # noqa: E402  (scripts/ is on sys.path when a script runs)

from golden.pdfa_schedule import ENGINES  # noqa: E402


TARGET = 2.5
MODES = {"bp_serial": ("bp", 1), "bp": ("bp", 0), "dfa": ("dfa", 0), "pdfa": ("pdfa", 0)}
FAMILIES = {
    "digits": (64, 128, 10),        # input, hidden width, classes: the golden training model's data set
    "mnist": (784, 256, 10),
}


def shapes(max_layers):
    for family, (n_in, hidden, classes) in FAMILIES.items():
        for layers in range(2, min(5, max_layers) + 1):
            yield family, [n_in] + [hidden] * (layers - 1) + [classes]


def main(argv=None):
    parser = benchlib.parser(__doc__.splitlines()[0], "pdfa.json")
    parser.add_argument("--samples", type=int, default=32, help="mini-batches per run (default 32)")
    parser.add_argument("--throughput", type=int, default=None,
                        help="operations per cycle of each engine (default 4 * pe.rows * pe.cols)")
    parser.add_argument("--latency", type=int, default=0, help="fixed cycles added to every command (default 0)")
    args = parser.parse_args(argv)
    config = benchlib.resolve(parser, args)
    cfg = config.pdfa
    throughput = args.throughput if args.throughput is not None else 4 * config.pe.rows * config.pe.cols
    if throughput < 1:
        parser.error(f"--throughput must be a positive integer, not {throughput}")
    if args.latency < 0:
        parser.error(f"--latency must be a non-negative integer, not {args.latency}")
    if not 1 <= args.samples < (1 << cfg.sample_width):
        parser.error(f"--samples must be in [1, {(1 << cfg.sample_width) - 1}] (pdfa.sample_width), "
                     f"not {args.samples}")
    if cfg.max_layers < 2:
        parser.error(f"pdfa.max_layers must be at least 2 for this benchmark, not {cfg.max_layers}")
    largest = max(max(FAMILIES[f][:2]) for f in FAMILIES)
    if largest >= (1 << cfg.size_width):
        parser.error(f"pdfa.size_width must hold layer size {largest}, not {cfg.size_width} bits")

    engines = {e: throughput for e in ENGINES}
    latency = {e: args.latency for e in engines}
    runs = [{"family": family, "sizes": sizes, "samples": args.samples, "mode": mode, "algorithm": algorithm,
             "serial": serial, "throughput": engines, "latency": latency}
            for family, sizes in shapes(cfg.max_layers) for mode, (algorithm, serial) in MODES.items()]
    print(f"simulating {len(runs)} runs ({args.samples} samples each, {throughput} ops/cycle per engine, "
          f"{args.sim})", flush=True)
    measured = benchlib.measure("pdfa", config, args, inputs=runs, inputs_env="EDGETRAIN_PDFA_RUNS",
                                out_env="EDGETRAIN_PDFA_OUT", testcase="benchmark", label="benchmark")

    table = {}
    for run in measured:
        cycles = run["cycles"]
        entry = table.setdefault((run["family"], len(run["sizes"]) - 1), {"sizes": run["sizes"], "modes": {}})
        entry["modes"][run["mode"]] = {
            "cycles": cycles,
            "golden_cycles": run["golden_cycles"],
            "samples_per_kcycle": round(1000 * run["samples"] / cycles, 4),
            "utilization": {e: round(c["busy"] / cycles, 4) for e, c in run["counters"].items()},
            "stall": {e: round(c["stall"] / cycles, 4) for e, c in run["counters"].items()},
            "idle": {e: round(c["idle"] / cycles, 4) for e, c in run["counters"].items()},
            "counters": run["counters"],
        }
    mlps = []
    for (family, layers), entry in table.items():
        modes = entry["modes"]
        pdfa = modes["pdfa"]["cycles"]
        entry.update(family=family, layers=layers,
                     pdfa_over_bp_serial=round(modes["bp_serial"]["cycles"] / pdfa, 4),
                     pdfa_over_bp=round(modes["bp"]["cycles"] / pdfa, 4),
                     pdfa_over_dfa=round(modes["dfa"]["cycles"] / pdfa, 4))
        entry["meets_target"] = entry["pdfa_over_bp_serial"] >= TARGET
        mlps.append(entry)
    report = {
        "config": config.to_dict(),
        "simulator": args.sim,
        "samples": args.samples,
        "engine_throughput": throughput,
        "engine_latency": args.latency,
        "target_pdfa_over_bp_serial": TARGET,
        "mlps": mlps,
        "summary": {
            "pdfa_over_bp_serial": {"min": min(e["pdfa_over_bp_serial"] for e in mlps),
                                    "max": max(e["pdfa_over_bp_serial"] for e in mlps)},
            "pdfa_over_bp": {"min": min(e["pdfa_over_bp"] for e in mlps),
                             "max": max(e["pdfa_over_bp"] for e in mlps)},
            "meets_target": [f"{e['family']}-{e['layers']}" for e in mlps if e["meets_target"]],
            "misses_target": [f"{e['family']}-{e['layers']}" for e in mlps if not e["meets_target"]],
        },
    }
    path = benchlib.write_json(args.out, report)
    print(f"{'MLP':<28} {'BP serial':>10} {'BP':>8} {'DFA':>8} {'PDFA':>8}  PDFA/BPser  PDFA/BP  "
          f"PDFA util FF/EP/WG")
    for e in mlps:
        m = e["modes"]
        u = m["pdfa"]["utilization"]
        print(f"{'-'.join(map(str, e['sizes'])):<28} {m['bp_serial']['cycles']:>10} {m['bp']['cycles']:>8} "
              f"{m['dfa']['cycles']:>8} {m['pdfa']['cycles']:>8}  {e['pdfa_over_bp_serial']:>10.3f}  "
              f"{e['pdfa_over_bp']:>7.3f}  {u['FF']:.2f}/{u['EP']:.2f}/{u['WG']:.2f}")
    print(path)


if __name__ == "__main__":
    main()
