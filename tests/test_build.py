import json
import os
import re
import subprocess
import sys

import pytest

import hw
from hw.build import BLOCKS, main
from hw.synth import MEMORY_UM2_PER_BIT, SynthError, nand2_equivalents, yosys_command


def run_cli(*args, cwd):
    """``python -m hw.build`` in ``cwd``, importing the ``hw`` under test (not an installed one)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(hw.__file__)),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "hw.build", *args], cwd=cwd, capture_output=True, text=True,
                          env=env)


def test_verilog(tmp_path):
    out = tmp_path / "out"
    assert main(["--target", "verilog", "--preset", "small", "--out", str(out)]) == 0
    dest = out / "small"
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["parameters"]["pe"]["rows"] == 2 and manifest["derived"]["pe.acc_width"] == 38
    for block, spec in BLOCKS.items():
        text = (dest / f"{block}.v").read_text()
        assert f"module {spec.top}(" in text
        assert manifest["blocks"][block] == {"file": f"{block}.v", "top": spec.top,
                                             "description": spec.description}
    assert "create_clock -name clk -period 5.000" in (dest / "clock.sdc").read_text()
    # The TrainCore's register map, generated in three forms from one source.
    assert manifest["register_map"] == ["train_core_regs.md", "train_core_regs.h", "train_core_regs.py"]
    assert "| `ctrl` |" in (dest / "train_core_regs.md").read_text() or "ctrl" in (dest / "train_core_regs.md").read_text()
    assert "#define" in (dest / "train_core_regs.h").read_text()
    assert "class" in (dest / "train_core_regs.py").read_text()
    assert json.loads((dest / "config.json").read_text())["name"] == "small"


def test_rtlil_with_config_and_overrides(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('preset = "small"\nname = "mine"\n[pe]\nrows = 1\n')
    out = tmp_path / "out"
    assert main(["--target", "rtlil", "--config", str(cfg), "--set", "pe.cols=1", "--block", "pe_array",
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "mine").iterdir()) == [
        "clock.sdc", "config.json", "manifest.json", "pe_array.il"]
    params = json.loads((out / "mine" / "manifest.json").read_text())["parameters"]["pe"]
    assert (params["rows"], params["cols"]) == (1, 1)


@pytest.mark.parametrize("args, message", [
    (["--set", "pe.rows=0"], "pe.rows must be an integer >= 1, not 0"),
    (["--set", "pe.precisions=[5]"], "pe.precisions entries must be one of [4, 8, 12, 16], not 5"),
    (["--set", "pe.bogus=1"], "unknown parameter 'pe.bogus'"),
    (["--target", "vhdl"], "argument --target: invalid choice: 'vhdl'"),
    (["--config", "missing.toml"], "config file 'missing.toml' does not exist"),
    (["--config", "bad.toml"], "config file 'bad.toml' is not valid TOML"),
    (["--preset", "huge"], "preset must be one of ['default', 'small'], not 'huge'"),
    (["--set", "pe.rows"], "--set takes key=value"),
])
def test_bad_input(tmp_path, args, message):
    (tmp_path / "bad.toml").write_text("[pe\nrows = 2\n")
    proc = run_cli(*args, "--out", "out", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("out, message", [
    ("file", "--out: file is not a directory"),
    ("file/sub", "--out: file is not a directory"),
    ("dir", "--out: dir/small exists and is not a directory"),
])
def test_bad_out(tmp_path, out, message):
    (tmp_path / "file").write_text("")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "small").write_text("")
    proc = run_cli("--preset", "small", "--block", "pe", "--out", out, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file"]
    assert (tmp_path / "file").read_text() == "" and [p.name for p in (tmp_path / "dir").iterdir()] == ["small"]


def test_nand2_equivalents():
    assert nand2_equivalents({"$_NAND_": 3, "$_NOT_": 3}) == pytest.approx(5.0)
    assert nand2_equivalents({"$_DFF_P_": 1}) == pytest.approx(4.522 / 0.798)
    assert nand2_equivalents({"$_SDFFE_PP0P_": 1}) == pytest.approx((4.522 + 1.064 + 1.862) / 0.798)
    with pytest.raises(SynthError, match="no NAND2 weight for cell type '\\$_FOO_'"):
        nand2_equivalents({"$_FOO_": 1})


def test_synth(tmp_path):
    try:
        yosys_command()
    except SynthError as exc:
        pytest.skip(str(exc))
    out = tmp_path / "out"
    blocks = [arg for b in ("pe", "pe_fixed16", "tsram") for arg in ("--block", b)]
    # The PE unpipelined: its registers then match the baseline's.
    assert main(["--target", "synth", "--preset", "small", "--set", "pe.rows=1", "--set", "pe.cols=1",
                 "--set", "pipeline.pe=0", *blocks, "--out", str(out)]) == 0
    report = json.loads((out / "small" / "synth" / "report.json").read_text())
    pe, base = report["blocks"]["pe"], report["blocks"]["pe_fixed16"]
    # The baseline holds a 32-bit product, the 38-bit accumulator and a flag: 71 flip-flops.
    assert base["flip_flops"] == 71 and pe["flip_flops"] == 71
    assert pe["nand2_equivalents"] > base["nand2_equivalents"] > 0
    assert base["transistors"] > 0 and base["logic_depth_cells"] > 10 and base["memory_bits"] == 0
    assert "| pe_fixed16 |" in (out / "small" / "synth" / "report.md").read_text()
    # The wrapper's banks are macros, counted apart: 3 tiles of 4x4 8-bit words in 4 banks of 12 words.
    tsram = report["blocks"]["tsram"]
    assert tsram["memory_bits"] == 3 * 4 * 4 * 8 and tsram["memories"] == 4
    assert {(m["width"], m["depth"]) for m in tsram["memory_macros"]} == {(8, 12)}
    # Mapped onto sky130_fd_sc_hd, timed against the 5 ns of the small preset's clock.sdc.
    assert report["clock_period_ns"] == 5.0 and report["liberty"] == "sky130hd_tt.lib.gz"
    assert base["lib_flip_flops"] == 71 and base["ff_area_um2"] > 0 and base["logic_area_um2"] > base["ff_area_um2"]
    assert pe["area_um2"] > base["area_um2"] > 0
    # A registered 16x16 multiply-accumulate: some ns of logic, well above one gate, well below 20 ns.
    assert 2 < base["critical_path_ns"] < 20 and base["slack_ns"] == pytest.approx(5 - base["critical_path_ns"])
    # Memories stay macros: no flip-flop per bit, their area estimated apart from the logic.
    assert tsram["lib_flip_flops"] < 16 and tsram["memory_area_um2_estimate"] == 384 * MEMORY_UM2_PER_BIT
    assert {(m["read_ports"], m["write_ports"]) for m in tsram["memory_macros"]} == {(1, 1)}
    md = (out / "small" / "synth" / "report.md").read_text()
    assert "| tsram | `bank0` | 12 x 8 | 96 | 1 | 1 |" in md
    assert re.search(r"\| pe_fixed16 \| \d+ \| \d+ \| 1421 \| \d+ \| 71 \| 0 \| \d+\.\d\d \|", md)
    page = (out / "small" / "synth" / "report.html").read_text()
    # Timing, area per MAC by precision, blocks against baselines.
    assert page.count('<img alt="plot" src="data:image/png;base64,') == 3 and "<td>pe_fixed16</td>" in page
    # The baselines of the run: the fixed PE (a block) and the register-file transpose buffer of the TSRAM.
    comp = report["comparisons"]
    assert set(comp) == {"pe_vs_fixed16", "tsram_vs_register_file"} and list(report["baselines"]) == ["register_file"]
    c = comp["pe_vs_fixed16"]
    assert c["pe_over_fixed16"] == pytest.approx(pe["area_um2"] / base["area_um2"], abs=1e-4)
    assert {p: v["pe_macs_per_cycle"] for p, v in c["per_precision"].items()} == {"4": 16, "8": 4, "12": 1, "16": 1}
    assert c["per_precision"]["4"]["pe_um2_per_mac"] == pytest.approx(pe["area_um2"] / 16, abs=0.01)
    t = comp["tsram_vs_register_file"]
    assert t["stored_bits"] == 384 and report["baselines"]["register_file"]["lib_flip_flops"] >= 384
    assert t["tsram_over_register_file"] == pytest.approx(
        (tsram["area_um2"] + tsram["memory_area_um2_estimate"]) / report["baselines"]["register_file"]["area_um2"],
        abs=1e-4)
    assert "## Baselines (same library, same run)" in md and "| 4x4 | 16 |" in md
    assert "<link" not in page and "<script" not in page
