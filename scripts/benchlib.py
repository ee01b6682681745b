"""What the benchmark scripts share: configuration and simulator from the command line, report output."""

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hw.build import CliParser                              # noqa: E402
from hw.config import ConfigError, apply_overrides, preset  # noqa: E402
from verif.runner import simulator_status                   # noqa: E402


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
    """The configuration the arguments name; exits with one line (status 2) on a bad one or a missing
    simulator."""
    try:
        config = apply_overrides(preset(args.preset), args.overrides)
    except ConfigError as exc:
        p.error(str(exc))
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
