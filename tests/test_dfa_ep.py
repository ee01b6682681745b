import dataclasses
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.dfa_ep import dfa_ep, feedback_bits
from golden.training import feedback_matrix, feedback_seed
from hw.config import apply_overrides, preset
from hw.dfa_ep import STAGE_DELAYS_NS, DFAErrorEngine
from verif.runner import run_bench

from .sim_streams import stream_get, stream_put


DEPTHS = range(len(STAGE_DELAYS_NS))
DEEPEST = DEPTHS[-1]


def test_ref_matches_training_feedback():
    # The engine's B is the training model's B.
    e = np.arange(-5, 5)
    for layer in range(3):
        seed = feedback_seed(layer, 7)
        assert np.array_equal(dfa_ep(e, seed, 12), feedback_matrix(layer, 12, 10, 7).astype(np.int64) @ e)


def test_ref_bits_and_mask():
    bits = feedback_bits(1, 3, 4)
    state, expected = 1, []
    for _ in range(12):
        state = (state >> 1) ^ (0x80200003 if state & 1 else 0)
        expected.append(state & 1)
    assert bits.ravel().tolist() == expected
    out = dfa_ep([1, 2, 3, 4], 1, 3, mask=[1, 0, 1])
    assert out[1] == 0 and out[0] == sum((1 if b else -1) * v for b, v in zip(bits[0], [1, 2, 3, 4]))
    with pytest.raises(ValueError, match="LFSR seed must be a non-zero 32-bit integer, not 0"):
        feedback_bits(0, 1, 1)


def rtl_dfa_ep(dut, jobs, *, stall=0.3, seed=0):
    """Run jobs [(seed, e, mask)] through the engine with bubbles and back-pressure; rows per job."""
    rng = random.Random(seed)
    got = []
    total_rows = sum(len(mask) for _, _, mask in jobs)

    async def commands(ctx):
        for lfsr_seed, e, mask in jobs:
            await stream_put(ctx, dut.cmd, {"seed": lfsr_seed, "rows_m1": len(mask) - 1,
                                            "e": [int(v) for v in e]})

    async def masks(ctx):
        for _, _, mask in jobs:
            for bit in mask:
                await stream_put(ctx, dut.mask, int(bit), rng=rng, stall=stall)

    async def sink(ctx):
        while len(got) < total_rows:
            got.append(await stream_get(ctx, dut.o, rng=rng, stall=stall))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(commands, background=True)
    sim.add_testbench(masks, background=True)
    sim.add_testbench(sink)
    sim.run()
    return got


def _jobs(rng, cols, width, count, max_rows):
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    jobs = []
    for _ in range(count):
        rows = int(rng.integers(1, max_rows + 1))
        e = rng.integers(lo, hi + 1, cols)
        e[rng.random(cols) < 0.2] = rng.choice([lo, hi])
        jobs.append((int(rng.integers(1, 1 << 32)), e, rng.integers(0, 2, rows)))
    return jobs


@pytest.mark.parametrize("stages", DEPTHS)
@pytest.mark.parametrize("cols, width", [(10, 16), (1, 4), (7, 8), (5, 2)])
def test_sim_against_golden(cols, width, stages):
    jobs = _jobs(np.random.default_rng(cols), cols, width, 25, 20)
    got = rtl_dfa_ep(DFAErrorEngine(cols=cols, width=width, max_rows=32, stages=stages), jobs, seed=stages)
    want = [int(v) for lfsr_seed, e, mask in jobs for v in dfa_ep(e, lfsr_seed, len(mask), mask)]
    assert got == want


@pytest.mark.parametrize("stages", DEPTHS)
def test_sim_back_to_back_rows(stages):
    # No stalls: one row per cycle across commands, each row 1 + stages cycles after its mask bit.
    jobs = _jobs(np.random.default_rng(5), 10, 16, 6, 8)
    dut = DFAErrorEngine(cols=10, width=16, max_rows=8, stages=stages)
    taken, out = [], []

    async def commands(ctx):
        for lfsr_seed, e, mask in jobs:
            await stream_put(ctx, dut.cmd, {"seed": lfsr_seed, "rows_m1": len(mask) - 1, "e": [int(v) for v in e]})

    async def watch(ctx):
        total = sum(len(mask) for *_, mask in jobs)
        bits = [int(b) for *_, mask in jobs for b in mask]
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.mask.valid, 1)
        cycle = 0
        while len(out) < total:
            ctx.set(dut.mask.payload, bits[min(len(taken), total - 1)])
            *_, mv, mr, ov, payload = await ctx.tick().sample(dut.mask.valid, dut.mask.ready, dut.o.valid,
                                                               dut.o.payload)
            if mv and mr:
                taken.append(cycle)
            if ov:
                out.append((cycle, int(payload)))
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(commands, background=True)
    sim.add_testbench(watch)
    sim.run()
    assert [v for _, v in out] == [int(v) for s, e, m in jobs for v in dfa_ep(e, s, len(m), m)]
    assert [c for c, _ in out] == [c + 1 + stages for c in taken]
    assert taken == list(range(taken[0], taken[0] + len(taken)))


def test_init():
    dut = DFAErrorEngine(cols=10, width=16, max_rows=256)
    assert dut.cols == 10 and dut.out_width == 16 + 4 + 1 and dut.stages == 0
    assert DFAErrorEngine(cols=10, stages=DEEPEST).stages == DEEPEST


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(cols=0), ValueError, "Column count must be at least 1, not 0"),
    (dict(cols=4, width=1), ValueError, "Error width must be at least 2, not 1"),
    (dict(cols=4, max_rows=0), ValueError, "Row limit must be at least 1, not 0"),
    (dict(cols="4"), TypeError, "Column count must be an integer, not '4'"),
    (dict(cols=4, stages=True), TypeError, "Stages must be an integer, not True"),
    (dict(cols=4, stages=DEEPEST + 1), ValueError, f"Stages must be from 0 to {DEEPEST}, not {DEEPEST + 1}"),
])
def test_init_wrong(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        DFAErrorEngine(**kwargs)


def test_bench(simulator):
    result = run_bench("dfa_ep", preset("small"), simulator)
    assert result.tests == 2 and result.passed, f"seed {result.seed}, log {result.run_dir}"


def test_bench_deepest(simulator):
    config = apply_overrides(preset("small"), [f"pipeline.dfa_ep={DEEPEST}"])
    result = run_bench("dfa_ep", dataclasses.replace(config, name="small-deep"), simulator)
    assert result.tests == 2 and result.passed, f"seed {result.seed}, log {result.run_dir}"


@pytest.mark.parametrize("stages", DEPTHS)
def test_sim_lanes_share_the_rows(stages):
    # Three error vectors at once: each lane is the single-vector engine's result for its vector.
    rng = np.random.default_rng(11)
    cols, lanes, width = 10, 3, 16
    dut = DFAErrorEngine(cols=cols, width=width, max_rows=16, lanes=lanes, stages=stages)
    jobs = []
    for _ in range(6):
        rows = int(rng.integers(1, 17))
        jobs.append((int(rng.integers(1, 1 << 32)), rng.integers(-(1 << 15), 1 << 15, (lanes, cols)),
                     rng.integers(0, 2, (rows, lanes))))
    got = []
    total = sum(len(mask) for *_, mask in jobs)
    pyrng = random.Random(1)

    async def commands(ctx):
        for seed, e, _ in jobs:
            await stream_put(ctx, dut.cmd, {"seed": seed, "rows_m1": len(_) - 1,
                                            "e": [[int(v) for v in lane] for lane in e]})

    async def masks(ctx):
        for *_, mask in jobs:
            for bits in mask:
                await stream_put(ctx, dut.mask, sum(int(b) << k for k, b in enumerate(bits)), rng=pyrng, stall=0.3)

    async def sink(ctx):
        while len(got) < total:
            got.append([int(v) for v in await stream_get(ctx, dut.o, rng=pyrng, stall=0.3)])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(commands, background=True)
    sim.add_testbench(masks, background=True)
    sim.add_testbench(sink)
    sim.run()
    want = []
    for seed, e, mask in jobs:
        per_lane = [dfa_ep(e[k], seed, len(mask), mask[:, k]) for k in range(lanes)]
        want += [[int(per_lane[k][i]) for k in range(lanes)] for i in range(len(mask))]
    assert got == want
