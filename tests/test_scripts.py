import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


@pytest.mark.parametrize("args, message", [
    (["--samples", "0"], "--samples must be in [1, 65535] (pdfa.sample_width), not 0"),
    (["--latency", "-1"], "--latency must be a non-negative integer, not -1"),
    (["--preset", "small"], "pdfa.size_width must hold layer size 784, not 8 bits"),
    (["--set", "pdfa.max_layers=1"], "pdfa.max_layers must be at least 2 for this benchmark, not 1"),
    (["--set", "pdfa.max_layers=0"], "pdfa.max_layers must be an integer >= 1, not 0"),
])
def test_bench_pdfa_bad_input(args, message, tmp_path):
    out = tmp_path / "pdfa.json"
    proc = subprocess.run([sys.executable, str(SCRIPTS / "bench_pdfa.py"), *args, "--out", str(out)],
                          capture_output=True, text=True)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    assert not out.exists()


def _script_module(name):
    """A benchmark script as a module (its helpers import ``benchlib`` from ``scripts/``)."""
    import importlib
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return importlib.import_module(name)


def test_bench_pe_array_training_gemms():
    bench = _script_module("bench_pe_array")
    assert bench.training_gemms((64, 128, 10), 32) == [
        ("FF", "FF", 128, 32, 64), ("WG", "WG", 128, 64, 32),
        ("FF", "FF", 10, 32, 128), ("EP", "EP", 128, 32, 10), ("WG", "WG", 10, 128, 32)]
    from hw.config import preset
    # The default core (8x8 tiles) runs DFXP-8, -12 and -16 on its arrays; DFXP-4 needs 16-wide tiles.
    assert bench.training_precisions(preset("default")) == (8, 12, 16)
    cases = bench.training_workload(preset("default"), [(64, 128, 128, 10), (64, 128, 128, 128, 10)])
    assert len(cases) == 3 * 8          # 8 distinct GEMMs (the deeper net repeats them), 3 precisions


@pytest.mark.parametrize("net", ["64", "64-0-10", "64-x-10", "64--10", "64-5000-10"])
def test_bench_pe_array_bad_net(net, tmp_path):
    out = tmp_path / "pe_array.json"
    proc = subprocess.run([sys.executable, str(SCRIPTS / "bench_pe_array.py"), "--net", net, "--out", str(out)],
                          capture_output=True, text=True)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "--net must be layer sizes" in lines[0], proc.stderr
    assert not out.exists()


def test_bench_sparsity_lockstep_beats():
    import numpy as np
    lockstep_beats = _script_module("bench_sparsity").lockstep_beats
    # 16-bit codes on a 2x2 array, reduction of 8: 8 beats per tile at 16x16.
    small = np.full((2, 8), 3)                  # fits 4 bits: 16 pairs per beat at 4x4
    assert lockstep_beats(small, small.T.copy(), 16, 2, 2) == (8, 1)
    big = small.copy()
    big[1, 5] = 30000                           # one full-width operand: its beat is 16 x 4 bits, 4 lanes
    assert lockstep_beats(big, small.T.copy(), 16, 2, 2) == (8, 2)     # elements 0..3 at 8x8, 4..7 at 16x4
    odd = np.full((2, 8), 3000)                 # 12 bits: a 12-bit operand spans the grid as 16 bits do
    assert lockstep_beats(odd, odd.T.copy(), 16, 2, 2) == (8, 8)
