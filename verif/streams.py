"""cocotb drivers for ``amaranth.lib.stream`` ports: a source and a sink with random stalls.

A stream port ``x`` of the generated Verilog is the three signals ``x__payload``, ``x__valid`` and
``x__ready``. Payloads are plain integers here; benches pack and unpack them with the block's
``amaranth.lib.data`` layouts (``Layout.const(...).as_bits()``, ``Layout.from_bits(...)``).

A transfer happens on a rising clock edge where both ``valid`` and ``ready`` are high; both sides sample
the handshake in the read-only phase before the edge and change their outputs only after it.
"""

import random
from collections import deque

import cocotb
from cocotb.triggers import Event, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time


__all__ = ["StreamSource", "StreamSink"]


class _StreamPort:
    def __init__(self, dut, name, clk, stall, rng):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clk = clk
        self.stall = stall
        self.rng = rng or random.Random()
        self.times = []


class StreamSource(_StreamPort):
    """Drives ``<name>__valid``/``__payload``; holds ``valid`` low for a random number of cycles between
    transfers with probability ``stall`` per cycle (a bubble), never drops ``valid`` once raised.
    ``times`` holds the simulation time (ns) of the clock edge of each transfer."""

    def __init__(self, dut, name, clk, *, stall=0.0, rng=None):
        super().__init__(dut, name, clk, stall, rng)
        self.queue = deque()
        self.sent = 0
        self._idle = Event()
        self._idle.set()
        self.valid.value = 0
        self._task = cocotb.start_soon(self._run())

    def send(self, payload):
        self.queue.append(int(payload))
        self._idle.clear()

    async def wait_idle(self):
        await self._idle.wait()

    async def _run(self):
        offering = False
        await RisingEdge(self.clk)
        while True:
            if not offering:
                if self.queue and self.rng.random() >= self.stall:
                    offering = True
                    self.valid.value = 1
                    self.payload.value = self.queue[0]
                else:
                    self.valid.value = 0
                    if not self.queue:
                        self._idle.set()
            await ReadOnly()
            fire = offering and int(self.ready.value)
            await RisingEdge(self.clk)
            if fire:
                self.queue.popleft()
                self.sent += 1
                self.times.append(get_sim_time("ns"))
                offering = False


class StreamSink(_StreamPort):
    """Drives ``<name>__ready`` (low with probability ``stall`` each cycle) and records every transfer's
    payload, in order, as an integer in ``items``, and the time (ns) of its clock edge in ``times``;
    ``callback(payload)`` is called for each."""

    def __init__(self, dut, name, clk, *, stall=0.0, rng=None, callback=None, period_ns=10):
        super().__init__(dut, name, clk, stall, rng)
        self.callback = callback
        self.period_ns = period_ns
        self.items = []
        self.ready.value = 0
        self._task = cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            self.ready.value = int(self.rng.random() >= self.stall)
            await ReadOnly()
            if int(self.valid.value) and int(self.ready.value):
                payload = self.payload.value.to_unsigned()
                self.items.append(payload)
                self.times.append(get_sim_time("ns") + self.period_ns)   # the edge that ends this cycle
                if self.callback:
                    self.callback(payload)
            await RisingEdge(self.clk)
