"""Standard-cell mapping and timing of ``hw.synth`` (sky130_fd_sc_hd typical) and ``--liberty`` of the build."""

import gzip
import json
import os
import re
import subprocess
import sys

import pytest
from amaranth import Module, Signal, unsigned
from amaranth.lib.memory import Memory
from amaranth.back import rtlil
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

import hw
from hw.build import main
from hw.synth_report import html_report
from hw.synth import (LIBERTY, MEMORY_UM2_PER_BIT, LibertyError, SynthError, _abc_delay_ps, clock_period_ns,
                      flop_overhead_ns, read_liberty, synthesize, yosys_command)


@pytest.fixture(scope="module")
def yosys():
    try:
        return yosys_command()
    except SynthError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def lib():
    return read_liberty(LIBERTY)


def run_cli(*args, cwd):
    """``python -m hw.build`` in ``cwd``, importing the ``hw`` under test."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(hw.__file__)),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "hw.build", *args], cwd=cwd, capture_output=True, text=True,
                          env=env)


def liberty_area(cell):
    """Area of ``cell`` read straight from the project's Liberty file (apart from :class:`hw.synth.Liberty`)."""
    text = gzip.decompress(LIBERTY.read_bytes()).decode()
    block = text[text.index(f'cell ("{cell}")'):]
    return float(re.search(r"\n\s*area : ([0-9.]+);", block).group(1))


class RegisteredAnd(wiring.Component):
    """``q`` is ``a & b`` one cycle later (reset to 0)."""
    a: In(1)
    b: In(1)
    q: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.q.eq(self.a & self.b)
        return m


class _Mac(wiring.Component):
    """An 8x8 multiply-accumulate into 20 bits, with a child of its own (the registered product)."""
    a: In(8)
    b: In(8)
    o: Out(20)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mul = mul = _Mul()
        m.d.comb += [mul.a.eq(self.a), mul.b.eq(self.b)]
        m.d.sync += self.o.eq(self.o + mul.o)
        return m


class _Mul(wiring.Component):
    a: In(8)
    b: In(8)
    o: Out(16)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.o.eq(self.a * self.b)
        return m


class _Composite(wiring.Component):
    """Two MACs (children with children, so the breakdown is made by default), a memory of 16 x 20 bits and
    glue: the memory's words added to the MACs' sum."""
    a: In(8)
    b: In(8)
    addr: In(4)
    o: Out(20)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mac0 = mac0 = _Mac()
        m.submodules.mac1 = mac1 = _Mac()
        m.submodules.mem = mem = Memory(shape=unsigned(20), depth=16, init=[])
        wr, rd = mem.write_port(), mem.read_port()
        m.d.comb += [mac0.a.eq(self.a), mac0.b.eq(self.b), mac1.a.eq(self.b), mac1.b.eq(~self.a),
                     wr.addr.eq(self.addr), wr.data.eq(mac0.o ^ mac1.o), wr.en.eq(1), rd.addr.eq(self.addr + 1)]
        m.d.sync += self.o.eq(rd.data + mac0.o + mac1.o)
        return m


def test_read_liberty(lib):
    assert len(lib.area) == 428     # 452 cell groups, less the 24 test_cell groups of the scan flip-flops
    assert lib.area["sky130_fd_sc_hd__dfxtp_1"] == liberty_area("sky130_fd_sc_hd__dfxtp_1") > 0
    assert "sky130_fd_sc_hd__dfxtp_1" in lib.sequential and "sky130_fd_sc_hd__dfrtp_1" in lib.sequential
    assert "sky130_fd_sc_hd__nand2_1" not in lib.sequential


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    (b"\x1f\x8b\x08\x00 not really gzip", "is not readable"),
    (b"module top(); endmodule\n", "must start with a Liberty library group, not 'module top(); endmod'"),
    (b"\xff\xfe\x00binary", "must be a text Liberty file (or one gzip-compressed), not binary data"),
    (gzip.compress(b"/* empty */ library (x) {\n}\n", mtime=0), "must describe cells, not none"),
])
def test_read_liberty_wrong(tmp_path, content, message):
    path = tmp_path / "cells.lib.gz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(LibertyError, match=re.escape(message)):
        read_liberty(path)


def test_abc_delay_ps(tmp_path):
    stats = tmp_path / "stats.txt"
    assert _abc_delay_ps(stats) is None
    stats.write_text("\nnetlist 3 1 2 7 69 ")
    assert _abc_delay_ps(stats) == 69
    # A second network under the same name: relative to the first (nodes, area, delay in %, seconds).
    stats.write_text("\nnetlist 2 1 1 7 149  200.0 100.0 47.7 0.17 300.0 150.0 250.0 0.2")
    assert _abc_delay_ps(stats) == round(149 * 2.5)
    # Kept hierarchy: one ABC process per module, each with its own first record.
    stats.write_text("\nnetlist 624 512 3637 18760 3143 \nnetlist 205 71 3963 20255 6367 \n"
                     "netlist 117 73 767 4077 2966  100.0 100.0 50.0 0.1")
    assert _abc_delay_ps(stats) == 6367


def test_clock_period_ns():
    assert clock_period_ns("# x\ncreate_clock -name clk -period 4.000 [get_ports clk]\n") == 4.0
    assert clock_period_ns("set_input_delay 1 [all_inputs]\n") is None


def test_flop_overhead_ns(lib):
    # Clock-to-Q of dfxtp_1 lies in its tables (0.27..1.31 ns over slew and load), setup adds under 0.2 ns.
    assert 0.27 < flop_overhead_ns(lib, "sky130_fd_sc_hd__dfxtp_1") < 0.6
    assert flop_overhead_ns(lib, "sky130_fd_sc_hd__nand2_1") == 0


def test_registered_and(tmp_path, yosys, lib):
    r = synthesize(rtlil.convert(RegisteredAnd(), name="rand", emit_src=False), "rand", tmp_path,
                   period_ns=4.0)
    cells = r["lib_cells_by_type"]
    flops = {t: n for t, n in cells.items() if t in lib.sequential}
    # One flip-flop; the AND and the synchronous reset in one or two small gates.
    assert r["lib_flip_flops"] == r["flip_flops"] == 1 and list(flops.values()) == [1]
    assert 1 <= r["lib_cells"] - 1 <= 2
    assert r["ff_area_um2"] == pytest.approx(liberty_area(next(iter(flops))))
    assert r["area_um2"] == pytest.approx(sum(n * liberty_area(t) for t, n in cells.items()))
    assert r["area_um2"] == pytest.approx(r["logic_area_um2"] + r["ff_area_um2"])
    # Yosys' own sum of the same netlist.
    assert r["area_um2"] == pytest.approx(json.loads((tmp_path / "stat_lib.json").read_text())["design"]["area"])
    assert 0 < r["logic_delay_ns"] < 0.5
    assert r["critical_path_ns"] == pytest.approx(r["logic_delay_ns"] + r["ff_overhead_ns"], abs=1e-3)
    assert r["max_clock_mhz"] == pytest.approx(1000 / r["critical_path_ns"], rel=1e-3)
    assert r["slack_ns"] == pytest.approx(4.0 - r["critical_path_ns"], abs=1e-3)
    assert r["memory_area_um2_estimate"] == 0


class _Chain(wiring.Component):
    """``q`` is the square of ``a`` registered twice, then registered once more: the multiply is the longest
    path, from the flip-flops of ``r1`` into those of ``r2``."""
    a: In(8)
    q: Out(16)

    def elaborate(self, platform):
        m = Module()
        r1, r2 = Signal(8, name="r1"), Signal(16, name="r2")
        m.d.sync += [r1.eq(self.a), r2.eq(r1 * r1), self.q.eq(r2)]
        return m


def test_path_ends(tmp_path, yosys):
    pytest.importorskip("pyosys", reason="the ends of the critical path come from Yosys run in-process (pyosys)")
    r = synthesize(rtlil.convert(_Chain(), name="chain", emit_src=False), "chain", tmp_path, period_ns=4.0)
    assert re.fullmatch(r"r1\[\d\]", r["critical_path_start"]), r["critical_path_start"]
    assert re.fullmatch(r"r2\[\d+\]", r["critical_path_end"]), r["critical_path_end"]
    assert r["logic_delay_ns"] > 1
    path = json.loads((tmp_path / "path.json").read_text())
    assert path["delay_ps"] == pytest.approx(1000 * r["logic_delay_ns"], abs=1)


def test_yosys_error(tmp_path, yosys):
    with pytest.raises(SynthError, match=r"Yosys failed on t \(see .*synth.log\): ERROR: "):
        synthesize("this is not RTLIL\n", "t", tmp_path, liberty=None)


def test_breakdown_area(tmp_path, yosys, lib):
    r = synthesize(rtlil.convert(_Composite(), name="comp", emit_src=False), "comp", tmp_path, period_ns=4.0)
    parts, total = r["breakdown"], r["breakdown_total"]
    assert list(parts) == ["mac0", "mac1", "mem", "(glue)"]
    for part in parts.values():
        assert part["area_um2"] == pytest.approx(part["logic_area_um2"] + part["ff_area_um2"])
    assert total["area_um2"] == pytest.approx(sum(part["area_um2"] for part in parts.values()))
    # The block's figures are the parts' sum; flattened, the same design maps within 1% of it.
    assert r["netlist"] == "hierarchical"
    assert all(r[key] == pytest.approx(total[key]) for key in ("area_um2", "nand2_equivalents", "cells", "lib_cells"))
    assert r["flat"]["area_um2"] == pytest.approx(total["area_um2"], rel=0.01)
    assert sum(r["lib_cells_by_type"].values()) == r["lib_cells"]
    # 2 x (16 + 20) flip-flops in the MACs and 20 of glue, none for the memory: a macro of its own.
    assert {name: part["lib_flip_flops"] for name, part in parts.items()} == {
        "mac0": 36, "mac1": 36, "mem": 0, "(glue)": 20}
    assert parts["mem"]["area_um2"] == 0 and parts["mem"]["memory_bits"] == 320
    assert parts["mem"]["memory_area_um2_estimate"] == r["memory_area_um2_estimate"] == 320 * MEMORY_UM2_PER_BIT
    assert parts["mac0"]["area_um2"] == pytest.approx(parts["mac1"]["area_um2"], rel=0.05)
    # A MAC's part is the MAC synthesized alone (with the same delay target: ABC trades area for delay).
    alone = synthesize(rtlil.convert(_Mac(), name="mac", emit_src=False), "mac", tmp_path / "alone", period_ns=4.0)
    assert parts["mac0"]["area_um2"] == pytest.approx(alone["area_um2"], rel=0.01)
    assert r["critical_path_ns"] > alone["logic_delay_ns"] > 0
    # The review page: the timing plot and the breakdown's plot, inline.
    page = html_report({"comp": r, "mac": alone}, config_name="t", liberty="x.lib", period_ns=4.0,
                       memory_um2_per_bit=MEMORY_UM2_PER_BIT)
    assert page.count('src="data:image/png;base64,') == 2 and "<h2>Area by part: comp</h2>" in page
    assert "<tr><td>mem</td><td class=\"num\">0</td>" in page


@pytest.mark.parametrize("period, error, message", [
    (0, ValueError, "Clock period must be a positive number of ns, not 0"),
    (-1.0, ValueError, "Clock period must be a positive number of ns, not -1.0"),
    (True, TypeError, "Clock period must be a number of ns or None, not True"),
    ("4", TypeError, "Clock period must be a number of ns or None, not '4'"),
])
def test_synthesize_wrong_period(tmp_path, period, error, message):
    with pytest.raises(error, match=re.escape(message)):
        synthesize("", "t", tmp_path, period_ns=period)


def test_generic_only(tmp_path, yosys):
    r = synthesize(rtlil.convert(RegisteredAnd(), name="rand", emit_src=False), "rand", tmp_path, liberty=None)
    assert r["flip_flops"] == 1 and "area_um2" not in r and "critical_path_ns" not in r


def test_liberty_plain_file(tmp_path, yosys):
    plain = tmp_path / "cells.lib"
    plain.write_bytes(gzip.decompress(LIBERTY.read_bytes()))
    out = tmp_path / "out"
    assert main(["--target", "synth", "--preset", "small", "--block", "zvc_dec", "--liberty", str(plain),
                 "--out", str(out)]) == 0
    report = json.loads((out / "small" / "synth" / "report.json").read_text())
    assert report["liberty"] == "cells.lib" and report["blocks"]["zvc_dec"]["area_um2"] > 0


@pytest.mark.parametrize("name, content, message", [
    ("missing.lib", None, "liberty file 'missing.lib' does not exist"),
    ("bad.lib.gz", b"\x1f\x8b\x08\x00garbage", "liberty file 'bad.lib.gz' is not readable"),
    ("notlib.lib", b"module m; endmodule\n", "liberty file 'notlib.lib' must start with a Liberty library group"),
])
def test_bad_liberty(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    proc = run_cli("--target", "synth", "--preset", "small", "--block", "pe", "--liberty", name, "--out", "out",
                   cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_liberty_needs_synth(tmp_path):
    proc = run_cli("--liberty", "x.lib", "--out", "out", cwd=tmp_path)
    assert proc.returncode == 2 and "--liberty must come with --target synth, not --target verilog" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_train_core_parts_sum(tmp_path, yosys):
    """The TrainCore of the small preset (some minutes of Yosys on two cores): its parts add up to its area
    (the netlist with the children kept), and flattening it saves a little: measured 2.1% of um^2 and 1.2% of
    NAND2 equivalents, as constants reach into the children and ABC maps across their boundaries."""
    from hw.build import BLOCKS, elaborate
    from hw.config import preset
    r = synthesize(elaborate("train_core", preset("small"), "rtlil"), BLOCKS["train_core"].top, tmp_path,
                   period_ns=4.0)
    parts, total = r["breakdown"], r["breakdown_total"]
    assert len(parts) > 3 and all(part["area_um2"] >= 0 for part in parts.values())
    assert total["area_um2"] == pytest.approx(sum(part["area_um2"] for part in parts.values()))
    assert total["area_um2"] == pytest.approx(r["area_um2"]) and r["netlist"] == "hierarchical"
    assert 0.95 * total["area_um2"] < r["flat"]["area_um2"] <= total["area_um2"]
    assert total["memory_bits"] == r["memory_bits"] > 0 and r["critical_path_ns"] > 0
