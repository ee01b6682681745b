"""What the benchmark scripts share: configuration and simulator from the command line, bench runs with JSON
in and out, synthesis of several designs, report output."""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from amaranth.back import rtlil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hw import synth                                        # noqa: E402
from hw.build import CliParser, json_out_problem            # noqa: E402
from hw.config import ConfigError, apply_overrides, preset  # noqa: E402
from verif.runner import run_bench, simulator_status        # noqa: E402


def parser(description, default_out):
    """An argument parser with --preset, --set, --sim, --seed and --out."""
    p = CliParser(description=description)
    p.add_argument("--preset", default="default")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    p.add_argument("--sim", default="verilator", choices=["verilator", "icarus"])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "reports" / "bench" / default_out))
    return p


def resolve(p, args):
    """The configuration the arguments name; exits with one line (status 2) on a bad one, an ``--out`` that
    cannot be written or a missing simulator."""
    try:
        config = apply_overrides(preset(args.preset), args.overrides)
    except ConfigError as exc:
        p.error(str(exc))
    problem = json_out_problem(Path(args.out))
    if problem:
        p.error(problem)
    available, reason = simulator_status(args.sim)
    if not available:
        p.error(reason)
    return config


def write_json(path, report):
    """Write a report atomically: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def measure(block, config, args, *, out_env, inputs=None, inputs_env=None, env=None, testcase="throughput",
            label=None):
    """Run the cocotb bench of ``block``'s ``testcase`` on ``args.sim`` with ``args.seed``: ``inputs`` (if
    any) go as JSON to a file named by ``inputs_env``, ``env`` adds environment variables, the bench writes
    its figures as JSON to a file named by ``out_env``, which is returned. A failing bench exits with the
    path of its log."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        env = {**(env or {}), out_env: str(out)}
        if inputs is not None:
            (Path(tmp) / "in.json").write_text(json.dumps(inputs))
            env[inputs_env] = str(Path(tmp) / "in.json")
        result = run_bench(block, config, args.sim, testcase=testcase, seed=args.seed, extra_env=env)
        if not result.passed or not out.exists():
            sys.exit(f"{label or block} bench failed (log: {result.run_dir / 'sim.log'})")
        return json.loads(out.read_text())


def synthesize(designs, progress=None):
    """Synthesize ``designs`` (name -> Amaranth component, the name also its module name) in a scratch folder;
    returns name -> :func:`hw.synth.synthesize` report, each with the ``seconds`` it took.
    ``progress(i, name)`` is called before each."""
    area = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, design) in enumerate(designs.items(), 1):
            if progress:
                progress(i, name)
            start = time.monotonic()
            area[name] = synth.synthesize(rtlil.convert(design, name=name, emit_src=False), name, Path(tmp) / name)
            area[name]["seconds"] = round(time.monotonic() - start, 1)
    return area
