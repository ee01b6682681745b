import itertools
import os
import random
import re
import subprocess

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import pe_array as golden
from golden.dfxp import PRECISIONS, code_range
from hw.build import BLOCKS, Block, elaborate
from hw.config import apply_overrides, preset
from hw.pe import MAX_STAGES
from hw.pe_array import PRECISION_CODES, Mode, PEArray
from verif.runner import _verilator_env, run_bench, simulator_status

from .sim_streams import stream_get, stream_put
from .test_lint import LINT_WAIVERS

PAIRS = list(itertools.product(PRECISIONS, PRECISIONS))


def _shapes(mode, out_m, red, out_n):
    return {golden.Mode.FF: ((out_m, red), (out_n, red)),
            golden.Mode.EP: ((red, out_m), (out_n, red)),
            golden.Mode.WG: ((red, out_m), (red, out_n))}[mode]


def _random(rng, shape, p):
    lo, hi = code_range(p)
    v = rng.integers(lo, hi + 1, size=shape)
    mask = rng.random(shape) < 0.25
    v[mask] = rng.choice([lo, hi, 0], size=int(mask.sum()))
    return v


# -- golden ---------------------------------------------------------------------------------------------

def test_ref_gemm_is_the_training_gemms():
    rng = np.random.default_rng(0)
    w = rng.integers(-8, 8, (5, 7))        # W: 5 outputs x 7 inputs
    xs = rng.integers(-8, 8, (3, 7))       # 3 samples, stored one per row
    es = rng.integers(-8, 8, (3, 5))       # their output errors
    assert np.array_equal(golden.gemm(golden.Mode.FF, w, xs), w @ xs.T)          # Y = W X
    assert np.array_equal(golden.gemm(golden.Mode.EP, w, es), w.T @ es.T)        # E' = W^T E
    assert np.array_equal(golden.gemm(golden.Mode.WG, es, xs), es.T @ xs)        # G = E X^T


@pytest.mark.parametrize("p", PRECISIONS)
@pytest.mark.parametrize("transposed", [False, True])
def test_ref_pack_round_trip(p, transposed):
    rng = np.random.default_rng(p)
    size, n = 3, 16 // golden.span(p)
    block = _random(rng, (n, size) if transposed else (size, n), p)
    beat = golden.pack_beat(block, p, transposed, size)
    assert beat < 1 << (golden.LINE_BITS * size)
    lines = golden.unpack_beat(beat, p, transposed, size, n)
    assert np.array_equal(lines, block.T if transposed else block)


@pytest.mark.parametrize("mode", list(golden.Mode))
def test_ref_tiles_cover_gemm(mode):
    rng = np.random.default_rng(1)
    sa, sb = _shapes(mode, 5, 9, 4)
    a_mem, b_mem = _random(rng, sa, 8), _random(rng, sb, 12)
    full = golden.gemm(mode, a_mem, b_mem)
    rows, cols = 2, 3
    out = np.zeros((6, 6), dtype=np.int64)
    for job in golden.tile_jobs(mode, a_mem, b_mem, 8, 12, rows, cols):
        assert len(job.beats) == -(-9 // golden.lanes(8, 12))
        # Each beat line holds the reduction elements of its row/column, from the stored tensor.
        out[job.m0:job.m0 + rows, job.n0:job.n0 + cols] = job.expected
    assert np.array_equal(out[:5, :4], full)
    assert not out[5:].any() and not out[:, 4:].any()


# -- amaranth.sim ---------------------------------------------------------------------------------------

def rtl_gemms(dut, cases, *, stall=0.3, seed=0):
    """Run [(mode, pa, pb, a_mem, b_mem)] through the array with random bubbles and back-pressure; return
    each GEMM's result assembled from the output tiles."""
    rng = random.Random(seed)
    jobs = [(mode, pa, pb, job) for mode, pa, pb, a, b in cases
            for job in golden.tile_jobs(mode, a, b, pa, pb, dut.rows, dut.cols)]
    rows_out = []

    async def source(ctx):
        for mode, pa, pb, job in jobs:
            await stream_put(ctx, dut.cmd, {"mode": Mode[mode.name], "prec_a": PRECISION_CODES[pa],
                                            "prec_b": PRECISION_CODES[pb], "beats_m1": len(job.beats) - 1})

    def beats(port, index):
        async def testbench(ctx):
            for _, _, _, job in jobs:
                for beat in job.beats:
                    await stream_put(ctx, port, beat[index], rng=rng, stall=stall)
        return testbench

    per = dut.drain_rows
    steps = -(-dut.rows // per)

    async def sink(ctx):
        # Each transfer carries `per` tile rows; a partial last one carries zeros beyond the tile.
        for _ in range(len(jobs) * steps):
            payload = await stream_get(ctx, dut.o, rng=rng, stall=stall)
            data = [int(v) for v in payload.data]
            for j in range(per):
                rows_out.append((data[j * dut.cols:(j + 1) * dut.cols], payload.last, j))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source)
    sim.add_testbench(beats(dut.a, 0), background=True)
    sim.add_testbench(beats(dut.b, 1), background=True)
    sim.add_testbench(sink)
    sim.run()

    results, it = [], iter(rows_out)
    for mode, pa, pb, a, b in cases:
        full = golden.gemm(mode, a, b)
        out = np.zeros((-(-full.shape[0] // dut.rows) * dut.rows, -(-full.shape[1] // dut.cols) * dut.cols),
                       dtype=np.int64)
        for job in golden.tile_jobs(mode, a, b, pa, pb, dut.rows, dut.cols):
            for r in range(steps * per):
                data, last, j = next(it)
                assert (last, j) == (r // per == steps - 1, r % per)
                if r < dut.rows:
                    out[job.m0 + r, job.n0:job.n0 + dut.cols] = data
                else:
                    assert data == [0] * dut.cols
        results.append(out[:full.shape[0], :full.shape[1]])
    return results


def ref_gemms(cases):
    return [golden.gemm(mode, a, b) for mode, pa, pb, a, b in cases]


def _cases(rng, rows, cols, modes=tuple(golden.Mode), pairs=PAIRS):
    cases = []
    for mode in modes:
        for pa, pb in pairs:
            red = int(rng.integers(1, 3 * golden.lanes(pa, pb) + 1))
            sa, sb = _shapes(mode, rows + int(rng.integers(1, rows + 1)), red, cols + int(rng.integers(1, cols + 1)))
            cases.append((mode, pa, pb, _random(rng, sa, pa), _random(rng, sb, pb)))
    return cases


@pytest.mark.parametrize("stages", range(MAX_STAGES + 1))
def test_sim_all_modes_and_pairs(stages):
    dut = PEArray(rows=2, cols=3, max_k=64, stages=stages)
    cases = _cases(np.random.default_rng(2), 2, 3)
    for got, want in zip(rtl_gemms(dut, cases), ref_gemms(cases)):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("stall, stages", [(0.0, 0), (0.3, 0), (0.0, 1), (0.3, MAX_STAGES)])
def test_sim_two_drain_buffers(stall, stages):
    # Short reductions back to back: a finished tile waits behind the draining one, nothing is lost.
    dut = PEArray(rows=2, cols=3, max_k=64, drain_buffers=2, stages=stages)
    cases = _cases(np.random.default_rng(7), 2, 3, pairs=[(8, 8), (16, 16), (4, 8), (12, 4)])
    for got, want in zip(rtl_gemms(dut, cases, stall=stall), ref_gemms(cases)):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("rows, drain_rows, drain_buffers, stall", [
    (4, 2, 2, 0.3), (4, 4, 2, 0.0), (3, 2, 2, 0.3), (3, 2, 1, 0.0), (2, 8, 1, 0.3), (5, 4, 2, 0.0)])
def test_sim_drain_rows(rows, drain_rows, drain_buffers, stall):
    # Several tile rows per transfer, whole and partial last transfers, short reductions back to back.
    dut = PEArray(rows=rows, cols=2, max_k=64, drain_buffers=drain_buffers, drain_rows=drain_rows)
    assert dut.drain_rows == min(drain_rows, rows)
    cases = _cases(np.random.default_rng(rows * 10 + drain_rows), rows, 2, pairs=[(8, 8), (16, 16), (4, 12)])
    for got, want in zip(rtl_gemms(dut, cases, stall=stall), ref_gemms(cases)):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("drain_rows, drain_buffers, stages, gaps", [
    (4, 2, 0, 0), (2, 2, 0, 1), (4, 1, 0, 6), (1, 2, 0, 5),
    (4, 2, 1, 1), (2, 2, 1, 2), (4, 1, 1, 9), (1, 2, 1, 6)])
def test_drain_bound(drain_rows, drain_buffers, stages, gaps):
    # 4 commands of 2 beats (8x8-bit reductions of 8) on a 4-row array: a tile owns a drain buffer for
    # d + s cycles after its last beat (d = 3 + stages, s = transfers per tile) and the drain sends a tile per
    # s cycles, so with two buffers 2-beat commands go at full rate only when the whole tile leaves in one
    # transfer and the PEs are not pipelined.
    dut = PEArray(rows=4, cols=2, max_k=16, drain_buffers=drain_buffers, drain_rows=drain_rows, stages=stages)
    rng = np.random.default_rng(5)
    a, b = _random(rng, (16, 8), 8), _random(rng, (2, 8), 8)
    jobs = list(golden.tile_jobs(golden.Mode.FF, a, b, 8, 8, 4, 2))
    taken = []

    async def driver(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.cmd.payload, {"mode": Mode.FF, "prec_a": PRECISION_CODES[8], "prec_b": PRECISION_CODES[8],
                                  "beats_m1": 1})
        ctx.set(dut.cmd.valid, 1)
        beats = [beat for job in jobs for beat in job.beats]
        ctx.set(dut.a.valid, 1)
        ctx.set(dut.b.valid, 1)
        cycle = 0
        while beats:
            ctx.set(dut.a.payload, beats[0][0])
            ctx.set(dut.b.payload, beats[0][1])
            *_, go = await ctx.tick().sample(dut.a.ready)
            if go:
                taken.append(cycle)
                beats.pop(0)
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(driver)
    sim.run()
    assert len(jobs) == 4 and taken[-1] - taken[0] - (len(taken) - 1) == gaps     # cycles lost between beats


def test_sim_no_stalls_single_pe():
    dut = PEArray(rows=1, cols=1, max_k=16)
    cases = _cases(np.random.default_rng(3), 1, 1, pairs=[(4, 4), (16, 16), (12, 8)])
    for got, want in zip(rtl_gemms(dut, cases, stall=0.0), ref_gemms(cases)):
        assert np.array_equal(got, want)


def test_sim_error_flag():
    # A 16-bit-only array: a 4-bit command raises the sticky flag and computes zeros.
    dut = PEArray(rows=1, cols=2, max_k=4, precisions=(16,))
    flags = []

    async def testbench(ctx):
        assert ctx.get(dut.error) == 0
        ctx.set(dut.cmd.payload, {"mode": Mode.FF, "prec_a": PRECISION_CODES[4], "prec_b": PRECISION_CODES[16],
                                  "beats_m1": 0})
        ctx.set(dut.cmd.valid, 1)
        await ctx.tick().until(dut.cmd.ready)
        ctx.set(dut.cmd.valid, 0)
        ctx.set(dut.a.payload, (1 << 64) - 1)
        ctx.set(dut.b.payload, (1 << 128) - 1)
        ctx.set(dut.a.valid, 1)
        ctx.set(dut.b.valid, 1)
        await ctx.tick().until(dut.a.ready)
        ctx.set(dut.a.valid, 0)
        ctx.set(dut.b.valid, 0)
        ctx.set(dut.o.ready, 1)
        payload, = await ctx.tick().sample(dut.o.payload).until(dut.o.valid)
        flags.append((ctx.get(dut.error), [int(v) for v in payload.data]))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert flags == [(1, [0, 0])]


# -- construction ---------------------------------------------------------------------------------------

def test_init():
    dut = PEArray(rows=2, cols=3, max_k=64, precisions=(16, 8))
    assert (dut.rows, dut.cols, dut.max_k, dut.acc_width, dut.precisions) == (2, 3, 64, 38, (8, 16))
    assert dut.signature.members["a"].signature.members["payload"].shape.width == 128
    assert dut.signature.members["b"].signature.members["payload"].shape.width == 192


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(rows=0, cols=2), ValueError, r"Row count must be an integer in 1\.\.64, not 0"),
    (dict(rows=2, cols=65), ValueError, r"Column count must be an integer in 1\.\.64, not 65"),
    (dict(rows="2", cols=2), TypeError, r"Row count must be an integer, not '2'"),
    (dict(rows=2, cols=2, max_k=48), ValueError, r"Maximum beat count must be a power of two >= 2, not 48"),
    (dict(rows=2, cols=2, precisions=(5,)), ValueError, r"Precisions must be a non-empty subset"),
])
def test_init_wrong(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        PEArray(**kwargs)


# -- cocotb bench on the generated Verilog --------------------------------------------------------------

def test_bench(simulator):
    result = run_bench("pe_array", preset("small"), simulator)
    assert result.passed, f"{result.failed} of {result.tests} failed (seed {result.seed}, log {result.run_dir})"


def test_bench_subset_of_precisions_deepest(simulator):
    # Generator options: an array built for 8- and 16-bit operands only, with one drain buffer and one row
    # per transfer (the small preset's array has two, and sends its whole tile at once), its PEs at the
    # deepest pipeline (the small preset's are at the depth its clock asks for).
    config = apply_overrides(preset("small"), ["name=small-8-16", "pe.precisions=[8, 16]", "pe.cols=2",
                                               "pe.drain_buffers=1", "pe.drain_rows=1",
                                               f"pipeline.pe={MAX_STAGES}"])
    result = run_bench("pe_array", config, simulator)
    assert result.passed, f"{result.failed} of {result.tests} failed (seed {result.seed}, log {result.run_dir})"


@pytest.mark.slow
def test_bench_default_config(simulator):
    # The full-size default array (8x8): a long Verilator build, so kept out of the default run.
    result = run_bench("pe_array", preset("default"), simulator)
    assert result.passed, f"{result.failed} of {result.tests} failed (seed {result.seed}, log {result.run_dir})"


# -- the converted array: shared modules, lint ---------------------------------------------------------

def _modules(text, pattern):
    return re.findall(pattern, text, flags=re.M)


@pytest.mark.parametrize("target", ["verilog", "rtlil"])
def test_convert_one_module_per_pe_and_router(target):
    # A 4x4 array holds one PE module, one router module per side and one drain module, instantiated per
    # PE, per line and per column.
    text = elaborate(Block("edgetrain_pe_array", lambda c: PEArray(rows=4, cols=4, max_k=64, drain_buffers=2,
                                                                   drain_rows=2), ""), None, target)
    pe, router_a, router_b = "edgetrain_pe_acc38", *(f"edgetrain_pe_router_{s}_acc38_p4_8_12_16" for s in "ab")
    drain = "edgetrain_pe_drain_r4_d2_b2_acc38"
    if target == "verilog":
        defined, instances = r"^module (\w+)\(", r"^  (edgetrain_\w+) \w+ \("
    else:
        defined, instances = r"^module \\(\S+)$", r"^  cell \\(edgetrain_\S+) "
    assert sorted(_modules(text, defined)) == sorted(["edgetrain_pe_array", pe, router_a, router_b, drain])
    used = _modules(text, instances)
    assert (used.count(pe), used.count(router_a), used.count(router_b), used.count(drain), len(used)) == (
        16, 4, 4, 4, 28)


def test_convert_routers_by_parameters():
    # The routers depend on the side, the precisions and the accumulator width, not on the array's shape: a
    # 2x3 array for 8 and 16 bits has a router per side, two A lines and three B lines.
    block = Block("edgetrain_pe_array", lambda c: PEArray(rows=2, cols=3, max_k=16, precisions=(16, 8)), "")
    text = elaborate(block, None)
    routers = [name for name in _modules(text, r"^module (\w+)\(") if "router" in name]
    assert routers == ["edgetrain_pe_router_a_acc36_p8_16", "edgetrain_pe_router_b_acc36_p8_16"]
    used = _modules(text, r"^  (edgetrain_pe_router_\w+) \w+ \(")
    assert (used.count(routers[0]), used.count(routers[1])) == (2, 3)


@pytest.fixture(scope="module", params=[
    "2x3", *(pytest.param(f"{n}x{n}", marks=pytest.mark.slow) for n in (8, 16, 32, 64))])
def converted(request, tmp_path_factory):
    """``(folder, file name)`` of the Verilog of an array: 2x3 (array parameters of its own), else the
    default configuration at that size."""
    rows, cols = map(int, request.param.split("x"))
    if (rows, cols) == (2, 3):
        text = elaborate(Block("edgetrain_pe_array", lambda c: PEArray(rows=2, cols=3, max_k=64), ""), None)
    else:
        text = elaborate("pe_array", apply_overrides(preset("default"), [f"pe.rows={rows}", f"pe.cols={cols}"]))
    folder = tmp_path_factory.mktemp(f"pe_array_{request.param}")
    (folder / "pe_array.v").write_text(text)
    return folder, "pe_array.v"


def test_verilator_lint(converted):
    available, reason = simulator_status("verilator")
    if not available:
        pytest.skip(reason)
    folder, name = converted
    proc = subprocess.run(["verilator", "--lint-only", "-Wall", "-Wno-fatal", "--top-module",
                           BLOCKS["pe_array"].top, name], cwd=folder, env={**os.environ, **_verilator_env()},
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0 and "%Error" not in proc.stderr, proc.stderr[-3000:]
    kinds = set(re.findall(r"%Warning-([A-Z0-9_]+)", proc.stderr))
    assert kinds <= LINT_WAIVERS, sorted(kinds - LINT_WAIVERS)


def test_icarus_accepts(converted):
    available, reason = simulator_status("icarus")
    if not available:
        pytest.skip(reason)
    folder, name = converted
    proc = subprocess.run(["iverilog", "-g2012", "-s", BLOCKS["pe_array"].top, "-o", "pe_array.vvp", name],
                          cwd=folder, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0 and (folder / "pe_array.vvp").exists(), proc.stderr[-3000:]
    assert "error" not in proc.stderr.lower(), proc.stderr[-3000:]
