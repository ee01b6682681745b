"""amaranth.sim host for the TrainCore: AXI4-Lite reads and writes and AXI4-Stream beats driven from a
testbench, with the register driver and :class:`verif.core_host.CoreHost` on top."""

from verif.core_host import CoreHost


class SimAXIL:
    """Single-outstanding AXI4-Lite master on a TrainCore's flat ``s_axil_*`` ports (amaranth.sim ctx)."""

    def __init__(self, ctx, dut, *, timeout=2000):
        self.ctx, self.dut, self.timeout = ctx, dut, timeout
        self.errors = []

    def _p(self, name):
        return getattr(self.dut, f"s_axil_{name}")

    async def _wait(self, signal):
        for _ in range(self.timeout):
            if self.ctx.get(signal):
                return
            await self.ctx.tick()
        raise TimeoutError(f"AXI4-Lite handshake on {signal} timed out")

    async def write_resp(self, addr, value):
        ctx = self.ctx
        ctx.set(self._p("awaddr"), addr)
        ctx.set(self._p("awvalid"), 1)
        ctx.set(self._p("wdata"), value)
        ctx.set(self._p("wstrb"), 0xF)
        ctx.set(self._p("wvalid"), 1)
        ctx.set(self._p("bready"), 1)
        aw = w = False
        for _ in range(self.timeout):
            *_, aw_rdy, w_rdy, bvalid, bresp = await ctx.tick().sample(self._p("awready"), self._p("wready"),
                                                                   self._p("bvalid"), self._p("bresp"))
            if ctx.get(self._p("awvalid")) and aw_rdy:
                aw = True
            if ctx.get(self._p("wvalid")) and w_rdy:
                w = True
            if aw:
                ctx.set(self._p("awvalid"), 0)
            if w:
                ctx.set(self._p("wvalid"), 0)
            if bvalid:
                ctx.set(self._p("bready"), 0)
                return bresp
        raise TimeoutError("AXI4-Lite write timed out")

    async def read_resp(self, addr):
        ctx = self.ctx
        ctx.set(self._p("araddr"), addr)
        ctx.set(self._p("arvalid"), 1)
        ctx.set(self._p("rready"), 1)
        for _ in range(self.timeout):
            *_, ar_rdy, rvalid, rdata, rresp = await ctx.tick().sample(self._p("arready"), self._p("rvalid"),
                                                                  self._p("rdata"), self._p("rresp"))
            if ctx.get(self._p("arvalid")) and ar_rdy:
                ctx.set(self._p("arvalid"), 0)
            if rvalid:
                ctx.set(self._p("rready"), 0)
                return rdata, rresp
        raise TimeoutError("AXI4-Lite read timed out")

    async def write(self, addr, value):
        resp = await self.write_resp(addr, value)
        if resp:
            raise RuntimeError(f"SLVERR writing {value:#x} to {addr:#x}")

    async def read(self, addr):
        data, resp = await self.read_resp(addr)
        if resp:
            raise RuntimeError(f"SLVERR reading {addr:#x}")
        return data


async def stream_samples(ctx, dut, beats, *, rng=None, stall=0.0, timeout=200000):
    """Send AXI4-Stream beats ``(tdata, tlast)`` on ``s_axis_*`` with random bubbles."""
    for data, last in beats:
        while rng is not None and rng.random() < stall:
            await ctx.tick()
        ctx.set(dut.s_axis_tdata, data)
        ctx.set(dut.s_axis_tlast, int(last))
        ctx.set(dut.s_axis_tvalid, 1)
        for _ in range(timeout):
            *_, ready = await ctx.tick().sample(dut.s_axis_tvalid, dut.s_axis_tready)
            if ready:
                break
        else:
            raise TimeoutError("AXI4-Stream beat not taken")
        ctx.set(dut.s_axis_tvalid, 0)


def sim_host(ctx, dut, config):
    bus = SimAXIL(ctx, dut)
    regs = dut.regmap.driver(bus.read, bus.write)
    return CoreHost(regs, config), bus
