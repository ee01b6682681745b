"""scripts/dse.py: sweep files, cache keys, the cache, the executors' bookkeeping, Pareto fronts; one real job
end to end (a 2x2 array at one precision). The example sweep on both executors is a slow run."""

import json
import math
import sys
from pathlib import Path

import pytest

from hw.config import apply_overrides, parameter_keys, preset
from scripts import dse

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "scripts" / "sweeps" / "example.toml"


def write(tmp_path, text, name="sweep.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# -- sweep files ----------------------------------------------------------------------------------------

def test_example_sweep():
    sweep = dse.load_sweep(EXAMPLE)
    assert sweep.name == "example" and sweep.blocks == ("pe_array",)
    assert [(p.config.pe.rows, p.config.pe.cols, p.config.pe.precisions) for p in sweep.points] == [
        (4, 4, (8, 16)), (4, 4, (4, 8, 12, 16)), (8, 8, (8, 16)), (8, 8, (4, 8, 12, 16))]
    assert sweep.points[2].overrides == {"pe.rows": 8, "pe.cols": 8, "pe.precisions": [8, 16]}
    assert [p.config.name for p in sweep.points] == ["example-1", "example-2", "example-3", "example-4"]
    # Everything else is the base's.
    assert sweep.points[0].config == apply_overrides(preset("default"), [
        "name=example-1", "pe.rows=4", "pe.cols=4", "pe.precisions=[8, 16]"])


def test_grid_product_base_and_key_forms(tmp_path):
    path = write(tmp_path, '''
        name = "g"
        blocks = ["pe", "fp8_tree"]
        [base]
        preset = "small"
        clock_mhz = 200
        pe.max_k = 128
        [grid]
        "pe.rows" = [1, 2, 3]
        fp8.k = [8, 16]
    ''')
    sweep = dse.load_sweep(path)
    assert sweep.blocks == ("pe", "fp8_tree") and len(sweep.points) == 6
    assert [(p.config.pe.rows, p.config.fp8.k) for p in sweep.points] == [
        (1, 8), (1, 16), (2, 8), (2, 16), (3, 8), (3, 16)]
    for p in sweep.points:
        assert p.config.clock_mhz == 200.0 and p.config.pe.max_k == 128 and p.config.pe.cols == 3   # small: 3
        assert p.config.tsram == preset("small").tsram


def test_points_list(tmp_path):
    path = write(tmp_path, '''
        [[points]]
        pe.rows = 4
        pe.cols = 2
        [[points]]
        name = "wide"
        pe = { cols = 16, precisions = [16, 8] }
    ''', name="my-list.toml")
    sweep = dse.load_sweep(path)
    assert sweep.name == "my-list" and sweep.blocks == ("pe_array",)
    first, second = sweep.points
    assert first.overrides == {"pe.rows": 4, "pe.cols": 2} and first.config.name == "my-list-1"
    assert (second.config.name, second.config.pe.cols, second.config.pe.precisions) == ("wide", 16, (8, 16))
    assert second.config.pe.rows == 8


@pytest.mark.parametrize("text, message", [
    ("[grid]\npe.rowz = [1, 2]\n", "grid point 1 (pe.rowz=1): unknown parameter 'pe.rowz'"),
    ("[grid]\n\"pe.rows\" = [4, 0]\n", "grid point 2 (pe.rows=0): pe.rows must be an integer >= 1, not 0"),
    ("[grid]\npe.precisions = [[8, 16], [5]]\n",
     "grid point 2 (pe.precisions=[5]): pe.precisions entries must be one of [4, 8, 12, 16], not 5"),
    ("[[points]]\npe.rows = 2\n[[points]]\nclock_mhz = -1\n",
     "point 2 (clock_mhz=-1): clock_mhz must be a number in (0, 10000], not -1"),
    ("[[points]]\npe = 4\n", "point 1 (pe=4): pe must be a table, not 4"),
    ("[grid]\n", "grid is empty"),
    ("[grid]\npe.rows = []\n", "grid.pe.rows must be a non-empty list of values, not []"),
    ("[grid]\npe.rows = 4\n", "grid.pe.rows must be a non-empty list of values, not 4"),
    ("[grid]\nsize = [{ pe.rows = 2 }, 4]\n", "grid.size must list either values of one parameter or tables"),
    ("[grid]\nsize = [{ pe.rows = 2 }, {}]\n", "grid.size must list tables of parameter values, not an empty"),
    ("[grid]\nsize = [{ pe.rows = 2 }]\npe.rows = [4]\n", "parameter pe.rows is set by both grid.size and grid.pe.rows"),
    ("points = []\n", "points must be a non-empty list of tables"),
    ("", "give either a [grid] table or a list of [[points]], not neither"),
    ("[grid]\npe.rows = [2]\n[[points]]\npe.rows = 2\n", "not both"),
    ("[grid]\npe.precisions = [[8, 16], [16, 8]]\n", "grid points 1 and 2 are the same design"),
    ("[grid]\nname = [\"a\", \"b\"]\n", "grid points 1 and 2 are the same design"),
    ("sizes = [2]\n[grid]\npe.rows = [2]\n", "unknown key 'sizes'; a sweep has name, blocks, base, grid, points"),
    ("blocks = [\"pe_array\", \"gpu\"]\n[grid]\npe.rows = [2]\n", "blocks entries must be one of"),
    ("blocks = []\n[grid]\npe.rows = [2]\n", "blocks must be a non-empty list of block names, not []"),
    ("blocks = [\"pe\", \"pe\"]\n[grid]\npe.rows = [2]\n", "blocks must not repeat a block"),
    ("name = \"a b\"\n[grid]\npe.rows = [2]\n", "name must be a non-empty string of letters, digits"),
    ("[base]\npreset = \"huge\"\n[grid]\npe.rows = [2]\n", "base: preset must be one of ['default', 'small']"),
    ("[base]\npe.cols = 0\n[grid]\npe.rows = [2]\n", "base: pe.cols must be an integer >= 1, not 0"),
    ("base = 3\n[grid]\npe.rows = [2]\n", "base must be a table, not 3"),
    ("[grid\npe.rows = [2]\n", "is not valid TOML"),
])
def test_bad_sweep(tmp_path, capsys, text, message):
    sweep = write(tmp_path, text)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        dse.main(["--sweep", str(sweep), "--out", str(out)])
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and str(sweep) in lines[0], lines
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--sweep", "missing.toml"], "sweep file 'missing.toml' does not exist"),
    (["--sweep", "bytes.toml"], "sweep file 'bytes.toml' cannot be read"),
    (["--executor", "ray"], "argument --executor: invalid choice: 'ray'"),
    (["--workers", "0"], "--workers must be a positive integer, not 0"),
    (["--workers", "two"], "argument --workers: invalid int value: 'two'"),
    (["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler must come with --executor dask, not --executor local"),
    (["--executor", "dask", "--scheduler", "tcp://127.0.0.1:8786", "--workers", "2"],
     "--workers must not come with --scheduler"),
    (["--out", "file"], "--out: file exists and is not a directory"),
    (["--out", "file/sub"], "--out: file is not a directory"),
    (["--out", "taken"], "--out: taken/results.json is a directory"),
])
def test_bad_arguments(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "good.toml").write_text("[grid]\npe.rows = [2]\n")
    (tmp_path / "bytes.toml").write_bytes(b"\xff\xfe")
    (tmp_path / "file").write_text("")
    (tmp_path / "taken" / "results.json").mkdir(parents=True)
    defaults = {"--sweep": "good.toml", "--out": "out"}
    for flag, value in defaults.items():
        if flag not in args:
            args = [*args, flag, value]
    with pytest.raises(SystemExit) as exc:
        dse.main(args)
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "out").exists() and not (tmp_path / "taken" / "cache").exists()


def test_missing_argument(capsys):
    with pytest.raises(SystemExit) as exc:
        dse.main(["--sweep", "x.toml"])
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "the following arguments are required: --out" in lines[0]


def test_dask_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)     # import fails as if not installed
    sweep = write(tmp_path, "[grid]\npe.rows = [2]\n")
    with pytest.raises(SystemExit) as exc:
        dse.main(["--sweep", str(sweep), "--executor", "dask", "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and '--executor dask needs dask.distributed: pip install "dask[distributed]"' in lines[0]
    assert not (tmp_path / "out").exists()


# -- cache key ------------------------------------------------------------------------------------------

def _changed(config, key):
    """``config`` with parameter ``key`` changed to another valid value (the first candidate that is)."""
    value = config.to_dict()
    for part in key.split("."):
        value = value[part]
    if isinstance(value, tuple):
        candidates = [list(value[1:]), list(value[:-1]), list(value[::-1])]
    elif isinstance(value, float):
        candidates = [value / 2]
    elif value == "auto":               # a pipeline depth: a fixed one
        candidates = [0, 1]
    else:
        candidates = [value * 2, value // 2, value + 1, value - 1]
    for candidate in candidates:
        try:
            changed = dse._apply(config, {key: candidate})
        except ValueError:
            continue
        if changed != config:
            return changed
    raise AssertionError(f"no valid other value for {key}")


def test_cache_key_covers_every_parameter():
    base = preset("default")
    generator = {"edgetrain": "1", "sources": "abc", "amaranth": "0.5", "yosys": "y"}
    key = dse.cache_key(base, ["pe_array"], generator)
    assert key == dse.cache_key(preset("default"), ["pe_array"], dict(generator))     # same input, same key
    assert len(key) == 64 and int(key, 16) >= 0
    keys = {key}
    for param in parameter_keys():
        if param == "name":
            continue
        keys.add(dse.cache_key(_changed(base, param), ["pe_array"], generator))
    assert len(keys) == len(parameter_keys())       # every parameter but the name moves the key
    # The name is a label: the same design under another name is the same job.
    assert dse.cache_key(dse._apply(base, {"name": "other"}), ["pe_array"], generator) == key
    assert dse.config_hash(dse._apply(base, {"name": "other"})) == dse.config_hash(base)
    # The blocks and every part of the generator version move it too.
    assert dse.cache_key(base, ["pe_array", "pe"], generator) != key
    for part in generator:
        assert dse.cache_key(base, ["pe_array"], {**generator, part: "other"}) != key


@pytest.fixture
def fresh_generator_version():
    dse.generator_version.cache_clear()
    yield
    dse.generator_version.cache_clear()


def test_generator_version_follows_the_sources(tmp_path, monkeypatch, fresh_generator_version):
    (tmp_path / "hw").mkdir()
    (tmp_path / "hw" / "pe.py").write_text("A = 1\n")
    (tmp_path / "constraints").mkdir()
    (tmp_path / "constraints" / "synth.ys").write_text("synth\n")
    monkeypatch.setattr(dse, "ROOT", tmp_path)
    monkeypatch.setattr(dse, "SOURCES", ("hw", "constraints"))
    first = dse.generator_version()
    assert first["edgetrain"] == dse.hw.__version__ and first["amaranth"]
    dse.generator_version.cache_clear()
    assert dse.generator_version() == first
    for path, text in (("hw/pe.py", "A = 2\n"), ("constraints/synth.ys", "synth -flatten\n")):
        before = dse.generator_version()
        (tmp_path / path).write_text(text)
        dse.generator_version.cache_clear()
        assert dse.generator_version()["sources"] != before["sources"]
    before = dse.generator_version()
    (tmp_path / "hw" / "pe.py").rename(tmp_path / "hw" / "pe2.py")     # a file's name counts too
    dse.generator_version.cache_clear()
    assert dse.generator_version()["sources"] != before["sources"]


# -- the sweep's bookkeeping, with a stand-in job -------------------------------------------------------

def fake_job(params, blocks):
    """Figures that depend on the configuration, in the form :func:`scripts.dse.run_job` returns them."""
    pe = params["pe"]
    area = 1000.0 * pe["rows"] * pe["cols"] * len(pe["precisions"])
    macs = {str(p): pe["rows"] * pe["cols"] * (16 // p) ** 2 * 0.99 for p in pe["precisions"]}
    headline = min(pe["precisions"])
    path = 2.0 + pe["rows"] / 4
    return {"generator": dse.generator_version(), "config": params, "blocks": list(blocks),
            "area_um2": area, "logic_area_um2": 0.8 * area, "ff_area_um2": 0.2 * area,
            "memory_area_um2_estimate": 0.0, "cells": 10, "flip_flops": 2, "clock_period_ns": 4.0,
            "critical_path_ns": path, "critical_block": "pe_array", "critical_path_start": None,
            "critical_path_end": None, "max_clock_mhz": round(1000 / path, 1), "slack_ns": 4.0 - path,
            "macs_per_cycle": macs, "peak_macs_per_cycle": {p: math.ceil(v) for p, v in macs.items()},
            "benchmark": {}, "headline_precision": headline, "headline_macs_per_cycle": macs[str(headline)],
            "area_um2_per_mac": area / macs[str(headline)], "um2_per_mac": {p: area / v for p, v in macs.items()},
            "synthesis": {}, "seconds": {"total": 1.0}}


def in_process(jobs, workers, done):
    """The local executor's contract, in this process (so that a monkeypatched job is the one that runs)."""
    for tag, args in jobs:
        try:
            result, error = dse._job_function()(*args), None
        except Exception as exc:    # noqa: BLE001 - reported like a worker's failure
            result, error = None, exc
        done(tag, result, error)


SMALL_GRID = "[grid]\npe.rows = [2, 4]\npe.precisions = [[8, 16], [16]]\n"


@pytest.fixture
def fake_sweep(tmp_path, monkeypatch):
    calls = []

    def job(params, blocks):
        calls.append(params["name"])
        return fake_job(params, blocks)

    monkeypatch.setattr(dse, "run_job", job)
    monkeypatch.setattr(dse, "_run_local", in_process)
    return write(tmp_path, SMALL_GRID), tmp_path / "out", calls


def test_sweep_writes_results_and_cache(fake_sweep, capsys):
    sweep, out, calls = fake_sweep
    assert dse.main(["--sweep", str(sweep), "--out", str(out), "--workers", "1"]) == 0
    stdout = capsys.readouterr().out
    assert "4 points, blocks pe_array; 0 from the cache, 4 to run (local executor, 1 worker)" in stdout
    # Largest first; one progress line per finished job, counting down.
    assert calls == ["sweep-3", "sweep-1", "sweep-4", "sweep-2"]
    assert "[1/4] #3 pe.rows=4 pe.precisions=[8, 16]: 64000 um^2, 3.00 ns (333 MHz), 126.7 MACs/cycle at 8 bits" in stdout
    assert "; 3 remaining" in stdout and "[4/4] #2 " in stdout and "; 0 remaining" in stdout
    records = json.loads((out / "results.json").read_text())
    assert [r["point"] for r in records] == [1, 2, 3, 4]
    assert [r["overrides"] for r in records] == [
        {"pe.rows": 2, "pe.precisions": [8, 16]}, {"pe.rows": 2, "pe.precisions": [16]},
        {"pe.rows": 4, "pe.precisions": [8, 16]}, {"pe.rows": 4, "pe.precisions": [16]}]
    sweep_points = dse.load_sweep(sweep).points
    for record, point in zip(records, sweep_points):
        assert record["config_name"] == point.config.name and record["config"] == json.loads(
            json.dumps(point.config.to_dict()))
        assert record["config_hash"] == dse.config_hash(point.config)
        assert record["key"] == dse.cache_key(point.config, ["pe_array"])
        assert json.loads((out / "cache" / f"{record['key']}.json").read_text())["area_um2"] == record["area_um2"]
        assert record["from_cache"] is False
    # Area vs 16-bit MACs/cycle: the [16]-only arrays dominate the [8, 16] ones of the same size.
    assert [r["pareto_macs"] for r in records] == [[8], [16], [8], [16]]
    assert [r["pareto_timing"] for r in records] == [False, True, False, False]
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("point,config_name,config_hash,pe.rows,pe.precisions,area_um2,")
    assert "macs_per_cycle_8b,macs_per_cycle_16b" in csv_lines[0] and len(csv_lines) == 5
    assert csv_lines[2].startswith(f"2,sweep-2,{records[1]['config_hash']},2,[16],16000.0,")
    for name in ("pareto_macs.png", "pareto_timing.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]       # no temporary file left


def test_rerun_is_served_from_the_cache(fake_sweep, capsys, monkeypatch):
    sweep, out, calls = fake_sweep
    assert dse.main(["--sweep", str(sweep), "--out", str(out)]) == 0
    first = json.loads((out / "results.json").read_text())
    capsys.readouterr()

    def no_job(*args):
        raise AssertionError("a cached point ran")

    monkeypatch.setattr(dse, "run_job", no_job)
    monkeypatch.setattr(dse, "_run_local", no_job)
    assert dse.main(["--sweep", str(sweep), "--out", str(out)]) == 0
    assert "4 points, blocks pe_array; 4 from the cache, 0 to run" in capsys.readouterr().out
    second = json.loads((out / "results.json").read_text())
    assert all(r["from_cache"] for r in second)
    assert [{**r, "from_cache": None} for r in second] == [{**r, "from_cache": None} for r in first]


def test_new_points_only_run(fake_sweep, capsys):
    sweep, out, calls = fake_sweep
    assert dse.main(["--sweep", str(sweep), "--out", str(out)]) == 0
    sweep.write_text(SMALL_GRID.replace("[2, 4]", "[2, 4, 8]"))
    # A damaged cache entry is computed again.
    key = dse.cache_key(dse.load_sweep(sweep).points[0].config, ["pe_array"])
    (out / "cache" / f"{key}.json").write_text("{")
    calls.clear()
    assert dse.main(["--sweep", str(sweep), "--out", str(out)]) == 0
    assert "6 points, blocks pe_array; 3 from the cache, 3 to run" in capsys.readouterr().out
    assert sorted(calls) == ["sweep-1", "sweep-5", "sweep-6"]
    assert len(json.loads((out / "results.json").read_text())) == 6


def test_failed_job_writes_no_results(fake_sweep, capsys, monkeypatch):
    sweep, out, calls = fake_sweep

    def job(params, blocks):
        if params["pe"]["rows"] == 4 and list(params["pe"]["precisions"]) == [16]:
            raise RuntimeError("Yosys failed on edgetrain_pe_array\nsecond line")
        return fake_job(params, blocks)

    monkeypatch.setattr(dse, "run_job", job)
    assert dse.main(["--sweep", str(sweep), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["[3/4] #4 pe.rows=4 pe.precisions=[16]: FAILED: RuntimeError: Yosys failed on "
                   "edgetrain_pe_array; 1 remaining",
                   f"1 of 4 points failed (#4); results not written, finished points are cached in {out / 'cache'}"]
    assert sorted(p.name for p in out.iterdir()) == ["cache"]
    assert len(list((out / "cache").iterdir())) == 3


def test_worker_of_another_version_fails(fake_sweep, capsys, monkeypatch):
    sweep, out, calls = fake_sweep
    monkeypatch.setattr(dse, "run_job", lambda params, blocks: {**fake_job(params, blocks), "generator": {"x": 1}})
    assert dse.main(["--sweep", str(sweep), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "FAILED: RuntimeError: the worker runs another generator version ({'x': 1})" in err
    assert not (out / "results.json").exists() and not list((out / "cache").iterdir())


def test_dask_executor_bookkeeping(monkeypatch):
    """The dask path (submit, as_completed, failures) on an in-process cluster with the stand-in job."""
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    jobs = [((1, "k1"), ({"pe": {"rows": 1}}, ["pe_array"])), ((2, "k2"), ({"pe": {"rows": 2}}, ["pe_array"]))]
    seen = {}
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        monkeypatch.setattr(dse, "_job_function", lambda: _dask_stand_in)
        dse._run_dask(jobs, client, lambda tag, result, error: seen.update({tag: (result, error)}))
    assert seen[(1, "k1")] == ({"rows": 1, "blocks": ["pe_array"]}, None)
    assert seen[(2, "k2")][0] is None and str(seen[(2, "k2")][1]) == "two rows"


def _dask_stand_in(params, blocks):
    if params["pe"]["rows"] == 2:
        raise ValueError("two rows")
    return {"rows": params["pe"]["rows"], "blocks": blocks}


# -- Pareto fronts --------------------------------------------------------------------------------------

def test_pareto_front():
    # (area, MACs/cycle): less area, more MACs.
    points = [(1, 10), (2, 20), (2, 5), (3, 20), (0.5, 1), None, (4, None), (2, 20)]
    assert dse.pareto_front(points, maximize=(False, True)) == [0, 1, 4, 7]
    # (area, critical path): both smaller is better.
    assert dse.pareto_front([(1, 5), (2, 4), (3, 4), (1, 6), (0.5, 9)]) == [0, 1, 4]
    assert dse.pareto_front([]) == []
    assert dse.pareto_front([(1, 1)]) == [0]


# -- real jobs ------------------------------------------------------------------------------------------

TINY = '''
name = "tiny"
[base]
preset = "small"
[[points]]
pe.rows = 2
pe.cols = 2
pe.precisions = [16]
'''


def _figures(records):
    """The records without what differs between runs (run time, cache flag)."""
    return [{k: v for k, v in r.items() if k not in ("seconds", "from_cache")} for r in records]


def test_real_job_end_to_end(tmp_path, capsys):
    """One 2x2 array, 16-bit only: Yosys on the sky130 library, the cycle benchmark, then a cached re-run."""
    sweep, out = write(tmp_path, TINY), tmp_path / "out"
    assert dse.main(["--sweep", str(sweep), "--out", str(out), "--workers", "1"]) == 0
    assert "[1/1] #1 pe.rows=2 pe.cols=2 pe.precisions=[16]: " in capsys.readouterr().out
    [record] = json.loads((out / "results.json").read_text())
    assert record["config_name"] == "tiny-1" and record["blocks"] == ["pe_array"]
    assert record["area_um2"] == pytest.approx(record["logic_area_um2"] + record["ff_area_um2"], abs=0.2)
    assert record["area_um2"] > record["ff_area_um2"] > 0 and record["flip_flops"] > 0
    assert record["clock_period_ns"] == 5.0 and 0 < record["critical_path_ns"] < 100
    assert record["max_clock_mhz"] == round(1000 / record["critical_path_ns"], 1)
    bench = record["benchmark"]["16"]
    # 16 tiles of 64 beats back to back, then the last tile's latency (3 cycles and one per PE stage) and its
    # one transfer (2 rows, pe.drain_rows 4 >= rows).
    d = 3 + preset("small").stages("pe")
    assert (bench["m"], bench["n"], bench["k"], bench["tiles"], bench["beats"]) == (8, 8, 64, 16, 1024)
    assert bench["cycles"] == 1024 + d + 1
    assert record["macs_per_cycle"] == {"16": round(8 * 8 * 64 / (1024 + d + 1), 3)}
    assert record["peak_macs_per_cycle"] == {"16": 4} and record["headline_precision"] == 16
    assert record["area_um2_per_mac"] == round(record["area_um2"] / record["macs_per_cycle"]["16"], 2)
    assert record["pareto_macs"] == [16] and record["pareto_timing"] is True

    assert dse.main(["--sweep", str(sweep), "--out", str(out)]) == 0
    assert "1 from the cache, 0 to run" in capsys.readouterr().out
    [again] = json.loads((out / "results.json").read_text())
    assert again["from_cache"] is True and _figures([again]) == _figures([record])


@pytest.mark.slow
def test_example_sweep_local_and_dask_agree(tmp_path):
    """The example sweep on both executors (2 workers each): the same figures."""
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    local, dask = tmp_path / "local", tmp_path / "dask"
    assert dse.main(["--sweep", str(EXAMPLE), "--out", str(local), "--workers", "2"]) == 0
    assert dse.main(["--sweep", str(EXAMPLE), "--out", str(dask), "--executor", "dask", "--workers", "2"]) == 0
    a = json.loads((local / "results.json").read_text())
    b = json.loads((dask / "results.json").read_text())
    assert len(a) == 4 and not any(r["from_cache"] for r in a + b)
    assert _figures(a) == _figures(b)
