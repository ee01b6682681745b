"""Benchmark of the RTL TrainCore: cycles per training step of pipelined DFA against back-propagation, measured
on the generated core in simulation, against the cycle model's prediction.

The core (``--preset``/``--set``) runs in one Verilator simulation (the cocotb testcase ``benchmark`` of
:mod:`verif.train_core_run`), driven through its AXI ports, on digits MLPs of 2 to 5 weight layers
(64-128-10 ... 64-128-128-128-128-10; ``--hidden``, ``--layers``), a mini-batch of ``core.max_batch``
(``--batch``), DFXP-8 (``--precision``). Algorithms, each a run of the controller:

* ``bp_serial``: BP, stage-sequential (``config.serial = 1``: FF, then EP, then WG);
* ``bp``: BP with the engines overlapped (EP of a layer beside the WG of the one above it);
* ``pdfa``: DFA pipelined (the forward pass of a step beside EP and WG of the one before).

Each algorithm runs ``--steps`` mini-batches (K), and K / 2 before that: ``cycles_per_step`` is the
difference of the two runs' cycles over K / 2 - the steady state, where the pipeline's fill and drain
cancel - and ``run_cycles_per_step`` the K-step run's cycles over K. Cycles are the core's ``cycles``
register, utilization its ``<engine>_{busy,stall,idle}`` counters (K-step run). Every run is checked
bit-exact against :class:`golden.core.CoreTrainer` (``bit_exact``): an MLP's state (masters, fractional
lengths, LFSR states) is loaded once and its runs follow one another on it, the golden trainer doing the
same steps with the same algorithm; after each run the registers' state is compared, and after the MLP's
last run the masters too.

Prediction: :func:`golden.core_timing.predict` (the controller's schedule,
:func:`golden.pdfa_schedule.simulate`, with the engine durations of :mod:`golden.core_timing` and the
input stream) of the same runs; ``measured_over_predicted`` per algorithm. The trace of every engine
operation (issue and ``done`` cycles, watched on the controller's handshakes) is compared with the model
operation by operation (``ops_off_model``), and ``bound`` names what limits the PDFA step: the busiest engine
or the input stream (``per_step`` work of each, from the model).

Targets (reported, not enforced): PDFA >= 2.5x serial BP on 3-5 layer MLPs, >= 1.8x overlapped BP on every
MLP, measured within 10 % of the prediction.

Writes ``reports/bench/train_core.json`` (or ``--out``); bad arguments are one line on stderr, exit status 2,
nothing written.

Usage: ``python scripts/bench_train_core.py [--seed S] [--out F.json] [--preset P] [--set KEY=VALUE ...]
[--steps K] [--hidden H] [--layers 2,3,4,5] [--batch B] [--precision dfxp8] [--sim verilator|icarus]``
"""

import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from golden.core import CoreConfig                          # noqa: E402
from golden.core_timing import INPUT_SLOTS, CoreTiming, predict  # noqa: E402
from golden.pdfa_schedule import ENGINES, Layer             # noqa: E402
from hw.build import CliParser, json_out_problem           # noqa: E402
from hw.config import ConfigError, apply_overrides, preset  # noqa: E402
from hw.train_core import core_stages                      # noqa: E402
from verif.runner import run_bench, simulator_status        # noqa: E402
from verif.train_core_run import fit_error                  # noqa: E402

PROG = "bench_train_core.py"
ALGORITHMS = {"bp_serial": ("bp", 1), "bp": ("bp", 0), "pdfa": ("pdfa", 0)}
TARGETS = {"pdfa_over_bp_serial": 2.5, "pdfa_over_bp": 1.8, "prediction_error": 0.10}
FEATURES, CLASSES = 64, 10          # the digits


def _parser():
    p = CliParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0, metavar="S", help="trainer seed: weights, sample order (default 0)")
    p.add_argument("--out", default=str(ROOT / "reports" / "bench" / "train_core.json"), metavar="FILE.json",
                   help="report path (default reports/bench/train_core.json)")
    p.add_argument("--preset", default="default", help="core configuration preset (default: default)")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                   help="override one core parameter (repeatable)")
    p.add_argument("--steps", type=int, default=4, metavar="K",
                   help="mini-batches of the long run of each algorithm, at least 2 (default 4); the short run has K/2")
    p.add_argument("--hidden", type=int, default=128, metavar="H", help="hidden layer width (default 128)")
    p.add_argument("--layers", default="2,3,4,5", metavar="L[,L...]", help="weight layers of the MLPs (default 2,3,4,5)")
    p.add_argument("--batch", type=int, default=None, metavar="B", help="mini-batch (default core.max_batch)")
    p.add_argument("--precision", default="dfxp8", metavar="P", help="layer precision (default dfxp8)")
    p.add_argument("--sim", default="verilator", choices=["verilator", "icarus"], help="simulator (default verilator)")
    return p


def parse(argv=None):
    """``(config, plan, args)``: the core configuration and the MLPs to run; exits with one line (status 2) on
    a bad argument."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = apply_overrides(preset(args.preset), args.overrides)
    except ConfigError as exc:
        parser.error(str(exc))
    if args.steps < 2:
        parser.error(f"--steps must be an integer of at least 2, not {args.steps}")
    if (1 << min(config.pdfa.sample_width, 32)) - 1 < args.steps:
        parser.error(f"--steps must be at most the core's steps register ({(1 << config.pdfa.sample_width) - 1}, "
                     f"pdfa.sample_width), not {args.steps}")
    if args.hidden < 1:
        parser.error(f"--hidden must be a positive integer, not {args.hidden}")
    try:
        layers = sorted({int(v) for v in args.layers.split(",")})
    except ValueError:
        parser.error(f"--layers must be comma-separated integers, not {args.layers!r}")
    if not layers or layers[0] < 2:
        parser.error(f"--layers must name weight-layer counts of at least 2, not {args.layers!r}")
    batch = config.core.max_batch if args.batch is None else args.batch
    t = config.core.tile
    plan = []
    for n in layers:
        sizes = (FEATURES,) + (args.hidden,) * (n - 1) + (CLASSES,)
        try:
            core = CoreConfig(sizes=sizes, precision=args.precision, batch=batch, seed=args.seed,
                              array=(t, t), max_k=config.pe.max_k)
        except ValueError as exc:
            parser.error(str(exc))
        message = fit_error(config, core)
        if message:
            parser.error(f"MLP {'-'.join(map(str, sizes))}: {message}")
        plan.append(core)
    message = json_out_problem(Path(args.out))
    if message:
        parser.error(message)
    available, reason = simulator_status(args.sim)
    if not available:
        parser.error(reason)
    return config, plan, args


def table_of(core, algorithm):
    feedback = "bp" if algorithm == "bp" else "dfa"
    return [Layer(a, b, f"dfxp{p}", feedback) for a, b, p in zip(core.sizes, core.sizes[1:], core.precision)]


def run_lengths(steps):
    return (steps // 2, steps)


def job_of(config, plan, steps):
    mlps = []
    for core in plan:
        runs = []
        for mode, (algorithm, serial) in ALGORITHMS.items():
            for k in run_lengths(steps):
                cycles = predict(table_of(core, algorithm), k, tile=config.core.tile, batch=core.batch,
                                 pipelined=algorithm == "pdfa", serial=bool(serial), stages=core_stages(config)).cycles
                runs.append({"mode": mode, "algorithm": algorithm, "serial": serial, "steps": k,
                             "timeout_cycles": 4 * cycles + 100_000})
        mlps.append({"name": "-".join(map(str, core.sizes)),
                     "core": {"sizes": list(core.sizes), "precision": list(core.precision), "batch": core.batch,
                              "seed": core.seed},
                     "runs": runs})
    return {"mlps": mlps}


class _Progress:
    """One line per run on stderr (the build and each simulated run)."""

    def __init__(self, total):
        self.total, self.start, self.seen = total, time.monotonic(), 0

    def line(self, text):
        print(f"{text}  {time.monotonic() - self.start:.0f} s", file=sys.stderr, flush=True)

    def follow(self, path, done):
        while not done.wait(0.5):
            self.poll(path)
        self.poll(path)

    def poll(self, path):
        if not path.exists():
            return
        lines = path.read_text().splitlines()
        for line in lines[self.seen:]:
            e = json.loads(line)
            if e["phase"] == "run":
                self.line(f"[{e['index'] + 1}/{self.total}] {e['name']} {e['algorithm']}"
                          f"{' serial' if e['serial'] else ''}, {e['steps']} steps")
            else:
                self.line(f"{e['name']}: reading back the masters")
        self.seen = len(lines)


def simulate(config, job, args):
    total = sum(len(m["runs"]) for m in job["mlps"])
    progress = _Progress(total)
    progress.line(f"building the simulation of the {config.name} core ({args.sim})")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in.json").write_text(json.dumps(job))
        env = {"EDGETRAIN_RUN_IN": str(tmp / "in.json"), "EDGETRAIN_RUN_OUT": str(tmp / "out.json"),
               "EDGETRAIN_RUN_PROGRESS": str(tmp / "progress.jsonl")}
        done = threading.Event()
        watcher = threading.Thread(target=progress.follow, args=(tmp / "progress.jsonl", done), daemon=True)
        started = time.time()
        watcher.start()
        try:
            bench = run_bench("train_core", config, args.sim, test_module="verif.train_core_run",
                              testcase="benchmark", seed=args.seed, extra_env=env)
        except RuntimeError as exc:            # the simulator's build or start failed
            sys.exit(f"{PROG}: the simulation did not run: {exc} (build logs under build/sim/train_core)")
        finally:
            done.set()
            watcher.join()
        out = tmp / "out.json"
        if not out.exists():
            sys.exit(f"{PROG}: the simulation failed (log: {bench.run_dir / 'sim.log'})")
        result = json.loads(out.read_text())
        result["build_seconds"] = round(result["started"] - started, 1)
        result["passed"] = bench.passed
        result["log"] = str(bench.run_dir / "sim.log")
        return result


def _ops_vs_model(trace, schedule, timing):
    """Operations whose measured issue cycle or duration differs from the model's, and the largest gaps."""
    predicted = {(op.engine, op.layer, op.sample): op for op in schedule.ops}
    off, worst_issue, worst_duration = [], 0, 0
    for engine, layer, sample, issue, done, taken in trace:
        model = predicted.get((engine, layer, sample))
        if model is None:
            continue
        duration = done - issue
        want = timing.duration(engine, layer, sample)
        worst_issue = max(worst_issue, abs(issue - model.start))
        worst_duration = max(worst_duration, abs(duration - want))
        if issue != model.start or duration != want:
            off.append({"op": [engine, layer, sample], "issue": issue, "model_issue": model.start,
                        "duration": duration, "model_duration": want})
    return {"count": len(off), "max_issue_gap": worst_issue, "max_duration_gap": worst_duration, "first": off[:8]}


def analyse(config, plan, result, steps):
    t = config.core.tile
    short, long = run_lengths(steps)
    by = {}
    for run in result["runs"]:
        by[(run["name"], run["mode"], run["steps"])] = run
    mlps = []
    for core in plan:
        name = "-".join(map(str, core.sizes))
        entry = {"family": "digits", "name": name, "sizes": list(core.sizes), "layers": core.layers,
                 "batch": core.batch, "precision": f"dfxp{core.precision[0]}", "algorithms": {}}
        for mode, (algorithm, serial) in ALGORITHMS.items():
            table = table_of(core, algorithm)
            timing = CoreTiming(table, t, core.batch, core_stages(config))
            a, b = by[(name, mode, short)], by[(name, mode, long)]
            pa, pb = (predict(table, k, tile=t, batch=core.batch, pipelined=algorithm == "pdfa",
                              serial=bool(serial), timing=timing) for k in (short, long))
            cycles_per_step = (b["cycles"] - a["cycles"]) / (long - short)
            predicted_per_step = (pb.cycles - pa.cycles) / (long - short)
            c = b["counters"]
            per_step = {e: sum(timing.duration(e, op_layer) for op_layer in _layers_of(e, core.layers))
                        for e in ENGINES}
            per_step["input"] = timing.input_beats()
            entry["algorithms"][mode] = {
                "algorithm": algorithm, "serial": serial,
                "runs": {str(short): a["cycles"], str(long): b["cycles"]},
                "predicted_runs": {str(short): pa.cycles, str(long): pb.cycles},
                "cycles_per_step": cycles_per_step,
                "predicted_cycles_per_step": predicted_per_step,
                "run_cycles_per_step": b["cycles"] / long,
                "measured_over_predicted": round(b["cycles"] / pb.cycles, 4),
                "measured_over_predicted_per_step": round(cycles_per_step / predicted_per_step, 4),
                "utilization": {e: round(c[f"{e.lower()}_busy"] / b["cycles"], 4) for e in ENGINES},
                "stall": {e: round(c[f"{e.lower()}_stall"] / b["cycles"], 4) for e in ENGINES},
                "idle": {e: round(c[f"{e.lower()}_idle"] / b["cycles"], 4) for e in ENGINES},
                "counters": c,
                "predicted_counters": {f"{e.lower()}_{k}": getattr(pb, k)[e] for e in ENGINES
                                       for k in ("busy", "stall", "idle")},
                "per_step_work": per_step,
                "bit_exact": a["bit_exact"] and b["bit_exact"],
                "differences": a["differences"] + b["differences"],
                "ops_off_model": _ops_vs_model(b["trace"], pb, timing) if result["trace_available"] else None,
            }
        algs = entry["algorithms"]
        pdfa = algs["pdfa"]
        entry["pdfa_over_bp_serial"] = round(algs["bp_serial"]["cycles_per_step"] / pdfa["cycles_per_step"], 4)
        entry["pdfa_over_bp"] = round(algs["bp"]["cycles_per_step"] / pdfa["cycles_per_step"], 4)
        entry["run_pdfa_over_bp_serial"] = round(algs["bp_serial"]["runs"][str(long)] / pdfa["runs"][str(long)], 4)
        entry["run_pdfa_over_bp"] = round(algs["bp"]["runs"][str(long)] / pdfa["runs"][str(long)], 4)
        entry["predicted_pdfa_over_bp_serial"] = round(
            algs["bp_serial"]["predicted_cycles_per_step"] / pdfa["predicted_cycles_per_step"], 4)
        entry["predicted_pdfa_over_bp"] = round(algs["bp"]["predicted_cycles_per_step"]
                                                / pdfa["predicted_cycles_per_step"], 4)
        entry["measured_over_predicted"] = {m: v["measured_over_predicted"] for m, v in algs.items()}
        entry["bit_exact"] = all(v["bit_exact"] for v in algs.values())
        entry["pdfa_bound"] = _pdfa_bound(pdfa, by[(name, "pdfa", long)]["trace"])
        mlps.append(entry)
    return mlps


def _pdfa_bound(pdfa, trace):
    """What limits the PDFA step: each engine's work per step, the input stream's beats per step, and the
    input buffers' loop - mini-batch ``t + S`` (``S`` = :data:`golden.core_timing.INPUT_SLOTS`) streams into
    the buffer of ``t`` once ``WG(0, t)`` is done, so ``S`` steps take at least the chain from ``FF(0, t)``'s
    issue to ``WG(0, t)``'s done plus one mini-batch's beats. The chain is measured on the trace (its last
    complete mini-batch). ``lost``: cycles per step beyond the largest bound."""
    bounds = dict(pdfa["per_step_work"])
    ops = {(e, l, t): (issue, taken) for e, l, t, issue, done, taken in trace}
    samples = [t for (e, l, t) in ops if e == "FF" and l == 0]
    if samples:
        t = max(samples)
        chain = ops[("WG", 0, t)][1] + 1 - ops[("FF", 0, t)][0]
        bounds["input_buffers"] = (chain + bounds["input"]) / INPUT_SLOTS
    by = max(bounds, key=bounds.get)
    return {"by": by, "bounds": bounds, "cycles_per_step": pdfa["cycles_per_step"],
            "lost": round(pdfa["cycles_per_step"] - bounds[by], 1)}


def _layers_of(engine, layers):
    return range(layers - 1) if engine == "EP" else range(layers)


def summary(mlps):
    deep = [e for e in mlps if e["layers"] >= 3]
    errors = [abs(v - 1) for e in mlps for v in e["measured_over_predicted"].values()]
    return {
        "pdfa_over_bp_serial": {"min": min(e["pdfa_over_bp_serial"] for e in mlps),
                                "max": max(e["pdfa_over_bp_serial"] for e in mlps)},
        "pdfa_over_bp": {"min": min(e["pdfa_over_bp"] for e in mlps), "max": max(e["pdfa_over_bp"] for e in mlps)},
        "measured_over_predicted": {"min": min(v for e in mlps for v in e["measured_over_predicted"].values()),
                                    "max": max(v for e in mlps for v in e["measured_over_predicted"].values())},
        "targets": TARGETS,
        "meets": {
            "pdfa_over_bp_serial_3_to_5_layers": bool(deep) and all(
                e["pdfa_over_bp_serial"] >= TARGETS["pdfa_over_bp_serial"] for e in deep),
            "pdfa_over_bp": all(e["pdfa_over_bp"] >= TARGETS["pdfa_over_bp"] for e in mlps),
            "within_prediction": max(errors) <= TARGETS["prediction_error"],
        },
        "misses": [f"{e['name']}: PDFA/BP serial {e['pdfa_over_bp_serial']:.3f}" for e in deep
                   if e["pdfa_over_bp_serial"] < TARGETS["pdfa_over_bp_serial"]]
        + [f"{e['name']}: PDFA/BP {e['pdfa_over_bp']:.3f}" for e in mlps if e["pdfa_over_bp"] < TARGETS["pdfa_over_bp"]],
        "bit_exact": all(e["bit_exact"] for e in mlps),
    }


def main(argv=None):
    config, plan, args = parse(argv)
    job = job_of(config, plan, args.steps)
    start = time.monotonic()
    result = simulate(config, job, args)
    mlps = analyse(config, plan, result, args.steps)
    report = {
        "config": config.to_dict(),
        "simulator": args.sim,
        "seed": args.seed,
        "steps": list(run_lengths(args.steps)),
        "mlps": mlps,
        "summary": summary(mlps),
        "trace_available": result["trace_available"],
        "build_seconds": result["build_seconds"],
        "sim_seconds": result["sim_seconds"],
        "sim_cycles_per_second": round(result["sim_cycles"] / result["sim_seconds"], 1),
        "wall_seconds": round(time.monotonic() - start, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(out)
    print(f"{'MLP':<28} {'BP serial':>10} {'BP':>9} {'PDFA':>9}  PDFA/BPser  PDFA/BP  meas/pred (ser, bp, pdfa)  "
          f"PDFA util FF/EP/WG  bit-exact")
    for e in mlps:
        a = e["algorithms"]
        u = a["pdfa"]["utilization"]
        mp = e["measured_over_predicted"]
        print(f"{e['name']:<28} {a['bp_serial']['cycles_per_step']:>10.1f} {a['bp']['cycles_per_step']:>9.1f} "
              f"{a['pdfa']['cycles_per_step']:>9.1f}  {e['pdfa_over_bp_serial']:>10.3f}  {e['pdfa_over_bp']:>7.3f}  "
              f"{mp['bp_serial']:.3f} {mp['bp']:.3f} {mp['pdfa']:.3f}            "
              f"{u['FF']:.2f}/{u['EP']:.2f}/{u['WG']:.2f}      {e['bit_exact']}")
    print(out)
    if not report["summary"]["bit_exact"] or not result["passed"]:
        sys.exit(f"{PROG}: a run differs from the golden model (log: {result['log']})")


if __name__ == "__main__":
    main()
