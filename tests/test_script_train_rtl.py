"""scripts/train_rtl.py and scripts/bench_train_core.py (training on, and benchmarking, the RTL TrainCore) and the
engine cycle model they predict with (golden/core_timing.py): bad arguments, smoke runs on the small core,
and the model against hand-derived cases, the hardware's own latency constants and cycle counts measured on
the core."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from golden import core_timing
from golden.core import CoreConfig, CoreTrainer
from golden.core_timing import CoreTiming, gemm_rows, oe_group_cycles, oe_latency, predict
from golden.pdfa_schedule import mlp, simulate
from hw import output_error, requant, train_core
from hw.config import preset
from verif.runner import simulator_status

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ROOT / "scripts" / "train_rtl.py"
BENCH = ROOT / "scripts" / "bench_train_core.py"


def _module(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(script, *args):
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, cwd=ROOT)


def _refused(module, argv, capsys):
    """The one line ``module.parse(argv)`` exits with (status 2)."""
    with pytest.raises(SystemExit) as exc:
        module.parse(argv)
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# -- bad input ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "--epochs must be a positive integer, not 0"),
    (["--limit-steps", "0"], "--limit-steps must be a positive integer, not 0"),
    (["--sizes", "64,x,10"], "--sizes must be comma-separated integers, not '64,x,10'"),
    (["--sizes", "32,10"], "sizes must start with the digits' 64 features, not 32"),
    (["--sizes", "64,16,8"], "sizes must end with the digits' 10 classes, not 8"),
    (["--sizes", "64,256,10"], "layer widths must be at most 128 (core.max_width), not 256"),
    (["--precision", "5"], "precision must be one of dfxp4, dfxp8, dfxp12, dfxp16 (or 4, 8, 12, 16), not '5'"),
    (["--precision", "dfxp4"], "layer 0: precision dfxp4 does not run on this core (it runs dfxp8, dfxp12, dfxp16)"),
    (["--batch", "64"], "batch must be at most 32 (core.max_batch), not 64"),
    (["--lr-shift", "40"], "lr_shift must be an integer in [0, 31], not 40"),
    (["--algorithm", "sgd"], "argument --algorithm: invalid choice: 'sgd'"),
    (["--preset", "tiny"], "preset must be one of ['default', 'small'], not 'tiny'"),
    (["--set", "pe.rows=0"], "pe.rows must be an integer >= 1, not 0"),
    (["--preset", "small", "--sizes", "64,16,10"],
     "the network needs 76 weight tiles of 4x4; the core has 64 (core.weight_tiles)"),
    (["--preset", "small", "--sizes", "64,8,10"],
     "a run of 179 mini-batches is more than the core's steps register holds (63, pdfa.sample_width)"),
    (["--out", "run.txt"], "--out must name a .json file, not 'run.txt'"),
])
def test_train_bad_input(args, message, capsys):
    assert message in _refused(_module(TRAIN), args, capsys)


@pytest.mark.parametrize("args, message", [
    (["--steps", "1"], "--steps must be an integer of at least 2, not 1"),
    (["--layers", "1,2"], "--layers must name weight-layer counts of at least 2, not '1,2'"),
    (["--layers", "2,x"], "--layers must be comma-separated integers, not '2,x'"),
    (["--hidden", "0"], "--hidden must be a positive integer, not 0"),
    (["--layers", "9"], "MLP 64-128-128-128-128-128-128-128-128-10: the core holds at most 8 layers"),
    (["--preset", "small"], "MLP 64-128-10: layer widths must be at most 64 (core.max_width), not 128"),
    (["--preset", "small", "--hidden", "8", "--steps", "64"],
     "--steps must be at most the core's steps register (63, pdfa.sample_width), not 64"),
    (["--precision", "dfxp4"], "layer 0: precision dfxp4 does not run on this core"),
    (["--batch", "33"], "batch must be at most 32 (core.max_batch), not 33"),
    (["--set", "core.tile=6"], "core.tile must be a power of two, not 6"),
    (["--out", "bench.txt"], "--out must name a .json file, not 'bench.txt'"),
])
def test_bench_bad_input(args, message, capsys):
    assert message in _refused(_module(BENCH), args, capsys)


@pytest.mark.parametrize("script, args", [(TRAIN, ["--epochs", "0"]), (BENCH, ["--steps", "1"])])
def test_bad_input_cli(script, args, tmp_path):
    """From the command line: one line on stderr, status 2, nothing on stdout, nothing written."""
    out = tmp_path / "sub" / "report.json"
    proc = _run(script, *args, "--out", str(out))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stdout == "" and not (tmp_path / "sub").exists()


def test_bad_out(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    (tmp_path / "folder.json").mkdir()
    train, bench = _module(TRAIN), _module(BENCH)
    for module in (train, bench):
        assert "is not a directory" in _refused(module, ["--out", str(tmp_path / "file" / "x.json")], capsys)
        assert "is a directory" in _refused(module, ["--out", str(tmp_path / "folder.json")], capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder.json"]


# -- the cycle model -----------------------------------------------------------------------------------------

def test_constants_match_hardware():
    """The model's copies of the units' latencies are the hardware's."""
    assert core_timing.RECIP_CYCLES == output_error.RECIP_CYCLES
    assert core_timing.CONVERSION_LATENCY == requant.ConversionUnit.LATENCY
    assert core_timing.INPUT_SLOTS == train_core.INPUT_SLOTS
    for classes in (2, 10, 37):
        unit = output_error.OutputErrorUnit(lanes=4, classes=classes)
        assert oe_latency(classes) == unit.latency
        assert oe_group_cycles(classes) == unit.group_cycles


@pytest.mark.parametrize("m, n, k, tile, precision, expect", [
    # (first row, tile period, tiles, last kept row): beats = ceil(k / t) * t / lanes
    (8, 8, 8, 8, 8, (5 + 2 - 1 + 4, 8, 1, 7)),           # 2 beats: the drain (8 rows) sets the period
    (128, 32, 64, 8, 8, (5 + 16 - 1 + 4, 16, 64, 7)),    # 16 beats per tile
    (10, 32, 128, 8, 8, (5 + 32 - 1 + 4, 32, 8, 1)),     # 10 rows: the last tile keeps rows 0 and 1
    (8, 8, 8, 8, 16, (5 + 8 - 1 + 4, 8, 1, 7)),          # 16 bits: one pair per PE line
    (5, 3, 9, 4, 8, (5 + 3 - 1 + 4, 4, 2, 0)),           # ragged everywhere, tiles of 4
])
def test_gemm_rows(m, n, k, tile, precision, expect):
    assert gemm_rows(m, n, k, tile=tile, precision=precision) == expect


def test_gemm_rows_pipelined_pes():
    # Each PE stage delays the first row by a cycle; tiles of 4 with two stages are bound by the two drain
    # buffers: a tile owns one for 3 + 2 + 4 cycles, two tiles per 9 cycles.
    assert gemm_rows(8, 8, 8, tile=8, precision=8, pe_stages=1) == (5 + 2 - 1 + 4 + 1, 8, 1, 7)
    assert gemm_rows(5, 3, 9, tile=4, precision=8, pe_stages=1) == (5 + 3 - 1 + 4 + 1, 4, 2, 0)
    assert gemm_rows(5, 3, 9, tile=4, precision=8, pe_stages=2) == (5 + 3 - 1 + 4 + 2, 5, 2, 0)
    timing = CoreTiming(mlp([64, 128, 128, 10], feedback="bp"), 8, 32, {"pe": 1})
    assert timing.wg(1) == CoreTiming(mlp([64, 128, 128, 10], feedback="bp"), 8, 32).wg(1) + 1


def test_pipelined_units():
    """The output-error unit's stages delay its first code by two cycles each, the weight update's a WG's
    done by one each; the model's latency is the unit's."""
    for stages in (0, 1):
        unit = output_error.OutputErrorUnit(lanes=4, classes=10, stages=stages)
        assert oe_latency(10, stages) == unit.latency
    table = mlp([64, 8, 10])
    base, deep = CoreTiming(table, 4, 8), CoreTiming(table, 4, 8, {"output_error": 1, "weight_update": 1})
    assert deep.ff(1) == base.ff(1) + 2 and deep.ff(0) == base.ff(0)
    assert deep.wg(0) == base.wg(0) + 1 and deep.ep(0) == base.ep(0)


def test_durations_by_hand():
    t, batch = 8, 32
    timing = CoreTiming(mlp([64, 128, 128, 10], feedback="bp"), t, batch)
    # FF(0): 16 x 4 tiles of 16 beats.
    assert timing.ff(0) == 5 + 15 + 4 + 63 * 16 + 7 + core_timing.FF_TAIL
    # EP(1) of BP: W2^T (128 x 10) e: 2 reduction tiles of 2 beats, drain-bound at 8 cycles per tile.
    assert timing.ep(1) == 5 + 3 + 4 + 63 * 8 + 7 + core_timing.EP_TAIL
    # WG(1): 16 x 16 tiles, the batch (32) as the reduction: 8 beats per tile.
    assert timing.wg(1) == 5 + 7 + 4 + 255 * 8 + 7 + core_timing.WG_TAIL
    # DFA: 4 groups of 128 rows, each after 2 output-error words.
    dfa = CoreTiming(mlp([64, 128, 128, 10], feedback="dfa"), t, batch)
    assert dfa.ep(0) == core_timing.DFA_FIRST_ROW + 2 + 4 * 128 - 1 + core_timing.EP_TAIL
    assert timing.duration("EP", 1, 5) == timing.ep(1)       # any sample
    assert timing.input_beats() == 32 * 33


def test_output_error_bound():
    """Short logit tiles: the output-error unit, one group per oe_group_cycles, bounds the last FF layer."""
    timing = CoreTiming(mlp([64, 8, 10]), 4, 8)
    first = 5 + 1 + 4                     # 2 beats per tile, 3 row tiles per group, 4 cycles per tile
    last_logit = [first + (3 * g + 2) * 4 + 1 + 2 for g in range(2)]
    out0 = last_logit[0] + oe_latency(10)
    out1 = max(last_logit[1] + oe_latency(10), out0 + oe_group_cycles(10))
    assert out1 == out0 + oe_group_cycles(10)
    assert timing.ff(1) == out1 + 10 - 1 + core_timing.OE_TAIL


def test_dfa_reload_bound():
    """Fewer rows than the output-error reload: the reload sets the group period."""
    timing = CoreTiming(mlp([64, 2, 10]), 4, 16)
    words = 3
    assert timing.ep(0) == core_timing.DFA_FIRST_ROW + words + 2 + 3 * (words + core_timing.DFA_RELOAD) - 1 \
        + core_timing.EP_TAIL


def test_timing_checks():
    with pytest.raises(ValueError, match="precision dfxp4 does not run on tiles of 8"):
        CoreTiming(mlp([64, 10], precision="dfxp4"), 8, 32)
    with pytest.raises(ValueError, match="batch must be a positive integer, not 0"):
        CoreTiming(mlp([64, 10]), 8, 0)


def test_input_stream():
    """FF(0, t) waits for mini-batch t: its last beat is taken batch * (1 + n_in / 2) cycles after the stream
    starts, layers + 1 cycles before the controller's cycle 0; the fourth waits for the first's buffer."""
    table = mlp([64, 8, 10])
    run = predict(table, 4, tile=4, batch=8, pipelined=True)
    ff0 = sorted((op.sample, op.start) for op in run.ops if op.engine == "FF" and op.layer == 0)
    beats = 8 * 33
    assert ff0[0] == (0, beats - 3) and ff0[1] == (1, 2 * beats - 3) and ff0[2][1] >= 3 * beats - 3
    wg0 = {op.sample: op.end for op in run.ops if op.engine == "WG" and op.layer == 0}
    assert ff0[3][1] >= max(wg0[0] + 1 + beats, ff0[2][1])
    assert run.stall["FF"] > 0
    # Without the stream the same table runs faster.
    timing = CoreTiming(table, 4, 8)
    assert simulate(table, 3, pipelined=True, duration=timing.duration).cycles < run.cycles


# Cycle counts of the small core's runs, measured on the RTL (scripts/bench_train_core.py --preset small
# --hidden 8 --layers 2 --steps 2, and --steps 6); the deeper bench (slow) checks every operation.
MEASURED_SMALL = [("bp", True, 1, 651), ("bp", True, 2, 1041), ("bp", True, 6, 2601), ("bp", False, 1, 618),
                  ("bp", False, 2, 975), ("bp", False, 6, 2403), ("pdfa", False, 1, 648), ("pdfa", False, 2, 912),
                  ("pdfa", False, 3, 1176), ("pdfa", False, 6, 1968)]


@pytest.mark.parametrize("algorithm, serial, steps, cycles", MEASURED_SMALL)
def test_predict_measured(algorithm, serial, steps, cycles):
    table = mlp([64, 8, 10], feedback="bp" if algorithm == "bp" else "dfa")
    run = predict(table, steps, tile=4, batch=8, pipelined=algorithm == "pdfa", serial=serial)
    assert run.cycles == cycles


# -- smoke runs on the small core ------------------------------------------------------------------------------

def _verilator():
    available, reason = simulator_status("verilator")
    if not available:
        pytest.skip(reason)


def test_train_smoke(tmp_path):
    _verilator()
    out = tmp_path / "train.json"
    proc = _run(TRAIN, "--preset", "small", "--sizes", "64,8,10", "--limit-steps", "2", "--seed", "3",
                "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["weights_equal_golden"] and report["epochs_run"] == 1 and report["steps"] == 2
    # The core's weights classify exactly as the golden model's after the same two steps.
    cfg = preset("small")
    trainer = CoreTrainer(CoreConfig(sizes=(64, 8, 10), batch=cfg.core.max_batch, seed=3, array=(4, 4),
                                     max_k=cfg.pe.max_k))
    trainer.begin_run()
    for idx in trainer.batches()[:2]:
        trainer.step_codes(trainer.x_train[idx].T, trainer.y_train[idx])
    assert report["test_accuracy"] == float(np.mean(trainer.predict(trainer.x_test) == trainer.y_test))
    assert report["curve"]["test_accuracy"] == [report["test_accuracy"]]
    epoch = report["per_epoch"][0]
    assert epoch["cycles"] == report["cycles"] > 0
    for engine in ("ff", "ep", "wg"):
        assert sum(epoch["counters"][f"{engine}_{k}"] for k in ("busy", "stall", "idle")) == report["cycles"]
    assert abs(report["measured_over_predicted"] - 1) <= 0.1
    assert report["cycles_per_second"] > 0 and report["sim_cycles_per_second"] > 0
    assert report["build_seconds"] >= 0 and report["sim_seconds"] > 0
    assert report["core_config"]["batch"] == cfg.core.max_batch
    assert "test accuracy" in proc.stdout and "epoch 1/1" in proc.stderr


def test_bench_smoke(tmp_path):
    _verilator()
    out = tmp_path / "bench.json"
    proc = _run(BENCH, "--preset", "small", "--hidden", "8", "--layers", "2", "--steps", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    (entry,) = report["mlps"]
    assert entry["family"] == "digits" and entry["sizes"] == [64, 8, 10] and entry["layers"] == 2
    assert entry["bit_exact"] and report["summary"]["bit_exact"]
    algs = entry["algorithms"]
    assert set(algs) == {"bp_serial", "bp", "pdfa"} == set(entry["measured_over_predicted"])
    for mode, a in algs.items():
        assert a["runs"]["2"] > a["runs"]["1"] > 0
        assert a["cycles_per_step"] == a["runs"]["2"] - a["runs"]["1"]
        assert abs(entry["measured_over_predicted"][mode] - 1) <= 0.1
        assert 0 < a["utilization"]["FF"] <= 1
    assert entry["pdfa_over_bp_serial"] == round(algs["bp_serial"]["cycles_per_step"]
                                                 / algs["pdfa"]["cycles_per_step"], 4)
    assert entry["pdfa_over_bp"] > 1
    summary = report["summary"]
    assert set(summary["meets"]) == {"pdfa_over_bp_serial_3_to_5_layers", "pdfa_over_bp", "within_prediction"}
    assert summary["pdfa_over_bp_serial"]["min"] == entry["pdfa_over_bp_serial"]
    assert "64-8-10" in proc.stdout


@pytest.mark.slow
def test_bench_smoke_deeper(tmp_path):
    """Two and three layers on the small core, every operation traced against the model."""
    _verilator()
    out = tmp_path / "bench.json"
    proc = _run(BENCH, "--preset", "small", "--hidden", "8", "--layers", "2,3", "--steps", "4", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["summary"]["bit_exact"] and report["summary"]["meets"]["within_prediction"]
    for entry in report["mlps"]:
        for a in entry["algorithms"].values():
            assert a["ops_off_model"] is None or a["ops_off_model"]["count"] == 0, a["ops_off_model"]
    assert math.isclose(report["mlps"][1]["measured_over_predicted"]["pdfa"], 1, abs_tol=0.1)
