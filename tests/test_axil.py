"""AXILiteSlave and CSRBlock: constructors, amaranth.sim tests on the demo top (verif/axil_demo.py) against
its Python model, and the cocotb bench on both simulators."""

import random
from collections import Counter, deque
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.hdl import Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hw.axil import (AXIL_CHANNELS, RESP_OKAY, RESP_SLVERR, AXILiteSlave, axil_connect, axil_members,
                     axil_signature, bus_signature, request_layout)
from hw.regmap import CSRBlock, Field, Register, RegisterMap, Window
from verif.axil_demo import DEMO_ID, DEMO_MAP, EXT_ERROR_WORD, DemoModel, DemoTop
from verif.runner import run_design

from .sim_streams import stream_get, stream_put


_ROOT = Path(__file__).resolve().parent.parent


# -- constructors and interfaces ---------------------------------------------------------------------------

def test_axil_signature():
    sig = axil_signature(12)
    names = [name for signals in AXIL_CHANNELS.values() for name in signals]
    assert list(sig.members) == names and len(names) == 19
    outputs = {"awready", "wready", "bresp", "bvalid", "arready", "rdata", "rresp", "rvalid"}
    for name, member in sig.members.items():
        assert member.flow == (Out if name in outputs else In), name
    widths = {name: member.shape.width for name, member in sig.members.items()}
    assert widths["awaddr"] == widths["araddr"] == 12 and widths["wdata"] == widths["rdata"] == 32
    assert widths["wstrb"] == 4 and widths["awprot"] == widths["arprot"] == 3 and widths["bresp"] == 2
    assert axil_signature(8, 64).members["wstrb"].shape.width == 8


def test_axil_members_flat_ports():
    # A top with flat s_axil_* ports: the Verilog port names are the conventional ones.
    class Top(wiring.Component):
        def __init__(self):
            super().__init__(axil_members(addr_width=8))

        def elaborate(self, platform):
            from amaranth.hdl import Module
            m = Module()
            m.submodules.slave = slave = AXILiteSlave(addr_width=8)
            m.d.comb += axil_connect(self, slave.axil)
            m.d.comb += [slave.bus.req.ready.eq(1), slave.bus.resp.valid.eq(1)]
            return m

    top = Top()
    assert set(top.signature.members) == {f"s_axil_{n}" for s in AXIL_CHANNELS.values() for n in s}
    text = verilog.convert(top, name="top", emit_src=False)
    header = text[text.index("module top("):text.index(");")]
    for signals in AXIL_CHANNELS.values():
        for name in signals:
            assert f"s_axil_{name}" in header
    assert {m: n for m, n in axil_members(addr_width=8, prefix="m0_").items() if m == "m0_wdata"}


def test_init():
    slave = AXILiteSlave(addr_width=16)
    assert slave.addr_width == 16 and slave.data_width == 32 and slave.word_addr_width == 14
    assert slave.signature.members["bus"].signature == bus_signature(addr_width=14)
    assert request_layout(14).size == 14 + 1 + 32 + 4
    wide = AXILiteSlave(addr_width=16, data_width=64)
    assert wide.word_addr_width == 13
    csr = CSRBlock(regmap=DEMO_MAP)
    members = csr.signature.members
    assert csr.addr_width == DEMO_MAP.addr_width == 10
    assert members["ctrl_mode"].flow == Out and members["ctrl_mode"].init == 1
    assert members["status_count"].flow == In and members["ctrl_start"].flow == Out
    assert members["irq_error"].flow == Out and members["irq_error_set"].flow == In
    assert members["layer_size_rows"].shape == data.ArrayLayout(12, 4)
    assert members["layer_size_rows"].init == [1, 1, 1, 1]
    assert members["lane_level_level"].shape == data.ArrayLayout(8, 3)
    assert members["mem"].signature == bus_signature(addr_width=6)
    assert members["ext"].signature == bus_signature(addr_width=4)
    assert members["bus"].flow == In and members["lock"].flow == In


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(addr_width=2), ValueError, "Address width must be an integer from 3 to 64 for 32-bit data, not 2"),
    (dict(addr_width=3, data_width=64), ValueError,
     "Address width must be an integer from 4 to 64 for 64-bit data, not 3"),
    (dict(addr_width=65), ValueError, "Address width must be an integer from 3 to 64 for 32-bit data, not 65"),
    (dict(addr_width="8"), TypeError, "Address width must be an integer, not '8'"),
    (dict(addr_width=8, data_width=16), ValueError, r"Data width must be 32 or 64 \(AXI4-Lite\), not 16"),
    (dict(addr_width=8, data_width=32.0), TypeError, "Data width must be an integer, not 32.0"),
])
def test_init_wrong(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        AXILiteSlave(**kwargs)


def test_init_wrong_regmap():
    with pytest.raises(TypeError, match="Register map must be a RegisterMap, not 'demo'"):
        CSRBlock(regmap="demo")


def test_bus_signature_wrong():
    with pytest.raises(ValueError, match="Address width must be a non-negative integer, not -1"):
        bus_signature(addr_width=-1)
    with pytest.raises(TypeError, match="Address width must be an integer, not None"):
        bus_signature(addr_width=None)


# -- amaranth.sim: an AXI4-Lite master with random stalls on all five channels ------------------------------

class SimMaster:
    """AXI4-Lite master for amaranth.sim on the flat ``s_axil_*`` ports of ``dut``.

    One process per channel: AW, W and AR send queued items in order, each after its own delay and random
    idle cycles (probability ``stall``), never dropping valid; B and R hold ready low on random cycles.
    ``events`` records (cycle, channel, item) for each handshake.
    """

    def __init__(self, dut, *, rng, stall=0.3):
        self.dut, self.rng, self.stall = dut, rng, stall
        self.queues = {"aw": deque(), "w": deque(), "ar": deque()}
        self.b, self.r, self.events = [], [], []
        self.issued = {"write": 0, "read": 0}

    def port(self, name):
        return getattr(self.dut, f"s_axil_{name}")

    def write(self, addr, value, strb=0xF, *, aw_delay=0, w_delay=0):
        self.queues["aw"].append(({"awaddr": addr}, aw_delay))
        self.queues["w"].append(({"wdata": value, "wstrb": strb}, w_delay))
        self.issued["write"] += 1

    def read(self, addr, *, delay=0):
        self.queues["ar"].append(({"araddr": addr}, delay))
        self.issued["read"] += 1

    def add_to(self, sim):
        for channel in ("aw", "w", "ar"):
            sim.add_testbench(self._sender(channel), background=True)
        sim.add_testbench(self._receiver("b", ("bresp",), self.b), background=True)
        sim.add_testbench(self._receiver("r", ("rdata", "rresp"), self.r), background=True)

    def _sender(self, channel):
        async def process(ctx):
            cycle = 0
            while True:
                if not self.queues[channel]:
                    await ctx.tick()
                    cycle += 1
                    continue
                fields, delay = self.queues[channel].popleft()
                for _ in range(delay):
                    await ctx.tick()
                    cycle += 1
                while self.rng.random() < self.stall:
                    await ctx.tick()
                    cycle += 1
                for name, value in fields.items():
                    ctx.set(self.port(name), value)
                ctx.set(self.port(f"{channel}valid"), 1)
                while True:
                    *_, ready = await ctx.tick().sample(self.port(f"{channel}ready"))
                    cycle += 1
                    if ready:
                        break
                self.events.append((cycle, channel, fields))
                ctx.set(self.port(f"{channel}valid"), 0)
        return process

    def _receiver(self, channel, names, out):
        async def process(ctx):
            cycle = 0
            valid, ready = self.port(f"{channel}valid"), self.port(f"{channel}ready")
            while True:
                ctx.set(ready, self.rng.random() >= self.stall)
                _, _, v, r, *values = await ctx.tick().sample(valid, ready, *(self.port(n) for n in names))
                cycle += 1
                if v and r:
                    out.append(tuple(values) if len(values) > 1 else values[0])
                    self.events.append((cycle, channel, dict(zip(names, values))))
        return process

    async def wait(self, ctx, timeout=2000):
        """Until every issued access has its response."""
        for _ in range(timeout):
            if len(self.b) == self.issued["write"] and len(self.r) == self.issued["read"]:
                return
            await ctx.tick()
        raise AssertionError(f"{self.issued} issued, {len(self.b)} B and {len(self.r)} R received")


def _ext_target(dut, rng, stall, store, *, max_wait=6):
    """The ``ext`` window's target in amaranth.sim: random latency, word EXT_ERROR_WORD refused."""
    async def process(ctx):
        while True:
            req = await stream_get(ctx, dut.ext.req, rng=rng, stall=stall)
            for _ in range(rng.randrange(max_wait + 1)):
                await ctx.tick()
            word, error, rdata = int(req.addr), int(req.addr) == EXT_ERROR_WORD, 0
            if not error:
                if req.write:
                    store[word] = DemoModel._merge(store[word], int(req.wdata), int(req.wstrb))
                else:
                    rdata = store[word]
            await stream_put(ctx, dut.ext.resp, {"rdata": rdata, "error": error}, rng=rng, stall=stall)
    return process


def _pulse_counter(dut, model, counts):
    ports = model.ports("w1p")

    async def process(ctx):
        async for _, _, *values in ctx.tick().sample(*(Value.cast(getattr(dut, name)) for name, _, _ in ports)):
            for (name, reg, f), value in zip(ports, values):
                for i in range(reg.elements):
                    for b in range(f.width):
                        if value >> (i * f.width + b) & 1:
                            counts[reg.name, f.name, i, b] += 1
    return process


class DemoSim:
    """The demo top in amaranth.sim with the master, the ext target, a pulse counter and the model."""

    def __init__(self, *, seed=0, stall=0.3, max_wait=7):
        self.dut = DemoTop(max_wait=max_wait)
        self.rng = random.Random(seed)
        self.master = SimMaster(self.dut, rng=random.Random(seed + 1), stall=stall)
        self.model = DemoModel()
        self.pulses = Counter()
        self.sim = Simulator(self.dut)
        self.sim.add_clock(1e-6)
        self.master.add_to(self.sim)
        self.sim.add_testbench(_ext_target(self.dut, random.Random(seed + 2), stall, [0] * 16), background=True)
        self.sim.add_testbench(_pulse_counter(self.dut, self.model, self.pulses), background=True)

    def run(self, testbench):
        self.sim.add_testbench(testbench)
        self.sim.run()

    async def write(self, ctx, addr, value, strb=0xF, **delays):
        self.master.write(addr, value, strb, **delays)
        await self.master.wait(ctx)
        want = self.model.write(addr, value, strb)[1]
        assert self.master.b[-1] == want, f"write {addr:#x}: bresp {self.master.b[-1]}, want {want}"

    async def read(self, ctx, addr, **delays):
        self.master.read(addr, **delays)
        await self.master.wait(ctx)
        want = self.model.read(addr)
        assert self.master.r[-1] == want, f"read {addr:#x}: (rdata, rresp) {self.master.r[-1]}, want {want}"
        return self.master.r[-1][0]

    def set_port(self, ctx, name, values, reg, f):
        ctx.set(Value.cast(getattr(self.dut, name)), sum(v << (i * f.width) for i, v in enumerate(values)))

    def check_ports(self, ctx):
        for access in ("rw", "w1c"):
            for name, _, _ in self.model.ports(access):
                got = ctx.get(Value.cast(getattr(self.dut, name)))
                assert got == self.model.port_value(name), f"{name}: {got:#x}, want {self.model.port_value(name):#x}"
        assert +self.pulses == +self.model.pulses


def test_sim_reset_values_and_holes():
    demo = DemoSim(stall=0.0)

    async def testbench(ctx):
        for reg in DEMO_MAP.registers:
            for addr in reg.addresses:
                await demo.read(ctx, addr)
        assert demo.master.r[0] == (DEMO_ID, RESP_OKAY)
        for addr in (0x18, 0x3C, 0x50, 0x80, 0xFC, 0x240, 0x3FC):
            await demo.read(ctx, addr)
            await demo.write(ctx, addr, 0xFFFF_FFFF)
        assert demo.master.r[-1] == (0, RESP_SLVERR) and demo.master.b[-1] == RESP_SLVERR
        demo.check_ports(ctx)

    demo.run(testbench)


@pytest.mark.parametrize("seed, stall", [(1, 0.0), (2, 0.3), (3, 0.7)])
def test_sim_random(seed, stall):
    # Random accesses (alone, or a write and a read of different words at once) to registers, windows
    # and holes with random strobes; between them new read-only inputs, set strobes and lock changes.
    demo = DemoSim(seed=seed, stall=stall)
    rng = demo.rng
    regs = [(r, a) for r in DEMO_MAP.registers for a in r.addresses]

    def address():
        pick = rng.random()
        if pick < 0.55:
            return rng.choice(regs)[1]
        if pick < 0.9:
            win = rng.choice(DEMO_MAP.windows)
            return win.offset + 4 * rng.randrange(win.size // 4)
        return 4 * rng.randrange(1 << (DEMO_MAP.addr_width - 2))

    async def testbench(ctx):
        for n in range(120):
            if n % 3 == 0:
                for name, reg, f in demo.model.ports("ro"):
                    values = [rng.getrandbits(f.width) for _ in range(reg.elements)]
                    for i, v in enumerate(values):
                        demo.model.inputs[reg.name, f.name, i] = v
                    demo.set_port(ctx, name, values, reg, f)
                setters = []
                for name, reg, f in demo.model.ports("w1c"):
                    values = [rng.getrandbits(f.width) & rng.getrandbits(f.width) for _ in range(reg.elements)]
                    for i, v in enumerate(values):
                        demo.model.set_bits(reg.name, f.name, i, v)
                    demo.set_port(ctx, f"{name}_set", values, reg, f)
                    setters.append((f"{name}_set", reg, f))
                demo.model.lock = int(rng.random() < 0.4)
                ctx.set(demo.dut.lock, demo.model.lock)
                await ctx.tick()
                for name, reg, f in setters:
                    demo.set_port(ctx, name, [0] * reg.elements, reg, f)
            value = rng.choice([0, 0xFFFF_FFFF, rng.getrandbits(32)])
            strb = rng.choice([0xF, 0xF, rng.randrange(16)])
            if rng.random() < 0.3:
                waddr, raddr = address(), address()
                while raddr == waddr:
                    raddr = address()
                demo.master.write(waddr, value, strb, aw_delay=rng.randrange(4), w_delay=rng.randrange(4))
                demo.master.read(raddr, delay=rng.randrange(4))
                await demo.master.wait(ctx)
                assert demo.master.b[-1] == demo.model.write(waddr, value, strb)[1]
                assert demo.master.r[-1] == demo.model.read(raddr)
            elif rng.random() < 0.5:
                await demo.write(ctx, address(), value, strb, aw_delay=rng.randrange(3), w_delay=rng.randrange(3))
            else:
                await demo.read(ctx, address())
        await ctx.tick().repeat(2)
        demo.check_ports(ctx)
        kinds = Counter(resp for resp in demo.master.b) + Counter(resp for _, resp in demo.master.r)
        assert kinds[RESP_OKAY] > 50 and kinds[RESP_SLVERR] > 5

    demo.run(testbench)


def _handshake(master, channel, index=-1):
    return [cycle for cycle, ch, _ in master.events if ch == channel][index]


@pytest.mark.parametrize("aw_delay, w_delay", [(0, 0), (0, 6), (6, 0)])
def test_sim_write_channel_order(aw_delay, w_delay):
    # AW and W in the same cycle, AW first (W 6 cycles later), W first.
    demo = DemoSim(stall=0.0)
    addr = DEMO_MAP.address("scratch")

    async def testbench(ctx):
        await demo.write(ctx, addr, 0xCAFE_F00D, aw_delay=aw_delay, w_delay=w_delay)
        aw, w, b = (_handshake(demo.master, ch) for ch in ("aw", "w", "b"))
        assert w - aw == w_delay - aw_delay
        # The B handshake comes 4 cycles after the later of AW and W (a register answers in 1 cycle).
        assert b - max(aw, w) == 4
        assert await demo.read(ctx, addr) == 0xCAFE_F00D
        ar, r = _handshake(demo.master, "ar"), _handshake(demo.master, "r")
        assert r - ar == 4

    demo.run(testbench)


def test_sim_throughput():
    # Back-to-back accesses without stalls: one write per 5 cycles, one read per 5 cycles.
    demo = DemoSim(stall=0.0)
    addr = DEMO_MAP.address("scratch")

    async def testbench(ctx):
        for i in range(5):
            demo.master.write(addr, i)
        await demo.master.wait(ctx)
        for i in range(5):
            demo.master.read(addr)
        await demo.master.wait(ctx)
        aws = [c for c, ch, _ in demo.master.events if ch == "aw"]
        ars = [c for c, ch, _ in demo.master.events if ch == "ar"]
        assert [b - a for a, b in zip(aws, aws[1:])] == [5] * 4
        assert [b - a for a, b in zip(ars, ars[1:])] == [5] * 4
        assert demo.master.r == [(4, RESP_OKAY)] * 5

    demo.run(testbench)


def test_sim_simultaneous_read_and_write():
    # AW, W and AR in the same cycle to the same register: the write goes first, the read sees it.
    demo = DemoSim(stall=0.0)
    addr = DEMO_MAP.address("scratch")

    async def testbench(ctx):
        for value in (0x1111_2222, 0x3333_4444):
            demo.master.write(addr, value)
            demo.master.read(addr)
            await demo.master.wait(ctx)
            demo.model.write(addr, value)
            assert demo.master.b[-1] == RESP_OKAY and demo.master.r[-1] == (value, RESP_OKAY)
            assert _handshake(demo.master, "aw") == _handshake(demo.master, "w") == _handshake(demo.master, "ar")
            assert _handshake(demo.master, "b") < _handshake(demo.master, "r")

    demo.run(testbench)


def test_sim_no_combinational_paths():
    # Every output of the slave and of the CSR block is a function of registers only: changing every
    # input within a cycle changes no output.
    demo_map = RegisterMap(name="t", registers=[Register("a", [Field("x", 0, 8), Field("y", 8, 2, "ro")])],
                           windows=[Window("w", size=16)])

    class Pair(wiring.Component):
        def __init__(self):
            self.csr = CSRBlock(regmap=demo_map)
            super().__init__({**axil_members(addr_width=demo_map.addr_width),
                              "a_y": In(2), "lock": In(1), "a_x": Out(8), "w": Out(bus_signature(addr_width=2))})

        def elaborate(self, platform):
            from amaranth.hdl import Module
            m = Module()
            m.submodules.slave = slave = AXILiteSlave(addr_width=demo_map.addr_width)
            m.submodules.csr = csr = self.csr
            m.d.comb += axil_connect(self, slave.axil)
            wiring.connect(m, slave.bus, csr.bus)
            wiring.connect(m, csr.w, wiring.flipped(self.w))
            m.d.comb += [csr.a_y.eq(self.a_y), csr.lock.eq(self.lock), self.a_x.eq(csr.a_x)]
            return m

    dut = Pair()
    rng = random.Random(7)
    inputs = [Value.cast(getattr(dut, f"s_axil_{n}")) for n, mb in axil_signature(4).members.items() if mb.flow == In]
    inputs += [dut.a_y, dut.lock, dut.w.req.ready, dut.w.resp.valid, Value.cast(dut.w.resp.payload)]
    names = [n for n, mb in axil_signature(4).members.items() if mb.flow == Out]
    outputs = [Value.cast(getattr(dut, f"s_axil_{n}")) for n in names]
    outputs += [dut.a_x, dut.w.req.valid, dut.w.resp.ready, Value.cast(dut.w.req.payload)]
    seen = Counter()

    async def testbench(ctx):
        for _ in range(600):
            for signal in inputs:
                ctx.set(signal, rng.getrandbits(len(signal)) if rng.random() < 0.6 else (1 << len(signal)) - 1)
            before = [ctx.get(s) for s in outputs]
            for signal in inputs:
                ctx.set(signal, rng.getrandbits(len(signal)))
            assert [ctx.get(s) for s in outputs] == before
            seen.update(name for name, v in zip(names, before) if v)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    # The random stimulus moved the design through its states (not a test of a stuck design).
    assert all(seen[name] > 10 for name in ("awready", "wready", "bvalid", "arready", "rvalid")), seen


def test_sim_slave_64bit():
    # A 64-bit slave alone: word address = byte address >> 3, strobes and data passed through, a target
    # with wait states answering a read with SLVERR.
    dut = AXILiteSlave(addr_width=12, data_width=64)
    axi, requests = dut.axil, []

    async def target(ctx):
        while True:
            req = await stream_get(ctx, dut.bus.req)
            requests.append((int(req.addr), int(req.write), int(req.wdata), int(req.wstrb)))
            await ctx.tick().repeat(2)
            await stream_put(ctx, dut.bus.resp, {"rdata": 0x0123_4567_89AB_CDEF, "error": not req.write})

    async def testbench(ctx):
        ctx.set(axi.bready, 1)
        ctx.set(axi.rready, 1)
        ctx.set(axi.wdata, 0xFEDC_BA98_7654_3210)
        ctx.set(axi.wstrb, 0xF0)
        ctx.set(axi.wvalid, 1)
        await ctx.tick()
        ctx.set(axi.wvalid, 0)
        ctx.set(axi.awaddr, 0x5AC)                       # unaligned: word 0xB5
        ctx.set(axi.awvalid, 1)
        await ctx.tick()
        ctx.set(axi.awvalid, 0)
        ctx.set(axi.araddr, 0x018)
        ctx.set(axi.arvalid, 1)
        await ctx.tick()
        ctx.set(axi.arvalid, 0)
        bresp, = await ctx.tick().sample(axi.bresp).until(axi.bvalid)
        rdata, rresp = await ctx.tick().sample(axi.rdata, axi.rresp).until(axi.rvalid)
        assert (bresp, rdata, rresp) == (RESP_OKAY, 0x0123_4567_89AB_CDEF, RESP_SLVERR)
        assert requests == [(0xB5, 1, 0xFEDC_BA98_7654_3210, 0xF0), (0x3, 0, 0, 0)]

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(target, background=True)
    sim.add_testbench(testbench)
    sim.run()


def test_sim_lock():
    demo = DemoSim(stall=0.3, seed=4)
    config, layer2, ext = DEMO_MAP.address("config"), DEMO_MAP.address("layer_size", 2), DEMO_MAP.window("ext")

    async def testbench(ctx):
        await demo.write(ctx, config, 0x00BEEF03)
        demo.model.lock = 1
        ctx.set(demo.dut.lock, 1)
        for addr in (config, layer2, ext.offset + 8):
            await demo.write(ctx, addr, 0x0123_4567)
            assert demo.master.b[-1] == RESP_SLVERR
            await demo.read(ctx, addr)
            assert demo.master.r[-1][1] == RESP_OKAY
        assert demo.master.r[-3][0] == 0x00BEEF03
        await demo.write(ctx, DEMO_MAP.address("scratch"), 5)          # not locked
        assert demo.master.b[-1] == RESP_OKAY
        demo.model.lock = 0
        ctx.set(demo.dut.lock, 0)
        for addr in (config, layer2, ext.offset + 8):
            await demo.write(ctx, addr, 0x0123_4567)
            assert demo.master.b[-1] == RESP_OKAY
            await demo.read(ctx, addr)
        demo.check_ports(ctx)

    demo.run(testbench)


def test_sim_w1p_and_strobes():
    demo = DemoSim(stall=0.0)
    ctrl, scratch = DEMO_MAP.address("ctrl"), DEMO_MAP.address("scratch")
    high = []

    async def watch(ctx):
        async for _, _, start in ctx.tick().sample(demo.dut.ctrl_start):
            high.append(start)

    async def testbench(ctx):
        await demo.write(ctx, ctrl, 0x0000_0221)          # start, mode = 2, irq_en = 2
        assert high.count(1) == 1
        await demo.write(ctx, ctrl, 0x0000_0001, strb=0b0100)   # byte 0 not strobed: no pulse, no change
        assert high.count(1) == 1 and ctx.get(demo.dut.ctrl_mode) == 2 and ctx.get(demo.dut.ctrl_irq_en) == 2
        await demo.write(ctx, ctrl, 0x0000_0103, strb=0b0001)   # start + abort; irq_en (byte 1) kept
        assert high.count(1) == 2 and ctx.get(demo.dut.ctrl_irq_en) == 2 and ctx.get(demo.dut.ctrl_mode) == 0
        await demo.read(ctx, ctrl)
        assert demo.master.r[-1] == (0x0000_0200, RESP_OKAY)      # pulses read 0
        await demo.write(ctx, scratch, 0xAABB_CCDD, strb=0b1010)
        assert await demo.read(ctx, scratch) == 0xAA34_CC78
        await demo.write(ctx, DEMO_MAP.address("lane_kick", 1), 0b110)
        demo.check_ports(ctx)

    demo.sim.add_testbench(watch, background=True)
    demo.run(testbench)


def test_sim_csr_block_timing():
    # The CSRBlock alone, driven cycle by cycle: 1-cycle response, busy until the response is taken,
    # the rw value and the w1p pulse in the cycle after the write, a set in the clearing cycle wins.
    regmap = RegisterMap(name="t", registers=[
        Register("r", [Field("x", 0, 8, reset=3), Field("go", 8, 2, "w1p"), Field("ev", 16, 2, "w1c")]),
    ], windows=[Window("w", size=8)])
    dut = CSRBlock(regmap=regmap)
    req, resp = dut.bus.req, dut.bus.resp

    async def testbench(ctx):
        ctx.set(dut.r_ev_set, 0b11)
        await ctx.tick()
        ctx.set(dut.r_ev_set, 0)
        assert ctx.get(dut.r_ev) == 0b11 and ctx.get(dut.r_x) == 3
        # Clear both ev bits while the core sets bit 0 in the same cycle.
        ctx.set(req.payload, {"addr": 0, "write": 1, "wdata": 0x0003_0205, "wstrb": 0xF})
        ctx.set(req.valid, 1)
        ctx.set(dut.r_ev_set, 0b01)
        assert ctx.get(req.ready)
        await ctx.tick()
        ctx.set(req.valid, 0)
        ctx.set(dut.r_ev_set, 0)
        assert ctx.get(resp.valid) and ctx.get(resp.payload.error) == 0
        assert ctx.get(dut.r_x) == 5 and ctx.get(dut.r_go) == 0b10 and ctx.get(dut.r_ev) == 0b01
        assert not ctx.get(req.ready)                               # busy until the response is taken
        await ctx.tick()
        assert ctx.get(dut.r_go) == 0 and ctx.get(resp.valid)       # one-cycle pulse; response held
        ctx.set(resp.ready, 1)
        await ctx.tick()
        ctx.set(resp.ready, 0)
        assert not ctx.get(resp.valid) and ctx.get(req.ready)
        # A read: the values of the cycle the request is taken; a hole: SLVERR, data 0.
        for addr, want in ((0, (0x0001_0005, 0)), (1, (0, 1))):
            ctx.set(req.payload, {"addr": addr, "write": 0})
            ctx.set(req.valid, 1)
            await ctx.tick()
            ctx.set(req.valid, 0)
            assert (ctx.get(resp.payload.rdata), ctx.get(resp.payload.error)) == want
            ctx.set(resp.ready, 1)
            await ctx.tick()
            ctx.set(resp.ready, 0)
        # A window: forwarded in the next cycle, the target's response (and error) passed back.
        ctx.set(req.payload, {"addr": 3, "write": 1, "wdata": 77, "wstrb": 0b0011})
        ctx.set(req.valid, 1)
        await ctx.tick()
        ctx.set(req.valid, 0)
        assert ctx.get(dut.w.req.valid) and not ctx.get(resp.valid)
        assert ctx.get(dut.w.req.payload) == {"addr": 1, "write": 1, "wdata": 77, "wstrb": 0b0011}
        ctx.set(dut.w.req.ready, 1)
        await ctx.tick()
        ctx.set(dut.w.req.ready, 0)
        assert not ctx.get(dut.w.req.valid) and ctx.get(dut.w.resp.ready)
        await ctx.tick().repeat(3)                                  # wait states
        ctx.set(dut.w.resp.payload, {"rdata": 0, "error": 1})
        ctx.set(dut.w.resp.valid, 1)
        await ctx.tick()
        ctx.set(dut.w.resp.valid, 0)
        assert ctx.get(resp.valid) and ctx.get(resp.payload.error) == 1 and not ctx.get(dut.w.resp.ready)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


def test_sim_w1c_set_wins_over_clear():
    demo = DemoSim(stall=0.0)
    irq = DEMO_MAP.address("irq")

    async def testbench(ctx):
        assert await demo.read(ctx, irq) == 0x40                    # error resets to 0b100
        ctx.set(demo.dut.irq_done_set, 1)                            # held through the clearing write
        await demo.write(ctx, irq, 0x71)
        demo.model.set_bits("irq", "done", 0, 1)
        demo.model.state["irq", "error", 0] = 0
        ctx.set(demo.dut.irq_done_set, 0)
        await ctx.tick()
        assert await demo.read(ctx, irq) == 0x01                    # done stayed set, error cleared
        await demo.write(ctx, irq, 0x01)
        assert await demo.read(ctx, irq) == 0x00
        ctx.set(demo.dut.lane_flags_hit_set, [0, 0b0110])           # element 1, bits 1 and 2
        await ctx.tick()
        ctx.set(demo.dut.lane_flags_hit_set, [0, 0])
        demo.model.set_bits("lane_flags", "hit", 1, 0b0110)
        await demo.read(ctx, DEMO_MAP.address("lane_flags", 1))
        await demo.write(ctx, DEMO_MAP.address("lane_flags", 1), 0x5A00_0F02)
        await demo.read(ctx, DEMO_MAP.address("lane_flags", 1))
        assert demo.master.r[-1] == (0x5A00_0F04, RESP_OKAY)
        demo.check_ports(ctx)

    demo.run(testbench)


@pytest.mark.parametrize("max_wait", [0, 7])
def test_sim_windows(max_wait):
    # The memory window with 0 or random 0..7 wait states, its read-only top quarter, the ext window
    # answered by the bench with random latency, its refused word.
    demo = DemoSim(stall=0.3, seed=5, max_wait=max_wait)
    mem, ext = DEMO_MAP.window("mem"), DEMO_MAP.window("ext")

    async def testbench(ctx):
        for offset in range(0, mem.size, 4):
            await demo.write(ctx, mem.offset + offset, offset * 0x0101_0101 ^ 0x5A5A_5A5A, strb=0xF)
        for offset in range(0, mem.size, 4):
            await demo.read(ctx, mem.offset + offset)
        for offset in range(0, ext.size, 4):
            await demo.write(ctx, ext.offset + offset, ~offset & 0xFFFF_FFFF, strb=0b0111)
            await demo.read(ctx, ext.offset + offset)
        assert Counter(demo.master.b)[RESP_SLVERR] == mem.size // 16 + 1      # read-only quarter, word 15
        assert Counter(resp for _, resp in demo.master.r)[RESP_SLVERR] == 1

    demo.run(testbench)


def test_sim_driver():
    # The in-package driver on the amaranth.sim master (async bus callables).
    demo = DemoSim(stall=0.3, seed=6)

    async def testbench(ctx):
        async def read(addr):
            return await demo.read(ctx, addr)

        async def write(addr, value):
            await demo.write(ctx, addr, value)

        drv = DEMO_MAP.driver(read, write)
        await drv.write_fields("ctrl", mode="dfa", abort=1)
        assert await drv.read_fields("ctrl") == {"start": 0, "abort": 0, "mode": 1, "irq_en": 1}
        await drv.write_fields("layer_size", 3, cols=99)
        assert await drv.read_fields("layer_size", 3) == {"rows": 1, "cols": 99}
        assert ctx.get(demo.dut.layer_size_cols[3]) == 99 and ctx.get(demo.dut.layer_size_rows[3]) == 1
        await drv.write_window("mem", 8, 0x1234_5678)
        assert await drv.read_window("mem", 8) == 0x1234_5678
        assert await drv.read_field("id", "value") == DEMO_ID
        demo.check_ports(ctx)

    demo.run(testbench)


# -- cocotb bench on generated Verilog ---------------------------------------------------------------------

TOP = "edgetrain_axil_demo"


def run_demo_bench(sim, *, seed=None, testcase=None, waves=None):
    """Build the demo top (verif/axil_demo.py) for ``sim`` under build/sim/axil_demo/<sim> and run its bench,
    as verif.runner.run_bench does for the blocks of hw/build.py (same flags, timescale, seed, waves)."""
    return run_design("axil_demo", verilog.convert(DemoTop(), name=TOP, emit_src=False), TOP, sim,
                      build_parent=_ROOT / "build" / "sim" / "axil_demo", test_module="verif.axil_demo",
                      testcase=testcase, seed=seed, waves=waves)


def test_bench(simulator):
    result = run_demo_bench(simulator)
    assert result.tests == 3 and result.passed, f"seed {result.seed}, log {result.run_dir}"
