"""The generated TrainCore Verilog passes Verilator's lint (every warning on, a fixed list of waivers for what
generated code does by design) and Icarus Verilog's elaboration: what an integrator's flow runs first."""

import os
import re
import subprocess

import pytest

from hw.build import BLOCKS, elaborate
from hw.config import preset
from verif.runner import _verilator_env, simulator_status

#: Warnings Amaranth's output raises by design: operands widened or cut to the assigned width, unused bits of
#: wide signals, case statements with a default assignment before them, initial values on process
#: variables, and one file holding several modules.
LINT_WAIVERS = {"UNUSEDSIGNAL", "WIDTHEXPAND", "WIDTHTRUNC", "CASEINCOMPLETE", "PROCASSINIT", "DECLFILENAME"}


@pytest.fixture(scope="module", params=["small", pytest.param("default", marks=pytest.mark.slow)])
def core(request, tmp_path_factory):
    """``(folder, file name, top)`` of the TrainCore of a preset."""
    folder = tmp_path_factory.mktemp(f"core_{request.param}")
    (folder / "train_core.v").write_text(elaborate("train_core", preset(request.param)))
    return folder, "train_core.v", BLOCKS["train_core"].top


def test_verilator_lint(core):
    available, reason = simulator_status("verilator")
    if not available:
        pytest.skip(reason)
    folder, name, top = core
    env = {**os.environ, **_verilator_env()}
    proc = subprocess.run(["verilator", "--lint-only", "-Wall", "-Wno-fatal", "--top-module", top, name],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0 and "%Error" not in proc.stderr, proc.stderr[-3000:]
    kinds = set(re.findall(r"%Warning-([A-Z0-9_]+)", proc.stderr))
    assert kinds <= LINT_WAIVERS, sorted(kinds - LINT_WAIVERS)


def test_icarus_accepts(core):
    available, reason = simulator_status("icarus")
    if not available:
        pytest.skip(reason)
    folder, name, top = core
    proc = subprocess.run(["iverilog", "-g2012", "-s", top, "-o", "core.vvp", name], cwd=folder,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0 and (folder / "core.vvp").exists(), proc.stderr[-3000:]
    assert "error" not in proc.stderr.lower(), proc.stderr[-3000:]
