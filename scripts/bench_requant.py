"""Benchmark of the training-step units: throughput of the conversion, weight-update and output-error units,
and their area next to the PE array.

* Throughput (simulated, each unit's cocotb ``throughput`` test: no stalls, no back-pressure, every result
  still checked against golden):

  - the conversion unit (:class:`hw.requant.ConversionUnit`, ``pe.cols`` lanes, the PE array's accumulator
    width) over one long stochastic, thresholded job of ``--beats`` beats and over 200 one-beat jobs back to
    back: ``elements_per_cycle`` (per lane, from the first beat out to the last; goal 1.0, a beat per cycle)
    and the latency of a beat;
  - the weight-update unit (:class:`hw.weight_update.WeightUpdateUnit`, ``pe.cols`` lanes) likewise;
  - the output-error unit (:class:`hw.output_error.OutputErrorUnit`, ``pe.cols`` lanes, ``dfa.classes``
    classes) over one job of ``--groups`` full groups and over 16 one-group jobs back to back: the cycles
    per group (between the first codes of consecutive groups, steady state) against ``classes + divider``
    (a group's ``classes`` logit beats, then :data:`hw.output_error.RECIP_CYCLES` of the reciprocal, which
    no other stage overlaps), the samples per cycle per lane (a lane takes one sample per group) and the
    latency of a group, each beside the figure the unit documents.

* Area: the three units and the PE array of the same configuration (:class:`hw.pe_array.PEArray`,
  ``pe.rows x pe.cols``) synthesized in the same run (``constraints/synth.ys``): NAND2 equivalents,
  flip-flops and memory bits of each, and each unit's over the PE array's. The output-error unit's report
  carries its breakdown (softmax, conversion, glue; :func:`hw.synth.synthesize`).

Writes ``reports/bench/requant.json``.

Usage: ``python scripts/bench_requant.py [--preset P] [--set k=v ...] [--sim verilator|icarus] [--seed N]
[--beats N] [--groups N] [--out F.json]``
"""

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchlib  # noqa: E402  (scripts/ is on sys.path when a script runs)

from hw.build import BLOCKS                                 # noqa: E402
from hw.output_error import RECIP_CYCLES                    # noqa: E402

TARGET_ELEMENTS_PER_CYCLE = 1.0
ONE_BEAT_JOBS = 200         # as the units' throughput tests run them
UNITS = {"conversion": "requant", "weight_update": "weight_update", "output_error": "output_error"}


def check_out(parser, out):
    """Exit with one line if ``out`` cannot become the report, before anything runs."""
    path = Path(out)
    if path.suffix != ".json":
        parser.error(f"--out must name a .json file, not {out!r}")
    if path.is_dir():
        parser.error(f"--out {out!r} is a directory")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                parser.error(f"--out {out!r}: {str(parent)!r} is not a directory")
            break


def stream_unit(measured, rate_key, latency):
    """The report of a beat-per-cycle unit from its bench's figures (``rate_key``: its per-lane rate)."""
    long_job, one_beat = measured["long_job"], measured["one_beat_jobs"]
    rate = long_job[rate_key]
    return {
        "lanes": measured["lanes"],
        "latency_cycles": measured["latency_cycles"],
        "documented_latency_cycles": latency,
        "long_job": {k: long_job[k] for k in ("jobs", "beats", "cycles")},
        "one_beat_jobs": {k: one_beat[k] for k in ("jobs", "beats", "cycles")},
        "elements_per_cycle": round(rate, 4),
        "one_beat_jobs_elements_per_cycle": round(one_beat[rate_key], 4),
        "target_elements_per_cycle": TARGET_ELEMENTS_PER_CYCLE,
        "meets_target": rate >= TARGET_ELEMENTS_PER_CYCLE and one_beat[rate_key] >= TARGET_ELEMENTS_PER_CYCLE,
    }


def output_error_unit(measured, stages):
    """The report of the output-error unit (of ``stages`` pipeline stages) from its bench's figures. Pipelined,
    the unit documents that a job's first group may come a cycle late after another job: jobs of one group
    each then take up to a cycle more per group."""
    classes = measured["classes"]
    runs = {name: measured[name] for name in ("long_job", "one_group_jobs")}
    per_group = runs["long_job"]["cycles_per_group"]
    return {
        "lanes": measured["lanes"],
        "classes": classes,
        "divider_cycles": RECIP_CYCLES,
        "classes_plus_divider": classes + RECIP_CYCLES,
        "latency_cycles": measured["latency_cycles"],
        "documented_latency_cycles": measured["documented_latency_cycles"],
        **{name: {**{k: run[k] for k in ("jobs", "groups", "cycles", "cycles_from_first_input", "group_gaps")},
                  "cycles_per_group": round(run["cycles_per_group"], 4),
                  "samples_per_cycle_per_lane": round(run["samples_per_cycle_per_lane"], 6)}
           for name, run in runs.items()},
        "cycles_per_group": round(per_group, 4),
        "documented_group_cycles": measured["documented_group_cycles"],
        "overhead_cycles": round(per_group - classes - RECIP_CYCLES, 4),
        "samples_per_cycle_per_lane": round(1 / per_group, 6),
        "samples_per_cycle": round(measured["lanes"] / per_group, 6),
        # Over the whole job: from its first logit beat taken to its last code, pipeline fill included.
        "job_samples_per_cycle_per_lane": round(runs["long_job"]["groups"]
                                                / runs["long_job"]["cycles_from_first_input"], 6),
        "stages": stages,
        "meets_documented": per_group == measured["documented_group_cycles"]
                            and measured["documented_group_cycles"] <= runs["one_group_jobs"]["cycles_per_group"]
                            <= measured["documented_group_cycles"] + (1 if stages else 0)
                            and measured["latency_cycles"] == measured["documented_latency_cycles"],
    }


def area_report(synthesis):
    """NAND2 equivalents, flip-flops and memory bits of each unit and the PE array, and each unit's ratios."""
    array = synthesis["pe_array"]

    def figures(r):
        return {"nand2_equivalents": r["nand2_equivalents"], "flip_flops": r["flip_flops"],
                "memory_bits": r["memory_bits"]}

    units = {}
    for name, block in UNITS.items():
        r = synthesis[block]
        units[name] = {**figures(r),
                       "nand2_over_pe_array": round(r["nand2_equivalents"] / array["nand2_equivalents"], 4),
                       "flip_flops_over_pe_array": round(r["flip_flops"] / array["flip_flops"], 4)}
    total = sum(synthesis[block]["nand2_equivalents"] for block in UNITS.values())
    return {"pe_array": figures(array), "units": units,
            "units_nand2_over_pe_array": round(total / array["nand2_equivalents"], 4),
            "synthesis": synthesis}


def main(argv=None):
    parser = benchlib.parser(__doc__.splitlines()[0], "requant.json")
    parser.add_argument("--beats", type=int, default=2000,
                        help="beats of the long job of the conversion and weight-update units (default 2000)")
    parser.add_argument("--groups", type=int, default=64,
                        help="groups of the output-error unit's long job (default 64)")
    args = parser.parse_args(argv)
    config = benchlib.resolve(parser, args)
    try:
        designs = {block: BLOCKS[block].make(config) for block in (*UNITS.values(), "pe_array")}
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    max_beats = min(designs["requant"].max_beats, designs["weight_update"].max_beats)
    if not 1 <= args.beats <= max_beats:
        parser.error(f"--beats must be an integer in [1, {max_beats}], not {args.beats}")
    max_groups = designs["output_error"].max_groups
    if not 2 <= args.groups <= max_groups:
        parser.error(f"--groups must be an integer in [2, {max_groups}], not {args.groups}")
    check_out(parser, args.out)

    lanes, classes = config.pe.cols, config.dfa.classes
    start = time.monotonic()
    print(f"[1/4] simulating the conversion unit: {lanes} lanes, {args.beats} beats ({args.sim})", flush=True)
    perf_beats = {"EDGETRAIN_PERF_BEATS": str(args.beats)}
    conversion = benchlib.measure("requant", config, args, out_env="EDGETRAIN_PERF_OUT", env=perf_beats,
                                  label="conversion unit")
    print(f"[2/4] simulating the weight-update unit: {lanes} lanes, {args.beats} beats ({args.sim})", flush=True)
    update = benchlib.measure("weight_update", config, args, out_env="EDGETRAIN_PERF_OUT", env=perf_beats,
                              label="weight-update unit")
    print(f"[3/4] simulating the output-error unit: {lanes} lanes, {classes} classes, {args.groups} groups "
          f"({args.sim})", flush=True)
    error = benchlib.measure("output_error", config, args, out_env="EDGETRAIN_PERF_OUT",
                             env={"EDGETRAIN_PERF_GROUPS": str(args.groups)}, label="output-error unit")
    sim_seconds = time.monotonic() - start

    print(f"[4/4] synthesizing the three units and the {config.pe.rows}x{lanes} PE array", flush=True)
    synthesis = benchlib.synthesize(designs)

    report = {
        "config": config.to_dict(),
        "simulator": args.sim,
        "seed": args.seed,
        "simulation_seconds": round(sim_seconds, 1),
        "conversion": {**stream_unit(conversion, "elements_per_cycle_per_lane", designs["requant"].latency),
                       "acc_width": conversion["acc_width"]},
        "weight_update": stream_unit(update, "weights_per_cycle_per_lane", designs["weight_update"].latency),
        "output_error": output_error_unit(error, config.stages("output_error")),
        "area": area_report(synthesis),
    }
    path = benchlib.write_json(args.out, report)

    for name, label in (("conversion", "conversion unit"), ("weight_update", "weight-update unit")):
        r = report[name]
        print(f"{label:<19} {r['elements_per_cycle']:.4f} elements/cycle/lane over {r['long_job']['beats']} beats, "
              f"{r['one_beat_jobs_elements_per_cycle']:.4f} over one-beat jobs (goal {TARGET_ELEMENTS_PER_CYCLE}); "
              f"latency {r['latency_cycles']}")
    oe = report["output_error"]
    print(f"output-error unit   {oe['cycles_per_group']:g} cycles/group = {classes} classes + {RECIP_CYCLES} divider "
          f"+ {oe['overhead_cycles']:g} (documented {oe['documented_group_cycles']}): "
          f"{oe['samples_per_cycle_per_lane']:.4f} samples/cycle/lane; latency {oe['latency_cycles']}")
    area = report["area"]
    print(f"PE array {config.pe.rows}x{lanes}: {area['pe_array']['nand2_equivalents']:.0f} NAND2 eq., "
          f"{area['pe_array']['flip_flops']} flip-flops")
    for name, u in area["units"].items():
        print(f"  {name:<14} {u['nand2_equivalents']:>9.0f} NAND2 eq. = {u['nand2_over_pe_array']:.3f} x, "
              f"{u['flip_flops']:>6} flip-flops = {u['flip_flops_over_pe_array']:.3f} x, "
              f"{u['memory_bits']} memory bits")
    print(path)


if __name__ == "__main__":
    main()
