"""What every cocotb bench shares: configuration, stall probability, seeded random sources, clock, reset."""

import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from hw.config import Config
from verif.streams import StreamSink, StreamSource


__all__ = ["BenchTB"]


class BenchTB:
    """Base of the benches' TB classes.

    Reads the configuration from ``EDGETRAIN_CONFIG`` (the ``config.json`` the runner writes in the
    run's folder) into ``config``; the stall probability of the stream drivers is ``stall`` if given, else
    ``EDGETRAIN_STALL`` (default 0.3); ``rng`` and ``np_rng`` are seeded with cocotb's logged random seed;
    the clock runs with a period of :attr:`PERIOD_NS`.
    """
    PERIOD_NS = 10

    def __init__(self, dut, *, stall=None):
        self.dut = dut
        self.config = Config.from_json_file(os.environ["EDGETRAIN_CONFIG"])
        self.stall = float(os.environ.get("EDGETRAIN_STALL", "0.3")) if stall is None else stall
        seed = getattr(cocotb, "RANDOM_SEED", 0)
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        Clock(dut.clk, self.PERIOD_NS, unit="ns").start()

    def source(self, name):
        return StreamSource(self.dut, name, self.dut.clk, stall=self.stall, rng=self.rng)

    def sink(self, name, callback=None):
        return StreamSink(self.dut, name, self.dut.clk, stall=self.stall, rng=self.rng, callback=callback,
                          period_ns=self.PERIOD_NS)

    def cycles_between(self, t0, t1):
        """Clock edges from time ``t0`` to time ``t1`` (ns), both edges counted."""
        return round((t1 - t0) / self.PERIOD_NS) + 1

    async def wait_until(self, condition, timeout_cycles, settle=5):
        """Wait, a clock edge at a time, until ``condition()`` holds or ``timeout_cycles`` edges have passed,
        then ``settle`` more cycles (so that a surplus output would show); returns whether it held."""
        for _ in range(timeout_cycles):
            if condition():
                held = True
                break
            await RisingEdge(self.dut.clk)
        else:
            held = condition()
        if settle:
            await ClockCycles(self.dut.clk, settle)
        return held

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
