"""Benchmark of timing closure: area and critical path of every pipelined block at every pipeline depth, and
the PE's MACs per second per mm^2 at its closing clock, bit-scalable against the fixed 16x16-bit PE.

For each block of :data:`hw.pipeline.BLOCK_MODULES` (or those named with ``--block``) and each depth from 0
to its deepest, the block of the configuration with ``pipeline.<block>`` set to that depth is synthesized
as ``python -m hw.build --target synth`` does it (sky130_fd_sc_hd typical; ABC's delay target is the
configuration's clock; the critical path includes the flip-flops' clock-to-Q and setup). Each depth reports
its critical path and ends, area, flip-flops, whether it meets the clock, and the module's estimate
(``STAGE_DELAYS_NS``, which places the ``"auto"`` depth) beside the measurement.

The PE density compares, at the configuration's clock and at each PE's closing clock (the configuration's
clock when the PE meets it, else the fastest its critical path allows), the bit-scalable PE at its
``"auto"`` depth with the fixed 16x16-bit PE, both synthesized for the same clock: MACs per cycle by precision (16 at 4 bits, 4 at 8 bits, 1 at 12 and 16 bits; the fixed
PE does one at any precision), times the clock, over the PE's area.

Writes ``reports/bench/timing.json``: ``clock_mhz``, ``blocks`` keyed by block (``depths``: list of
``{stages, critical_path_ns, logic_delay_ns, start, end, area_um2, flip_flops, meets_clock,
estimate_ns}``; ``auto_stages``; ``closing_stages``: the shallowest measured depth that meets the clock),
``pe_density`` and ``all_auto_meet_clock``.

Usage: ``python scripts/bench_timing.py [--preset P] [--set k=v ...] [--block NAME ...] [--out F.json]``
"""

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchlib  # noqa: E402  (scripts/ is on sys.path when a script runs)

from hw.build import BLOCKS, CliParser, elaborate, json_out_problem  # noqa: E402
from hw.config import ConfigError, apply_overrides, preset  # noqa: E402
from hw.pipeline import BLOCK_MODULES, max_stages, stage_delays  # noqa: E402
from hw.synth import synthesize  # noqa: E402

#: MACs per cycle of the bit-scalable PE by operand precision (both operands at that precision).
PE_MACS_PER_CYCLE = {4: 16, 8: 4, 12: 1, 16: 1}


def synth_block(name, config, workdir):
    """The synthesis figures of block ``name`` of ``config`` (timed against the configuration's clock)."""
    start = time.monotonic()
    r = synthesize(elaborate(name, config, "rtlil"), BLOCKS[name].top, workdir, period_ns=1000.0 / config.clock_mhz)
    return {"critical_path_ns": r["critical_path_ns"], "logic_delay_ns": r["logic_delay_ns"],
            "start": r["critical_path_start"], "end": r["critical_path_end"], "area_um2": round(r["area_um2"], 1),
            "flip_flops": r["lib_flip_flops"], "max_clock_mhz": r["max_clock_mhz"],
            "meets_clock": r["critical_path_ns"] is not None and r["critical_path_ns"] <= 1000.0 / config.clock_mhz,
            "seconds": round(time.monotonic() - start, 1)}


def density(entry, clock_mhz, macs_per_cycle):
    """MACs per second per mm^2 (in GMAC/s/mm^2) at ``clock_mhz`` and at the design's closing clock."""
    closing = clock_mhz if entry["meets_clock"] else entry["max_clock_mhz"]
    mm2 = entry["area_um2"] / 1e6
    return {"closing_clock_mhz": closing,
            "gmacs_per_mm2_at_clock": {str(p): round(n * clock_mhz / 1e3 / mm2, 2) for p, n in macs_per_cycle.items()},
            "gmacs_per_mm2_at_closing_clock": {str(p): round(n * closing / 1e3 / mm2, 2)
                                               for p, n in macs_per_cycle.items()}}


def main(argv=None):
    parser = CliParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                        help="override a parameter of the preset, e.g. --set clock_mhz=250 (repeatable)")
    parser.add_argument("--block", action="append", default=[], dest="blocks", metavar="NAME",
                        help=f"a pipelined block to measure (repeatable; default all: {', '.join(BLOCK_MODULES)})")
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench" / "timing.json"))
    args = parser.parse_args(argv)
    try:
        config = apply_overrides(preset(args.preset), args.overrides)
    except ConfigError as exc:
        parser.error(str(exc))
    unknown = [b for b in args.blocks if b not in BLOCK_MODULES]
    if unknown:
        parser.error(f"--block must be one of {', '.join(BLOCK_MODULES)}, not {unknown[0]!r}")
    problem = json_out_problem(Path(args.out))
    if problem:
        parser.error(problem)
    blocks = list(dict.fromkeys(args.blocks)) or list(BLOCK_MODULES)
    period = 1000.0 / config.clock_mhz

    report = {"preset": args.preset, "overrides": args.overrides, "clock_mhz": config.clock_mhz,
              "clock_period_ns": round(period, 3), "blocks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in blocks:
            depths = []
            for depth in range(max_stages(name) + 1):
                print(f"{name}: stages {depth}", flush=True)
                cfg = apply_overrides(config, [f"pipeline.{name}={depth}"])
                entry = {"stages": depth, **synth_block(name, cfg, Path(tmp) / f"{name}{depth}"),
                         "estimate_ns": stage_delays(name)[depth]}
                depths.append(entry)
                print(f"    {entry['critical_path_ns']} ns ({entry['start']} -> {entry['end']}), "
                      f"{entry['area_um2']:.0f} um^2, {entry['flip_flops']} flip-flops ({entry['seconds']} s)",
                      flush=True)
            meeting = [d["stages"] for d in depths if d["meets_clock"]]
            report["blocks"][name] = {"depths": depths, "auto_stages": config.stages(name),
                                      "closing_stages": meeting[0] if meeting else None}
        if "pe" in blocks:
            auto = report["blocks"]["pe"]["depths"][config.stages("pe")]
            print("pe_fixed16", flush=True)
            fixed = synth_block("pe_fixed16", config, Path(tmp) / "pe_fixed16")
            report["pe_density"] = {
                "bit_scalable": {"stages": config.stages("pe"), "area_um2": auto["area_um2"],
                                 "critical_path_ns": auto["critical_path_ns"],
                                 **density(auto, config.clock_mhz, PE_MACS_PER_CYCLE)},
                "fixed16": {"area_um2": fixed["area_um2"], "critical_path_ns": fixed["critical_path_ns"],
                            **density(fixed, config.clock_mhz, {p: 1 for p in PE_MACS_PER_CYCLE})},
                "area_ratio": round(auto["area_um2"] / fixed["area_um2"], 3)}
    report["all_auto_meet_clock"] = all(b["depths"][b["auto_stages"]]["meets_clock"]
                                        for b in report["blocks"].values())
    out = benchlib.write_json(args.out, report)
    for name, b in report["blocks"].items():
        row = ", ".join(f"{d['stages']}: {d['critical_path_ns']} ns {d['area_um2'] / 1e3:.1f}k um^2" for d in b["depths"])
        print(f"{name:>14} (auto {b['auto_stages']}): {row}")
    if "pe_density" in report:
        d = report["pe_density"]
        print(f"PE area at {config.clock_mhz:g} MHz: bit-scalable / fixed-16 = {d['area_ratio']:.2f}; GMAC/s/mm^2 at "
              f"the clock: {d['bit_scalable']['gmacs_per_mm2_at_clock']} vs {d['fixed16']['gmacs_per_mm2_at_clock']}")
    print(out)


if __name__ == "__main__":
    main()
