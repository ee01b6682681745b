"""Run a Yosys script in-process with pyosys and name the ends of ABC's critical path.

Usage: ``python yosys_driver.py SCRIPT LOG PATH_JSON`` (run in the working folder of the script; a standalone
file, it imports nothing of the project, so that :mod:`hw.synth` can start it with any working folder).

The whole log of the script goes to ``LOG``, as ``yosys -l LOG`` would write it, ABC's own output included
(``stime -p`` prints the critical path of each network ABC maps, with its start and end point). Then each
point is resolved in the design left by the script: ABC names the signal at the cut of its network, which for
a flip-flop input is often an internal net; the point is reported as the flip-flop it enters (its output wire,
the register's own name) or leaves. ``PATH_JSON`` gets ``{"delay_ps", "start", "end"}`` of the network with
the longest delay (``start``/``end``: ``{"abc": ABC's name, "register": the flip-flop or null, "module": the
module below the top the path lies in, or null}``), or ``null`` when no network was timed. With kept hierarchy
(the shared PE and router modules of a PE array) each module is a network of its own: its flip-flops are named
``<module>.<register>``.
"""

import json
import re
import sys

from pyosys import libyosys as ys


# stime -p: the summary line (stime -d prints it too), the path one gate per line, then its two ends.
_PATH = re.compile(r"^ABC: WireLoad = [^\n]*Delay =\s*([\d.]+) ps[^\n]*\n(?:ABC: Path [^\n]*\n)+"
                   r"ABC: Start-point = \S+ \((.*?)\)\.\s+End-point = \S+ \((.*?)\)\.\s*$", re.M)
_ABC_PREFIX = re.compile(r"^\$abc\$\d+(?=\$)")
_BIT = re.compile(r"^(.*) \[(\d+)\]$")


def _split(name):
    """``(wire name, bit)`` of a name ABC prints: ``\\acc [3]`` or ``$auto$...$8430`` (one-bit wire)."""
    match = _BIT.match(name)
    return (match.group(1), int(match.group(2))) if match else (name, 0)


def _bit_name(bit):
    wire = bit.wire
    if wire is None:
        return None
    name = wire.name.str().lstrip("\\")
    return name if wire.width == 1 else f"{name}[{bit.offset}]"


def _registers(module, wanted):
    """``{(wire, bit): register}`` for the wanted ``(wire, bit)`` pairs: the flip-flop whose data input
    (``D``) or output (``Q``) is that bit, named by its output bit."""
    found = {}
    for cell in module.cells_.values():
        conns = {port.str(): sig for port, sig in cell.connections_.items()}
        if "\\Q" not in conns or not ("\\D" in conns or "\\CLK" in conns or "\\CLK_N" in conns):
            continue
        q_bits = conns["\\Q"].to_sigbit_vector()
        for port in ("\\D", "\\Q"):
            if port not in conns:
                continue
            for i, bit in enumerate(conns[port].to_sigbit_vector()):
                if bit.wire is None:
                    continue
                # ABC's re-integration prefixes the private names of its network with "$abc$<n>".
                key = (_ABC_PREFIX.sub("", bit.wire.name.str()), bit.offset)
                if key in wanted and key not in found:
                    found[key] = _bit_name(q_bits[i]) if i < len(q_bits) else None
    return found


def main(script, log, path_json):
    design = ys.Design()
    # On an error Yosys writes it to the log and ends the process with status 1.
    ys.run_pass(f"tee -q -o {log} script {script}", design)
    text = open(log).read()
    paths = [(float(delay), start, end) for delay, start, end in _PATH.findall(text)]
    if not paths:
        result = None
    else:
        delay, start, end = max(paths, key=lambda path: path[0])
        points = {"start": _split(start), "end": _split(end)}
        # With kept hierarchy the path may lie in any module: the one whose flip-flops name most of its
        # ends (the top first on a tie); a module below the top prefixes its names with its own.
        top = design.top_module()
        modules = ([top] if top is not None else []) + [m for m in design.modules_.values()
                                                          if top is None or m.name.str() != top.name.str()]
        best, registers = None, {}
        for module in modules:
            found = _registers(module, set(points.values()))
            if len(found) > len(registers) or best is None:
                best, registers = module, found
        prefix = "" if best is None or best is top else best.name.str().lstrip("\\") + "."
        result = {"delay_ps": delay,
                  **{kind: {"abc": name, "register": prefix + registers[point] if point in registers else None,
                            "module": None if best is None or best is top else best.name.str().lstrip("\\")}
                     for (kind, point), name in zip(points.items(), (start, end))}}
    with open(path_json, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
