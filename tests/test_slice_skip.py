"""Slice-skipping PE (hw.slice_skip): amaranth.sim against golden.sparsity, and its cocotb bench."""

import dataclasses
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import sparsity
from hw.config import apply_overrides, preset
from hw.slice_skip import STAGE_DELAYS_NS, SliceSkipPE
from verif.runner import run_bench

from .sim_streams import stream_put


DEPTHS = range(len(STAGE_DELAYS_NS))
DEEPEST = DEPTHS[-1]


def rtl_slice_skip(dut, dots, pairs, *, stall=0.3, seed=0):
    """Dot products of ``dots`` [(a, b)] through the PE; returns (results, cycles from the first input
    transfer to the last output transfer, both counted)."""
    rng = random.Random(seed)
    got, first, last = [], [], []

    async def source(ctx):
        for a, b in dots:
            a_beats, b_beats = sparsity.beats(a, pairs), sparsity.beats(b, pairs)
            for k, (a_beat, b_beat) in enumerate(zip(a_beats, b_beats)):
                await stream_put(ctx, dut.i, {"a": a_beat, "b": b_beat, "last": k == len(a_beats) - 1},
                                 rng=rng, stall=stall)

    async def sink(ctx):
        cycle = 0
        while len(got) < len(dots):
            ctx.set(dut.o.ready, rng.random() >= stall)
            *_, iv, ir, valid, ready, payload = await ctx.tick().sample(dut.i.valid, dut.i.ready, dut.o.valid,
                                                                         dut.o.ready, dut.o.payload)
            if iv and ir and not first:
                first.append(cycle)
            if valid and ready:
                got.append(int(payload))
                last.append(cycle)
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source, background=True)
    sim.add_testbench(sink)
    sim.run()
    return got, last[-1] - first[0] + 1


def _slice_dots(rng, bits, pairs, count):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    dots = []
    for k in range(count):
        length = pairs * int(rng.integers(1, 4))
        scale = (hi, 1000, 100, 7, 0)[k % 5]
        a = rng.integers(-min(scale, hi), min(scale, hi) + 1, length)
        b = rng.integers(lo, hi + 1, length)
        a[rng.random(length) < 0.2] = lo
        b[rng.random(length) < 0.3] = 0
        dots.append((a, b))
    return dots


@pytest.mark.parametrize("stages", DEPTHS)
@pytest.mark.parametrize("bits, pairs, slots", [(16, 8, 16), (8, 4, 4), (12, 5, 10), (4, 3, 1)])
def test_sim_slice_skip_exact(bits, pairs, slots, stages):
    dots = _slice_dots(np.random.default_rng(bits + pairs), bits, pairs, 20)
    got, _ = rtl_slice_skip(SliceSkipPE(bits=bits, pairs=pairs, slots=slots, stages=stages), dots, pairs,
                            seed=stages)
    assert got == [int(np.dot(a.astype(object), b.astype(object))) for a, b in dots]


@pytest.mark.parametrize("stages", DEPTHS)
def test_sim_slice_skip_schedule(stages):
    # No stalls: one cycle per group of golden.sparsity.slice_skip_groups, beats and dot products back to
    # back; plus the cycle that takes the first beat and the latency of the last result.
    bits, pairs = 16, 8
    dots = _slice_dots(np.random.default_rng(3), bits, pairs, 15)
    _, cycles = rtl_slice_skip(SliceSkipPE(bits=bits, pairs=pairs, slots=16, stages=stages), dots, pairs,
                               stall=0.0)
    a_beats = [beat for a, _ in dots for beat in sparsity.beats(a, pairs)]
    b_beats = [beat for _, b in dots for beat in sparsity.beats(b, pairs)]
    groups = sparsity.slice_skip_groups(a_beats, b_beats, bits, 16)
    assert cycles == 1 + sum(len(g) for g in groups) + sparsity.slice_skip_latency(stages)


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(bits=6), ValueError, "Operand width must be one of 4, 8, 12, 16, not 6"),
    (dict(stages="1"), TypeError, "Stages must be an integer, not '1'"),
    (dict(stages=False), TypeError, "Stages must be an integer, not False"),
    (dict(stages=-1), ValueError, f"Stages must be from 0 to {DEEPEST}, not -1"),
    (dict(stages=DEEPEST + 1), ValueError, f"Stages must be from 0 to {DEEPEST}, not {DEEPEST + 1}"),
])
def test_init_wrong(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        SliceSkipPE(**kwargs)


def test_init_stages():
    assert SliceSkipPE().stages == 0
    assert SliceSkipPE(stages=DEEPEST).stages == DEEPEST


def test_slice_skip_latency():
    assert [sparsity.slice_skip_latency(d) for d in range(3)] == [1, 2, 3]
    with pytest.raises(ValueError, match="Stages must be a non-negative integer, not -1"):
        sparsity.slice_skip_latency(-1)


def test_bench_slice_skip(simulator):
    result = run_bench("slice_skip", preset("small"), simulator)
    assert result.tests >= 2 and result.passed, f"seed {result.seed}, log {result.run_dir}"


def test_bench_deepest(simulator):
    config = apply_overrides(preset("small"), [f"pipeline.slice_skip={DEEPEST}"])
    result = run_bench("slice_skip", dataclasses.replace(config, name="small-deep"), simulator)
    assert result.tests >= 2 and result.passed, f"seed {result.seed}, log {result.run_dir}"
