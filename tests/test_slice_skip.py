"""Slice-skipping PE (hw.slice_skip): amaranth.sim against golden.sparsity, and its cocotb bench."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import sparsity
from hw.config import preset
from hw.slice_skip import SliceSkipPE
from verif.runner import run_bench

from .sim_streams import stream_put

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


@pytest.mark.parametrize("bits, pairs, slots", [(16, 8, 16), (8, 4, 4), (12, 5, 10), (4, 3, 1)])
def test_sim_slice_skip_exact(bits, pairs, slots):
    dots = _slice_dots(np.random.default_rng(bits + pairs), bits, pairs, 20)
    got, _ = rtl_slice_skip(SliceSkipPE(bits=bits, pairs=pairs, slots=slots), dots, pairs)
    assert got == [int(np.dot(a.astype(object), b.astype(object))) for a, b in dots]


def test_sim_slice_skip_schedule():
    # No stalls: one cycle per group of golden.sparsity.slice_skip_groups, beats and dot products back to
    # back; plus the cycle that takes the first beat and the one that offers the last result.
    bits, pairs = 16, 8
    dots = _slice_dots(np.random.default_rng(3), bits, pairs, 15)
    _, cycles = rtl_slice_skip(SliceSkipPE(bits=bits, pairs=pairs, slots=16), dots, pairs, stall=0.0)
    a_beats = [beat for a, _ in dots for beat in sparsity.beats(a, pairs)]
    b_beats = [beat for _, b in dots for beat in sparsity.beats(b, pairs)]
    groups = sparsity.slice_skip_groups(a_beats, b_beats, bits, 16)
    assert cycles == sum(len(g) for g in groups) + 2


def test_bench_slice_skip(simulator):
    result = run_bench("slice_skip", preset("small"), simulator)
    assert result.tests >= 2 and result.passed, f"seed {result.seed}, log {result.run_dir}"
