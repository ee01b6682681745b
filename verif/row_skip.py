"""cocotb bench of the dReLU mask buffer and EP row skipper against :func:`golden.sparsity.ep_rows`.

Drivers: mask words on ``mask`` (random bubbles), ``start``; monitor: the ``o`` sink with random
back-pressure. Every listing must be exactly the rows whose mask bit is 1, in order, then ``done``.
Stimulus: random masks of every density and the ReLU derivatives of a training step of
:mod:`golden.training`; directed corners: a start with no layer stored (after reset, also once the memory
holds an old layer's words), the next layer's mask offered while
a listing runs (it must wait), a layer of exactly ``max_rows`` rows and one word more (the sticky
``error``, watched over several cycles).

``EDGETRAIN_RS_RUNS`` (the path of a JSON file of named mask sets, for the benchmark) times each listing
without stalls, from the ``start`` transfer to the ``done`` transfer; results go to ``EDGETRAIN_RS_OUT``.
"""

import json
import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from golden import sparsity
from hw.row_skip import mask_layout, row_layout
from verif.bench import BenchTB


class RowSkipTB(BenchTB):
    def __init__(self, dut, *, stall=None):
        super().__init__(dut, stall=stall)
        self.cfg = self.config.sparsity
        self.mask_l = mask_layout(self.cfg.mask_lanes)
        self.row_l = row_layout(self.cfg.max_rows)
        self.mask = self.source("mask")
        self.start = self.source("start")
        self.o = self.sink("o")

    async def listing(self, mask):
        """Write ``mask``, start, and return (rows listed, cycles from start to done)."""
        lanes = self.cfg.mask_lanes
        words = sparsity.mask_words(mask, lanes)
        for k, word in enumerate(words):
            self.mask.send(self.mask_l.const({"bits": word, "last": k == len(words) - 1}).as_bits())
        await self.mask.wait_idle()
        first = len(self.o.items)
        self.start.send(0)
        ended = await self.wait_until(
            lambda: len(self.o.items) > first and self.row_l.from_bits(self.o.items[-1]).done,
            100 * (len(words) * lanes + 4), settle=0)
        assert ended, "no done beat: the row skipper hung"
        items = [self.row_l.from_bits(v) for v in self.o.items[first:]]
        assert sum(int(i.done) for i in items) == 1
        cycles = self.cycles_between(self.start.times[-1], self.o.times[-1])
        return [int(i.index) for i in items[:-1]], cycles


@cocotb.test()
async def random_masks(dut):
    tb = RowSkipTB(dut)
    await tb.reset()
    for n in range(40):
        s = (0.0, 0.3, 0.5, 0.8, 0.95, 1.0)[n % 6]
        mask = tb.np_rng.random(tb.rng.randint(1, tb.cfg.max_rows)) >= s
        rows, _ = await tb.listing(mask)
        assert rows == sparsity.ep_rows(mask), f"mask {n}: rows differ from golden"
    assert not int(dut.error.value)


async def error_levels(tb, cycles=4):
    """``error`` over the next ``cycles`` clock cycles."""
    levels = []
    for _ in range(cycles):
        await ClockCycles(tb.dut.clk, 1)
        levels.append(int(tb.dut.error.value))
    return levels


@cocotb.test()
async def directed_corners(dut):
    tb = RowSkipTB(dut)
    await tb.reset()
    lanes, max_rows = tb.cfg.mask_lanes, tb.cfg.max_rows

    async def rows_until_done(first):
        ended = await tb.wait_until(
            lambda: len(tb.o.items) > first and tb.row_l.from_bits(tb.o.items[-1]).done, 100 * max_rows, settle=0)
        assert ended, "no done beat: the row skipper hung"
        items = [tb.row_l.from_bits(v) for v in tb.o.items[first:]]
        assert sum(int(i.done) for i in items) == 1
        return [int(i.index) for i in items[:-1]]

    # No layer stored since reset: the listing is the done beat alone.
    tb.start.send(0)
    assert await rows_until_done(0) == [], "a start with no layer stored must list no row"

    # The next layer's mask arrives while a listing runs: it waits, the listing is of the stored layer.
    for n in range(6):
        a = tb.np_rng.random(max_rows - n) >= 0.4
        b = tb.np_rng.random(tb.rng.randint(1, max_rows)) >= 0.6
        for k, word in enumerate(words := sparsity.mask_words(a, lanes)):
            tb.mask.send(tb.mask_l.const({"bits": word, "last": k == len(words) - 1}).as_bits())
        await tb.mask.wait_idle()
        first = len(tb.o.items)
        tb.start.send(0)
        await tb.start.wait_idle()
        for k, word in enumerate(words := sparsity.mask_words(b, lanes)):
            tb.mask.send(tb.mask_l.const({"bits": word, "last": k == len(words) - 1}).as_bits())
        assert await rows_until_done(first) == sparsity.ep_rows(a), f"overlap {n}: the listing changed"
        rows, _ = await tb.listing(b)
        assert rows == sparsity.ep_rows(b), f"overlap {n}: the next layer differs"
    assert await error_levels(tb) == [0] * 4

    # Reset forgets the stored layer (the memory still holds its words): again the done beat alone.
    rows, _ = await tb.listing(np.ones(max_rows, dtype=int))
    assert rows == list(range(max_rows))
    await tb.reset()
    first = len(tb.o.items)
    tb.start.send(0)
    assert await rows_until_done(first) == [], "a start after reset must list no row"

    # Exactly max_rows rows fit; one word more raises error, which stays up.
    full = tb.np_rng.random(max_rows) >= 0.5
    rows, _ = await tb.listing(full)
    assert rows == sparsity.ep_rows(full)
    assert await error_levels(tb) == [0] * 4, "error raised by a layer that fits"
    words = sparsity.mask_words(full, lanes) + [1]
    for k, word in enumerate(words):
        tb.mask.send(tb.mask_l.const({"bits": word, "last": k == len(words) - 1}).as_bits())
    await tb.mask.wait_idle()
    assert await error_levels(tb) == [1] * 4, "a layer of more than max_rows rows must raise error"


@cocotb.test()
async def training_masks(dut):
    from golden.training import TrainConfig, Trainer
    tb = RowSkipTB(dut)
    await tb.reset()
    trainer = Trainer(TrainConfig(sizes=(64, min(tb.cfg.max_rows, 32), 10), algorithm="dfa"))
    record = {}
    trainer.step(trainer.data[0][:8], trainer.data[1][:8], record=record)
    for col in range(record["drelu0"].shape[1]):
        mask = record["drelu0"][:, col]
        rows, _ = await tb.listing(mask)
        assert rows == sparsity.ep_rows(mask)


@cocotb.test(skip="EDGETRAIN_RS_RUNS" not in os.environ)
async def throughput(dut):
    tb = RowSkipTB(dut, stall=0.0)
    await tb.reset()
    with open(os.environ["EDGETRAIN_RS_RUNS"]) as f:
        sets = json.load(f)
    results = []
    for name, masks in sets.items():
        total = 0
        for mask in masks:
            rows, cycles = await tb.listing(np.asarray(mask))
            assert rows == sparsity.ep_rows(mask)
            total += cycles
        results.append({"name": name, "cycles": total})
    with open(os.environ["EDGETRAIN_RS_OUT"], "w") as f:
        json.dump(results, f)
