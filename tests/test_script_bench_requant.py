"""scripts/bench_requant.py: argument checking before anything runs and a smoke run at the smallest size; the
per-part area breakdown of :func:`hw.synth.synthesize` that the bench and the build report (on a small
hierarchical design, and on the TrainCore in the slow run)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw import synth
from hw.build import main as build_main
from hw.config import preset
from hw.output_error import RECIP_CYCLES

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "bench_requant.py"


def _yosys():
    try:
        synth.yosys_command()
    except synth.SynthError as exc:
        pytest.skip(str(exc))


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("args, message", [
    (["--beats", "0"], "--beats must be an integer in [1, 65536], not 0"),
    (["--groups", "1"], "--groups must be an integer in [2, 1024], not 1"),
    (["--groups", "1025"], "--groups must be an integer in [2, 1024], not 1025"),
    (["--set", "pe.cols=0"], "pe.cols must be an integer >= 1, not 0"),
    (["--set", "dfa.bogus=1"], "unknown parameter 'dfa.bogus'"),
    (["--preset", "huge"], "preset must be one of ['default', 'small'], not 'huge'"),
    (["--sim", "questa"], "argument --sim: invalid choice: 'questa'"),
    (["--seed", "x"], "argument --seed: invalid int value: 'x'"),
])
def test_bad_input(args, message, tmp_path):
    out = tmp_path / "sub" / "requant.json"
    proc = _run(*args, "--out", str(out))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    assert proc.stdout == "" and not (tmp_path / "sub").exists()


@pytest.mark.parametrize("out, message", [
    ("requant.txt", "--out must name a .json file, not"),
    ("folder.json", "is a directory"),
    ("file/requant.json", "is not a directory"),            # under an existing regular file
    ("file/deeper/requant.json", "is not a directory"),
])
def test_bad_out(out, message, tmp_path):
    (tmp_path / "file").write_text("")
    (tmp_path / "folder.json").mkdir()
    before = sorted(tmp_path.rglob("*"))
    proc = _run("--out", str(tmp_path / out))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    assert sorted(tmp_path.rglob("*")) == before


def test_smoke(tmp_path):
    """The smallest size: one lane, a 1x1 PE array, short runs; Icarus (nothing to compile)."""
    _yosys()
    out = tmp_path / "requant.json"
    proc = _run("--preset", "small", "--set", "pe.rows=1", "--set", "pe.cols=1", "--beats", "40", "--groups", "3",
                "--sim", "icarus", "--seed", "5", "--out", str(out))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stdout.splitlines()[-1] == str(out)
    report = json.loads(out.read_text())
    assert report["simulator"] == "icarus" and report["seed"] == 5
    assert (report["config"]["pe"]["rows"], report["config"]["pe"]["cols"]) == (1, 1)
    small = preset("small")
    for name, latency in (("conversion", 2), ("weight_update", 1 + small.stages("weight_update"))):
        unit = report[name]
        assert unit["lanes"] == 1 and unit["long_job"] == {"jobs": 1, "beats": 40, "cycles": 40}
        assert unit["one_beat_jobs"] == {"jobs": 200, "beats": 200, "cycles": 200}
        assert unit["elements_per_cycle"] == unit["one_beat_jobs_elements_per_cycle"] == 1.0
        assert unit["meets_target"] and unit["latency_cycles"] == unit["documented_latency_cycles"] == latency
    oe = report["output_error"]
    classes = report["config"]["dfa"]["classes"]
    assert oe["classes"] == classes and oe["classes_plus_divider"] == classes + RECIP_CYCLES
    assert oe["long_job"]["groups"] == 3 and oe["one_group_jobs"]["groups"] == oe["one_group_jobs"]["jobs"] == 16
    # A group every classes + divider + 4 cycles, as the unit documents; one sample per lane per group.
    assert oe["cycles_per_group"] == oe["documented_group_cycles"] == classes + RECIP_CYCLES + 4
    gap = classes + RECIP_CYCLES + 4
    assert oe["long_job"]["group_gaps"] == [gap]
    # Back-to-back jobs of one group: at the default depth of the unit (1) a job's first group may come a cycle
    # late, as the unit documents; unpipelined, never.
    if small.stages("output_error") == 0:
        assert oe["one_group_jobs"]["group_gaps"] == [gap]
    else:
        assert gap in oe["one_group_jobs"]["group_gaps"] and set(oe["one_group_jobs"]["group_gaps"]) <= {gap, gap + 1}
    assert oe["overhead_cycles"] == 4 and oe["samples_per_cycle_per_lane"] == round(1 / oe["cycles_per_group"], 6)
    assert oe["latency_cycles"] == oe["documented_latency_cycles"] and oe["meets_documented"]
    area = report["area"]
    array = area["synthesis"]["pe_array"]
    assert area["pe_array"]["nand2_equivalents"] == array["nand2_equivalents"] > 0 and array["breakdown"] is None
    for name, block in (("conversion", "requant"), ("weight_update", "weight_update"),
                        ("output_error", "output_error")):
        unit, full = area["units"][name], area["synthesis"][block]
        assert unit["nand2_equivalents"] == full["nand2_equivalents"] > 0
        assert unit["flip_flops"] == full["flip_flops"] > 0
        assert unit["nand2_over_pe_array"] == round(full["nand2_equivalents"] / array["nand2_equivalents"], 4)
        assert unit["flip_flops_over_pe_array"] == round(full["flip_flops"] / array["flip_flops"], 4)
    # The output-error unit composes blocks with blocks of their own: broken down by part.
    parts = area["synthesis"]["output_error"]["breakdown"]
    assert set(parts) == {"softmax", "conv", synth.GLUE}
    assert parts["softmax"]["memory_bits"] == area["units"]["output_error"]["memory_bits"] > 0


class _Counter(wiring.Component):
    o: Out(4)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.o.eq(self.o + 1)
        return m


class _Acc(wiring.Component):
    """A child with a child of its own: 8 + 4 flip-flops."""
    i: In(8)
    o: Out(8)

    def elaborate(self, platform):
        m = Module()
        m.submodules.count = count = _Counter()
        m.d.sync += self.o.eq(self.o + self.i + count.o)
        return m


class _Reg(wiring.Component):
    i: In(8)
    o: Out(8)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.o.eq(self.i ^ (self.i >> 1))
        return m


class _Top(wiring.Component):
    """Two children, a memory of 8 x 8 bits and 8 flip-flops of glue."""
    i: In(8)
    addr: In(3)
    o: Out(8)

    def __init__(self, *, deep=True):
        self._deep = deep
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.acc = acc = _Acc() if self._deep else _Reg()
        m.submodules.reg = reg = _Reg()
        m.submodules.mem = mem = Memory(shape=unsigned(8), depth=8, init=[])
        wr, rd = mem.write_port(), mem.read_port()
        m.d.comb += [acc.i.eq(self.i), reg.i.eq(acc.o), wr.addr.eq(self.addr), wr.data.eq(reg.o), wr.en.eq(1),
                     rd.addr.eq(self.addr + 1)]
        m.d.sync += self.o.eq(rd.data + reg.o)
        return m


def _synth(design, name, tmp_path, **kwargs):
    return synth.synthesize(rtlil.convert(design, name=name, emit_src=False), name, tmp_path / name, **kwargs)


def test_breakdown(tmp_path):
    _yosys()
    r = _synth(_Top(), "top", tmp_path)
    parts = r["breakdown"]
    assert list(parts) == ["acc", "reg", "mem", synth.GLUE]
    assert {name: part["flip_flops"] for name, part in parts.items()} == {"acc": 12, "reg": 8, "mem": 0, synth.GLUE: 8}
    generic = ("cells", "nand2_equivalents", "flip_flops", "memory_bits", "memories", "memory_macros")
    assert {key: parts["mem"][key] for key in generic} == {
        "cells": 0, "nand2_equivalents": 0.0, "flip_flops": 0, "memory_bits": 64, "memories": 1,
        "memory_macros": [{"name": "mem", "width": 8, "depth": 8, "read_ports": 1, "write_ports": 1}]}
    assert parts["mem"]["area_um2"] == 0 and parts["mem"]["memory_area_um2_estimate"] == 64 * synth.MEMORY_UM2_PER_BIT
    # A child's part is that child synthesized alone, to the gate.
    for name, design in (("acc", _Acc()), ("reg", _Reg())):
        alone = _synth(design, f"{name}_alone", tmp_path)
        assert alone["breakdown"] is None
        assert (parts[name]["cells"], parts[name]["nand2_equivalents"], parts[name]["flip_flops"]) == \
            (alone["cells"], alone["nand2_equivalents"], alone["flip_flops"])
    total = r["breakdown_total"]
    assert total["cells"] == sum(part["cells"] for part in parts.values())
    assert total["nand2_equivalents"] == pytest.approx(sum(p["nand2_equivalents"] for p in parts.values()), abs=0.2)
    assert (total["flip_flops"], total["memory_bits"]) == (r["flip_flops"], r["memory_bits"]) == (28, 64)
    assert parts[synth.GLUE]["cells"] > 0 and (tmp_path / "top" / "breakdown" / "stat.json").exists()
    text = synth.markdown_table({"top": r})
    assert "| top | `top` |" in text and "## Area by part: top" in text
    assert "| (glue) |" in text and "| mem | 0 | 0 | 0 | 0.0% | 0 | 64 | `mem` 8x8 |" in text


def test_breakdown_choice(tmp_path):
    _yosys()
    # Children that are leaves: no breakdown unless asked; asked for, one like the above.
    leaves = _synth(_Top(deep=False), "leaves", tmp_path)
    assert leaves["breakdown"] is None and leaves["breakdown_total"] is None
    assert not (tmp_path / "leaves" / "breakdown").exists()
    assert "Area by part" not in synth.markdown_table({"leaves": leaves})
    asked = _synth(_Top(deep=False), "asked", tmp_path, breakdown=True)
    assert set(asked["breakdown"]) == {"acc", "reg", "mem", synth.GLUE}
    assert _synth(_Top(), "no", tmp_path, breakdown=False)["breakdown"] is None
    # A flat design asked for a breakdown: its glue and its memories, from the flat run itself.
    flat = _synth(_Reg(), "flat", tmp_path, breakdown=True)
    assert list(flat["breakdown"]) == [synth.GLUE] and not (tmp_path / "flat" / "breakdown").exists()
    assert flat["breakdown"][synth.GLUE]["nand2_equivalents"] == flat["nand2_equivalents"]
    with pytest.raises(TypeError, match="Breakdown must be a bool or None, not 'yes'"):
        _synth(_Reg(), "bad", tmp_path, breakdown="yes")


@pytest.mark.slow
def test_build_train_core_breakdown(tmp_path):
    """``python -m hw.build --target synth --block train_core --preset small``: several minutes of Yosys."""
    _yosys()
    assert build_main(["--target", "synth", "--block", "train_core", "--preset", "small", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "small" / "synth" / "report.json").read_text())
    core = report["blocks"]["train_core"]
    parts = core["breakdown"]
    assert {"ff", "ep", "wg", "ctrl", "csr", "axil", "inp_writer", "weights_mem", synth.GLUE} <= set(parts)
    memories = {mac["name"] for mac in core["memory_macros"]}
    assert {mac["name"] for part in parts.values() for mac in part["memory_macros"]} == memories
    assert core["breakdown_total"]["memory_bits"] == core["memory_bits"] > 0
    # The parts add up to about the flat totals (nothing is optimized across the kept boundaries).
    assert core["breakdown_total"]["nand2_equivalents"] == pytest.approx(core["nand2_equivalents"], rel=0.05)
    assert "## Area by part: train_core" in (tmp_path / "small" / "synth" / "report.md").read_text()
