"""dReLU mask buffer and EP row skipper (hw.row_skip): amaranth.sim against golden.sparsity, and its cocotb bench."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import sparsity
from hw.config import preset
from hw.row_skip import RowSkipper
from verif.runner import run_bench

from .sim_streams import stream_put

def rtl_row_skip(dut, masks, lanes, *, stall=0.3, seed=0):
    """Write each mask, list its rows; returns (rows per mask, cycles per listing from start to done)."""
    rng = random.Random(seed)
    lists, cycles = [], []

    async def bench(ctx):
        for mask in masks:
            words = sparsity.mask_words(mask, lanes)
            for k, word in enumerate(words):
                await stream_put(ctx, dut.mask, {"bits": word, "last": k == len(words) - 1}, rng=rng, stall=stall)
            await stream_put(ctx, dut.start, 0)
            rows, n = [], 0
            while True:
                ctx.set(dut.o.ready, rng.random() >= stall)
                *_, valid, ready, payload = await ctx.tick().sample(dut.o.valid, dut.o.ready, dut.o.payload)
                n += 1
                if valid and ready:
                    if payload.done:
                        break
                    rows.append(int(payload.index))
            ctx.set(dut.o.ready, 0)
            lists.append(rows)
            cycles.append(n)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return lists, cycles


@pytest.mark.parametrize("lanes", [1, 4, 16])
def test_sim_row_skip(lanes):
    rng = np.random.default_rng(lanes)
    masks = [rng.random(int(rng.integers(1, 60))) >= s for s in (0.0, 0.5, 0.9, 1.0) for _ in range(3)]
    masks.append(np.zeros(0, dtype=bool))
    dut = RowSkipper(lanes=lanes, max_rows=64)
    lists, _ = rtl_row_skip(dut, masks, lanes)
    assert lists == [sparsity.ep_rows(mask) for mask in masks]


def test_sim_row_skip_cycles():
    # No stalls: one row per cycle, plus one cycle per word without a set bit, start and done.
    rng = np.random.default_rng(9)
    masks = [rng.random(256) >= 0.5, np.ones(256, dtype=bool), np.zeros(256, dtype=bool)]
    dut = RowSkipper(lanes=16, max_rows=256)
    lists, cycles = rtl_row_skip(dut, masks, 16, stall=0.0)
    for mask, n in zip(masks, cycles):
        empty_words = sum(not mask[k:k + 16].any() for k in range(0, 256, 16))
        assert n == len(sparsity.ep_rows(mask)) + empty_words + 2


def test_bench_row_skip(simulator):
    result = run_bench("row_skip", preset("small"), simulator)
    assert result.tests >= 2 and result.passed, f"seed {result.seed}, log {result.run_dir}"
