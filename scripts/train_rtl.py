"""Train the digits network on the RTL TrainCore in simulation, checked against the golden model every epoch.

The generated core (``hw.train_core.TrainCore`` for ``--preset``/``--set``) runs in Verilator under the
cocotb testcase ``train`` of :mod:`verif.train_core_run`, driven only through its AXI ports: the host loads
the initial state of :class:`golden.core.CoreTrainer` (master weights, fractional lengths, LFSR states),
then each epoch is one run of the core over the epoch's mini-batches (:meth:`golden.core.CoreTrainer.epoch`:
``begin_run`` and every batch of :meth:`~golden.core.CoreTrainer.batches`), streamed on AXI4-Stream. After
every run the state is read back (weight window and registers) and compared with the golden model's after
the same steps: ``weights_equal_golden`` (masters, fractional lengths, LFSR states and overflow counters;
they must be equal), and the read-back masters are evaluated with the golden integer inference
(:meth:`golden.core.CoreTrainer.predict` with the core's masters).

Defaults: the digits 64-128-128-10 network, a mini-batch of ``core.max_batch`` (32), one PE-array tile as
the units' tile (``array = (tile, tile)``, ``max_k = pe.max_k``) and :class:`golden.core.CoreConfig`'s
recipe otherwise (PDFA, DFXP-8, its learning-rate and feedback shifts).

Writes ``--out`` (JSON): the configurations, test and train accuracy of the core's weights after every
epoch (``curve``) and at the end, the core's cycles (its ``cycles`` register, summed over the runs; per
step; against :func:`golden.core_timing.predict`), the simulation's speed (``cycles_per_second``: core cycles
per second of wall clock while the core ran; ``sim_cycles_per_second``: every simulated clock cycle, host
traffic included, per second of the simulation), the seconds of the build (elaboration, Verilator build -
cached under ``build/sim`` by design hash - and simulator start) apart from the simulation's, and
``weights_equal_golden``. A progress bar on stderr shows the epoch, the mini-batches done and the elapsed
time. Every argument is checked before anything runs: a bad one is one line on stderr, exit status 2, and
nothing is written. A mismatch with the golden model still writes the report, then exits with status 1.

Usage: ``python scripts/train_rtl.py [--epochs N] [--seed S] [--out F.json] [--preset default|small]
[--set KEY=VALUE ...] [--sizes 64,128,128,10] [--algorithm bp|dfa|pdfa] [--precision dfxp8|dfxp16]
[--batch B] [--lr-shift S] [--feedback-shift F] [--limit-steps K] [--sim verilator|icarus]``
"""

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from golden.core import CoreConfig                          # noqa: E402
from golden.core_timing import predict                      # noqa: E402
from golden.pdfa_schedule import Layer                      # noqa: E402
from golden.training import load_digits_split               # noqa: E402
from hw.build import CliParser, json_out_problem           # noqa: E402
from hw.config import ConfigError, apply_overrides, preset  # noqa: E402
from hw.train_core import core_stages                      # noqa: E402
from verif.runner import run_bench, simulator_status        # noqa: E402
from verif.train_core_run import fit_error                  # noqa: E402

DEFAULTS = CoreConfig()
DEFAULT_SIZES = (64, 128, 128, 10)
PROG = "train_rtl.py"


# -- the command line -------------------------------------------------------------------------------------

def _parser():
    p = CliParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=1, metavar="N", help="epochs, one run of the core each (default 1)")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, metavar="S",
                   help=f"run seed: initial weights, sample order, LFSRs (default {DEFAULTS.seed})")
    p.add_argument("--out", metavar="FILE.json", help="report path (default reports/train_rtl/<algorithm>_<precision>.json)")
    p.add_argument("--preset", default="default", help="core configuration preset (default: default)")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                   help="override one core parameter, e.g. --set core.tile=4 (repeatable)")
    p.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), metavar="N,N[,N...]",
                   help=f"layer widths, input first (default {','.join(map(str, DEFAULT_SIZES))})")
    p.add_argument("--algorithm", choices=["bp", "dfa", "pdfa"], default=DEFAULTS.algorithm,
                   help=f"training algorithm (default {DEFAULTS.algorithm})")
    p.add_argument("--precision", default="dfxp8", metavar="P[,P...]",
                   help="layer precision, one for every layer or one per layer: dfxp8, dfxp16 (and dfxp12 on cores "
                        "with tiles of 4 or more; default dfxp8)")
    p.add_argument("--batch", type=int, default=None, metavar="B", help="mini-batch (default core.max_batch)")
    p.add_argument("--lr-shift", type=int, default=DEFAULTS.lr_shift[0], metavar="S",
                   help=f"learning-rate shift of every layer (default {DEFAULTS.lr_shift[0]})")
    p.add_argument("--feedback-shift", type=int, default=None, metavar="F",
                   help="DFA feedback scale 2**-F (default: golden.core.CoreConfig's rule, 3 for the digits MLPs of "
                        "up to 4 weight layers)")
    p.add_argument("--limit-steps", type=int, default=None, metavar="K",
                   help="stop after K mini-batches in all (a smoke run; the epoch in which they end is cut short)")
    p.add_argument("--sim", default="verilator", choices=["verilator", "icarus"], help="simulator (default verilator)")
    return p


def table_of(core):
    """The controller's layer table of a CoreConfig (:mod:`golden.pdfa_schedule`)."""
    feedback = "bp" if core.algorithm == "bp" else "dfa"
    return [Layer(a, b, f"dfxp{p}", feedback) for a, b, p in zip(core.sizes, core.sizes[1:], core.precision)]


@dataclasses.dataclass
class Job:
    config: object          # hw.config.Config
    core: CoreConfig
    epochs: int
    limit_steps: object     # int or None
    steps: list             # mini-batches of each epoch's run
    out: Path
    sim: str
    seed: int


def parse(argv=None):
    """The job the command line describes; a bad argument exits with one line and status 2 before anything
    runs or is written."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = apply_overrides(preset(args.preset), args.overrides)
    except ConfigError as exc:
        parser.error(str(exc))
    try:
        sizes = tuple(int(v) for v in args.sizes.split(","))
    except ValueError:
        parser.error(f"--sizes must be comma-separated integers, not {args.sizes!r}")
    if args.epochs < 1:
        parser.error(f"--epochs must be a positive integer, not {args.epochs}")
    if args.limit_steps is not None and args.limit_steps < 1:
        parser.error(f"--limit-steps must be a positive integer, not {args.limit_steps}")
    t = config.core.tile
    batch = config.core.max_batch if args.batch is None else args.batch
    try:
        core = CoreConfig(sizes=sizes, algorithm=args.algorithm, precision=args.precision, batch=batch,
                          epochs=args.epochs, lr_shift=args.lr_shift, feedback_shift=args.feedback_shift,
                          seed=args.seed, array=(t, t), max_k=config.pe.max_k)
    except ValueError as exc:
        parser.error(str(exc))
    x_train, y_train, _, _ = load_digits_split()
    if sizes[0] != x_train.shape[1]:
        parser.error(f"sizes must start with the digits' {x_train.shape[1]} features, not {sizes[0]}")
    classes = int(y_train.max()) + 1
    if sizes[-1] != classes:
        parser.error(f"sizes must end with the digits' {classes} classes, not {sizes[-1]}")
    message = fit_error(config, core)
    if message:
        parser.error(message)
    per_epoch = len(y_train) // batch
    steps, left = [], args.limit_steps
    for _ in range(args.epochs):
        n = per_epoch if left is None else min(per_epoch, left)
        steps.append(n)
        if left is not None:
            left -= n
            if left == 0:
                break
    most = (1 << min(config.pdfa.sample_width, 32)) - 1
    if max(steps) > most:
        parser.error(f"a run of {max(steps)} mini-batches is more than the core's steps register holds "
                     f"({most}, pdfa.sample_width); use --limit-steps")
    cycles = predict(table_of(core), max(steps), tile=t, batch=batch, pipelined=core.pipelined,
                     stages=core_stages(config)).cycles
    if cycles >= 1 << min(config.pdfa.counter_width, 32):
        parser.error(f"a run of {max(steps)} mini-batches takes about {cycles} cycles, more than the core's cycle "
                     f"counter holds (pdfa.counter_width = {config.pdfa.counter_width}); use --limit-steps")
    out = Path(args.out) if args.out else (
        ROOT / "reports" / "train_rtl" / f"{core.algorithm}_dfxp{'-'.join(map(str, sorted(set(core.precision))))}.json")
    message = json_out_problem(out)
    if message:
        parser.error(message)
    available, reason = simulator_status(args.sim)
    if not available:
        parser.error(reason)
    return Job(config, core, args.epochs, args.limit_steps, steps, out, args.sim, args.seed)


# -- progress -----------------------------------------------------------------------------------------------

class Progress:
    """The run's progress on a stream, from the testcase's progress lines: on a terminal one status line with
    a bar (mini-batches done of all), rewritten in place; otherwise one line per phase and epoch."""

    def __init__(self, steps, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.steps = steps
        self.start = time.monotonic()
        self.state = {"phase": "build"}
        self.drawn = False

    def _text(self):
        s = self.state
        phase = s["phase"]
        epochs = len(self.steps)
        if phase == "build":
            return "building the simulation"
        if phase == "load":
            return "loading the initial state"
        epoch = s["epoch"] + 1
        if phase == "run":
            return f"epoch {epoch}/{epochs} step {s['step']}/{s['steps']}"
        if phase == "check":
            return f"epoch {epoch}/{epochs} reading back the state"
        return (f"epoch {epoch}/{epochs} test accuracy {100 * s['test_accuracy']:.2f} % "
                f"{'(equal to golden)' if s['weights_equal_golden'] else '(DIFFERS FROM GOLDEN)'}")

    def _fraction(self):
        s = self.state
        if "epoch" not in s:
            return 0.0
        done = sum(self.steps[:s["epoch"]])
        if s["phase"] == "run":
            done += s["step"]
        elif s["phase"] in ("check", "epoch"):
            done += self.steps[s["epoch"]]
        return done / sum(self.steps)

    def begin(self):
        """Show the first phase (the build)."""
        if self.tty:
            self.draw()
        else:
            print(self._text(), file=self.stream, flush=True)

    def update(self, state):
        changed = state.get("phase") != self.state.get("phase") or state.get("epoch") != self.state.get("epoch")
        self.state = state
        if self.tty:
            self.draw()
        elif changed or state["phase"] == "epoch":
            print(f"{self._text()}  {time.monotonic() - self.start:.0f} s", file=self.stream, flush=True)

    def draw(self):
        if not self.tty:
            return
        line = f"{self._text()}  {time.monotonic() - self.start:.0f} s"
        width = shutil.get_terminal_size().columns - 1
        bar = min(20, width - len(line) - 3)
        if bar >= 5:
            filled = int(bar * self._fraction())
            line = f"[{'#' * filled}{'.' * (bar - filled)}] {line}"
        self.stream.write("\r" + line[:width].ljust(width))
        self.stream.flush()
        self.drawn = True

    def close(self):
        if self.tty and self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def follow(path, progress, done):
    """Feed ``progress`` with the lines appended to ``path`` until ``done`` is set."""
    seen = 0
    while True:
        finished = done.wait(0.25)
        if path.exists():
            lines = path.read_text().splitlines()
            for line in lines[seen:]:
                progress.update(json.loads(line))
            seen = len(lines)
        if finished:
            return
        progress.draw()


# -- the run --------------------------------------------------------------------------------------------------

def simulate(job, progress):
    """Run the testcase; returns ``(result or None, bench result, build seconds, wall seconds)``."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in.json").write_text(json.dumps({
            "core": {"sizes": list(job.core.sizes), "algorithm": job.core.algorithm,
                     "precision": list(job.core.precision), "batch": job.core.batch,
                     "lr_shift": list(job.core.lr_shift), "feedback_shift": job.core.feedback_shift,
                     "seed": job.core.seed},
            "epochs": len(job.steps), "limit_steps": job.limit_steps,
            "timeout_cycles": 4 * predict(table_of(job.core), max(job.steps), tile=job.config.core.tile,
                                          batch=job.core.batch, pipelined=job.core.pipelined,
                                          stages=core_stages(job.config)).cycles + 100_000}))
        env = {"EDGETRAIN_RUN_IN": str(tmp / "in.json"), "EDGETRAIN_RUN_OUT": str(tmp / "out.json"),
               "EDGETRAIN_RUN_PROGRESS": str(tmp / "progress.jsonl")}
        done = threading.Event()
        watcher = threading.Thread(target=follow, args=(tmp / "progress.jsonl", progress, done), daemon=True)
        start = time.monotonic()
        started = time.time()
        progress.begin()
        watcher.start()
        try:
            bench = run_bench("train_core", job.config, job.sim, test_module="verif.train_core_run", testcase="train",
                              seed=job.seed, extra_env=env)
        except RuntimeError as exc:            # the simulator's build or start failed
            progress.close()
            sys.exit(f"{PROG}: the simulation did not run: {exc} (build logs under build/sim/train_core)")
        finally:
            done.set()
            watcher.join()
        wall = time.monotonic() - start
        out = tmp / "out.json"
        result = json.loads(out.read_text()) if out.exists() else None
        build = result["started"] - started if result else None
        return result, bench, build, wall


def report(job, result, build_seconds, wall_seconds):
    epochs = result["epochs"]
    table = table_of(job.core)
    predicted = [predict(table, e["steps"], tile=job.config.core.tile, batch=job.core.batch,
                         pipelined=job.core.pipelined, stages=core_stages(job.config)).cycles for e in epochs]
    cycles = sum(e["cycles"] for e in epochs)
    steps = sum(e["steps"] for e in epochs)
    run_seconds = sum(e["run_seconds"] for e in epochs)
    equal = all(e["weights_equal_golden"] for e in epochs)
    return {
        "data": "scikit-learn digits, 1437 train / 360 test (golden.training.load_digits_split)",
        "config": job.config.to_dict(),
        "core_config": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(job.core).items()},
        "simulator": job.sim,
        "epochs": job.epochs,
        "epochs_run": len(epochs),
        "limit_steps": job.limit_steps,
        "steps": steps,
        "test_accuracy": epochs[-1]["test_accuracy"],
        "train_accuracy": epochs[-1]["train_accuracy"],
        "weights_equal_golden": equal,
        "curve": {
            "loss": [e["loss"] for e in epochs],
            "test_accuracy": [e["test_accuracy"] for e in epochs],
            "train_accuracy": [e["train_accuracy"] for e in epochs],
            "cycles": [e["cycles"] for e in epochs],
            "predicted_cycles": predicted,
        },
        "cycles": cycles,
        "cycles_per_step": round(cycles / steps, 2),
        "predicted_cycles": sum(predicted),
        "measured_over_predicted": round(cycles / sum(predicted), 4),
        "cycles_per_second": round(cycles / run_seconds, 1) if run_seconds else None,
        "sim_cycles_per_second": round(result["sim_cycles"] / result["sim_seconds"], 1),
        "build_seconds": round(build_seconds, 1),
        "sim_seconds": result["sim_seconds"],
        "run_seconds": round(run_seconds, 2),
        "load_seconds": result["load_seconds"],
        "check_seconds": round(sum(e["check_seconds"] for e in epochs), 2),
        "wall_seconds": round(wall_seconds, 1),
        "per_epoch": epochs,
        "trainer": result["trainer"],
    }


def write_json(path, data):
    """Write atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def main(argv=None):
    job = parse(argv)
    progress = Progress(job.steps)
    try:
        result, bench, build, wall = simulate(job, progress)
    except KeyboardInterrupt:
        progress.close()
        print(f"{PROG}: interrupted", file=sys.stderr)
        sys.exit(130)
    progress.close()
    if result is None:
        sys.exit(f"{PROG}: the simulation failed (log: {bench.run_dir / 'sim.log'})")
    entry = report(job, result, build, wall)
    write_json(job.out, entry)
    print(f"{job.core.algorithm.upper()} {'-'.join(map(str, job.core.sizes))} on the RTL core, "
          f"{entry['epochs_run']} epoch(s), {entry['steps']} steps: test accuracy {100 * entry['test_accuracy']:.2f} %, "
          f"{entry['cycles']} cycles ({entry['measured_over_predicted']:.3f} of the model), "
          f"{entry['cycles_per_second']} cycles/s, build {entry['build_seconds']} s, "
          f"weights equal to golden: {entry['weights_equal_golden']}")
    print(job.out)
    if not entry["weights_equal_golden"] or not bench.passed:
        sys.exit(f"{PROG}: the core differs from the golden model (log: {bench.run_dir / 'sim.log'})")


if __name__ == "__main__":
    main()
