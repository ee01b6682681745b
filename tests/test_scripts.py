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
