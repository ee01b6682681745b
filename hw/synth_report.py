"""Self-contained HTML design-review report of ``--target synth``: the blocks' standard-cell area and timing,
each broken-down block's (the TrainCore's) area by part, and the comparisons with the baselines synthesized
in the same run (:func:`comparisons`).

One file, no external resources: inline CSS, plots drawn with matplotlib (the dev extras) and embedded as
base64 PNG. Without matplotlib the report keeps its tables and says the plots are missing.
"""

import base64
import html
import io

from golden.pe_array import lanes


__all__ = ["comparisons", "comparisons_markdown", "html_report"]

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


def comparisons(results, baselines, config):
    """The comparisons of a synthesis run's blocks with their baselines, in um^2 of the same library and
    run (each present only when both sides were synthesized):

    * ``pe_vs_fixed16``: the bit-scalable PE against the fixed 16x16-bit PE (same accumulator), in all and
      per MAC at each precision the configuration supports (``p`` x ``p`` bits: the bit-scalable PE does
      ``golden.pe_array.lanes(p, p)`` MACs per cycle, the fixed PE one);
    * ``fp8_vs_bf16``: the FP8 MAC tree against the bfloat16 tree of the same K (both K MACs per cycle);
    * ``tsram_vs_register_file``: the transposable SRAM wrapper (its logic plus its macros' estimated area)
      against a register-file transpose buffer of the same capacity (all flip-flops).
    """
    out = {}
    pe, fixed = results.get("pe"), results.get("pe_fixed16")
    if pe and fixed and pe.get("area_um2") and fixed.get("area_um2"):
        per_precision = {}
        for p in config.pe.precisions:
            n = lanes(p, p)
            per_precision[str(p)] = {"pe_macs_per_cycle": n, "pe_um2_per_mac": round(pe["area_um2"] / n, 2),
                                     "fixed16_um2_per_mac": round(fixed["area_um2"], 2),
                                     "pe_over_fixed16_per_mac": round(pe["area_um2"] / n / fixed["area_um2"], 4)}
        out["pe_vs_fixed16"] = {"pe_area_um2": pe["area_um2"], "fixed16_area_um2": fixed["area_um2"],
                                "pe_over_fixed16": round(pe["area_um2"] / fixed["area_um2"], 4),
                                "per_precision": per_precision}
    fp8, bf16 = results.get("fp8_tree"), baselines.get("bf16_tree")
    if fp8 and bf16 and fp8.get("area_um2") and bf16.get("area_um2"):
        out["fp8_vs_bf16"] = {"k": config.fp8.k, "fp8_area_um2": fp8["area_um2"], "bf16_area_um2": bf16["area_um2"],
                              "fp8_over_bf16": round(fp8["area_um2"] / bf16["area_um2"], 4)}
    tsram, regfile = results.get("tsram"), baselines.get("register_file")
    if tsram and regfile and tsram.get("area_um2") is not None and regfile.get("area_um2"):
        total = tsram["area_um2"] + tsram["memory_area_um2_estimate"]
        out["tsram_vs_register_file"] = {
            "stored_bits": tsram["memory_bits"], "tsram_logic_um2": tsram["area_um2"],
            "tsram_macros_um2_estimate": tsram["memory_area_um2_estimate"],
            "tsram_total_um2_estimate": round(total, 4),
            "register_file_um2": regfile["area_um2"], "tsram_over_register_file": round(total / regfile["area_um2"], 4)}
    return out


def comparisons_markdown(comp):
    """Markdown lines of :func:`comparisons` (empty when there is none)."""
    if not comp:
        return []
    lines = ["", "## Baselines (same library, same run)", ""]
    if "pe_vs_fixed16" in comp:
        c = comp["pe_vs_fixed16"]
        lines += [f"Bit-scalable PE {c['pe_area_um2']:.0f} um^2, fixed 16x16-bit PE {c['fixed16_area_um2']:.0f} um^2 "
                  f"({c['pe_over_fixed16']:.2f}x). Per MAC:", "",
                  "| precision | PE MACs/cycle | PE um^2/MAC | fixed-16 um^2/MAC | PE / fixed-16 |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {p}x{p} | {v['pe_macs_per_cycle']} | {v['pe_um2_per_mac']:.0f} | {v['fixed16_um2_per_mac']:.0f} "
                  f"| {v['pe_over_fixed16_per_mac']:.3f} |" for p, v in c["per_precision"].items()]
        lines.append("")
    if "fp8_vs_bf16" in comp:
        c = comp["fp8_vs_bf16"]
        lines.append(f"- FP8 MAC tree (K = {c['k']}) {c['fp8_area_um2']:.0f} um^2, bfloat16 tree "
                     f"{c['bf16_area_um2']:.0f} um^2: {c['fp8_over_bf16']:.3f}x per MAC.")
    if "tsram_vs_register_file" in comp:
        c = comp["tsram_vs_register_file"]
        lines.append(f"- Transposable SRAM ({c['stored_bits']} bits): {c['tsram_logic_um2']:.0f} um^2 of logic + "
                     f"{c['tsram_macros_um2_estimate']:.0f} um^2 of macros (estimate); register-file transpose "
                     f"buffer {c['register_file_um2']:.0f} um^2: {c['tsram_over_register_file']:.3f}x.")
    return lines


def _per_mac_plot(plt, comp):
    c = comp["pe_vs_fixed16"]["per_precision"]
    names = [f"{p}x{p}" for p in c]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [v["pe_um2_per_mac"] for v in c.values()], width=0.4, color="#48a",
           label="bit-scalable PE")
    ax.bar([x + 0.2 for x in xs], [v["fixed16_um2_per_mac"] for v in c.values()], width=0.4, color="#ccc",
           label="fixed 16x16-bit PE")
    ax.set_xticks(list(xs), names)
    ax.set_xlabel("operand precision (bits)")
    ax.set_ylabel("area per MAC per cycle (um^2)")
    ax.set_title("Area per MAC by precision")
    ax.legend()
    html_img = _png(fig)
    plt.close(fig)
    return html_img


def _baseline_plot(plt, comp):
    pairs = []
    if "pe_vs_fixed16" in comp:
        pairs.append(("PE / fixed-16 PE", comp["pe_vs_fixed16"]["pe_over_fixed16"]))
    if "fp8_vs_bf16" in comp:
        pairs.append(("FP8 tree / bf16 tree", comp["fp8_vs_bf16"]["fp8_over_bf16"]))
    if "tsram_vs_register_file" in comp:
        pairs.append(("TSRAM / register file", comp["tsram_vs_register_file"]["tsram_over_register_file"]))
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(pairs) + 1.2))
    ax.barh([n for n, _ in pairs][::-1], [v for _, v in pairs][::-1], color="#48a")
    ax.axvline(1.0, color="k", linestyle="--")
    ax.set_xlabel("area ratio (block / baseline)")
    ax.set_title("Blocks against their baselines")
    html_img = _png(fig)
    plt.close(fig)
    return html_img


def html_report(results, *, config_name, liberty, period_ns, memory_um2_per_bit, comparisons=None):
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
    comparisons : dict, optional
        :func:`comparisons` of the run: a section with its table and plots.
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
           "<th>max clock (MHz)</th><th>slack (ns)</th><th>path from</th><th>path to</th><th>NAND2 eq.</th></tr>"]
    for block, r in results.items():
        late = r["slack_ns"] is not None and r["slack_ns"] < 0
        out.append(f"<tr><td>{esc(block)}</td>" + _cell(r["area_um2"], ".0f") + _cell(r["logic_area_um2"], ".0f")
                   + _cell(r["ff_area_um2"], ".0f") + _cell(r["lib_cells"], "d") + _cell(r["lib_flip_flops"], "d")
                   + _cell(r["memory_bits"], "d") + _cell(r["memory_area_um2_estimate"], ".0f")
                   + _cell(r["critical_path_ns"], ".2f", late) + _cell(r["max_clock_mhz"], ".0f")
                   + _cell(r["slack_ns"], ".2f", late)
                   + f"<td><code>{esc(r.get('critical_path_start') or '-')}</code></td>"
                   + f"<td><code>{esc(r.get('critical_path_end') or '-')}</code></td>"
                   + _cell(r["nand2_equivalents"], ".0f") + "</tr>")
    out.append("</table>")
    if plt is None:
        out.append('<p class="note">matplotlib is not installed: no plots.</p>')
    elif any(r.get("critical_path_ns") is not None for r in results.values()):
        out.append(_timing_plot(plt, results, period_ns))
    if comparisons:
        out += ["<h2>Baselines</h2>", '<p class="note">Each block against a baseline synthesized in the same '
                "run onto the same library.</p>", "<table><tr><th>comparison</th><th>block (um^2)</th>"
                "<th>baseline (um^2)</th><th>ratio</th></tr>"]
        rows = []
        if "pe_vs_fixed16" in comparisons:
            c = comparisons["pe_vs_fixed16"]
            rows.append(("bit-scalable PE / fixed 16x16-bit PE", c["pe_area_um2"], c["fixed16_area_um2"],
                         c["pe_over_fixed16"]))
            rows += [(f"per MAC at {p}x{p} bits ({v['pe_macs_per_cycle']} MACs/cycle)", v["pe_um2_per_mac"],
                      v["fixed16_um2_per_mac"], v["pe_over_fixed16_per_mac"]) for p, v in c["per_precision"].items()]
        if "fp8_vs_bf16" in comparisons:
            c = comparisons["fp8_vs_bf16"]
            rows.append((f"FP8 MAC tree / bfloat16 tree (K = {c['k']})", c["fp8_area_um2"], c["bf16_area_um2"],
                         c["fp8_over_bf16"]))
        if "tsram_vs_register_file" in comparisons:
            c = comparisons["tsram_vs_register_file"]
            rows.append((f"transposable SRAM (logic + macro estimate) / register file ({c['stored_bits']} bits)",
                         c["tsram_total_um2_estimate"], c["register_file_um2"], c["tsram_over_register_file"]))
        out += [f"<tr><td>{esc(name)}</td>" + _cell(a, ".0f") + _cell(b, ".0f") + _cell(ratio, ".3f") + "</tr>"
                for name, a, b, ratio in rows]
        out.append("</table>")
        if plt is not None:
            if "pe_vs_fixed16" in comparisons:
                out.append(_per_mac_plot(plt, comparisons))
            out.append(_baseline_plot(plt, comparisons))
    for block, r in results.items():
        if not r.get("breakdown"):
            continue
        total = r["breakdown_total"]
        out += [f"<h2>Area by part: {esc(block)}</h2>",
                f'<p class="note">Each direct child of <code>{esc(r["top"])}</code> mapped as a module of its '
                "own, each memory of the top as a macro, and the top's own logic as (glue). The parts add up to "
                f"the block's {total['area_um2']:.0f} um^2"
                + (f"; flattened (optimized across the boundaries) it maps to {r['flat']['area_um2']:.0f} um^2"
                   if (r.get("flat") or {}).get("area_um2") else "") + ".</p>",
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
