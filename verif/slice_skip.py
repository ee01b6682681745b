"""cocotb bench of the slice-skipping PE against exact integer dot products and
:func:`golden.sparsity.slice_skip_groups`.

Driver: beats of ``slice_pairs`` operand pairs on ``i`` (random bubbles); monitor: the ``o`` sink (random
back-pressure). Every dot product must be exact. Stimulus: random operands at every magnitude (full range,
small, zero) with extreme codes, and the DFXP error and activation codes of a training step of
:mod:`golden.training` (the weight-gradient GEMM's operands).

``EDGETRAIN_SS_RUNS`` (the path of a JSON file of named operand sets, for the benchmark) times each set
without stalls, from the first input transfer to the last result; the cycles go to ``EDGETRAIN_SS_OUT``.
"""

import json
import os

import cocotb
import numpy as np
from amaranth.hdl import signed
from amaranth.lib import data

from golden import sparsity
from hw.slice_skip import input_layout
from verif.bench import BenchTB


class SliceSkipTB(BenchTB):
    def __init__(self, dut, *, stall=None):
        super().__init__(dut, stall=stall)
        self.cfg = self.config.sparsity
        self.bits, self.pairs = self.cfg.slice_bits, self.cfg.slice_pairs
        self.in_l = input_layout(self.pairs, self.bits)
        self.out_l = data.ArrayLayout(signed(self.config.pe.acc_width), 1)
        self.i = self.source("i")
        self.o = self.sink("o")

    def send(self, dots):
        for a, b in dots:
            a_beats, b_beats = sparsity.beats(a, self.pairs), sparsity.beats(b, self.pairs)
            for k, (a_beat, b_beat) in enumerate(zip(a_beats, b_beats)):
                self.i.send(self.in_l.const({"a": a_beat, "b": b_beat, "last": k == len(a_beats) - 1}).as_bits())

    async def check(self, dots, first=0):
        await self.wait_until(lambda: len(self.o.items) >= first + len(dots),
                              100 * sum(len(a) for a, _ in dots) + 100, settle=3)
        got = [int(self.out_l.from_bits(v)[0]) for v in self.o.items[first:]]
        want = [int(np.dot(np.asarray(a, dtype=object), np.asarray(b, dtype=object))) for a, b in dots]
        assert len(got) == len(want), f"{len(got)} results, {len(want)} expected"
        bad = [k for k, (g, w) in enumerate(zip(got, want)) if g != w]
        assert not bad, f"{len(bad)} wrong dot products, first {bad[0]}: {got[bad[0]]} != {want[bad[0]]}"


@cocotb.test()
async def random_operands(dut):
    tb = SliceSkipTB(dut)
    await tb.reset()
    lo, hi = -(1 << (tb.bits - 1)), (1 << (tb.bits - 1)) - 1
    dots = []
    for k in range(60):
        length = tb.rng.randint(1, 4 * tb.pairs)
        scale = (hi, hi >> 4, hi >> 8, 7, 1, 0)[k % 6]
        a = tb.np_rng.integers(-scale, scale + 1, length)
        b = tb.np_rng.integers(lo, hi + 1, length)
        a[tb.np_rng.random(length) < 0.15] = lo
        b[tb.np_rng.random(length) < 0.15] = tb.np_rng.choice([lo, hi, 0, -1])
        dots.append((a, b))
    tb.send(dots)
    await tb.check(dots)


@cocotb.test()
async def training_operands(dut):
    """WG operands of a DFA training step: each output error row against each input activation row."""
    from golden.training import TrainConfig, Trainer
    tb = SliceSkipTB(dut)
    await tb.reset()
    trainer = Trainer(TrainConfig(sizes=(64, 32, 10), algorithm="dfa", arithmetic="dfxp16"))
    record = {}
    trainer.step(trainer.data[0][:16], trainer.data[1][:16], record=record)
    shift = 16 - tb.bits
    e, a = record["e0.codes"] >> shift, record["a0.codes"] >> shift      # keep the top `bits` bits
    dots = [(e[i], a[j]) for i in range(0, e.shape[0], 4) for j in range(0, a.shape[0], 8)]
    tb.send(dots)
    await tb.check(dots)


@cocotb.test(skip="EDGETRAIN_SS_RUNS" not in os.environ)
async def throughput(dut):
    tb = SliceSkipTB(dut, stall=0.0)
    await tb.reset()
    with open(os.environ["EDGETRAIN_SS_RUNS"]) as f:
        sets = json.load(f)
    results, first = [], 0
    for name, dots in sets.items():
        start = len(tb.i.times)
        tb.send(dots)
        await tb.check(dots, first)
        first += len(dots)
        results.append({"name": name, "cycles": tb.cycles_between(tb.i.times[start], tb.o.times[first - 1])})
    with open(os.environ["EDGETRAIN_SS_OUT"], "w") as f:
        json.dump(results, f)
