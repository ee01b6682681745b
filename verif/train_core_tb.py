"""What every cocotb bench of the TrainCore shares: an SoC's view of the core.

:class:`CoreTB` drives the core only through its ports, as an SoC would: cocotbext-axi's ``AxiLiteMaster``
on ``s_axil_*`` (random pauses on all five channels), an ``AxiStreamSource`` on ``s_axis_*`` (random
pauses), ``irq`` watched. On top, the register driver generated from :func:`hw.train_core.register_map`
and :class:`verif.core_host.CoreHost`, so the bench addresses registers and fields by name.
"""

import random

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamFrame, AxiStreamSource

from hw.axil import RESP_OKAY
from hw.train_core import register_map
from verif.bench import BenchTB
from verif.core_host import CoreHost, sample_beats


__all__ = ["CoreTB", "BusError"]


class BusError(RuntimeError):
    """An AXI4-Lite access answered SLVERR where the bench expected OKAY."""


def _pauses(rng, stall):
    while True:
        yield rng.random() < stall


class CoreTB(BenchTB):
    """Clock, reset, AXI4-Lite master, AXI4-Stream source, register driver and host of a TrainCore bench.

    ``stall`` (or ``EDGETRAIN_STALL``, default 0.3) is the pause probability of every AXI channel.
    """

    def __init__(self, dut, *, stall=None):
        super().__init__(dut, stall=stall)
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        for channel in (self.axil.write_if.aw_channel, self.axil.write_if.w_channel, self.axil.write_if.b_channel,
                        self.axil.read_if.ar_channel, self.axil.read_if.r_channel):
            channel.set_pause_generator(_pauses(random.Random(self.rng.random()), self.stall))
        self.axis = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        self.axis.set_pause_generator(_pauses(random.Random(self.rng.random()), self.stall))
        self.regmap = register_map(self.config)
        self.regs = self.regmap.driver(self.read, self.write)
        self.host = CoreHost(self.regs, self.config)

    # -- the bus ----------------------------------------------------------------------------------------
    async def read_resp(self, addr):
        """Read a word: ``(value, resp)``."""
        result = await self.axil.read(addr, 4)
        return int.from_bytes(result.data, "little"), int(result.resp)

    async def write_resp(self, addr, value):
        result = await self.axil.write(addr, int(value).to_bytes(4, "little"))
        return int(result.resp)

    async def read(self, addr):
        value, resp = await self.read_resp(addr)
        if resp != RESP_OKAY:
            raise BusError(f"SLVERR reading {addr:#x}")
        return value

    async def write(self, addr, value):
        resp = await self.write_resp(addr, value)
        if resp != RESP_OKAY:
            raise BusError(f"SLVERR writing {value:#x} to {addr:#x}")

    # -- runs -------------------------------------------------------------------------------------------
    async def send_samples(self, codes, labels):
        """Queue the samples (codes ``samples x features``, labels) on the AXI4-Stream, one frame each."""
        beats = sample_beats(codes, labels)
        frame = []
        for data, last in beats:
            frame.append(data)
            if last:
                await self.axis.send(AxiStreamFrame(b"".join(w.to_bytes(4, "little") for w in frame)))
                frame = []

    async def wait_done(self, timeout_cycles):
        """Wait for the end of the run (``status.running`` low, polled every 64 cycles); returns the cycles
        waited, or raises TimeoutError."""
        waited = 0
        while waited < timeout_cycles:
            await ClockCycles(self.dut.clk, 64)
            waited += 64
            if not (await self.host.status())["running"]:
                return waited
        raise TimeoutError(f"the run did not end within {timeout_cycles} cycles")

    async def wait_irq(self, timeout_cycles):
        """Wait until ``irq`` is high; returns whether it rose within ``timeout_cycles``."""
        for _ in range(timeout_cycles):
            if int(self.dut.irq.value):
                return True
            await RisingEdge(self.dut.clk)
        return bool(int(self.dut.irq.value))

    async def run(self, trainer, batches, *, timeout_cycles=2_000_000, golden=True):
        """One run of ``batches`` (index arrays into ``trainer``'s training set): start, stream the samples,
        wait for the end; the golden model runs the same steps when ``golden``."""
        if golden:
            trainer.begin_run()
            for idx in batches:
                trainer.step_codes(trainer.x_train[idx].T, trainer.y_train[idx])
        await self.regs.write_fields("steps", count=len(batches))
        await self.host.start()
        for idx in batches:
            await self.send_samples(trainer.x_train[idx], trainer.y_train[idx])
        return await self.wait_done(timeout_cycles)

    async def reset(self):
        await super().reset()
        await ClockCycles(self.dut.clk, 2)


def start_soon(coro):
    return cocotb.start_soon(coro)
