import itertools
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import pe_array as golden
from golden.dfxp import PRECISIONS, code_range
from hw.config import apply_overrides, preset
from hw.pe_array import PRECISION_CODES, Mode, PEArray
from verif.runner import run_bench

from .sim_streams import stream_get, stream_put

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

    async def sink(ctx):
        for _ in range(len(jobs) * dut.rows):
            payload = await stream_get(ctx, dut.o, rng=rng, stall=stall)
            rows_out.append(([int(v) for v in payload.data], payload.last))

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
            for r in range(dut.rows):
                data, last = next(it)
                assert last == (r == dut.rows - 1)
                out[job.m0 + r, job.n0:job.n0 + dut.cols] = data
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


def test_sim_all_modes_and_pairs():
    dut = PEArray(rows=2, cols=3, max_k=64)
    cases = _cases(np.random.default_rng(2), 2, 3)
    for got, want in zip(rtl_gemms(dut, cases), ref_gemms(cases)):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("stall", [0.0, 0.3])
def test_sim_two_drain_buffers(stall):
    # Short reductions back to back: a finished tile waits behind the draining one, nothing is lost.
    dut = PEArray(rows=2, cols=3, max_k=64, drain_buffers=2)
    cases = _cases(np.random.default_rng(7), 2, 3, pairs=[(8, 8), (16, 16), (4, 8), (12, 4)])
    for got, want in zip(rtl_gemms(dut, cases, stall=stall), ref_gemms(cases)):
        assert np.array_equal(got, want)


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


def test_bench_subset_of_precisions(simulator):
    # A generator option: an array built for 8- and 16-bit operands only.
    config = apply_overrides(preset("small"), ["name=small-8-16", "pe.precisions=[8, 16]", "pe.cols=2"])
    result = run_bench("pe_array", config, simulator)
    assert result.passed, f"{result.failed} of {result.tests} failed (seed {result.seed}, log {result.run_dir})"


@pytest.mark.slow
def test_bench_default_config(simulator):
    # The full-size default array (8x8): a long Verilator build, so kept out of the default run.
    result = run_bench("pe_array", preset("default"), simulator)
    assert result.passed, f"{result.failed} of {result.tests} failed (seed {result.seed}, log {result.run_dir})"
