"""cocotb bench of the host-interface machinery (:mod:`hw.axil`, :mod:`hw.regmap`) on a demonstration map.

The demo top, :class:`DemoTop`, is an :class:`hw.axil.AXILiteSlave` joined to the :class:`hw.regmap.CSRBlock`
of :data:`DEMO_MAP` (every access kind, arrays with interleaved strides, holes, locked registers) with two
windows: ``mem``, a memory with pseudo-random wait states whose top quarter refuses writes
(:class:`WaitStateMemory`), and ``ext``, brought out to the bench, which answers it with random latency.
Its ports are the flat AXI4-Lite slave port ``s_axil_*`` and, under their CSRBlock names, every field port
(except ``id_value``, tied to :data:`DEMO_ID`).

The bench drives the AXI port with cocotbext-axi's ``AxiLiteMaster`` with random pauses on all five
channels, and checks every read value and every response code (OKAY/SLVERR) against :class:`DemoModel`,
a Python model of the map; it also drives the read-only inputs, the ``w1c`` set strobes and ``lock``,
counts the ``w1p`` pulses bit by bit and compares the ``rw``/``w1c`` ports with the model.
"""

import os
import random
from collections import Counter

import cocotb
from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from hw.axil import (RESP_OKAY, RESP_SLVERR, AXILiteSlave, axil_connect, axil_members, bus_signature,
                     request_layout, response_layout)
from hw.regmap import CSRBlock, Field, Register, RegisterMap, Window
from verif.streams import StreamSink, StreamSource


__all__ = ["DEMO_MAP", "DEMO_ID", "EXT_ERROR_WORD", "mem_init", "WaitStateMemory", "DemoTop", "DemoModel"]

#: What ``id`` reads.
DEMO_ID = 0xED6E_0A11
#: Word of the ``ext`` window that the bench's target refuses (SLVERR).
EXT_ERROR_WORD = 15

DEMO_MAP = RegisterMap(
    name="demo",
    description="Demonstration map of the host-interface machinery: every access kind, arrays, holes, "
                "locked registers, a memory window with wait states and a window answered by the bench.",
    registers=[
        Register("id", [Field("value", 0, 32, "ro", description="Block identifier")]),
        Register("ctrl", [
            Field("start", 0, access="w1p", description="Start a run"),
            Field("abort", 1, access="w1p", description="Abort the run"),
            Field("mode", 4, 2, reset=1, enum={"bp": 0, "dfa": 1, "pdfa": 2}, description="Training algorithm"),
            Field("irq_en", 8, 2, reset=0b01, description="Interrupt enables (bit 0: done, bit 1: error)"),
        ], description="Control"),
        Register("status", [
            Field("busy", 0, access="ro", description="A run is in progress"),
            Field("level", 8, 8, access="ro"),
            Field("count", 16, 16, access="ro", description="Samples done"),
        ]),
        Register("irq", [
            Field("done", 0, access="w1c", description="The run finished"),
            Field("error", 4, 3, access="w1c", reset=0b100, description="Error causes"),
        ], description="Interrupt causes"),
        Register("config", [Field("lr_shift", 0, 5, reset=7), Field("seed", 8, 24, reset=0xACE1)],
                 locked_while_busy=True, description="Run parameters"),
        Register("scratch", [Field("value", 0, 32, reset=0x12345678)], description="Free for software"),
        Register("layer_size", [Field("rows", 0, 12, reset=1), Field("cols", 16, 12, reset=1)], offset=0x40,
                 count=4, locked_while_busy=True, description="Layer shapes"),
        Register("lane_level", [Field("level", 0, 8, access="ro")], offset=0x60, count=3, stride=8),
        Register("lane_kick", [Field("kick", 0, 3, access="w1p")], offset=0x64, count=3, stride=8),
        Register("lane_flags", [Field("hit", 0, 4, access="w1c"), Field("mask", 8, 4, reset=0xF),
                                Field("tag", 24, 8, reset=0x5A)], count=2),
    ],
    windows=[
        Window("mem", size=256, description="Memory with pseudo-random wait states; its top quarter refuses writes"),
        Window("ext", size=64, locked_while_busy=True, description="Answered by the bench, random latency"),
    ],
)


def mem_init(depth):
    """Initial contents of the ``mem`` window's memory."""
    return [(i * 0x9E3779B1 + 0x7F4A7C15) & 0xFFFF_FFFF for i in range(depth)]


class WaitStateMemory(wiring.Component):
    """A bus target: a memory of 32-bit words that answers after 0..``max_wait`` pseudo-random wait states.

    A request is taken when the target is idle; after the wait states (a 16-bit LFSR, stepped per request)
    the word is written (bytes by ``wstrb``) or read (synchronous read port), and the response is held
    until taken. Writes to words at or above ``readonly_from`` change nothing and answer ``error = 1``.

    Parameters
    ----------
    addr_width : int
        Word address bits (``2**addr_width`` words).
    max_wait : int
        Largest number of wait states, ``2**k - 1``.
    readonly_from : int
        First word that refuses writes.

    Members
    -------
    bus : In(bus_signature(addr_width=addr_width))
    """

    def __init__(self, *, addr_width, max_wait=7, readonly_from=None):
        self._addr_width = addr_width
        self._max_wait = max_wait
        self._readonly_from = (1 << addr_width) if readonly_from is None else readonly_from
        super().__init__({"bus": In(bus_signature(addr_width=addr_width))})

    def elaborate(self, platform):
        m = Module()
        depth = 1 << self._addr_width
        m.submodules.mem = mem = Memory(shape=unsigned(32), depth=depth, init=mem_init(depth))
        wr = mem.write_port(granularity=8)
        rd = mem.read_port(transparent_for=())
        req, resp = self.bus.req, self.bus.resp

        busy = Signal()                     # a request is held
        waits = Signal(range(self._max_wait + 1))
        done = Signal()                     # the access was made; the response is on the bus
        addr = Signal(self._addr_width)
        write = Signal()
        wdata = Signal(32)
        wstrb = Signal(4)
        lfsr = Signal(16, init=0xACE1)
        refused = addr >= self._readonly_from
        access = busy & ~done & (waits == 0)

        m.d.comb += [
            req.ready.eq(~busy),
            rd.en.eq(1),
            rd.addr.eq(addr),
            wr.addr.eq(addr),
            wr.data.eq(wdata),
            wr.en.eq(Mux(access & write & ~refused, wstrb, 0)),
            resp.valid.eq(done),
            resp.payload.rdata.eq(Mux(write, 0, rd.data)),
        ]
        with m.If(req.valid & ~busy):
            m.d.sync += [busy.eq(1), addr.eq(req.payload.addr), write.eq(req.payload.write),
                         wdata.eq(req.payload.wdata), wstrb.eq(req.payload.wstrb),
                         waits.eq(lfsr[:self._max_wait.bit_length()]),
                         lfsr.eq(Cat(lfsr[1:], lfsr[0] ^ lfsr[2] ^ lfsr[3] ^ lfsr[5]))]
        with m.If(busy & ~done & (waits != 0)):
            m.d.sync += waits.eq(waits - 1)
        with m.If(access):
            m.d.sync += [done.eq(1), resp.payload.error.eq(write & refused)]
        with m.If(resp.valid & resp.ready):
            m.d.sync += [busy.eq(0), done.eq(0)]
        return m


class DemoTop(wiring.Component):
    """The bench's top: flat AXI4-Lite port, the CSRBlock of ``regmap``, the ``mem`` window's memory.

    Parameters
    ----------
    regmap : RegisterMap
        :data:`DEMO_MAP` (or a map with the same ``id`` register and ``mem`` window).
    max_wait : int
        Wait states of the ``mem`` window's memory, ``2**k - 1``.

    Members
    -------
    s_axil_<signal> : the AXI4-Lite slave port (see :func:`hw.axil.axil_members`).
    <CSRBlock port> : every port of the CSRBlock but ``bus``, ``mem`` and ``id_value``, same name and shape.
    """

    def __init__(self, *, regmap=DEMO_MAP, max_wait=7):
        self._regmap = regmap
        self._max_wait = max_wait
        self._csr = CSRBlock(regmap=regmap)
        members = axil_members(addr_width=regmap.addr_width)
        self._passed = {name: member for name, member in self._csr.signature.members.items()
                        if name not in ("bus", "mem", "id_value")}
        super().__init__({**members, **self._passed})

    def elaborate(self, platform):
        m = Module()
        m.submodules.axil = axil = AXILiteSlave(addr_width=self._regmap.addr_width)
        m.submodules.csr = csr = self._csr
        win = self._regmap.window("mem")
        m.submodules.mem = mem = WaitStateMemory(addr_width=win.addr_width, max_wait=self._max_wait,
                                                 readonly_from=3 * (win.size // 16))
        m.d.comb += axil_connect(self, axil.axil)
        wiring.connect(m, axil.bus, csr.bus)
        wiring.connect(m, csr.mem, mem.bus)
        m.d.comb += csr.id_value.eq(DEMO_ID)
        for name, member in self._passed.items():
            if member.is_signature:
                wiring.connect(m, getattr(csr, name), wiring.flipped(getattr(self, name)))
            elif member.flow == In:
                m.d.comb += getattr(csr, name).eq(getattr(self, name))
            else:
                m.d.comb += getattr(self, name).eq(getattr(csr, name))
        return m


class DemoModel:
    """What the demo top answers: the map's state, the core's inputs, pulses counted per bit, memories.

    ``write(addr, value, strb)`` and ``read(addr)`` return ``(rdata, resp)`` (``rdata`` 0 for a write and
    for every SLVERR); the bench's ``ext`` target is modelled too (word :data:`EXT_ERROR_WORD` refused).
    ``mem``: the ``mem`` window's contents (a list, updated in place), its initial contents by default.
    """

    def __init__(self, regmap=DEMO_MAP, *, mem=None):
        self.regmap = regmap
        self.state = {}                 # (reg, field, index) -> value, rw and w1c fields
        self.inputs = {}                # (reg, field, index) -> value, ro fields
        for reg in regmap.registers:
            for f in reg.fields:
                for i in range(reg.elements):
                    if f.access in ("rw", "w1c"):
                        self.state[reg.name, f.name, i] = f.reset
                    elif f.access == "ro":
                        self.inputs[reg.name, f.name, i] = 0
        self.inputs["id", "value", 0] = DEMO_ID
        self.pulses = Counter()         # (reg, field, index, bit) -> pulses expected
        self.lock = 0
        win = regmap.window("mem")
        self.mem = mem_init(win.size // 4) if mem is None else mem
        self.mem_readonly_from = 3 * (win.size // 16)
        self.ext = [0] * (regmap.window("ext").size // 4)

    @staticmethod
    def _merge(old, new, strb):
        mask = sum(0xFF << (8 * b) for b in range(4) if strb >> b & 1)
        return (old & ~mask) | (new & mask)

    def write(self, addr, value, strb=0xF):
        hit = self.regmap.locate(addr)
        if hit is None:
            return 0, RESP_SLVERR
        item, where = hit
        if item.locked_while_busy and self.lock:
            return 0, RESP_SLVERR
        if isinstance(item, Window):
            word = where // 4
            if item.name == "mem":
                if word >= self.mem_readonly_from:
                    return 0, RESP_SLVERR
                self.mem[word] = self._merge(self.mem[word], value, strb)
            else:
                if word == EXT_ERROR_WORD:
                    return 0, RESP_SLVERR
                self.ext[word] = self._merge(self.ext[word], value, strb)
            return 0, RESP_OKAY
        value = self._merge(0, value, strb)         # bytes not strobed act as zeros
        index = where or 0
        for f in item.fields:
            bits = (value >> f.lsb) & ((1 << f.width) - 1)
            strobed = (self._merge(0, 0xFFFF_FFFF, strb) >> f.lsb) & ((1 << f.width) - 1)
            key = (item.name, f.name, index)
            if f.access == "rw":
                self.state[key] = (self.state[key] & ~strobed) | bits
            elif f.access == "w1c":
                self.state[key] &= ~bits
            elif f.access == "w1p":
                for b in range(f.width):
                    if bits >> b & 1:
                        self.pulses[(*key, b)] += 1
        return 0, RESP_OKAY

    def read(self, addr):
        hit = self.regmap.locate(addr)
        if hit is None:
            return 0, RESP_SLVERR
        item, where = hit
        if isinstance(item, Window):
            word = where // 4
            if item.name == "mem":
                return self.mem[word], RESP_OKAY
            if word == EXT_ERROR_WORD:
                return 0, RESP_SLVERR
            return self.ext[word], RESP_OKAY
        return self.value(item.name, where), RESP_OKAY

    def value(self, reg, index=None):
        """What register ``reg`` reads now."""
        reg = self.regmap.register(reg)
        value = 0
        for f in reg.fields:
            key = (reg.name, f.name, index or 0)
            if f.access in ("rw", "w1c"):
                value |= self.state[key] << f.lsb
            elif f.access == "ro":
                value |= self.inputs[key] << f.lsb
        return value

    def set_bits(self, reg, field, index, bits):
        """The core sets ``w1c`` bits."""
        self.state[reg, field, index] |= bits

    def port_value(self, port):
        """The expected value of an ``rw``/``w1c`` port (an array's elements packed, element 0 lowest)."""
        for reg in self.regmap.registers:
            for f in reg.fields:
                if f"{reg.name}_{f.name}" == port:
                    return sum(self.state[reg.name, f.name, i] << (i * f.width) for i in range(reg.elements))
        raise KeyError(port)

    def ports(self, access):
        """``[(port, reg, field)]`` of the fields of an access kind (``id`` excluded: tied in the top)."""
        return [(f"{r.name}_{f.name}", r, f) for r in self.regmap.registers for f in r.fields
                if f.access == access and r.name != "id"]


# -- the cocotb bench ---------------------------------------------------------------------------------------

# The memory behind ``mem`` keeps its contents across the tests of one simulation (a reset clears no memory).
_MEM = mem_init(DEMO_MAP.window("mem").size // 4)


def _pauses(rng, stall):
    while True:
        yield rng.random() < stall


class AXILiteDemoTB:
    """Drivers: the AXI-Lite master (pauses on AW, W, B, AR, R), the read-only inputs, the set strobes,
    ``lock``; the ``ext`` target (request sink with back-pressure, responses after 0..12 cycles).
    Monitors: ``w1p`` pulse counter. Scoreboard: :class:`DemoModel`.

    As :class:`verif.bench.BenchTB` (stall probability ``stall`` or ``EDGETRAIN_STALL``, default 0.3; ``rng``
    seeded with cocotb's logged seed; a 10 ns clock), but the demo has no configuration to read.
    """
    PERIOD_NS = 10

    def __init__(self, dut, *, stall=None):
        self.dut = dut
        self.stall = float(os.environ.get("EDGETRAIN_STALL", "0.3")) if stall is None else stall
        self.rng = random.Random(getattr(cocotb, "RANDOM_SEED", 0))
        Clock(dut.clk, self.PERIOD_NS, unit="ns").start()
        self.model = DemoModel(mem=_MEM)
        self.stats = Counter()      # (what, access, resp) -> count: what the test covered
        self.master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        channels = [self.master.write_if.aw_channel, self.master.write_if.w_channel,
                    self.master.write_if.b_channel, self.master.read_if.ar_channel,
                    self.master.read_if.r_channel]
        for channel in channels:
            channel.set_pause_generator(_pauses(random.Random(self.rng.random()), self.stall))
        ext = DEMO_MAP.window("ext")
        self.req_layout = request_layout(ext.addr_width)
        self.resp_layout = response_layout()
        self.ext_store = [0] * (ext.size // 4)
        self.ext_requests = StreamSink(dut, "ext__req", dut.clk, stall=self.stall, rng=self.rng,
                                       callback=self._ext_request)
        self.ext_resp = StreamSource(dut, "ext__resp", dut.clk, stall=self.stall, rng=self.rng)
        self.ext_pending = []
        self.pulses = Counter()
        for _, reg, f in self.model.ports("ro"):
            getattr(dut, f"{reg.name}_{f.name}").value = 0
        for name, _, _ in self.model.ports("w1c"):
            getattr(dut, f"{name}_set").value = 0
        dut.lock.value = 0
        cocotb.start_soon(self._ext_target())
        cocotb.start_soon(self._count_pulses())

    def _ext_request(self, payload):
        self.ext_pending.append(self.req_layout.from_bits(payload))

    async def _ext_target(self):
        """The bench's target of the ``ext`` window: one request at a time, a random latency."""
        while True:
            while not self.ext_pending:
                await RisingEdge(self.dut.clk)
            req = self.ext_pending.pop(0)
            await ClockCycles(self.dut.clk, self.rng.randrange(13))
            word, rdata = int(req.addr), 0
            error = int(word == EXT_ERROR_WORD)
            if not error:
                if int(req.write):
                    self.ext_store[word] = DemoModel._merge(self.ext_store[word], int(req.wdata), int(req.wstrb))
                else:
                    rdata = self.ext_store[word]
            self.ext_resp.send(self.resp_layout.const({"rdata": rdata, "error": error}).as_bits())
            await self.ext_resp.wait_idle()

    async def _count_pulses(self):
        ports = [(getattr(self.dut, name), reg, f) for name, reg, f in self.model.ports("w1p")]
        while True:
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            for handle, reg, f in ports:
                value = int(handle.value)
                for i in range(reg.elements):
                    for b in range(f.width):
                        if value >> (i * f.width + b) & 1:
                            self.pulses[reg.name, f.name, i, b] += 1

    async def write(self, addr, value, strb=0xF):
        """One AXI write of the bytes in ``strb`` (a contiguous run), checked against the model."""
        first = (strb & -strb).bit_length() - 1
        length = strb.bit_length() - first
        data = (value >> (8 * first)).to_bytes(4, "little")[:length]
        resp = await self.master.write(addr + first, data)
        self.stats[self.what(addr), "write", int(resp.resp)] += 1
        want = self.model.write(addr, value, strb)[1]
        assert int(resp.resp) == want, f"write {addr:#x} = {value:#x} strb {strb:#x}: resp {resp.resp}, want {want}"

    async def read(self, addr):
        resp = await self.master.read(addr, 4)
        self.stats[self.what(addr), "read", int(resp.resp)] += 1
        want, want_resp = self.model.read(addr)
        got = int.from_bytes(resp.data, "little")
        assert int(resp.resp) == want_resp, f"read {addr:#x}: resp {resp.resp}, want {want_resp}"
        assert got == want, f"read {addr:#x}: {got:#010x}, want {want:#010x}"
        return got

    async def core_events(self):
        """Between accesses: new read-only inputs, a set strobe pulse, a new ``lock``."""
        await RisingEdge(self.dut.clk)
        for name, reg, f in self.model.ports("ro"):
            if self.rng.random() < 0.5:
                values = [self.rng.getrandbits(f.width) for _ in range(reg.elements)]
                for i, v in enumerate(values):
                    self.model.inputs[reg.name, f.name, i] = v
                getattr(self.dut, name).value = sum(v << (i * f.width) for i, v in enumerate(values))
        setters = []
        for name, reg, f in self.model.ports("w1c"):
            if self.rng.random() < 0.3:
                values = [self.rng.getrandbits(f.width) & self.rng.getrandbits(f.width)
                          for _ in range(reg.elements)]
                for i, v in enumerate(values):
                    self.model.set_bits(reg.name, f.name, i, v)
                handle = getattr(self.dut, f"{name}_set")
                handle.value = sum(v << (i * f.width) for i, v in enumerate(values))
                setters.append(handle)
        if self.rng.random() < 0.2:
            self.model.lock ^= 1
            self.dut.lock.value = self.model.lock
        await RisingEdge(self.dut.clk)
        for handle in setters:
            handle.value = 0
        await RisingEdge(self.dut.clk)

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0

    def what(self, addr):
        hit = DEMO_MAP.locate(addr)
        if hit is None:
            return "hole"
        kind = hit[0].name if isinstance(hit[0], Window) else "register"
        return f"locked {kind}" if hit[0].locked_while_busy and self.model.lock else kind

    def check_ports(self):
        for access in ("rw", "w1c"):
            for name, _, _ in self.model.ports(access):
                got = int(getattr(self.dut, name).value)
                assert got == self.model.port_value(name), \
                    f"port {name}: {got:#x}, want {self.model.port_value(name):#x}"
        bad = {k: (self.pulses[k], v) for k, v in (self.model.pulses | self.pulses).items()
               if self.pulses[k] != self.model.pulses[k]}
        assert not bad, f"w1p pulses (got, want) differ: {bad}"

    def random_address(self):
        """Mostly mapped words (registers, both windows), some anywhere (holes)."""
        pick = self.rng.random()
        if pick < 0.55:
            reg = self.rng.choice(DEMO_MAP.registers)
            addr = self.rng.choice(reg.addresses)
        elif pick < 0.9:
            win = self.rng.choice(DEMO_MAP.windows)
            addr = win.offset + 4 * self.rng.randrange(win.size // 4)
        else:
            addr = 4 * self.rng.randrange(1 << (DEMO_MAP.addr_width - 2))
        return addr

    def random_value(self):
        return self.rng.choice([0, 0xFFFF_FFFF, self.rng.getrandbits(32), 1 << self.rng.randrange(32)])

    def random_strb(self):
        first = self.rng.randrange(4)
        return 0xF if self.rng.random() < 0.6 else ((1 << self.rng.randint(1, 4 - first)) - 1) << first

@cocotb.test()
async def reset_values(dut):
    """Every register reads its reset value; the ports hold theirs; holes answer SLVERR."""
    tb = AXILiteDemoTB(dut)
    await tb.reset()
    for reg in DEMO_MAP.registers:
        for addr in reg.addresses:
            await tb.read(addr)
    for addr in (0x18, 0x3C, 0x50, 0x80, 0xFC, 0x240, 0x3FC):
        await tb.read(addr)
        await tb.write(addr, 0xFFFF_FFFF)
    tb.check_ports()

@cocotb.test()
async def random_accesses(dut):
    """Random reads and writes (single, and a read and a write at once to different words) of registers,
    windows and holes, with random byte strobes, core events and ``lock`` between them."""
    tb = AXILiteDemoTB(dut)
    await tb.reset()
    for n in range(400):
        if n % 4 == 0:
            await tb.core_events()
        if tb.rng.random() < 0.3:
            waddr, raddr = tb.random_address(), tb.random_address()
            while raddr == waddr:
                raddr = tb.random_address()
            # The read's expected value does not depend on the write (different words).
            w = cocotb.start_soon(tb.write(waddr, tb.random_value(), tb.random_strb()))
            r = cocotb.start_soon(tb.read(raddr))
            await w
            await r
        elif tb.rng.random() < 0.5:
            await tb.write(tb.random_address(), tb.random_value(), tb.random_strb())
        else:
            await tb.read(tb.random_address())
        if n % 25 == 0:
            await ClockCycles(dut.clk, 2)
            tb.check_ports()
    # Directed: every kind of refusal, whatever the random part drew.
    ext, mem = DEMO_MAP.window("ext"), DEMO_MAP.window("mem")
    tb.model.lock = 0
    dut.lock.value = 0
    await tb.read(ext.offset + 4 * EXT_ERROR_WORD)
    await tb.write(ext.offset + 4 * EXT_ERROR_WORD, 1)
    await tb.write(mem.offset + mem.size - 4, 1)
    tb.model.lock = 1
    dut.lock.value = 1
    await tb.write(DEMO_MAP.address("config"), 0)
    await tb.write(DEMO_MAP.address("layer_size", 3), 0)
    await tb.write(ext.offset, 0)
    await ClockCycles(dut.clk, 2)
    tb.check_ports()
    dut._log.info("covered (what, access, resp): %s", dict(sorted(tb.stats.items())))
    wanted = {(what, access, RESP_OKAY) for what in ("register", "mem", "ext") for access in ("read", "write")}
    wanted |= {("hole", "read", RESP_SLVERR), ("hole", "write", RESP_SLVERR), ("mem", "write", RESP_SLVERR),
               ("ext", "read", RESP_SLVERR), ("locked register", "write", RESP_SLVERR),
               ("locked ext", "write", RESP_SLVERR)}
    assert not wanted - set(tb.stats), f"not covered: {sorted(wanted - set(tb.stats))}"

@cocotb.test()
async def driver_accesses(dut):
    """The in-package driver on the AXI-Lite master: fields by name and index, enums, windows."""
    tb = AXILiteDemoTB(dut)
    await tb.reset()

    async def read(addr):
        return await tb.read(addr)

    async def write(addr, value):
        await tb.write(addr, value)

    drv = DEMO_MAP.driver(read, write)
    await drv.write_fields("ctrl", mode="pdfa", start=1)
    assert await drv.read_field("ctrl", "mode") == 2
    assert await drv.read_field("ctrl", "irq_en") == 0b01
    for i in range(4):
        await drv.write_fields("layer_size", i, rows=100 + i, cols=7 * i)
    for i in range(4):
        assert await drv.read_fields("layer_size", i) == {"rows": 100 + i, "cols": 7 * i}
    await drv.write_fields("lane_kick", 2, kick=0b101)
    await drv.write_fields("lane_flags", 1, mask=3)
    assert await drv.read_fields("lane_flags", 1) == {"hit": 0, "mask": 3, "tag": 0x5A}
    for offset in range(0, 64, 4):
        await drv.write_window("ext", offset, offset * 0x01010101 + 5)
    for offset in range(0, 192, 12):
        await drv.write_window("mem", offset, ~offset & 0xFFFF_FFFF)
    for offset in range(0, 64, 4):
        await drv.read_window("ext", offset)
    for offset in range(0, 256, 4):
        await drv.read_window("mem", offset)
    assert await drv.read("id") == DEMO_ID
    await ClockCycles(dut.clk, 2)
    tb.check_ports()
