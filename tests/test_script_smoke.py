"""Every benchmark and training script at its smallest size: it runs, exits 0 and writes a report with the
figures it is for, so that the measuring code of a script cannot rot unnoticed. One simulator per script: the
other's path is the same code with another simulator name. Icarus where a script builds designs no other test
builds (nothing to compile), Verilator where it shares a test's build. (bench_requant, train_core, train_rtl
and bench_train_core have smoke runs in their own test modules.)"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from verif.runner import simulator_status

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def needs(sim):
    """Skip with the reason when ``sim`` is not installed."""
    available, reason = simulator_status(sim)
    if not available:
        pytest.skip(reason)


def run(script, *args, out):
    proc = subprocess.run([sys.executable, str(SCRIPTS / script), *args, "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_bench_pe_array(tmp_path):
    out = tmp_path / "pe_array.json"
    # The configuration of tests/test_pe_array.py::test_bench_subset_of_precisions: one Verilator build for both.
    run("bench_pe_array.py", "--preset", "small", "--set", "name=small-8-16", "--set", "pe.precisions=[8, 16]",
        "--set", "pe.cols=2", "--set", "pe.drain_buffers=1", "--set", "pe.drain_rows=1", "--net", "12-16-10", out=out)
    report = json.loads(out.read_text())
    cases = report["cases"]
    # 3 modes x 4 precision pairs x (full, ragged), and the 5 training GEMMs of 12-16-10 at 8 and 16 bits,
    # each checked bit for bit by the bench.
    assert len(cases) == 24 + 10 and all(0 < c["ratio_to_peak"] <= 1 for c in cases)
    s = report["summary"]
    assert s["full_tiles_min_ratio_to_peak"] >= s["ragged_tiles_min_ratio_to_peak"]
    # An array without the drain options is its own baseline (test_bench_pe_array_drain_options compares).
    assert 1 >= s["training_shapes_min_beats_per_cycle"] == s["baseline_training_shapes_min_beats_per_cycle"] > 0
    steps = report["training"]["step_ratio_to_peak"]
    assert set(steps) == {"12-16-10 @8", "12-16-10 @16"} and steps == report["training"]["baseline"]["step_ratio_to_peak"]
    assert report["area"]["pe_nand2"] > report["area"]["pe_fixed16_nand2"] > 0
    assert report["area"]["array_area_um2"] == report["area"]["baseline_array_area_um2"] > 0


@pytest.mark.slow
def test_bench_pe_array_drain_options(tmp_path):
    # Two drain buffers and two rows per transfer (a partial last one on 3 rows) against one and one.
    out = tmp_path / "pe_array.json"
    run("bench_pe_array.py", "--preset", "small", "--set", "pe.precisions=[8, 16]", "--set", "pe.rows=3",
        "--set", "pe.cols=2", "--set", "pe.drain_rows=2", "--net", "12-16-10", out=out)
    report = json.loads(out.read_text())
    s = report["summary"]
    assert 1 >= s["training_shapes_min_beats_per_cycle"] > s["baseline_training_shapes_min_beats_per_cycle"] > 0
    assert s["training_step_min_ratio_to_peak"] > s["baseline_training_step_min_ratio_to_peak"]
    assert report["area"]["array_area_um2"] > report["area"]["baseline_array_area_um2"] > 0


def test_bench_tsram(tmp_path):
    out = tmp_path / "tsram.json"
    run("bench_tsram.py", "--preset", "small", "--ops", "200", out=out)
    report = json.loads(out.read_text())
    t, a = report["throughput"], report["area"]
    assert 0 < t["writes_per_cycle"] <= 1 and 0 < t["reads_per_cycle"] <= 1
    assert a["tsram_memory_bits"] == a["stored_bits"] > 0 and a["register_file_nand2"] > a["tsram_logic_nand2"] > 0


def test_bench_fp8_tree(tmp_path):
    needs("icarus")
    out = tmp_path / "fp8_tree.json"
    run("bench_fp8_tree.py", "--preset", "small", "--set", "fp8.k=2", "--dots", "20", "--sim", "icarus", out=out)
    report = json.loads(out.read_text())
    t = report["throughput"]
    assert report["simulator"] == "icarus"
    assert report["k"] == 2 and t["block_pairs"] > 0 and 0 < t["block_pairs_per_cycle"] <= 1
    assert t["latency_cycles"] > 0 and set(report["area"]["nand2_per_mac"]) == {"fp8_tree", "bf16_tree", "int8_tree"}


def test_bench_sparsity(tmp_path):
    out = tmp_path / "sparsity.json"
    # The training tensors are DFXP-16 codes: the unit's elements must be 16 bits wide. A 1x1 PE array keeps
    # the synthesis of the area section short.
    needs("icarus")
    run("bench_sparsity.py", "--preset", "small", "--set", "sparsity.width=16", "--set", "pe.rows=1",
        "--set", "pe.cols=1", "--vectors", "2", "--sim", "icarus", out=out)
    report = json.loads(out.read_text())
    assert report["simulator"] == "icarus"
    assert report["zero_skip"]["runs"] and report["row_skip"]["runs"] and report["zvc"]["runs"]
    assert report["area"]["zero_skip_nand2"] > 0 and report["area"]["row_skip_nand2"] > 0
    ss = report["slice_skip"]
    assert {r["set"] for r in ss["runs"]} == {"wg_layer0", "wg_layer1", "ep_layer1", "ff_layer1", "random_full_range"}
    assert all(ss[f"{kind}_speedup"] > 0 for kind in ("wg", "ep", "ff")) and ss["area_over_pe"] > 1
    assert ss["lockstep_wg_beats"] >= ss["lockstep_wg_beats_narrowest"] > 0


def test_bench_pdfa(tmp_path):
    out = tmp_path / "pdfa.json"
    run("bench_pdfa.py", "--samples", "2", out=out)
    report = json.loads(out.read_text())
    assert len(report["mlps"]) == 8      # digits and MNIST MLPs of 2 to 5 weight layers
    assert 1 <= report["summary"]["pdfa_over_bp_serial"]["min"] <= report["summary"]["pdfa_over_bp_serial"]["max"]


def test_fp8_accuracy(tmp_path):
    out = tmp_path / "fp8_accuracy.json"
    run("fp8_accuracy.py", "--samples", "16", out=out)
    report = json.loads(out.read_text())
    # 2 GEMMs x 3 format recipes x scale rules x 4 block sizes, every error finite and small.
    assert len(report["rows"]) % 24 == 0 and report["rows"]
    assert all(0 <= r["median_relative_error"] < 1 for r in report["rows"])
    assert out.with_suffix(".md").exists()


def test_train_golden(tmp_path):
    out = tmp_path / "training"
    run("train_golden.py", "--seeds", "1", "--epochs", "1", "--jobs", "1", out=out)
    assert any(out.iterdir())


def test_bench_timing(tmp_path):
    out = tmp_path / "timing.json"
    run("bench_timing.py", "--preset", "small", "--block", "pe", out=out)
    report = json.loads(out.read_text())
    depths = report["blocks"]["pe"]["depths"]
    assert [d["stages"] for d in depths] == list(range(len(depths))) and len(depths) >= 2
    assert all(d["critical_path_ns"] > 0 and d["area_um2"] > 0 for d in depths)
    # Each stage cuts the longest path and adds flip-flops.
    assert depths[-1]["critical_path_ns"] < depths[0]["critical_path_ns"]
    assert depths[-1]["flip_flops"] > depths[0]["flip_flops"]
    density = report["pe_density"]
    assert density["area_ratio"] > 1 and density["bit_scalable"]["gmacs_per_mm2_at_clock"]["4"] > \
        density["fixed16"]["gmacs_per_mm2_at_clock"]["4"]


@pytest.mark.parametrize("script, args", [
    ("bench_pe_array.py", ["--preset", "small"]),
    ("bench_tsram.py", ["--preset", "small"]),
    ("bench_fp8_tree.py", ["--preset", "small"]),
    ("bench_sparsity.py", ["--preset", "small"]),
    ("bench_pdfa.py", []),
    ("fp8_accuracy.py", []),
    ("bench_generator.py", ["--preset", "small"]),
    ("bench_timing.py", ["--preset", "small"]),
])
def test_bad_out(script, args, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = subprocess.run([sys.executable, str(SCRIPTS / script), *args, "--out", str(blocker / "r.json")],
                          capture_output=True, text=True)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "--out:" in lines[0] and "Traceback" not in proc.stderr


def test_train_golden_bad_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = subprocess.run([sys.executable, str(SCRIPTS / "train_golden.py"), "--out", str(blocker)],
                          capture_output=True, text=True)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "is not a directory" in lines[0]


def test_bench_generator(tmp_path):
    out = tmp_path / "generator.json"
    run("bench_generator.py", "--preset", "small", "--sizes", "2,8", out=out)
    report = json.loads(out.read_text())
    assert list(report["sizes"]) == ["2x2", "8x8"] and set(report["peak_rss_mb"]) == {"2x2", "8x8"}
    # One module for the array, one for all its (identical) PEs, one for the routers of each side and one for
    # its column drains, at every size.
    assert all(r["modules"] == 5 and r["seconds"] > 0 and r["cpu_seconds"] > 0 and r["peak_rss_mb"] > 0
               for r in report["sizes"].values())
    assert report["sizes"]["8x8"]["verilog_bytes"] > report["sizes"]["2x2"]["verilog_bytes"]
