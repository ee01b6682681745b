"""Training run of the integer core (golden.core.CoreTrainer) on the digits set, beside the FP32 BP reference.

Trains the hardware-exact model :class:`golden.core.CoreTrainer` - every tensor an integer array, every
operation the one the chip performs - for the configuration the command line gives (the defaults are those
of :class:`golden.core.CoreConfig`, 30 epochs), and, unless ``--no-reference``, the float reference: FP32
back-propagation of :mod:`golden.training` for the same layer sizes, epochs and seed (its other settings
are :class:`golden.training.TrainConfig`'s defaults). The two runs go to two processes in parallel; a
progress line on stderr shows epoch, loss, train and test accuracy and the elapsed time.

Data: scikit-learn's bundled digits (:func:`golden.training.load_digits_split`, 1437 train / 360 test), so
``sizes`` must start with 64 and end with at least 10.

Writes ``reports/train_core/<algorithm>_<precision>.json`` (or ``--out``): the full CoreConfig, the
per-epoch curves (loss, train and test accuracy), the final test accuracy, the reference's curves and
final accuracy, ``gap_points`` (100 x (core - reference) final test accuracy), the seconds taken, and the
trainer's final fractional lengths (``fracs``, ``frac_w``, ``frac_in``); and the learning curves (test
accuracy against epoch) as a PNG of the same name beside it. Every argument and the output path are checked
before training: a bad one is one line on stderr, exit status 2, and nothing is written.

Usage: ``python scripts/train_core.py [--algorithm {bp,dfa,pdfa}] [--precision P] [--sizes 64,128,128,10]
[--epochs N] [--batch B] [--lr-shift S[,S...]] [--feedback-shift F] [--threshold K] [--overflow-shift O]
[--grad-bits G] [--seed S] [--no-reference] [--out FILE.json]``
"""

import dataclasses
import enum
import json
import multiprocessing
import os
import queue
import shutil
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from golden.core import CoreConfig, CoreTrainer                      # noqa: E402
from golden.training import TrainConfig, Trainer, load_digits_split  # noqa: E402
from hw.build import CliParser, json_out_problem                    # noqa: E402

DEFAULT_EPOCHS = 30
CORE, REFERENCE = "core", "reference"
DEFAULTS = CoreConfig()


# -- the command line -------------------------------------------------------------------------------------

def _parser():
    p = CliParser(prog="train_core.py", description=__doc__.splitlines()[0])
    p.add_argument("--algorithm", choices=["bp", "dfa", "pdfa"], default=DEFAULTS.algorithm,
                   help=f"training algorithm (default {DEFAULTS.algorithm})")
    p.add_argument("--precision", default="dfxp8", metavar="P[,P...]",
                   help="layer precision: dfxp4, dfxp8, dfxp12, dfxp16 (or 4, 8, 12, 16), one for every layer "
                        "or one per layer, comma-separated (default dfxp8)")
    p.add_argument("--sizes", default=",".join(map(str, DEFAULTS.sizes)), metavar="N,N[,N...]",
                   help=f"layer widths, input first (default {','.join(map(str, DEFAULTS.sizes))})")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, metavar="N", help=f"epochs (default {DEFAULT_EPOCHS})")
    p.add_argument("--batch", type=int, default=DEFAULTS.batch, metavar="B",
                   help=f"mini-batch (default {DEFAULTS.batch})")
    p.add_argument("--lr-shift", default=str(DEFAULTS.lr_shift[0]), metavar="S[,S...]",
                   help=f"learning-rate shift, one for every layer or one per layer, comma-separated "
                        f"(default {DEFAULTS.lr_shift[0]})")
    p.add_argument("--feedback-shift", type=int, default=None, metavar="F",
                   help="DFA feedback scale 2**-F (default: floor(log2(input width) / 2) + floor(log2(hidden layers) / 2), "
                        "3 for digits MLPs of up to 4 weight layers)")
    p.add_argument("--threshold", type=int, default=DEFAULTS.threshold, metavar="K",
                   help=f"stochastic thresholding of errors and gradients at 2**K codes, 0 = off "
                        f"(default {DEFAULTS.threshold})")
    p.add_argument("--overflow-shift", type=int, default=DEFAULTS.overflow_shift, metavar="O",
                   help=f"overflow rule: at most n >> O overflowing elements (default {DEFAULTS.overflow_shift})")
    p.add_argument("--grad-bits", type=int, default=DEFAULTS.grad_bits, metavar="G",
                   help=f"bits of a converted weight gradient (default {DEFAULTS.grad_bits})")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, metavar="S", help=f"run seed (default {DEFAULTS.seed})")
    p.add_argument("--no-reference", action="store_true", help="skip the FP32 BP reference run")
    p.add_argument("--out", metavar="FILE.json",
                   help="report path (default reports/train_core/<algorithm>_<precision>.json); the plot "
                        "goes beside it as .png")
    return p


def _int_list(parser, option, text):
    """Comma-separated integers; a single one stays an int."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        parser.error(f"{option} must be comma-separated integers, not {text!r}")
    return values[0] if len(values) == 1 else tuple(values)


def _precision_name(precision):
    """``dfxp8`` for one width everywhere, ``dfxp16-8-8`` for one per layer."""
    if len(set(precision)) == 1:
        return f"dfxp{precision[0]}"
    return "dfxp" + "-".join(map(str, precision))


def parse(argv=None):
    """``(core config, reference config or None, out path, data)`` from the command line; a bad
    argument exits with one line and status 2 before anything is trained or written."""
    parser = _parser()
    args = parser.parse_args(argv)
    sizes = _int_list(parser, "--sizes", args.sizes)
    lr_shift = _int_list(parser, "--lr-shift", args.lr_shift)
    try:
        config = CoreConfig(sizes=sizes if isinstance(sizes, tuple) else (sizes,), algorithm=args.algorithm,
                            precision=args.precision, batch=args.batch, epochs=args.epochs, lr_shift=lr_shift,
                            feedback_shift=args.feedback_shift, seed=args.seed,
                            overflow_shift=args.overflow_shift, threshold=args.threshold,
                            grad_bits=args.grad_bits)
        reference = None if args.no_reference else TrainConfig(
            sizes=config.sizes, algorithm="bp", arithmetic="fp32", epochs=config.epochs, seed=config.seed)
    except ValueError as exc:
        parser.error(str(exc))
    if args.out is None:
        out = ROOT / "reports" / "train_core" / f"{config.algorithm}_{_precision_name(config.precision)}.json"
    else:
        out = Path(args.out)
    message = json_out_problem(out, beside=(".png",))
    if message:
        parser.error(message)

    data = load_digits_split()
    features, classes, samples = data[0].shape[1], int(max(data[1].max(), data[3].max())) + 1, len(data[1])
    if config.sizes[0] != features:
        parser.error(f"sizes must start with the data's {features} features, not {config.sizes[0]}")
    if config.sizes[-1] < classes:
        parser.error(f"sizes must end with at least the data's {classes} classes, not {config.sizes[-1]}")
    if config.batch > samples:
        parser.error(f"batch must be at most the data's {samples} training samples, not {config.batch}")
    return config, reference, out, data


# -- progress ---------------------------------------------------------------------------------------------

class Progress:
    """Training progress on a stream: on a terminal one status line of every run, rewritten in place with
    ``\\r`` and fitted to the terminal's width (the bar shows the first run); otherwise one line per finished
    epoch. ``runs`` maps a run's name to ``(label, short label, epochs)``."""

    def __init__(self, runs, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.runs = runs
        self.last = {}              # name -> (epoch, loss, train accuracy, test accuracy)
        self.start = time.monotonic()
        self.drawn = False

    def update(self, name, epoch, loss, train, test):
        self.last[name] = (epoch, loss, train, test)
        if self.tty:
            self.draw()
        else:
            label, _, epochs = self.runs[name]
            print(f"{label}: epoch {epoch + 1}/{epochs}  loss {loss:.4f}  train {100 * train:.2f} %  "
                  f"test {100 * test:.2f} %  {time.monotonic() - self.start:.0f} s",
                  file=self.stream, flush=True)

    def draw(self):
        """Rewrite the status line (on a terminal; the elapsed time moves even between epochs)."""
        if not self.tty:
            return
        parts, fractions = [], []
        for i, (name, (_, short, epochs)) in enumerate(self.runs.items()):
            done = self.last[name][0] + 1 if name in self.last else 0
            fractions.append(done / epochs)
            part = f"{short} {done}/{epochs}"
            if name in self.last:
                _, loss, train, test = self.last[name]
                part += (f" loss {loss:.3f} train {100 * train:.1f}% test {100 * test:.1f}%" if i == 0
                         else f" test {100 * test:.1f}%")
            parts.append(part)
        line = " | ".join(parts + [f"{time.monotonic() - self.start:.0f} s"])
        width = shutil.get_terminal_size().columns - 1
        bar = min(20, width - len(line) - 3)
        if bar >= 5:
            filled = int(bar * fractions[0])
            line = f"[{'#' * filled}{'.' * (bar - filled)}] {line}"
        self.stream.write("\r" + line[:width].ljust(width))
        self.stream.flush()
        self.drawn = True

    def close(self):
        if self.tty and self.drawn:
            self.stream.write("\n")
            self.stream.flush()


# -- the runs (in worker processes) ------------------------------------------------------------------------

class _Stopped(Exception):
    """Raised in a worker at the end of an epoch once the main process has been interrupted."""


_WORKER = {}


def _init_worker(events, stop):
    # Ctrl-C reaches the whole process group: the main process alone handles it and sets `stop`.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER.update(events=events, stop=stop)


def _train(job):
    """One run: ``job`` is ``(name, config, data)``; reports every epoch on the events queue and returns
    ``(name, result)``."""
    name, config, data = job
    events, stop = _WORKER["events"], _WORKER["stop"]
    start = time.monotonic()
    trainer = CoreTrainer(config, data) if name == CORE else Trainer(config, data)

    def progress(epoch, curve):
        events.put((name, epoch, curve["loss"][-1], curve["train_accuracy"][-1], curve["test_accuracy"][-1]))
        if stop.is_set():
            raise _Stopped

    curve = trainer.run(progress)
    result = {"curve": curve, "seconds": round(time.monotonic() - start, 2)}
    if name == CORE:
        result.update(fracs={k: int(v) for k, v in trainer.fracs.items()},
                      frac_w=[int(f) for f in trainer.frac_w], frac_in=int(trainer.frac_in))
    return name, result


def run(jobs, progress):
    """Run ``jobs`` (``(name, config, data)``) in parallel processes, feeding ``progress``; returns name ->
    result. Ctrl-C stops the runs at their next epoch and exits with status 130."""
    ctx = multiprocessing.get_context()
    events, stop = ctx.Queue(), ctx.Event()
    epochs = {name: config.epochs for name, config, _ in jobs}
    seen = dict.fromkeys(epochs, 0)
    results = {}
    with ProcessPoolExecutor(max_workers=len(jobs), mp_context=ctx, initializer=_init_worker,
                             initargs=(events, stop)) as pool:
        pending = {pool.submit(_train, job) for job in jobs}
        try:
            # Until every run has returned and every epoch it reported has been shown.
            while pending or any(seen[name] < epochs[name] for name in results):
                try:
                    event = events.get(timeout=0.25)
                except queue.Empty:
                    progress.draw()
                else:
                    seen[event[0]] += 1
                    progress.update(*event)
                done, pending = wait(pending, timeout=0, return_when=FIRST_COMPLETED)
                for future in done:
                    name, result = future.result()
                    results[name] = result
        except KeyboardInterrupt:
            stop.set()
            progress.close()
            print("train_core.py: interrupted", file=sys.stderr)
            pool.shutdown(wait=True, cancel_futures=True)
            sys.exit(130)
        except BaseException:
            stop.set()              # a failed run: the other one stops at its next epoch
            progress.close()
            raise
    progress.close()
    return results


# -- the report -------------------------------------------------------------------------------------------

def _plain(config):
    """A configuration dataclass as JSON values (enums by value, tuples as lists)."""
    return {k: (v.value if isinstance(v, enum.Enum) else list(v) if isinstance(v, tuple) else v)
            for k, v in dataclasses.asdict(config).items()}


def _label(config):
    return f"{config.algorithm.upper()} {_precision_name(config.precision).upper()}"


def report(config, reference, results, wall_seconds):
    core = results[CORE]
    entry = {
        "data": "scikit-learn digits, 1437 train / 360 test (golden.training.load_digits_split)",
        "config": _plain(config),
        "curve": core["curve"],
        "test_accuracy": core["curve"]["test_accuracy"][-1],
        "train_accuracy": core["curve"]["train_accuracy"][-1],
        "reference": None,
        "gap_points": None,
        "seconds": core["seconds"],
        "wall_seconds": round(wall_seconds, 2),
        "fracs": core["fracs"],
        "frac_w": core["frac_w"],
        "frac_in": core["frac_in"],
    }
    if reference is not None:
        ref = results[REFERENCE]
        final = ref["curve"]["test_accuracy"][-1]
        entry["reference"] = {"name": "FP32 BP (golden.training)", "config": _plain(reference),
                              "curve": ref["curve"], "test_accuracy": final, "seconds": ref["seconds"]}
        entry["gap_points"] = round(100 * (entry["test_accuracy"] - final), 2)
    return entry


def plot(config, entry):
    """The learning curves as PNG bytes: test accuracy against epoch, core run and reference."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7, 4.5))
    curves = [(f"core {_label(config)}", entry["curve"])]
    if entry["reference"] is not None:
        curves.append(("FP32 BP (float reference)", entry["reference"]["curve"]))
    for label, curve in curves:
        acc = curve["test_accuracy"]
        ax.plot(range(1, len(acc) + 1), [100 * a for a in acc], marker="o" if len(acc) <= 10 else None,
                label=f"{label}: {100 * acc[-1]:.2f} %")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Integer core {_label(config)}, digits MLP {'-'.join(map(str, config.sizes))}, "
                 f"batch {config.batch}, seed {config.seed}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return buffer.getvalue()


def write_outputs(files):
    """Write ``{path: bytes}`` atomically (a reader never sees half a file), in the order given."""
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def main(argv=None):
    config, reference, out, data = parse(argv)
    runs = {CORE: (f"core {_label(config)}", "core", config.epochs)}
    jobs = [(CORE, config, data)]
    if reference is not None:
        runs[REFERENCE] = ("FP32 BP", "FP32 BP", reference.epochs)
        jobs.append((REFERENCE, reference, data))
    start = time.monotonic()
    results = run(jobs, Progress(runs))
    entry = report(config, reference, results, time.monotonic() - start)
    # The plot first: once the JSON is there, everything is.
    write_outputs({out.with_suffix(".png"): plot(config, entry),
                   out: (json.dumps(entry, indent=2) + "\n").encode()})

    epochs = f"{config.epochs} epoch{'s' * (config.epochs != 1)}"
    summary = (f"core {_label(config)} {'-'.join(map(str, config.sizes))}, {epochs}: "
               f"test accuracy {100 * entry['test_accuracy']:.2f} %")
    if reference is not None:
        summary += (f", FP32 BP {100 * entry['reference']['test_accuracy']:.2f} % "
                    f"(gap {entry['gap_points']:+.2f} points)")
    print(f"{summary}; {entry['wall_seconds']:.1f} s")
    print(out)


if __name__ == "__main__":
    main()
