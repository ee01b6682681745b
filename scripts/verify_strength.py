"""Verification strength per block: mutation score and Verilator coverage of each block's cocotb bench.

Usage: ``python -m scripts.verify_strength [--block NAME ...] [--mutants N] [--seed S] [--timeout-factor F]
[--preset P] [--equivalents FILE] [--waivers FILE] [--no-coverage] [--build-dir DIR] [--rescore] --out DIR``

For each block of :data:`hw.build.BLOCKS` that has a cocotb bench (``verif/<block>.py``), at the ``small``
preset by default (see :mod:`verif.mutation` for the method):

* mutation: ``--mutants`` mutants sampled by Yosys ``mutate -list`` with ``--seed``, all in one netlist behind
  ``mutsel``, one Verilator build; the original (``mutsel`` = 0) must pass first, then each mutant runs the
  bench (its quick tests together first, then each slower test alone; the first failing group kills it).
  A mutant is killed (a test fails or the simulator stops with an error), timed out (a group ran longer than
  the original's run of that group alone x ``--timeout-factor`` + 15 s; counted as killed) or survived.
  Survivors are listed with the RTL line they change. A survivor is ``equivalent`` when the equivalents file
  (``verif/equivalent_mutants.toml``) justifies it, or when Yosys proves it equal to the original
  (:func:`verif.mutation.prove_equivalent`: the mutant can change no output from any state the two designs
  share, e.g. a bit forced to the constant it already is). score = (killed + timed out) / (mutants -
  equivalent).
* coverage: a ``--coverage-line --coverage-toggle`` build of the original block, the bench run once;
  ``line_coverage`` and ``toggle_coverage`` are the fractions of Verilator's line (statement and branch
  blocks) and toggle (bits of named signals) points hit; ``uncovered`` lists the line points never hit with the
  generated Verilog line and the ``hw/*.py`` line it comes from.
  Points that cannot be reached in the configuration are waived with their reason
  (``verif/coverage_waivers.toml``, ``--waivers``): ``line_coverage`` is over the points left,
  ``line_coverage_raw`` over all of them; a waiver whose points the bench does hit is reported contradicted
  and not applied.

Writes ``DIR/strength.json`` (``blocks`` keyed by block name), ``DIR/strength.md`` (table) and
``DIR/strength.png`` (score and coverage by block), rewritten after each block; the entries of other blocks
in an earlier report of the same configuration, seed, mutant count and timeout factor are kept, so a run of
one block updates its row; ``--rescore`` only applies the equivalents file to the survivors of an existing
report. Progress on stderr. Builds go under ``build/strength/<config>/<block>/``
(``--build-dir``). Bad arguments exit with status 2 and one line, writing nothing.
"""

import json
import os
import sys
import time
from pathlib import Path

from hw.build import BLOCKS, CliParser, folder_problem
from hw.config import ConfigError, preset
from verif import mutation


ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "strength"
# Smallest first: a partial run measures as many blocks as it can.
ORDER = ("dfa_ep", "zvc_enc", "zvc_dec", "row_skip", "zero_skip", "weight_update", "requant", "output_error",
         "slice_skip", "pdfa", "tsram", "fp8_tree", "pe_array", "pe", "pe_fixed16", "train_core")
TARGET_SCORE, TARGET_LINE = 0.90, 0.95
PROVED = "proved: Yosys equiv_make of the original and the mutant, equiv_simple and equiv_induct (4 cycles)"
SLACK_S = 15.0      # added to every timeout: simulator start-up, a loaded machine


def has_bench(block):
    return (ROOT / "verif" / f"{block}.py").exists()


def _progress(message):
    print(message, file=sys.stderr, flush=True)


def _parser():
    p = CliParser(prog="python -m scripts.verify_strength", description=__doc__.splitlines()[0])
    p.add_argument("--block", action="append", dest="blocks", metavar="NAME",
                   help="measure this block (repeatable; default: every block with a bench)")
    p.add_argument("--mutants", type=int, default=50, help="mutants sampled per block (default 50)")
    p.add_argument("--seed", type=int, default=1, help="seed of the mutant sampling and of the bench (default 1)")
    p.add_argument("--timeout-factor", type=float, default=3.0, dest="timeout_factor",
                   help="a mutant times out after the original run's time x F + 15 s (default 3)")
    p.add_argument("--preset", default="small", help="configuration preset (default small)")
    p.add_argument("--equivalents", default=str(mutation.EQUIVALENTS), metavar="FILE",
                   help="justified equivalent mutants (default verif/equivalent_mutants.toml)")
    p.add_argument("--waivers", default=str(mutation.WAIVERS), metavar="FILE",
                   help="justified unreachable coverage points (default verif/coverage_waivers.toml)")
    p.add_argument("--no-coverage", action="store_true", help="mutation score only")
    p.add_argument("--build-dir", default=str(BUILD), metavar="DIR",
                   help="simulator builds, under DIR/<config>/<block>/ (default build/strength)")
    p.add_argument("--rescore", action="store_true",
                   help="run nothing: apply the equivalents file to the survivors of DIR/strength.json and "
                        "rewrite the report")
    p.add_argument("--out", required=True, metavar="DIR", help="folder of strength.json, .md and .png")
    return p


def check_args(parser, args):
    """The configuration and the blocks; every problem is one line and exit status 2 before anything runs."""
    try:
        config = preset(args.preset)
    except ConfigError as exc:
        parser.error(str(exc))
    blocks = args.blocks or [b for b in ORDER if b in BLOCKS and has_bench(b)]
    for block in blocks:
        if block not in BLOCKS:
            parser.error(f"--block must be one of {sorted(BLOCKS)}, not {block!r}")
        if not has_bench(block):
            parser.error(f"--block {block}: the block has no cocotb bench (verif/{block}.py)")
    if args.mutants < 1:
        parser.error(f"--mutants must be a positive integer, not {args.mutants}")
    if args.seed < 0:
        parser.error(f"--seed must be a non-negative integer, not {args.seed}")
    if not args.timeout_factor > 0:
        parser.error(f"--timeout-factor must be a positive number, not {args.timeout_factor}")
    try:
        equivalents = mutation.load_equivalents(args.equivalents)
    except (OSError, ValueError) as exc:
        parser.error(f"--equivalents: {exc}")
    try:
        args.waiver_table = mutation.load_waivers(args.waivers)
    except (OSError, ValueError) as exc:
        parser.error(f"--waivers: {exc}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"--out: {out} exists and is not a directory")
    problem = folder_problem(out)
    if problem:
        parser.error(problem)
    build = Path(args.build_dir)
    if build.exists() and not build.is_dir():
        parser.error(f"--build-dir: {build} exists and is not a directory")
    problem = folder_problem(build)
    if problem:
        parser.error(problem.replace("--out", "--build-dir"))
    return config, list(dict.fromkeys(blocks)), equivalents


def measure_block(block, config, args, equivalents, progress=_progress):
    """Mutation score and coverage of one block; the dictionary that goes under ``blocks`` in the JSON."""
    start = time.monotonic()
    workdir = Path(args.build_dir) / config.name / block
    mutants, _ = mutation.mutant_list(block, config, args.mutants, args.seed, workdir)
    progress(f"[{block}] {len(mutants)} mutants (seed {args.seed}); building")
    netlist = mutation.mutant_netlist(block, mutants, workdir)
    sim = mutation.MutantSim(block, config, netlist, workdir, seed=args.seed)
    build_s = sim.build()
    outcome, clean_s, run_dir = sim.run(0, ["+mutsel=0"])
    if outcome != "passed":
        raise RuntimeError(f"{block}: the original design (mutsel=0) does not pass its bench "
                           f"(log: {run_dir / 'sim.log'})")
    # Each group's time is measured as a mutant runs it: alone, in a fresh simulator process (its start-up
    # and the bench's one-time set-up included, which the test times of the whole run leave to its first
    # test), on the original design.
    groups = []
    for i, (names, _) in enumerate(mutation.test_groups(mutation.test_times(run_dir / "results.xml"))):
        outcome, seconds, group_dir = sim.run(f"0-{i}", ["+mutsel=0"], testcase=names)
        if outcome != "passed":
            raise RuntimeError(f"{block}: the original design (mutsel=0) does not pass its tests {names} alone "
                               f"(log: {group_dir / 'sim.log'})")
        groups.append((names, seconds))
    progress(f"[{block}] built in {build_s:.0f} s; original passes in {clean_s:.1f} s; test groups alone: "
             + ", ".join(f"{'+'.join(names)} ({t:.1f} s)" for names, t in groups))
    known = equivalents.get(block, {})
    killed = timed_out = 0
    survived, equivalent = [], []
    mutants_start = time.monotonic()
    for m in mutants:
        result, seconds = "passed", 0.0
        for names, t in groups:
            timeout = t * args.timeout_factor + SLACK_S
            result, s, _ = sim.run(m.index, [f"+mutsel={m.index}"], timeout=timeout, testcase=names)
            seconds += s
            if result != "passed":
                break
        entry = {"index": m.index, "mutant": m.key, "src": m.src}
        if result == "failed":
            killed += 1
            status = "killed"
        elif result == "timeout":
            timed_out += 1
            status = "timed out"
        elif (why := known.get(mutation.equivalence_key(m.key))) is not None:
            equivalent.append({**entry, "why": why})
            status = "equivalent (justified)"
        elif mutation.prove_equivalent(block, m, workdir):
            equivalent.append({**entry, "why": PROVED})
            status = "equivalent (proved)"
        else:
            survived.append(entry)
            status = "SURVIVED"
        progress(f"[{block}] mutant {m.index}/{len(mutants)} {status} ({seconds:.1f} s) {m.src}")
    mutants_s = time.monotonic() - mutants_start
    result = {
        "mutants": len(mutants), "killed": killed + timed_out, "timed_out": timed_out,
        "survived": survived, "equivalent": len(equivalent), "equivalents": equivalent,
        "score": mutation.score(killed + timed_out, len(mutants), len(equivalent)),
    }
    coverage_s = 0.0
    if not args.no_coverage:
        progress(f"[{block}] coverage build and run")
        cov_start = time.monotonic()
        outcome, _, source, dat = mutation.coverage_run(block, config, workdir / "coverage", seed=args.seed)
        if outcome != "passed":
            raise RuntimeError(f"{block}: the coverage build does not pass its bench")
        result.update(mutation.coverage_summary(mutation.parse_coverage(dat), source,
                                                getattr(args, "waiver_table", {}).get(block, [])))
        coverage_s = time.monotonic() - cov_start
    else:
        result.update({"line_coverage": None, "toggle_coverage": None, "uncovered": []})
    result["seconds"] = {"build": round(build_s, 1), "original": round(clean_s, 1), "mutants": round(mutants_s, 1),
                         "coverage": round(coverage_s, 1), "total": round(time.monotonic() - start, 1)}
    return result


def _fmt(value, spec=".3f"):
    return "-" if value is None else format(value, spec)


def markdown(report):
    lines = [f"# Verification strength: configuration `{report['config']}`", "",
             f"Mutants per block: {report['mutants_requested']} (seed {report['seed']}); score = killed / "
             f"(mutants - equivalent), targets: score >= {TARGET_SCORE}, line coverage >= {TARGET_LINE}.", "",
             "| block | mutants | killed | timed out | equivalent | survived | score | line cov | toggle cov "
             "| time (s) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for block, r in report["blocks"].items():
        lines.append(f"| {block} | {r['mutants']} | {r['killed']} | {r['timed_out']} | {r['equivalent']} | "
                     f"{len(r['survived'])} | {_fmt(r['score'])} | {_fmt(r['line_coverage'])} | "
                     f"{_fmt(r['toggle_coverage'])} | {r['seconds']['total']:.0f} |")
    for block, r in report["blocks"].items():
        if r["survived"]:
            lines += ["", f"## {block}: survivors", ""]
            lines += [f"- `{s['src'] or '?'}`: `{s['mutant']}`" for s in r["survived"]]
        if r.get("waivers"):
            lines += ["", f"## {block}: waived line points (unreachable in this configuration)", "",
                      f"Line coverage {_fmt(r['line_coverage'])} over the points left; "
                      f"{_fmt(r['line_coverage_raw'])} over all {r['line_points']}, of which {r['line_waived']} "
                      "are waived.", ""]
            lines += [f"- `{w['scope']}` `{w['src']}`{' ' + w['what'] if w['what'] else ''}: {w['points']} points"
                      + (f", **contradicted: {w['contradicted']} hit, not applied**" if w["contradicted"] else "")
                      + f". {w['why']}" for w in r["waivers"]]
        if r["uncovered"]:
            lines += ["", f"## {block}: uncovered lines", ""]
            lines += [f"- `{u['src'] or '?'}` (Verilog line {u['line']}: `{u['verilog']}`)" for u in r["uncovered"]]
    return "\n".join(lines) + "\n"


def plot(report, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    blocks = list(report["blocks"])
    series = [("mutation score", "score"), ("line coverage", "line_coverage"), ("toggle coverage", "toggle_coverage")]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(blocks) + 2), 4))
    width = 0.8 / len(series)
    for k, (label, key) in enumerate(series):
        values = [report["blocks"][b][key] or 0 for b in blocks]
        ax.bar([i + (k - 1) * width for i in range(len(blocks))], values, width, label=label)
    ax.axhline(TARGET_SCORE, color="k", ls="--", lw=0.8)
    ax.axhline(TARGET_LINE, color="k", ls=":", lw=0.8)
    ax.set_xticks(range(len(blocks)), blocks, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction")
    ax.set_title(f"Verification strength ({report['config']}): dashed 0.90 score, dotted 0.95 line coverage")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(report, out):
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("strength.json", json.dumps(report, indent=2) + "\n"), ("strength.md", markdown(report))):
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, out / name)
    plot(report, out / "strength.png")


def earlier_blocks(path, header):
    """The blocks of an earlier report at ``path`` made with the same configuration, seed, mutant count and
    timeout factor (a run of some blocks updates their entries and keeps the others), else ``{}``."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(earlier, dict) or any(earlier.get(k) != v for k, v in header.items() if k != "blocks"):
        return {}
    return earlier.get("blocks", {})


def rescore(report, equivalents):
    """Move the survivors that the equivalents file now justifies to the equivalents and recompute the scores
    (in place); returns how many moved."""
    moved = 0
    for block, r in report["blocks"].items():
        known = equivalents.get(block, {})
        for s in list(r["survived"]):
            why = known.get(mutation.equivalence_key(s["mutant"]))
            if why is not None:
                r["survived"].remove(s)
                r["equivalents"].append({**s, "why": why})
                moved += 1
        r["equivalent"] = len(r["equivalents"])
        r["score"] = mutation.score(r["killed"], r["mutants"], r["equivalent"])
    return moved


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    config, blocks, equivalents = check_args(parser, args)
    out = Path(args.out)
    if args.rescore:
        try:
            report = json.loads((out / "strength.json").read_text())
        except (OSError, ValueError) as exc:
            parser.error(f"--rescore: no report to rescore in {out} ({exc})")
        moved = rescore(report, equivalents)
        write_report(report, out)
        _progress(f"{moved} survivors now justified equivalent")
        print(out / "strength.json")
        return 0
    report = {"config": config.name, "seed": args.seed, "mutants_requested": args.mutants,
              "timeout_factor": args.timeout_factor, "blocks": {}}
    report["blocks"] = earlier_blocks(out / "strength.json", report)
    for block in blocks:
        report["blocks"][block] = measure_block(block, config, args, equivalents)
        r = report["blocks"][block]
        _progress(f"[{block}] score {_fmt(r['score'])}, line coverage {_fmt(r['line_coverage'])}, toggle coverage "
                  f"{_fmt(r['toggle_coverage'])}, {r['seconds']['total']:.0f} s")
        write_report(report, out)
    print(out / "strength.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
