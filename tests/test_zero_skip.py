"""Input zero-skip unit (hw.zero_skip): amaranth.sim against golden.sparsity, and its cocotb bench."""

import dataclasses
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import sparsity
from hw.config import apply_overrides, preset
from hw.zero_skip import STAGE_DELAYS_NS, ZeroSkip
from verif.runner import run_bench

from .sim_streams import stream_get, stream_put


DEPTHS = range(len(STAGE_DELAYS_NS))
DEEPEST = DEPTHS[-1]


def rtl_zero_skip(dut, vectors, weights, *, window, stall=0.3, seed=0):
    rng = random.Random(seed)
    beats = []
    total = len(sparsity.zero_skip_beats(vectors, dut._slots))

    async def writer(ctx):
        for addr, w in enumerate(weights):
            await stream_put(ctx, dut.w, {"addr": addr, "data": int(w)})
        for vector in vectors:
            chunks = sparsity.beats(vector, window)
            for k, chunk in enumerate(chunks):
                await stream_put(ctx, dut.i, {"values": chunk, "last": k == len(chunks) - 1},
                                 rng=rng, stall=stall)

    async def reader(ctx):
        await ctx.tick().repeat(len(weights) + 2)
        while len(beats) < total:
            beat = await stream_get(ctx, dut.o, rng=rng, stall=stall)
            beats.append(([(int(s.value), int(s.index), int(s.weight)) for s in beat.slots if s.valid],
                          bool(beat.last)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(writer, background=True)
    sim.add_testbench(reader)
    sim.run()
    return beats


@pytest.mark.parametrize("stages", DEPTHS)
@pytest.mark.parametrize("window, slots", [(8, 4), (4, 4), (6, 1), (16, 3)])
def test_sim_zero_skip(window, slots, stages):
    rng = np.random.default_rng(window * 10 + slots)
    depth = 40
    weights = rng.integers(-(1 << 11), 1 << 11, depth)
    vectors = []
    for s in (0.0, 0.3, 0.6, 0.9, 1.0):
        for _ in range(3):
            length = int(rng.integers(1, depth + 1))
            v = rng.integers(-(1 << 11), 1 << 11, length) * (rng.random(length) >= s)
            vectors.append(v)
    dut = ZeroSkip(window=window, slots=slots, width=12, weight_width=12, depth=depth, stages=stages)
    got = rtl_zero_skip(dut, vectors, weights, window=window, seed=stages)
    want = sparsity.zero_skip_beats(vectors, slots)
    assert [([(v, i) for v, i, _ in pairs], last) for pairs, last in got] == want
    assert all(w == weights[i] for pairs, _ in got for _, i, w in pairs)
    # The dot products from the slots equal the dense ones.
    dots, acc = [], 0
    for pairs, last in got:
        acc += sum(v * w for v, _, w in pairs)
        if last:
            dots.append(acc)
            acc = 0
    assert dots == [int(np.dot(v, weights[:len(v)])) for v in vectors]


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(window=2, slots=4), ValueError, "Window must be at least the slot count \\(4\\), not 2"),
    (dict(slots=0), ValueError, "Slot count must be at least 1, not 0"),
    (dict(depth="8"), TypeError, "Depth must be an integer, not '8'"),
    (dict(stages=1.0), TypeError, "Stages must be an integer, not 1.0"),
    (dict(stages=True), TypeError, "Stages must be an integer, not True"),
    (dict(stages=-1), ValueError, f"Stages must be from 0 to {DEEPEST}, not -1"),
    (dict(stages=DEEPEST + 1), ValueError, f"Stages must be from 0 to {DEEPEST}, not {DEEPEST + 1}"),
])
def test_init_wrong(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        ZeroSkip(**kwargs)


def test_init_stages():
    assert ZeroSkip().stages == 0
    assert ZeroSkip(stages=DEEPEST).stages == DEEPEST


def _throughput(stages, vectors, window=8, slots=3):
    """Cycles from the first input transfer to the last output transfer, without stalls."""
    dut = ZeroSkip(window=window, slots=slots, width=12, weight_width=12, depth=64, stages=stages)
    cycles = {"first": None, "last": None}

    async def writer(ctx):
        for vector in vectors:
            chunks = sparsity.beats(vector, window)
            for k, chunk in enumerate(chunks):
                await stream_put(ctx, dut.i, {"values": chunk, "last": k == len(chunks) - 1})

    async def reader(ctx):
        total, got, cycle = len(sparsity.zero_skip_beats(vectors, slots)), 0, 0
        ctx.set(dut.o.ready, 1)
        while got < total:
            *_, iv, ir, ov = await ctx.tick().sample(dut.i.valid, dut.i.ready, dut.o.valid)
            if iv and ir and cycles["first"] is None:
                cycles["first"] = cycle
            if ov:
                got += 1
                cycles["last"] = cycle
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(writer, background=True)
    sim.add_testbench(reader)
    sim.run()
    return cycles["last"] - cycles["first"] + 1


def test_sim_throughput_every_depth():
    # Without stalls each stage adds one cycle of latency and nothing else: the same beats per cycle.
    rng = np.random.default_rng(7)
    vectors = []
    for s in (0.0, 0.5, 0.9):
        for _ in range(6):
            length = int(rng.integers(1, 65))
            vectors.append(rng.integers(1, 100, length) * (rng.random(length) >= s))
    base = _throughput(0, vectors)
    assert base >= sparsity.zero_skip_ideal_cycles(vectors, 3, 8)
    assert [_throughput(stages, vectors) - stages for stages in DEPTHS] == [base] * len(DEPTHS)


def test_bench_zero_skip(simulator):
    result = run_bench("zero_skip", preset("small"), simulator)
    assert result.tests >= 2 and result.passed, f"seed {result.seed}, log {result.run_dir}"


def test_bench_deepest(simulator):
    config = apply_overrides(preset("small"), [f"pipeline.zero_skip={DEEPEST}"])
    result = run_bench("zero_skip", dataclasses.replace(config, name="small-deep"), simulator)
    assert result.tests >= 2 and result.passed, f"seed {result.seed}, log {result.run_dir}"
