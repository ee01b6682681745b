"""cocotb bench of the DFA error-propagation engine against :func:`golden.dfa_ep.dfa_ep`.

Drivers: ``cmd`` (seed, row count, error vector) and ``mask`` (one dReLU bit per row) sources with random
bubbles; monitor: the ``o`` sink with random back-pressure; every row is compared with golden, in order.
Stimulus: random seeds and error vectors with extreme codes, random masks, and errors taken from a real
training step of :mod:`golden.training` (DFXP-16 codes of the output error, the layer seeds of the model).
"""


import cocotb
import numpy as np
from amaranth.hdl import signed
from amaranth.lib import data

from golden.dfa_ep import dfa_ep
from hw.dfa_ep import command_layout
from verif.bench import BenchTB


class DFAEngineTB(BenchTB):
    def __init__(self, dut, *, stall=None):
        super().__init__(dut, stall=stall)
        cfg = self.config.dfa
        self.cols, self.width, self.max_rows = cfg.classes, cfg.width, cfg.max_rows
        self.layout = command_layout(self.cols, self.width, self.max_rows)
        self.out_shape = signed(self.width + (self.cols - 1).bit_length() + 1)
        self.cmd = self.source("cmd")
        self.mask = self.source("mask")
        self.o = self.sink("o")
        self.expected = []

    def job(self, seed, e, mask):
        self.cmd.send(self.layout.const({"seed": int(seed), "rows_m1": len(mask) - 1,
                                         "e": [int(v) for v in e]}).as_bits())
        for bit in mask:
            self.mask.send(int(bit))
        self.expected += [int(v) for v in dfa_ep(e, seed, len(mask), mask)]

    async def finish(self, timeout_cycles=100_000):
        await self.wait_until(lambda: len(self.o.items) >= len(self.expected), timeout_cycles)
        layout = data.ArrayLayout(self.out_shape, 1)
        got = [int(layout.from_bits(item)[0]) for item in self.o.items]
        assert len(got) == len(self.expected), f"{len(got)} rows out, {len(self.expected)} expected"
        bad = [(i, g, e) for i, (g, e) in enumerate(zip(got, self.expected)) if g != e]
        assert not bad, f"{len(bad)} wrong rows, first: {bad[:3]}"


@cocotb.test()
async def random_jobs(dut):
    """Random seeds, error vectors (a fifth of the codes at the extremes), row counts and masks."""
    tb = DFAEngineTB(dut)
    await tb.reset()
    lo, hi = -(1 << (tb.width - 1)), (1 << (tb.width - 1)) - 1
    for n in range(120):
        rows = tb.rng.randint(1, tb.max_rows) if n % 10 else tb.max_rows
        e = tb.np_rng.integers(lo, hi + 1, tb.cols)
        e[tb.np_rng.random(tb.cols) < 0.2] = tb.np_rng.choice([lo, hi])
        mask = tb.np_rng.integers(0, 2, rows) if n % 7 else np.ones(rows, dtype=int)
        tb.job(tb.rng.randrange(1, 1 << 32), e, mask)
    await tb.finish()


@cocotb.test()
async def training_errors(dut):
    """Errors and dReLU masks from a real DFA training step, at the engine's code width."""
    from golden import dfxp
    from golden.training import TrainConfig, Trainer, feedback_seed

    tb = DFAEngineTB(dut)
    await tb.reset()
    sizes = (64, min(tb.max_rows, 32), tb.cols)
    trainer = Trainer(TrainConfig(sizes=sizes, algorithm="dfa", arithmetic="fp32"))
    x, y = trainer.data[0][:8], trainer.data[1][:8]
    record = {}
    trainer.step(x, y, record=record)
    frac = dfxp.initial_frac(record["e"], tb.width)
    codes = dfxp.quantize(record["e"], tb.width, frac)
    for col in range(codes.shape[1]):
        tb.job(feedback_seed(0), codes[:, col], record["drelu0"][:, col])
    await tb.finish()
