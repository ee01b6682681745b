import itertools
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.dfxp import PRECISIONS, code_range, to_slices
from golden.pe_array import GRID, lanes, offset_code, pe_dot, pe_offset_dot, span
from hw.pe import MAX_STAGES, BitScalablePE, Fixed16PE

PAIRS = list(itertools.product(PRECISIONS, PRECISIONS))


def test_lanes():
    table = {(4, 4): 16, (8, 8): 4, (16, 16): 1, (12, 12): 1, (8, 4): 8, (16, 4): 4, (12, 4): 4,
             (4, 12): 4, (12, 8): 2, (16, 8): 2}
    for (pa, pb), n in table.items():
        assert lanes(pa, pb) == n


def _operands(rng, p, n, corner=True):
    lo, hi = code_range(p)
    v = rng.integers(lo, hi + 1, size=n)
    if corner:
        mask = rng.random(n) < 0.3
        v[mask] = rng.choice([lo, hi, 0], size=int(mask.sum()))
    return v


@pytest.mark.parametrize("pa, pb", PAIRS)
def test_ref_pe_dot_exact(pa, pb):
    rng = np.random.default_rng(pa * 100 + pb)
    n = lanes(pa, pb)
    for _ in range(200):
        a, b = _operands(rng, pa, n), _operands(rng, pb, n)
        assert pe_dot(a, b, pa, pb) == sum(int(x) * int(y) for x, y in zip(a, b))
    lo_a, lo_b = code_range(pa)[0], code_range(pb)[0]
    assert pe_dot([lo_a] * n, [lo_b] * n, pa, pb) == n * lo_a * lo_b


def multiplier_inputs(a, b, pa, pb):
    """The offset-binary slices each grid multiplier receives, as golden.pe_array's docstring defines them."""
    sa, sb = span(pa), span(pb)
    va = to_slices(offset_code(a, pa), 16 if pa == 12 else pa)
    vb = to_slices(offset_code(b, pb), 16 if pb == 12 else pb)
    ins_a, ins_b = [], []
    for index in range(GRID * GRID):
        row, col = divmod(index, GRID)
        lane = (row // sa) * (GRID // sb) + col // sb
        ins_a.append(int(va[lane, row % sa]))
        ins_b.append(int(vb[lane, col % sb]))
    return ins_a, ins_b


def rtl_pe_dots(beats, acc_width=44, stages=0):
    """Run beats [(a, b, pa, pb)] through one BitScalablePE as one reduction; the accumulator after each."""
    dut = BitScalablePE(acc_width=acc_width, stages=stages)
    out = []

    async def testbench(ctx):
        for i, (a, b, pa, pb) in enumerate(beats + [(None,) * 4] * (1 + stages)):
            if a is None:
                ctx.set(dut.a, [0] * 16)
                ctx.set(dut.b, [0] * 16)
                ctx.set(dut.ctl, {"first": 0})
            else:
                ins_a, ins_b = multiplier_inputs(a, b, pa, pb)
                ctx.set(dut.a, ins_a)
                ctx.set(dut.b, ins_b)
                ctx.set(dut.ctl, {"first": int(i == 0), "a_ge2": int(pa >= 8), "a_eq4": int(pa >= 12),
                                  "b_ge2": int(pb >= 8), "b_eq4": int(pb >= 12)})
            await ctx.tick()
            if i >= 1 + stages:     # latency 2 + stages: after tick i, acc holds the sum through beat i - 1 - stages
                out.append(ctx.get(dut.acc))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return out


def ref_pe_dots(beats):
    out, total = [], 0
    for a, b, pa, pb in beats:
        total += pe_offset_dot(a, b, pa, pb)
        out.append(total)
    return out


def test_ref_offset_dot():
    # The offset-binary sum is the unsigned dot product of the offset codes.
    rng = np.random.default_rng(7)
    for pa, pb in PAIRS:
        n = lanes(pa, pb)
        a, b = _operands(rng, pa, n), _operands(rng, pb, n)
        assert pe_offset_dot(a, b, pa, pb) == int(np.dot(offset_code(a, pa), offset_code(b, pb)))


@pytest.mark.parametrize("stages", range(MAX_STAGES + 1))
def test_sim_all_pairs(stages):
    # One reduction that changes precision every beat: each beat's shifts must follow its own spans.
    rng = np.random.default_rng(1)
    beats = []
    for pa, pb in PAIRS * 3:
        n = lanes(pa, pb)
        beats.append((_operands(rng, pa, n), _operands(rng, pb, n), pa, pb))
    assert rtl_pe_dots(beats, stages=stages) == ref_pe_dots(beats)


@pytest.mark.parametrize("stages", range(MAX_STAGES + 1))
def test_sim_extremes(stages):
    beats = []
    for pa, pb in PAIRS:
        n = lanes(pa, pb)
        (lo_a, hi_a), (lo_b, hi_b) = code_range(pa), code_range(pb)
        beats += [([lo_a] * n, [lo_b] * n, pa, pb), ([hi_a] * n, [lo_b] * n, pa, pb),
                  ([hi_a] * n, [hi_b] * n, pa, pb), ([0] * n, [lo_b] * n, pa, pb)]
    assert rtl_pe_dots(beats, stages=stages) == ref_pe_dots(beats)


def test_init():
    pe = BitScalablePE(acc_width=40)
    assert pe.acc_width == 40 and pe.stages == 0 and pe.latency == 2
    assert BitScalablePE(acc_width=40, stages=MAX_STAGES).latency == 2 + MAX_STAGES
    assert pe.signature.members["acc"].shape.width == 40
    assert Fixed16PE(acc_width=40).acc_width == 40


@pytest.mark.parametrize("cls", [BitScalablePE, Fixed16PE])
def test_init_wrong_acc_width(cls):
    with pytest.raises(TypeError, match=r"Accumulator width must be an integer, not '40'"):
        cls(acc_width="40")
    with pytest.raises(ValueError, match=r"Accumulator width must be at least 33 bits, not 32"):
        cls(acc_width=32)


def test_init_wrong_stages():
    with pytest.raises(TypeError, match=r"Stages must be an integer, not '1'"):
        BitScalablePE(acc_width=40, stages="1")
    with pytest.raises(ValueError, match=rf"Stages must be from 0 to {MAX_STAGES}, not {MAX_STAGES + 1}"):
        BitScalablePE(acc_width=40, stages=MAX_STAGES + 1)


def test_sim_fixed16():
    dut = Fixed16PE(acc_width=40)
    rng = random.Random(3)
    pairs = [(rng.randint(-32768, 32767), rng.randint(-32768, 32767)) for _ in range(50)]
    pairs += [(-32768, -32768)] * 4
    got = []

    async def testbench(ctx):
        for i, (a, b) in enumerate(pairs + [(0, 0)]):
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            ctx.set(dut.first, int(i == 0))
            await ctx.tick()
            if i >= 1:
                got.append(ctx.get(dut.acc))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert got == list(np.cumsum([a * b for a, b in pairs]))
