"""cocotb bench of the dReLU mask buffer and EP row skipper against :func:`golden.sparsity.ep_rows`.

Drivers: mask words on ``mask`` (random bubbles), ``start``; monitor: the ``o`` sink with random
back-pressure. Every listing must be exactly the rows whose mask bit is 1, in order, then ``done``.
Stimulus: random masks of every density and the ReLU derivatives of a training step of
:mod:`golden.training`.

``EDGETRAIN_RS_RUNS`` (the path of a JSON file of named mask sets, for the benchmark) times each listing
without stalls, from the ``start`` transfer to the ``done`` transfer; results go to ``EDGETRAIN_RS_OUT``.
"""

import json
import os

import cocotb
import numpy as np

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
