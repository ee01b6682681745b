"""Self-contained HTML design-review report of ``--target synth``: the blocks' standard-cell area and timing,
and each broken-down block's (the TrainCore's) area by part.

One file, no external resources: inline CSS, plots drawn with matplotlib (the dev extras) and embedded as
base64 PNG. Without matplotlib the report keeps its tables and says the plots are missing.
"""

import base64
import html
import io


__all__ = ["html_report"]

_CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 75em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.bad { color: #b00; font-weight: bold; }
p.note { color: #555; font-size: 0.9em; max-width: 60em; }
img { max-width: 100%; }
"""


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode("ascii")}">'


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _cell(value, spec, bad=False):
    text = "-" if value is None else format(value, spec)
    return f'<td class="num{" bad" if bad else ""}">{text}</td>'


def _timing_plot(plt, results, period):
    names = [b for b, r in results.items() if r.get("critical_path_ns") is not None]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(names) + 1.2))
    values = [results[b]["critical_path_ns"] for b in names]
    colors = ["#c44" if period and v > period else "#48a" for v in values]
    ax.barh(names[::-1], values[::-1], color=colors[::-1])
    if period:
        ax.axvline(period, color="k", linestyle="--", label=f"clock period {period:g} ns")
        ax.legend(loc="lower right")
    ax.set_xlabel("critical path (ns)")
    ax.set_title("Longest path per block")
    html_img = _png(fig)
    plt.close(fig)
    return html_img


def _breakdown_plot(plt, block, result):
    parts = sorted(result["breakdown"].items(), key=lambda kv: kv[1]["area_um2"] + kv[1]["memory_area_um2_estimate"])
    names = [name for name, _ in parts]
    logic = [p["logic_area_um2"] for _, p in parts]
    flops = [p["ff_area_um2"] for _, p in parts]
    mem = [p["memory_area_um2_estimate"] for _, p in parts]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(names) + 1.2))
    ax.barh(names, logic, color="#48a", label="logic")
    ax.barh(names, flops, left=logic, color="#8c6", label="flip-flops")
    ax.barh(names, mem, left=[a + b for a, b in zip(logic, flops)], color="#ddd", hatch="//", edgecolor="#999",
            label="memory macros (estimate)")
    ax.set_xlabel("area (um^2)")
    ax.set_title(f"{block}: area by part")
    ax.legend(loc="lower right")
    html_img = _png(fig)
    plt.close(fig)
    return html_img


def html_report(results, *, config_name, liberty, period_ns, memory_um2_per_bit):
    """The HTML text of the review report of ``{block: hw.synth.synthesize(...) result}`` (results with the
    library figures).

    Parameters
    ----------
    results : dict
        Per block, a :func:`hw.synth.synthesize` result made with a Liberty file.
    config_name, liberty : str
        Shown in the header: the configuration's name and the Liberty file's name.
    period_ns : float or None
        The SDC clock period; paths longer than it are marked.
    memory_um2_per_bit : float
        The constant of the memory-macro estimate, stated in the notes.
    """
    esc = html.escape
    plt = _pyplot()
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>Design review: {esc(config_name)}</title><style>{_CSS}</style></head><body>",
           f"<h1>Design review: configuration <code>{esc(config_name)}</code></h1>",
           f'<p class="note">Standard cells: <code>{esc(liberty)}</code>; clock period '
           f"{'-' if period_ns is None else f'{period_ns:g} ns'} (clock.sdc). Areas are the library's cell "
           "areas (no wires, no placement utilization). Memories are macros, estimated at "
           f"{memory_um2_per_bit:g} um^2 per bit and kept apart from the logic. The critical path is the "
           "mapped logic between flip-flops and ports (library delay tables, no wires) plus the flip-flop's "
           "clock-to-Q and setup; no clock skew, no input/output delays, no memory access time.</p>",
           "<h2>Area and timing by block</h2>", "<table><tr><th>block</th><th>area (um^2)</th>"
           "<th>logic (um^2)</th><th>flip-flops (um^2)</th><th>cells</th><th>flip-flops</th>"
           "<th>memory bits</th><th>memory macros (um^2, est.)</th><th>critical path (ns)</th>"
           "<th>max clock (MHz)</th><th>slack (ns)</th><th>NAND2 eq.</th></tr>"]
    for block, r in results.items():
        late = r["slack_ns"] is not None and r["slack_ns"] < 0
        out.append(f"<tr><td>{esc(block)}</td>" + _cell(r["area_um2"], ".0f") + _cell(r["logic_area_um2"], ".0f")
                   + _cell(r["ff_area_um2"], ".0f") + _cell(r["lib_cells"], "d") + _cell(r["lib_flip_flops"], "d")
                   + _cell(r["memory_bits"], "d") + _cell(r["memory_area_um2_estimate"], ".0f")
                   + _cell(r["critical_path_ns"], ".2f", late) + _cell(r["max_clock_mhz"], ".0f")
                   + _cell(r["slack_ns"], ".2f", late) + _cell(r["nand2_equivalents"], ".0f") + "</tr>")
    out.append("</table>")
    if plt is None:
        out.append('<p class="note">matplotlib is not installed: no plots.</p>')
    elif any(r.get("critical_path_ns") is not None for r in results.values()):
        out.append(_timing_plot(plt, results, period_ns))
    for block, r in results.items():
        if not r.get("breakdown"):
            continue
        total = r["breakdown_total"]
        out += [f"<h2>Area by part: {esc(block)}</h2>",
                f'<p class="note">Each direct child of <code>{esc(r["top"])}</code> mapped as a module of its '
                "own, each memory of the top as a macro, and the top's own logic as (glue). The parts add up to "
                f"{total['area_um2']:.0f} um^2; the flat netlist is {r['area_um2']:.0f} um^2.</p>",
                "<table><tr><th>part</th><th>area (um^2)</th><th>share</th><th>logic (um^2)</th>"
                "<th>flip-flops (um^2)</th><th>cells</th><th>memory bits</th>"
                "<th>memory macros (um^2, est.)</th></tr>"]
        whole = total["area_um2"] or 1
        for name, part in sorted(r["breakdown"].items(), key=lambda kv: -kv[1]["area_um2"]):
            out.append(f"<tr><td>{esc(name)}</td>" + _cell(part["area_um2"], ".0f")
                       + _cell(100 * part["area_um2"] / whole, ".1f") + _cell(part["logic_area_um2"], ".0f")
                       + _cell(part["ff_area_um2"], ".0f") + _cell(part["lib_cells"], "d")
                       + _cell(part["memory_bits"], "d") + _cell(part["memory_area_um2_estimate"], ".0f") + "</tr>")
        out.append("</table>")
        if plt is not None:
            out.append(_breakdown_plot(plt, block, r))
    out.append("</body></html>")
    return "\n".join(out) + "\n"
