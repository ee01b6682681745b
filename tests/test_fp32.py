import numpy as np
from amaranth.hdl import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from golden import fp8
from hw.fp32 import F32_NAN, FP32Adder, round_fixed_to_f32


def _vectors(rng, n):
    a = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    b = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    third = n // 3
    b[:third] = (a[:third] ^ np.uint32(0x80000000)) + rng.integers(-3, 4, third).astype(np.uint32)   # cancel
    b[third:n // 2] = (a[third:n // 2] & np.uint32(0xFF800000)) | (b[third:n // 2] & np.uint32(0x807FFFFF))
    a[n // 2:n // 2 + n // 10] &= np.uint32(0x807FFFFF)                                              # subnormal
    b[n // 2 + n // 20:n // 2 + n // 6] &= np.uint32(0x80FFFFFF)
    specials = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F7FFFFF,
                         0xFF7FFFFF, 0x00000001, 0x80000001, 0x007FFFFF, 0x00800000, 0x3F800000, 0xBF800000],
                        dtype=np.uint32)
    sa, sb = np.meshgrid(specials, specials)
    return np.concatenate([a, sa.ravel()]), np.concatenate([b, sb.ravel()])


def ref_add(a, b):
    with np.errstate(all="ignore"):
        s = (a.view(np.float32) + b.view(np.float32)).view(np.uint32)
    return np.where(np.isnan(s.view(np.float32)), np.uint32(F32_NAN), s)


def rtl_add(a, b):
    dut = FP32Adder()
    out = []

    async def testbench(ctx):
        for x, y in zip(a.tolist(), b.tolist()):
            ctx.set(dut.a, x)
            ctx.set(dut.b, y)
            out.append(ctx.get(dut.s))

    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()
    return np.array(out, dtype=np.uint32)


def test_sim_adder_matches_numpy():
    a, b = _vectors(np.random.default_rng(0), 5000)
    assert np.array_equal(rtl_add(a, b), ref_add(a, b))


class _Rounder(wiring.Component):
    magnitude: In(80)
    negative: In(1)
    exp: In(signed(12))
    bits: Out(32)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.bits.eq(round_fixed_to_f32(m, self.magnitude, self.negative, self.exp))
        return m


def test_sim_rounding_matches_golden():
    rng = np.random.default_rng(1)
    cases = [(0, 0, 5), (1, 1, -149), (1, 0, -150), (3, 0, -151), (1, 0, 127), (1 << 79, 0, 48),
             ((1 << 24) - 1, 0, 104), ((1 << 25) - 1, 1, 103), ((1 << 80) - 1, 0, -300)]
    for _ in range(3000):
        bits = int(rng.integers(1, 80))
        cases.append((int(rng.integers(0, 1 << min(bits, 62))) << max(0, bits - 62), int(rng.integers(0, 2)),
                      int(rng.integers(-300, 140))))
    dut = _Rounder()
    got = []

    async def testbench(ctx):
        for mag, neg, exp in cases:
            ctx.set(dut.magnitude, mag)
            ctx.set(dut.negative, neg)
            ctx.set(dut.exp, exp)
            got.append(ctx.get(dut.bits))

    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()
    for (mag, neg, exp), bits in zip(cases, got):
        want = fp8.round_to_f32(-mag if neg else mag, exp) if mag else neg << 31
        assert bits == want, (mag, neg, exp, hex(bits), hex(want))
