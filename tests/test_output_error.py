import dataclasses
import random

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from golden.core import FRAC_RANGE, LOG2E, RECIP_BITS, softmax_parts
from golden.dfxp import Lfsr
from hw.config import apply_overrides, preset
from hw.output_error import (RECIP_CYCLES, STAGE_DELAYS_NS, OutputErrorUnit, Reciprocal, SoftmaxUnit, _signed_digits,
                             exp2_exponent, exp2_product, exp2_product_first, exp2_product_second, exp2_shift,
                             exp2_value, max_beats)
from verif.output_error import Job, expected, random_job, random_logits
from verif.runner import run_bench

from .sim_streams import stream_get, stream_put


DEPTHS = range(len(STAGE_DELAYS_NS))
DEEPEST = len(STAGE_DELAYS_NS) - 1


# -- the exponent ---------------------------------------------------------------------------------------------

def rtl_exp(cases, *, product=False):
    """E of the logic of :func:`exp2_exponent` and :func:`exp2_value` for ``(d, frac_z)`` pairs; with
    ``product``, of the pipelined form's :func:`exp2_product_first`, :func:`exp2_product_second` and
    :func:`exp2_shift` (``z`` and its maximum apart, the maximum spread over the codes that keep ``z = max +
    d`` a 16-bit code)."""
    d, scale = Signal(signed(17)), Signal(signed(8))
    z, zmax = Signal(signed(16)), Signal(signed(16))
    e = Signal(unsigned(16))
    m = Module()
    if product:
        t = exp2_shift(exp2_product_second(exp2_product_first(z, zmax)), scale)
    else:
        t = exp2_exponent(d, scale)
    m.d.comb += e.eq(exp2_value(t))
    got = []

    async def bench(ctx):
        for n, (dd, frac_z) in enumerate(cases):
            top = 32767 - (n * 7919) % (65536 + dd)
            ctx.set(d, dd)
            ctx.set(z, top + dd)
            ctx.set(zmax, top)
            ctx.set(scale, frac_z + 6)
            got.append(ctx.get(e))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return got


def ref_exp(cases):
    """E of :func:`golden.core.softmax_parts` for a logit ``d`` below the maximum of its column."""
    out = []
    for dd, frac_z in cases:
        e, *_ = softmax_parts(np.array([[32767], [32767 + dd]]), frac_z)
        out.append(int(e[1, 0]))
    return out


@pytest.mark.parametrize("product", [False, True])
def test_exp_against_golden(product):
    # Every frac_z, differences from 0 to the largest, multiples of 64 and of large powers of two.
    rng = np.random.default_rng(0)
    diffs = sorted({0, 1, 2, 63, 64, 65, 1 << 10, 1 << 15, 65535} | {int(v) for v in rng.integers(0, 65536, 40)}
                   | {int(v) << s for s in (6, 10, 14) for v in rng.integers(1, 4, 2)})
    cases = [(-d, f) for f in range(FRAC_RANGE[0], FRAC_RANGE[1] + 1) for d in diffs if d < 65536]
    assert rtl_exp(cases, product=product) == ref_exp(cases)


@pytest.mark.parametrize("product", [False, True])
def test_exp_every_difference(product):
    # Every difference at a few realistic fractional lengths.
    cases = [(-d, f) for f in (0, 4, 9) for d in range(0, 65536, 7)]
    assert rtl_exp(cases, product=product) == ref_exp(cases)


def test_exp_product_signed_digits():
    # The signed digits the products are built from add up to their factors, none adjacent.
    for factor, count in ((LOG2E, 6), (19, 3), (311, 4)):
        digits = _signed_digits(factor)
        assert sum(sign << shift for sign, shift in digits) == factor and len(digits) == count
        assert all(b - a >= 2 for (_, a), (_, b) in zip(digits, digits[1:]))


def test_exp_product_every_difference():
    # exp2_product (d * LOG2E as a sum of signed digits) over every 17-bit difference at or below 0.
    d, prod = Signal(signed(17)), Signal(signed(30))
    m = Module()
    m.d.comb += prod.eq(exp2_product(d))
    got = []

    async def bench(ctx):
        for dd in range(-65535, 1, 3):
            ctx.set(d, dd)
            got.append(ctx.get(prod) == dd * LOG2E)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert all(got) and len(got) == 21846


# -- the reciprocal -------------------------------------------------------------------------------------------

def rtl_reciprocal(dut, sums, *, stall=0.3, seed=0):
    rng = random.Random(seed)
    got = []

    async def source(ctx):
        for s in sums:
            await stream_put(ctx, dut.i, s, rng=rng, stall=stall)

    async def sink(ctx):
        while len(got) < len(sums):
            payload = await stream_get(ctx, dut.o, rng=rng, stall=stall)
            got.append([int(v) for v in payload])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source, background=True)
    sim.add_testbench(sink)
    sim.run()
    return got


@pytest.mark.parametrize("stages", DEPTHS)
@pytest.mark.parametrize("width", [16, 24, 32])
def test_reciprocal_against_golden(width, stages):
    rng = np.random.default_rng(width)
    lanes, top = 4, (1 << width) - 1
    ends = [1 << 15, (1 << 15) + 1, (1 << 16) - 1, (3 << 15) & top or 1 << 15, (10 << 15) & top or top, top,
            top - 1, (top >> 1) + 1]
    sums = [[int(v) for v in rng.integers(1 << 15, top, lanes, endpoint=True)] for _ in range(20)]
    sums += [[int(v) for v in rng.integers(1 << 15, min(3 << 15, top + 1), lanes)] for _ in range(10)]
    sums += [ends[k:k + lanes] for k in range(0, len(ends), lanes)]
    got = rtl_reciprocal(Reciprocal(lanes=lanes, sum_width=width, stages=stages), sums)
    assert got == [[(1 << RECIP_BITS) // s for s in row] for row in sums]


@pytest.mark.parametrize("stages", DEPTHS)
def test_reciprocal_latency(stages):
    dut = Reciprocal(lanes=1, sum_width=16, stages=stages)
    cycles = []

    async def bench(ctx):
        for s in (1 << 15, 3 << 14, (1 << 16) - 1):
            ctx.set(dut.i.payload, [s])
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            count = 0
            while not ctx.get(dut.o.valid):
                await ctx.tick()
                count += 1
            cycles.append(count)
            assert [int(v) for v in ctx.get(dut.o.payload)] == [(1 << RECIP_BITS) // s]
            ctx.set(dut.o.ready, 1)
            await ctx.tick()
            ctx.set(dut.o.ready, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert cycles == [RECIP_CYCLES] * 3


# -- the softmax ----------------------------------------------------------------------------------------------

def rtl_softmax(dut, jobs, *, stall=0.3, seed=0):
    """``g`` beats (acc of the enabled lanes, en) of :class:`SoftmaxUnit` for ``jobs``."""
    rng = random.Random(seed)
    beats = [beat for job in jobs for beat in job.beats(dut.lanes)]
    got = []

    async def commands(ctx):
        for job in jobs:
            await stream_put(ctx, dut.cmd, {"frac_z": job.frac_z, "groups_m1": job.groups(dut.lanes) - 1},
                             rng=rng, stall=stall)

    async def source(ctx):
        for beat in beats:
            await stream_put(ctx, dut.i, beat, rng=rng, stall=stall)

    async def sink(ctx):
        while len(got) < len(beats):
            payload = await stream_get(ctx, dut.o, rng=rng, stall=stall)
            en = int(payload.en)
            got.append(([int(payload.acc[c]) for c in range(dut.lanes) if en >> c & 1], en))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(commands, background=True)
    sim.add_testbench(source, background=True)
    sim.add_testbench(sink)
    sim.run()
    return got


def ref_softmax(jobs, lanes):
    """``p - onehot`` of :func:`golden.core.softmax_parts` in the unit's beat order."""
    out = []
    for job in jobs:
        *_, p = softmax_parts(job.z, job.frac_z)
        g = p.copy()
        g[job.labels, np.arange(job.batch)] -= 1 << 16
        for first in range(0, job.batch, lanes):
            cols = range(first, min(job.batch, first + lanes))
            out += [([int(g[k, c]) for c in cols], (1 << len(cols)) - 1) for k in range(job.z.shape[0])]
    return out


@pytest.mark.parametrize("stages", DEPTHS)
@pytest.mark.parametrize("lanes, classes", [(3, 10), (1, 2), (4, 7), (2, 3)])
def test_softmax_against_golden(lanes, classes, stages):
    rng = np.random.default_rng(lanes * 100 + classes)
    jobs = [random_job(rng, classes, lanes) for _ in range(8)]
    assert rtl_softmax(SoftmaxUnit(lanes=lanes, classes=classes, stages=stages), jobs) == ref_softmax(jobs, lanes)


@pytest.mark.parametrize("stages", DEPTHS)
def test_softmax_heavy_stalls(stages):
    # Long stalls on every stream: the exponent, reciprocal and output stages hold and resume at every depth.
    rng = np.random.default_rng(50 + stages)
    jobs = [random_job(rng, 4, 2) for _ in range(6)]
    dut = SoftmaxUnit(lanes=2, classes=4, stages=stages)
    for stall, seed in ((0.0, 0), (0.8, 1), (0.5, 2)):
        assert rtl_softmax(dut, jobs, stall=stall, seed=seed) == ref_softmax(jobs, 2)


def test_softmax_internals():
    # The parts of the golden softmax the unit is built from, on extreme columns: E of the maximum is
    # 2**15, S is at least that, R at most 2**20, p at most 2**16 (so g fits 18 bits).
    rng = np.random.default_rng(2)
    z = random_logits(rng, 256, 300)
    for frac_z in (FRAC_RANGE[0], -6, 0, 8, FRAC_RANGE[1]):
        e, s, r, p = softmax_parts(z, frac_z)
        assert (e.max(axis=0) == 1 << 15).all() and (e <= 1 << 15).all()
        assert (s >= 1 << 15).all() and (s <= 256 << 15).all() and (r <= 1 << 20).all()
        assert (p <= 1 << 16).all() and (p >= 0).all()


def _timing(dut, groups, classes, lanes, *, gap=0.0, seed=0):
    """Cycles of each input and output transfer of one job of full groups, ``o`` always ready; the input
    beats idle on random cycles (probability ``gap``)."""
    rng = random.Random(seed)
    t_in, t_out = [], []

    async def bench(ctx):
        ctx.set(dut.cmd.payload.frac_z, 3)
        ctx.set(dut.cmd.payload.groups_m1, groups - 1)
        ctx.set(dut.cmd.valid, 1)
        ctx.set(dut.o.ready, 1)
        if hasattr(dut, "stats"):
            ctx.set(dut.stats.ready, 1)
        ctx.set(dut.i.payload.en, (1 << lanes) - 1)
        sent = cycle = 0
        while len(t_out) < groups * classes:
            ctx.set(dut.i.valid, sent < groups * classes and rng.random() >= gap)
            *_, cmd_fire, in_fire, out_fire = await ctx.tick().sample(
                dut.cmd.valid & dut.cmd.ready, dut.i.valid & dut.i.ready, dut.o.valid & dut.o.ready)
            cycle += 1
            if cmd_fire:
                ctx.set(dut.cmd.valid, 0)
            if in_fire:
                sent += 1
                t_in.append(cycle)
            if out_fire:
                t_out.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return t_in, t_out


@pytest.mark.parametrize("stages", DEPTHS)
@pytest.mark.parametrize("unit", [SoftmaxUnit, OutputErrorUnit])
@pytest.mark.parametrize("classes", [2, 10])
def test_sim_latency_and_throughput(unit, classes, stages):
    lanes, groups = 2, 5
    dut = unit(lanes=lanes, classes=classes, stages=stages)
    t_in, t_out = _timing(dut, groups, classes, lanes)
    firsts = t_out[::classes]
    # A stage adds two cycles of latency and nothing to the group rate.
    assert dut.latency == classes + RECIP_CYCLES + (7 if unit is SoftmaxUnit else 10) + 2 * stages
    assert firsts[0] - t_in[classes - 1] == dut.latency
    assert list(np.diff(firsts)) == [dut.group_cycles] * (groups - 1)
    assert dut.group_cycles == classes + RECIP_CYCLES + 4
    # The rows of a group leave one per cycle.
    assert all(t_out[g * classes + k] == firsts[g] + k for g in range(groups) for k in range(classes))


@pytest.mark.parametrize("stages", DEPTHS)
def test_sim_group_timing(stages):
    # Input beats with random gaps, o always ready: a group's first code comes at the later of its last logit
    # beat + latency and the previous group's first code + group_cycles (the core's cycle model), at every
    # depth.
    lanes, groups = 2, 6
    for seed, (classes, gap) in enumerate([(3, 0.0), (10, 0.3), (2, 0.6), (5, 0.9), (10, 0.8)]):
        dut = OutputErrorUnit(lanes=lanes, classes=classes, stages=stages)
        t_in, t_out = _timing(dut, groups, classes, lanes, gap=gap, seed=seed)
        first = None
        for g, last in enumerate(t_in[classes - 1::classes]):
            first = last + dut.latency if first is None else max(last + dut.latency, first + dut.group_cycles)
            assert t_out[g * classes:(g + 1) * classes] == list(range(first, first + classes)), (seed, g)


# -- the whole unit -------------------------------------------------------------------------------------------

def rtl_output_error(dut, events, *, stall=0.3, seed=0):
    """Run ``events`` in order - ``("seed", {lane: state})`` loads generators, ``("job", job)`` sends a
    command (its beats follow on their own stream); returns the ``(codes, last)`` beats, the stats records
    and the generators' states at the end."""
    rng = random.Random(seed)
    lanes = dut.lanes
    jobs = [job for kind, job in events if kind == "job"]
    beats = [beat for job in jobs for beat in job.beats(lanes)]
    got, records, states = [], [], []

    async def control(ctx):
        for kind, item in events:
            if kind == "seed":
                for lane, value in item.items():
                    await stream_put(ctx, dut.seed, {"lane": lane, "state": value}, rng=rng, stall=stall)
            else:
                await stream_put(ctx, dut.cmd, item.command(lanes), rng=rng, stall=stall)

    async def source(ctx):
        for beat in beats:
            await stream_put(ctx, dut.i, beat, rng=rng, stall=stall)

    async def stats(ctx):
        while len(records) < len(jobs):
            payload = await stream_get(ctx, dut.stats, rng=rng, stall=stall)
            records.append({name: int(getattr(payload, name)) for name in ("ovf0", "ovf1", "elements",
                                                                             "next_frac")})

    async def sink(ctx):
        while len(got) < len(beats):
            payload = await stream_get(ctx, dut.o, rng=rng, stall=stall)
            got.append(([int(payload.code[c]) for c in range(lanes)], int(payload.last)))
        while len(records) < len(jobs):
            await ctx.tick()
        await ctx.tick().repeat(5)      # a surplus beat or record would show
        assert not ctx.get(dut.o.valid) and not ctx.get(dut.stats.valid)
        states.extend(int(v) for v in ctx.get(dut.state))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for bench in (control, source, stats):
        sim.add_testbench(bench, background=True)
    sim.add_testbench(sink)
    sim.run()
    return got, records, states


def ref_output_error(lanes, events):
    lfsrs = [Lfsr() for _ in range(lanes)]
    beats, records = [], []
    for kind, item in events:
        if kind == "seed":
            for lane, value in item.items():
                lfsrs[lane] = Lfsr(value)
        else:
            b, r = expected(item, lfsrs)
            beats += b
            records.append(r)
    return beats, records, [g.state for g in lfsrs]


def _seeds(rng, lanes):
    return {lane: int(v) for lane, v in enumerate(rng.integers(1, 1 << 32, lanes))}


@pytest.mark.parametrize("stages", DEPTHS)
@pytest.mark.parametrize("lanes, classes", [(3, 10), (2, 2), (1, 5)])
def test_sim_against_golden(lanes, classes, stages):
    rng = np.random.default_rng(lanes * 10 + classes)
    events = [("seed", _seeds(rng, lanes))] + [("job", random_job(rng, classes, lanes)) for _ in range(10)]
    dut = OutputErrorUnit(lanes=lanes, classes=classes, max_groups=8, stages=stages)
    assert rtl_output_error(dut, events) == ref_output_error(lanes, events)


@pytest.mark.parametrize("stages", DEPTHS)
def test_sim_seeds_between_jobs(stages):
    # A seed sent after a job's command lands after that job's draws, even while the conversion is still
    # busy with an earlier job; the reset state is the golden generator's default seed.
    rng = np.random.default_rng(3)
    lanes, classes = 2, 3
    events = [("job", random_job(rng, classes, lanes, batch=5)), ("job", random_job(rng, classes, lanes)),
              ("seed", {1: 77}), ("job", random_job(rng, classes, lanes)), ("seed", _seeds(rng, lanes)),
              ("seed", {0: 5}), ("job", random_job(rng, classes, lanes, batch=1))]
    dut = OutputErrorUnit(lanes=lanes, classes=classes, max_groups=4, stages=stages)
    for stall in (0.0, 0.5):
        assert rtl_output_error(dut, events, stall=stall) == ref_output_error(lanes, events)


@pytest.mark.parametrize("stages", DEPTHS)
def test_sim_every_frac_z(stages):
    # Corner columns at every frac_z, one job each, back to back without stalls: the largest gap, all
    # equal, a tie for the maximum, logits one code apart, gaps of multiples of 64.
    lanes = 2
    z = np.array([[32767, 32767, 7, -32768, 0], [-32768, 32767, 7, -32767, -64], [-32768, 32767, 0, -32766, -1024],
                  [-32768, 32767, -1, -32765, -32768]])
    events = [("seed", {0: 1, 1: 0xDEADBEEF})]
    events += [("job", Job(z, np.array([0, 1, 2, 3, 1]), f, 12, 16)) for f in range(FRAC_RANGE[0], FRAC_RANGE[1] + 1)]
    dut = OutputErrorUnit(lanes=lanes, classes=4, max_groups=3, stages=stages)
    assert rtl_output_error(dut, events, stall=0.0) == ref_output_error(lanes, events)


# -- construction ---------------------------------------------------------------------------------------------

def test_init():
    dut = OutputErrorUnit(lanes=8, classes=10)
    assert (dut.lanes, dut.classes, dut.max_groups) == (8, 10, 1024)
    assert dut.group_cycles == 10 + RECIP_CYCLES + 4 and dut.latency == 10 + RECIP_CYCLES + 10
    assert dut.stages == SoftmaxUnit(lanes=8, classes=10).stages == 0
    deep = OutputErrorUnit(lanes=8, classes=10, stages=DEEPEST)
    assert deep.group_cycles == dut.group_cycles and deep.latency == dut.latency + 2 * DEEPEST
    assert dut.i.payload.shape()["label"].shape.elem_shape == unsigned(4)
    assert dut.cmd.payload.shape()["groups_m1"].shape == unsigned(10)
    assert max_beats(10, 1024) == 1 << 14 and max_beats(2, 1) == 2 and max_beats(256, 4) == 1 << 10
    assert dut.stats.payload.shape()["elements"].shape == unsigned((8 << 14).bit_length())
    assert SoftmaxUnit(lanes=1, classes=2, max_groups=1).cmd.payload.shape()["groups_m1"].shape == unsigned(1)


@pytest.mark.parametrize("unit", [OutputErrorUnit, SoftmaxUnit])
@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(lanes=0, classes=10), ValueError, "Lane count must be an integer in 1..64, not 0"),
    (dict(lanes=65, classes=10), ValueError, "Lane count must be an integer in 1..64, not 65"),
    (dict(lanes=2.0, classes=10), TypeError, "Lane count must be an integer, not 2.0"),
    (dict(lanes=2, classes=1), ValueError, "Class count must be an integer in 2..256, not 1"),
    (dict(lanes=2, classes=257), ValueError, "Class count must be an integer in 2..256, not 257"),
    (dict(lanes=2, classes="10"), TypeError, "Class count must be an integer, not '10'"),
    (dict(lanes=2, classes=10, max_groups=0), ValueError, "Group limit must be at least 1, not 0"),
    (dict(lanes=2, classes=10, max_groups=True), TypeError, "Group limit must be an integer, not True"),
])
def test_init_wrong(unit, kwargs, exc, message):
    with pytest.raises(exc, match=message):
        unit(**kwargs)


@pytest.mark.parametrize("unit, kwargs", [(OutputErrorUnit, dict(lanes=2, classes=10)),
                                          (SoftmaxUnit, dict(lanes=2, classes=10)),
                                          (Reciprocal, dict(lanes=2, sum_width=20))])
@pytest.mark.parametrize("stages, exc, message", [
    (1.0, TypeError, "Stages must be an integer, not 1.0"),
    (False, TypeError, "Stages must be an integer, not False"),
    (-1, ValueError, f"Stages must be from 0 to {DEEPEST}, not -1"),
    (DEEPEST + 1, ValueError, f"Stages must be from 0 to {DEEPEST}, not {DEEPEST + 1}"),
])
def test_init_wrong_stages(unit, kwargs, stages, exc, message):
    with pytest.raises(exc, match=message):
        unit(**kwargs, stages=stages)


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(lanes=0, sum_width=20), ValueError, "Lane count must be an integer in 1..64, not 0"),
    (dict(lanes=1, sum_width=15), ValueError, "Sum width must be an integer in 16..32, not 15"),
    (dict(lanes=1, sum_width=33), ValueError, "Sum width must be an integer in 16..32, not 33"),
    (dict(lanes=1, sum_width=None), TypeError, "Sum width must be an integer, not None"),
])
def test_init_wrong_reciprocal(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        Reciprocal(**kwargs)


def test_bench(simulator):
    result = run_bench("output_error", preset("small"), simulator)
    assert result.tests == 3 and result.passed, f"seed {result.seed}, log {result.run_dir}"


def _at_depth(stages):
    config = apply_overrides(preset("small"), [f"pipeline.output_error={stages}"])
    return dataclasses.replace(config, name=f"small-oe{stages}")


def test_bench_deepest(simulator):
    result = run_bench("output_error", _at_depth(DEEPEST), simulator)
    assert result.tests == 3 and result.passed, f"seed {result.seed}, log {result.run_dir}"


@pytest.mark.slow
@pytest.mark.parametrize("stages", DEPTHS)
def test_bench_every_depth(simulator, stages):
    result = run_bench("output_error", _at_depth(stages), simulator)
    assert result.tests == 3 and result.passed, f"seed {result.seed}, log {result.run_dir}"
