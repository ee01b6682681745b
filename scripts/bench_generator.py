"""Benchmark of the generator: time and peak memory of ``python -m hw.build --target verilog`` for PE arrays of
8x8, 16x16, 32x32 and 64x64.

Each size is one run of the build CLI in a process of its own (``--block pe_array``, ``pe.rows`` and
``pe.cols`` set, the other parameters the preset's with the ``--set`` overrides), timed from its start to
its exit (``seconds``); its peak resident memory is the process's maximum resident set size as the kernel
accounts it (``wait4``), and ``cpu_seconds`` its user and system CPU time with that of the processes it
waited for (Yosys): unlike the wall time, the CPU time does not grow when other work shares the machine.
With ``--repeat N`` each size is built N times (the sizes in a new random order each round) and the
fastest run's times are kept, with the largest peak memory. The emitted Verilog's size and its module
count are reported beside them: identical PEs are one module and so are the routers of the PE rows and
those of the PE columns (:func:`hw.pe_array.shared_pe_modules`), so the text grows with the array's glue,
not with a copy per PE or per line.

Goals (issue "a generator that scales"): 32x32 in at most 3x the time of 8x8 and under 1 GB; 64x64
completes.

Writes ``reports/bench/generator.json`` (fields ``sizes`` keyed ``"8x8"`` ... ``"64x64"``,
``time_ratio_32_over_8``, ``cpu_time_ratio_32_over_8``, ``peak_rss_mb`` keyed by size).

Usage: ``python scripts/bench_generator.py [--preset P] [--set k=v ...] [--sizes 8,16,32,64] [--repeat N]
[--seed S] [--out F.json]``
"""

import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchlib  # noqa: E402  (scripts/ is on sys.path when a script runs)

from hw.build import CliParser, json_out_problem  # noqa: E402
from hw.config import ConfigError, apply_overrides, preset  # noqa: E402

SIZES = (8, 16, 32, 64)
TARGET_TIME_RATIO = 3.0
TARGET_RSS_MB = 1024


def build(size, preset_name, overrides, out_dir):
    """Run the build CLI for a ``size x size`` array; returns (seconds, CPU seconds, peak RSS in MB, Verilog
    text)."""
    sets = [*overrides, f"pe.rows={size}", f"pe.cols={size}", f"name=gen{size}"]
    command = [sys.executable, "-m", "hw.build", "--target", "verilog", "--preset", preset_name, "--block",
               "pe_array", *(arg for value in sets for arg in ("--set", value)), "--out", str(out_dir)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.monotonic()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - start
    stderr = proc.stderr.read()
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"the build of {size}x{size} failed: {stderr.strip().splitlines()[-1:]}")
    # ru_maxrss is in kilobytes on Linux; the times include the children the build waited for.
    return (seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
            (out_dir / f"gen{size}" / "pe_array.v").read_text())


def main(argv=None):
    parser = CliParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                        help="override a parameter of the preset, e.g. --set pe.drain_buffers=1 (repeatable)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), metavar="N[,N...]",
                        help="array sizes N (N x N), 1 to 64 (default 8,16,32,64)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="builds per size, the fastest kept (default 1)")
    parser.add_argument("--seed", type=int, default=1, help="order in which the sizes run (default 1)")
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench" / "generator.json"))
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes must be comma-separated integers, not {args.sizes!r}")
    if args.repeat < 1:
        parser.error(f"--repeat must be a positive integer, not {args.repeat!r}")
    try:
        for size in sizes:
            apply_overrides(preset(args.preset), [*args.overrides, f"pe.rows={size}", f"pe.cols={size}"])
    except ConfigError as exc:
        parser.error(str(exc))
    problem = json_out_problem(Path(args.out))
    if problem:
        parser.error(problem)

    rng = random.Random(args.seed)
    rounds = []
    for _ in range(args.repeat):
        order = list(dict.fromkeys(sizes))
        rng.shuffle(order)
        rounds.append(order)
    results = {}
    runs = sum(map(len, rounds))
    with tempfile.TemporaryDirectory() as tmp:
        for i, size in enumerate((size for order in rounds for size in order), 1):
            print(f"[{i}/{runs}] generating a {size}x{size} array", flush=True)
            seconds, cpu, rss, text = build(size, args.preset, args.overrides, Path(tmp))
            print(f"    {seconds:.1f} s ({cpu:.1f} s CPU), {rss:.0f} MB, {len(text) / 1e6:.1f} MB of Verilog, "
                  f"{len(re.findall(r'^module ', text, flags=re.M))} modules", flush=True)
            best = results.get(size)
            results[size] = {
                "seconds": round(min(seconds, best["seconds"]) if best else seconds, 2),
                "cpu_seconds": round(min(cpu, best["cpu_seconds"]) if best else cpu, 2),
                "peak_rss_mb": round(max(rss, best["peak_rss_mb"]) if best else rss, 1),
                "verilog_bytes": len(text.encode()),
                "modules": len(re.findall(r"^module ", text, flags=re.M)), "pes": size * size}
    by_name = {f"{size}x{size}": results[size] for size in sorted(results)}
    report = {"preset": args.preset, "overrides": args.overrides, "seed": args.seed, "repeat": args.repeat,
              "order": [f"{s}x{s}" for s in rounds[0]], "sizes": by_name,
              "peak_rss_mb": {name: r["peak_rss_mb"] for name, r in by_name.items()},
              "target_time_ratio_32_over_8": TARGET_TIME_RATIO, "target_peak_rss_mb_32": TARGET_RSS_MB}
    if 8 in results and 32 in results:
        ratio = results[32]["seconds"] / results[8]["seconds"]
        report["time_ratio_32_over_8"] = round(ratio, 3)
        report["cpu_time_ratio_32_over_8"] = round(results[32]["cpu_seconds"] / results[8]["cpu_seconds"], 3)
        report["meets_target"] = ratio <= TARGET_TIME_RATIO and results[32]["peak_rss_mb"] < TARGET_RSS_MB
    out = benchlib.write_json(args.out, report)
    for name, r in by_name.items():
        print(f"{name:>6}: {r['seconds']:7.1f} s {r['cpu_seconds']:7.1f} s CPU {r['peak_rss_mb']:7.0f} MB "
              f"{r['verilog_bytes'] / 1e6:6.1f} MB of Verilog, {r['modules']} modules")
    if "time_ratio_32_over_8" in report:
        print(f"32x32 / 8x8 time: {report['time_ratio_32_over_8']:.2f} (target <= {TARGET_TIME_RATIO}), "
              f"CPU time: {report['cpu_time_ratio_32_over_8']:.2f}")
    print(out)


if __name__ == "__main__":
    main()
