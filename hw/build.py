"""Build CLI: ``python -m hw.build --target {verilog,rtlil,synth} [--preset P] [--config F] [--set k=v] [--out D]
[--liberty L]``.

Writes under ``<out>/<config name>/`` (``build/default/`` by default):

* one Verilog (``--target verilog``) or RTLIL (``--target rtlil``) file per top-level block, the TrainCore
  (``train_core.v``, module ``edgetrain_train_core``) first;
* ``train_core_regs.{md,h,py}``: the TrainCore's register reference, C header and Python driver, generated
  from :func:`hw.train_core.register_map`;
* ``config.json``: the full configuration, read back by the golden models and the benches;
* ``manifest.json``: files, top module names, all parameters, generator version;
* ``clock.sdc``: the clock constraint for downstream ASIC flows (from ``constraints/clock.sdc``).

``--target synth`` also synthesizes every block with Yosys (``constraints/synth.ys``), maps it onto a
standard-cell library (``constraints/synth_lib.ys``; by default the project's sky130_fd_sc_hd typical corner,
``constraints/sky130hd_tt.lib.gz``, or ``--liberty FILE``, decompressed into ``synth/cells.lib``) for area in
um^2 and the critical path in ns against the period of ``clock.sdc``, and writes ``synth/report.json``,
``synth/report.md`` (see :mod:`hw.synth`) and ``synth/report.html``, a self-contained review page with plots
(:mod:`hw.synth_report`).

Every parameter and argument is checked before anything is written; output files are produced in a
scratch folder and moved into place only when all of them exist. Bad input exits with status 2 and one
line on stderr.
"""

import argparse
import contextlib
import dataclasses
import gc
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from amaranth.back import rtlil, verilog

from . import __version__
from .config import ConfigError, apply_overrides, load_toml, preset, PRESETS
from .dfa_ep import DFAErrorEngine
from .fp8_tree import BF16MacTree, FP8MacTree
from .output_error import OutputErrorUnit
from .pe import BitScalablePE, Fixed16PE
from .pdfa import PDFAController
from .pe_array import PEArray, shared_pe_modules
from .requant import ConversionUnit
from .row_skip import RowSkipper
from .slice_skip import SliceSkipPE
from .train_core import TrainCore
from .tsram import RegisterFileTranspose, TransposableSRAM
from .weight_update import WeightUpdateUnit
from .zero_skip import ZeroSkip
from .zvc import ZVCDecoder, ZVCEncoder


__all__ = ["BLOCKS", "BASELINES", "Block", "sdc_text", "elaborate", "generate", "main"]

_ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Block:
    """A top-level block the build emits: its Verilog module name and how to make it from a config."""
    top: str
    make: object        # Config -> wiring.Component
    description: str


BLOCKS = {
    "train_core": Block("edgetrain_train_core", lambda c: TrainCore(c),
                        "TrainCore: the whole training accelerator behind AXI4-Lite and AXI4-Stream"),
    "pe_array": Block("edgetrain_pe_array",
                      lambda c: PEArray(rows=c.pe.rows, cols=c.pe.cols, max_k=c.pe.max_k,
                                        precisions=c.pe.precisions, drain_buffers=c.pe.drain_buffers,
                                        drain_rows=c.pe.drain_rows, stages=c.stages("pe")),
                      "bit-scalable PE array (FF/EP/WG GEMMs)"),
    "pe": Block("edgetrain_pe", lambda c: BitScalablePE(acc_width=c.pe.acc_width, stages=c.stages("pe")),
                "one bit-scalable PE (16 slice multipliers)"),
    "pe_fixed16": Block("edgetrain_pe_fixed16", lambda c: Fixed16PE(acc_width=c.pe.acc_width),
                        "baseline: fixed 16x16-bit MAC PE"),
    "fp8_tree": Block("edgetrain_fp8_tree", lambda c: FP8MacTree(k=c.fp8.k, stages=c.stages("fp8_tree")),
                      "shared-exponent FP8 MAC tree (K-way, binary32 out)"),
    "tsram": Block("edgetrain_tsram",
                   lambda c: TransposableSRAM(n=c.tsram.n, width=c.tsram.width, tiles=c.tsram.tiles),
                   "transposable SRAM wrapper (row or column per cycle, N SRAM banks)"),
    "dfa_ep": Block("edgetrain_dfa_ep",
                    lambda c: DFAErrorEngine(cols=c.dfa.classes, width=c.dfa.width, max_rows=c.dfa.max_rows,
                                             stages=c.stages("dfa_ep")),
                    "DFA error propagation: B e with B from an LFSR, masked by dReLU"),
    "pdfa": Block("edgetrain_pdfa",
                  lambda c: PDFAController(max_layers=c.pdfa.max_layers, size_width=c.pdfa.size_width,
                                           sample_width=c.pdfa.sample_width, counter_width=c.pdfa.counter_width,
                                           precisions=c.pdfa.precisions),
                  "PDFA training controller: FF/EP/WG commands from a layer table, cycle counters"),
    "zero_skip": Block("edgetrain_zero_skip",
                       lambda c: ZeroSkip(window=c.sparsity.window, slots=c.sparsity.slots, width=c.sparsity.width,
                                          weight_width=c.sparsity.weight_width, depth=c.sparsity.depth,
                                          stages=c.stages("zero_skip")),
                       "input zero-skip unit: non-zero (value, index, weight) into compute slots"),
    "zvc_enc": Block("edgetrain_zvc_enc", lambda c: ZVCEncoder(n=c.sparsity.zvc_n, width=c.sparsity.zvc_width),
                     "zero-value compression encoder (mask + packed non-zeros)"),
    "zvc_dec": Block("edgetrain_zvc_dec", lambda c: ZVCDecoder(n=c.sparsity.zvc_n, width=c.sparsity.zvc_width),
                     "zero-value compression decoder"),
    "row_skip": Block("edgetrain_row_skip",
                      lambda c: RowSkipper(lanes=c.sparsity.mask_lanes, max_rows=c.sparsity.max_rows),
                      "dReLU mask buffer and EP row skipper"),
    "slice_skip": Block("edgetrain_slice_skip",
                        lambda c: SliceSkipPE(bits=c.sparsity.slice_bits, pairs=c.sparsity.slice_pairs,
                                              slots=c.sparsity.slice_slots, acc_width=c.pe.acc_width,
                                              stages=c.stages("slice_skip")),
                        "slice-skipping PE: only the needed 4-bit slices take a multiplier"),
    "requant": Block("edgetrain_requant", lambda c: ConversionUnit(lanes=c.pe.cols, acc_width=c.pe.acc_width),
                     "conversion unit: accumulators to DFXP codes (rounding, saturation, overflow counters)"),
    "output_error": Block("edgetrain_output_error",
                          lambda c: OutputErrorUnit(lanes=c.pe.cols, classes=c.dfa.classes,
                                                    stages=c.stages("output_error")),
                          "output-error unit: integer softmax minus one-hot, to DFXP error codes"),
    "weight_update": Block("edgetrain_weight_update",
                           lambda c: WeightUpdateUnit(lanes=c.pe.cols, stages=c.stages("weight_update")),
                           "weight-update unit: 16-bit masters minus the stochastically rounded gradient"),
}


#: The baselines the synthesis report compares a block with, synthesized in the same run when that block is:
#: block -> (baseline name, its Block). The fixed 16x16-bit PE is a block of its own (``pe_fixed16``).
BASELINES = {
    "fp8_tree": ("bf16_tree", Block("edgetrain_bf16_tree", lambda c: BF16MacTree(k=c.fp8.k),
                                    "baseline: bfloat16 MAC tree (bf16 products, binary32 sum), same K")),
    "tsram": ("register_file", Block("edgetrain_register_file",
                                     lambda c: RegisterFileTranspose(n=c.tsram.n, width=c.tsram.width,
                                                                     tiles=c.tsram.tiles),
                                     "baseline: register-file transpose buffer of the same capacity")),
}


def sdc_text(config):
    """The ``clock.sdc`` of ``config``: ``constraints/clock.sdc`` at its ``clock_mhz`` (I/O delays 20% of the
    period)."""
    period = 1000.0 / config.clock_mhz
    return (_ROOT / "constraints" / "clock.sdc").read_text().format(
        clock_mhz=f"{config.clock_mhz:g}", period_ns=f"{period:.3f}", io_delay_ns=f"{0.2 * period:.3f}")


@contextlib.contextmanager
def _fewer_collections():
    """Python's cyclic garbage collector runs less often inside the context. A conversion keeps millions of
    small objects alive (Amaranth's netlist) and each full collection walks them all: with the default
    young-generation threshold (700) a 32x32 PE array spends a fifth of its conversion's CPU time there;
    with 10000 it does not, at the same peak memory (it creates little garbage)."""
    thresholds = gc.get_threshold()
    gc.set_threshold(10000, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def elaborate(block, config, target="verilog"):
    """Text of one block (a name of :data:`BLOCKS`, or a :class:`Block`) in Verilog or RTLIL. Identical PEs
    and identical line routers of a PE array are one module each, emitted once after the block
    (:func:`hw.pe_array.shared_pe_modules`). In RTLIL these modules carry ``keep_hierarchy``: synthesis
    (:mod:`hw.synth`) maps each once and keeps its instances, so an array's area is its PE's times the PE
    count plus its routers' and its glue, and a large array maps in the time of a small one."""
    from .synth import keep_hierarchy

    spec = block if isinstance(block, Block) else BLOCKS[block]
    component = spec.make(config)
    convert = rtlil.convert if target == "rtlil" else verilog.convert
    with _fewer_collections():
        with shared_pe_modules() as shared:
            text = convert(component, name=spec.top, emit_src=False)
        for name, module in shared.items():
            text += "\n" + convert(module, name=name, emit_src=False)
    if target == "rtlil":
        text = keep_hierarchy(text, set(shared))
    return text


def _progress(message):
    print(message, file=sys.stderr, flush=True)


def generate(config, target, out_root, blocks=None, progress=_progress, liberty=None):
    """Write the build of ``config`` under ``out_root/<name>/`` and return that folder.

    ``liberty``: the standard-cell library of ``--target synth`` (a ``.lib`` or ``.lib.gz`` file;
    ``None``: :data:`hw.synth.LIBERTY`)."""
    from . import synth   # only the synth target needs Yosys

    blocks = list(BLOCKS) if blocks is None else blocks
    dest = Path(out_root) / config.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{config.name}-") as scratch:
        scratch = Path(scratch)
        files = {}
        ext = "il" if target == "rtlil" else "v"
        for i, block in enumerate(blocks, 1):
            progress(f"[{i}/{len(blocks)}] elaborating {block} ({BLOCKS[block].description})")
            name = f"{block}.{ext}"
            (scratch / name).write_text(elaborate(block, config, "rtlil" if target == "rtlil" else "verilog"))
            files[block] = name
        if "train_core" in blocks:
            # The core's register map, in the forms an integrator uses (one source: hw.train_core).
            from . import regmap
            from .train_core import register_map
            regs = register_map(config)
            (scratch / "train_core_regs.md").write_text(regmap.markdown(regs))
            (scratch / "train_core_regs.h").write_text(regmap.c_header(regs))
            (scratch / "train_core_regs.py").write_text(regmap.python_driver(regs))
            files["train_core_regs"] = ["train_core_regs.md", "train_core_regs.h", "train_core_regs.py"]
        sdc = sdc_text(config)
        (scratch / "clock.sdc").write_text(sdc)
        (scratch / "config.json").write_text(config.to_json())
        manifest = {
            "generator": "edgetrain",
            "version": __version__,
            "target": target,
            "config_name": config.name,
            "parameters": config.to_dict(),
            "derived": {"pe.acc_width": config.pe.acc_width},
            "blocks": {b: {"file": files[b], "top": BLOCKS[b].top, "description": BLOCKS[b].description}
                       for b in blocks},
            "register_map": files.get("train_core_regs"),
            "constraints": "clock.sdc",
        }
        if target == "synth":
            # The library decompressed once, beside the blocks' folders (Yosys reads it by a relative path).
            lib_source = Path(liberty) if liberty is not None else synth.LIBERTY
            lib = synth.read_liberty(lib_source)
            (scratch / "synth").mkdir()
            (scratch / "synth" / "cells.lib").write_text(lib.text)
            period_ns = synth.clock_period_ns(sdc)
            results = {}
            for i, block in enumerate(blocks, 1):
                progress(f"[{i}/{len(blocks)}] synthesizing {block} with Yosys")
                start = time.monotonic()
                results[block] = synth.synthesize(elaborate(block, config, "rtlil"), BLOCKS[block].top,
                                                  scratch / "synth" / block, liberty=scratch / "synth" / "cells.lib",
                                                  period_ns=period_ns)
                results[block]["seconds"] = round(time.monotonic() - start, 1)
            baselines = {}
            for block in blocks:
                if block in BASELINES:
                    name, spec = BASELINES[block]
                    progress(f"synthesizing the baseline of {block}: {name}")
                    baselines[name] = synth.synthesize(elaborate(spec, config, "rtlil"), spec.top,
                                                       scratch / "synth" / name,
                                                       liberty=scratch / "synth" / "cells.lib", period_ns=period_ns)
            from .synth_report import comparisons, comparisons_markdown, html_report
            report = {"config": config.name, "nand2_weights": synth.NAND2_WEIGHTS,
                      "liberty": lib_source.name, "clock_period_ns": period_ns,
                      "memory_um2_per_bit": synth.MEMORY_UM2_PER_BIT, "blocks": results,
                      "baselines": baselines, "comparisons": comparisons(results, baselines, config)}
            (scratch / "synth" / "report.json").write_text(json.dumps(report, indent=2) + "\n")
            (scratch / "synth" / "report.md").write_text(
                f"# Synthesis report: configuration `{config.name}`\n\n" + synth.markdown_table(results)
                + "\n".join(comparisons_markdown(report["comparisons"])) + "\n")
            (scratch / "synth" / "report.html").write_text(html_report(
                results, config_name=config.name, liberty=lib_source.name, period_ns=period_ns,
                memory_um2_per_bit=synth.MEMORY_UM2_PER_BIT, comparisons=report["comparisons"]))
            manifest["synth_report"] = "synth/report.json"
        (scratch / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        # Move into place only now that every file exists.
        if dest.exists():
            shutil.rmtree(dest)
        scratch.rename(dest)
        dest.chmod(0o755)
        scratch.mkdir()     # TemporaryDirectory cleans up the (now empty) name
    return dest


class CliParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2 (no usage dump)."""

    def error(self, message):
        # One line, exit status 2, no usage dump.
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def _parser():
    parser = CliParser(prog="python -m hw.build", description="Generate the accelerator's RTL.")
    parser.add_argument("--target", choices=["verilog", "rtlil", "synth"], default="verilog",
                        help="what to write (default: verilog); synth also runs Yosys for area")
    parser.add_argument("--preset", default=None,
                        help=f"configuration preset to start from: {', '.join(sorted(PRESETS))} (default: default)")
    parser.add_argument("--config", metavar="FILE.toml", help="configuration file (may name a preset)")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                        help="override one parameter, e.g. --set pe.rows=4 (repeatable)")
    parser.add_argument("--block", action="append", choices=sorted(BLOCKS), dest="blocks",
                        help="build only this block (repeatable; default: all)")
    parser.add_argument("--out", default="build", metavar="DIR", help="output root (default: build)")
    parser.add_argument("--liberty", metavar="FILE", default=None,
                        help="standard-cell library (.lib or .lib.gz) of --target synth "
                             "(default: constraints/sky130hd_tt.lib.gz, sky130_fd_sc_hd typical)")
    return parser


def folder_problem(folder):
    """Why files cannot be created in ``folder`` (made if missing), or None. Creates nothing that stays: the
    nearest existing folder is probed with a temporary file (permission bits alone say nothing to root)."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"--out: {existing} is not a directory"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return f"--out: cannot write in {existing} ({exc.strerror or exc})"
    return None


def json_out_problem(path, beside=()):
    """Why the report ``path`` (a ``.json`` file) and the files beside it with the suffixes ``beside`` cannot
    be written, or None (the scripts' ``--out``)."""
    if path.suffix != ".json":
        return f"--out must name a .json file, not {str(path)!r}"
    for target in (path, *(path.with_suffix(suffix) for suffix in beside)):
        if target.is_dir():
            return f"--out: {target} is a directory"
    return folder_problem(path.parent)


def _out_problem(dest):
    """Why the build folder ``dest`` cannot be written, or None (checked before anything is generated)."""
    if dest.exists() and not dest.is_dir():
        return f"--out: {dest} exists and is not a directory"
    return folder_problem(dest)


def resolve_config(args):
    if args.config and args.preset:
        raise ConfigError("give either --preset or --config (a config file names its own preset), not both")
    config = load_toml(args.config) if args.config else preset(args.preset or "default")
    return apply_overrides(config, args.overrides)


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = resolve_config(args)
    except ConfigError as exc:
        parser.error(str(exc))
    if args.liberty is not None and args.target != "synth":
        parser.error(f"--liberty must come with --target synth, not --target {args.target}")
    if args.target == "synth":
        from .synth import LibertyError, SynthError, read_liberty, yosys_command
        try:
            yosys_command()
            if args.liberty is not None:
                read_liberty(args.liberty)    # checked before anything is written
        except (SynthError, LibertyError) as exc:
            parser.error(str(exc))
    problem = _out_problem(Path(args.out) / config.name)
    if problem:
        parser.error(problem)
    blocks = sorted(set(args.blocks), key=list(BLOCKS).index) if args.blocks else None
    dest = generate(config, args.target, args.out, blocks, liberty=args.liberty)
    print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
