import json
import random

import numpy as np
import pytest
from amaranth.hdl import Const, Module, Signal
from amaranth.sim import Simulator

from golden.core import FRAC_RANGE
from golden.dfxp import PRECISIONS, Lfsr, code_range
from hw.config import preset
from hw.lfsr import LfsrBank, TAPS, advance, jump_matrix, step
from hw.requant import ConversionUnit, popcount
from verif.requant import MAX_THRESHOLD, Job, boundary_jobs, expected, golden_job, random_job
from verif.runner import run_bench

from .sim_streams import stream_get, stream_put


# -- hw/lfsr.py ----------------------------------------------------------------------------------------------

def test_taps_are_golden():
    assert TAPS == Lfsr.TAPS == 0x80200003


def test_step_and_advance_against_golden():
    states = [1, 0x80000000, 0xFFFFFFFF, 0xACE12024] + [random.Random(1).randrange(1, 1 << 32) for _ in range(4)]
    counts = (0, 1, 2, 16, 32, 100)
    state = Signal(32)
    outs = {n: Signal(32, name=f"ahead{n}") for n in counts}
    one = Signal(32)
    m = Module()
    m.d.comb += [outs[n].eq(advance(state, n)) for n in counts]
    m.d.comb += one.eq(step(state))
    got = {}

    async def bench(ctx):
        for s in states:
            ctx.set(state, s)
            got[s] = (ctx.get(one), {n: ctx.get(outs[n]) for n in counts})

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    for s in states:
        want = [s]
        for _ in range(max(counts)):
            want.append(Lfsr.step(want[-1]))
        assert got[s] == (want[1], {n: want[n] for n in counts})


def test_jump_matrix_of_one_draw_gives_golden_draws():
    lfsr = Lfsr(0x1234567)
    rows = jump_matrix(Lfsr.STEPS_PER_DRAW)
    state = lfsr.state
    for draw in Lfsr(0x1234567).draw(5):
        state = sum((bin(state & row).count("1") & 1) << i for i, row in enumerate(rows))
        assert state & 0xFFFF == draw


@pytest.mark.parametrize("steps, exc, message", [
    (-1, ValueError, "Step count must be non-negative, not -1"),
    (1.5, TypeError, "Step count must be an integer, not 1.5"),
])
def test_jump_matrix_wrong(steps, exc, message):
    with pytest.raises(exc, match=message):
        jump_matrix(steps)


def test_lfsr_bank_against_golden():
    # Random take patterns (0, 1 or 2 draws per lane per cycle), a seed load, a seed refused while busy.
    lanes = 3
    init = (5, 0xDEADBEEF, 0x13579BDF)
    dut = LfsrBank(lanes=lanes, draws=2, init=init)
    rng = random.Random(3)
    plan = [[rng.randrange(3) for _ in range(lanes)] for _ in range(40)]
    golden = [Lfsr(s) for s in init]
    seen = []

    async def bench(ctx):
        assert [ctx.get(dut.state[j]) for j in range(lanes)] == list(init)
        for cycle, takes in enumerate(plan):
            draws = [[ctx.get(dut.draw[j][d]) for d in range(2)] for j in range(lanes)]
            for j, take in enumerate(takes):
                ctx.set(dut.take[j], take)
                seen.append(draws[j][:take] == [int(v) for v in golden[j].draw(take)])
            if cycle == 20:
                ctx.set(dut.busy, 1)
                ctx.set(dut.seed.payload, {"lane": 1, "state": 77})
                ctx.set(dut.seed.valid, 1)
                assert not ctx.get(dut.seed.ready)
            if cycle == 21:
                ctx.set(dut.busy, 0)
                assert ctx.get(dut.seed.ready)        # the load wins over lane 1's draws this cycle
                golden[1] = Lfsr(77)
            await ctx.tick()
            if cycle == 21:
                ctx.set(dut.seed.valid, 0)
            assert [ctx.get(dut.state[j]) for j in range(lanes)] == [g.state for g in golden]

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert all(seen) and len(seen) == 40 * lanes


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(lanes=0), ValueError, "Lane count must be an integer in 1..64, not 0"),
    (dict(lanes="2"), TypeError, "Lane count must be an integer, not '2'"),
    (dict(lanes=2, draws=3), ValueError, "Draw count must be 1 or 2, not 3"),
    (dict(lanes=2, draws=None), TypeError, "Draw count must be an integer, not None"),
    (dict(lanes=2, init=(1, 0)), ValueError, r"Initial states must be 2 non-zero 32-bit integers, not \(1, 0\)"),
    (dict(lanes=2, init=(1,)), ValueError, r"Initial states must be 2 non-zero 32-bit integers, not \(1,\)"),
])
def test_lfsr_bank_init_wrong(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        LfsrBank(**kwargs)


def test_lfsr_bank_init():
    bank = LfsrBank(lanes=4, draws=2)
    assert bank.lanes == 4 and bank.draws == 2 and bank.init == (Lfsr().state,) * 4


def test_popcount():
    m = Module()
    bits = Signal(7)
    out = Signal(3)
    m.d.comb += out.eq(popcount(bits))
    got = []

    async def bench(ctx):
        for v in range(128):
            ctx.set(bits, v)
            got.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == [bin(v).count("1") for v in range(128)]
    assert Const(0, 1).shape() == popcount([]).shape()


# -- the conversion unit -----------------------------------------------------------------------------------

def _record(view):
    return {name: int(getattr(view, name)) for name in ("ovf0", "ovf1", "elements", "next_frac")}


def rtl_convert(dut, jobs, seeds, *, stall=0.3, seed=0, reseed=None):
    """Run ``jobs`` through the unit after loading ``seeds`` ({lane: state}); ``reseed = (n, seeds)`` loads
    more seeds after the ``n``-th command, while that job runs. Returns codes and ``last`` per beat, the stats
    records, the final generator states and the ``counters`` port."""
    rng = random.Random(seed)
    out = {"codes": [], "last": [], "stats": [], "states": None, "counters": None}
    total = sum(job.beats for job in jobs)

    async def commands(ctx):
        for lane, state in seeds.items():
            await stream_put(ctx, dut.seed, {"lane": lane, "state": state})
        for n, job in enumerate(jobs):
            await stream_put(ctx, dut.cmd, job.command(), rng=rng, stall=stall)
            if reseed and n == reseed[0]:
                for lane, state in reseed[1].items():
                    await stream_put(ctx, dut.seed, {"lane": lane, "state": state})

    async def beats(ctx):
        for job in jobs:
            for k in range(job.beats):
                await stream_put(ctx, dut.i, job.beat(k), rng=rng, stall=stall)

    async def outputs(ctx):
        while len(out["codes"]) < total:
            view = await stream_get(ctx, dut.o, rng=rng, stall=stall)
            out["codes"].append([int(view.code[j]) for j in range(dut.lanes)])
            out["last"].append(int(view.last))

    async def records(ctx):
        while len(out["stats"]) < len(jobs):
            out["stats"].append(_record(await stream_get(ctx, dut.stats, rng=rng, stall=stall)))
        while len(out["codes"]) < total:
            await ctx.tick()
        await ctx.tick().repeat(5)
        out["states"] = [ctx.get(dut.state[j]) for j in range(dut.lanes)]
        out["counters"] = _record(ctx.get(dut.counters))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(commands, background=True)
    sim.add_testbench(beats, background=True)
    sim.add_testbench(outputs, background=True)
    sim.add_testbench(records)
    sim.run()
    return out


def ref_convert(lanes, jobs, seeds, *, reseed=None):
    """The golden model of :func:`rtl_convert`'s run."""
    lfsrs = [Lfsr() for _ in range(lanes)]
    out = {"codes": [], "last": [], "stats": [], "states": None, "counters": None}
    for lane, state in seeds.items():
        lfsrs[lane] = Lfsr(state)
    for n, job in enumerate(jobs):
        codes, stats = expected(golden_job(job), lfsrs)
        out["codes"] += [[int(v) for v in row] for row in codes]
        out["last"] += [int(k == job.beats - 1) for k in range(job.beats)]
        out["stats"].append(stats)
        if reseed and n == reseed[0]:
            for lane, state in reseed[1].items():
                if lane < lanes:
                    lfsrs[lane] = Lfsr(state)
    out["states"] = [g.state for g in lfsrs]
    out["counters"] = out["stats"][-1]
    return out


def _random_jobs(rng, lanes, acc_width, count, max_beats):
    return [random_job(rng, lanes, acc_width, beats=int(rng.integers(1, max_beats + 1))) for _ in range(count)]


@pytest.mark.parametrize("lanes, acc_width", [(3, 38), (1, 46), (4, 12)])
def test_sim_against_golden(lanes, acc_width):
    rng = np.random.default_rng(lanes * 100 + acc_width)
    jobs = _random_jobs(rng, lanes, acc_width, 40, 6)
    seeds = {j: int(rng.integers(1, 1 << 32)) for j in range(lanes)}
    dut = ConversionUnit(lanes=lanes, acc_width=acc_width, max_beats=8)
    assert rtl_convert(dut, jobs, seeds) == ref_convert(lanes, jobs, seeds)


def test_sim_reseed_between_jobs():
    # A seed sent while a job runs waits for its last beat, and the next command waits for the seed.
    rng = np.random.default_rng(7)
    jobs = [random_job(rng, 3, 20, beats=6, stochastic=True) for _ in range(4)]
    seeds, reseed = {0: 11, 1: 22, 2: 33}, (1, {1: 0x5EED, 3: 99})   # lane 3 does not exist: nothing loads
    dut = ConversionUnit(lanes=3, acc_width=20, max_beats=16)
    for stall in (0.0, 0.5):
        got = rtl_convert(dut, jobs, seeds, stall=stall, reseed=reseed)
        assert got == ref_convert(3, jobs, seeds, reseed=reseed)


def test_sim_stats_back_pressure():
    # Many one-beat jobs against a slow stats sink: every record arrives, in order.
    rng = np.random.default_rng(8)
    jobs = _random_jobs(rng, 2, 24, 30, 1)
    dut = ConversionUnit(lanes=2, acc_width=24, max_beats=4)
    got = rtl_convert(dut, jobs, {0: 3, 1: 4}, stall=0.7, seed=2)
    assert got == ref_convert(2, jobs, {0: 3, 1: 4})


def test_sim_throughput_and_latency():
    # No stalls: one beat per cycle through back-to-back jobs; codes offered LATENCY edges after their beat is
    # taken, and taken by the always-ready sink one edge later.
    rng = np.random.default_rng(9)
    jobs = [random_job(rng, 2, 16, beats=b, stochastic=True) for b in (5, 1, 1, 3)]
    dut = ConversionUnit(lanes=2, acc_width=16, max_beats=8)
    taken, given = [], []

    async def bench(ctx):
        for job in jobs:
            ctx.set(dut.cmd.payload, job.command())
            ctx.set(dut.cmd.valid, 1)
            await ctx.tick().until(dut.cmd.ready)
        ctx.set(dut.cmd.valid, 0)

    async def beats(ctx):
        cycle = 0
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.stats.ready, 1)
        pending = [job.beat(k) for job in jobs for k in range(job.beats)]
        while len(given) < len(pending):
            if len(taken) < len(pending):
                ctx.set(dut.i.payload, pending[len(taken)])
            ctx.set(dut.i.valid, len(taken) < len(pending))
            _, _, i_fire, o_fire = await ctx.tick().sample(dut.i.valid & dut.i.ready, dut.o.valid & dut.o.ready)
            cycle += 1
            if i_fire:
                taken.append(cycle)
            if o_fire:
                given.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench, background=True)
    sim.add_testbench(beats)
    sim.run()
    assert taken == list(range(taken[0], taken[0] + len(taken)))        # one beat per cycle, no bubble
    assert [g - t for g, t in zip(given, taken)] == [ConversionUnit.LATENCY + 1] * len(taken)


def test_sim_draw_boundaries():
    # Stochastic decisions made by the draw itself (fraction bits = draw +- 1; thresholds just around it).
    rng = np.random.default_rng(11)
    seeds = {0: 0x1111, 1: 0x2222, 2: 0x3333}
    lfsrs = [Lfsr(seeds[j]) for j in range(3)]
    jobs = []
    for _ in range(3):
        batch = boundary_jobs(lfsrs, rng, beats=5)
        for job in batch:
            expected(job, lfsrs)                # move the model's generators past the batch
        jobs += batch
    dut = ConversionUnit(lanes=3, acc_width=32, max_beats=8)
    assert rtl_convert(dut, jobs, seeds, stall=0.2) == ref_convert(3, jobs, seeds)


def _exhaustive_jobs(lanes, acc_width, shifts, bits_list=PRECISIONS):
    values = np.arange(-(1 << (acc_width - 1)), 1 << (acc_width - 1), dtype=np.int64).reshape(-1, lanes)
    en = np.ones(values.shape, dtype=bool)
    jobs = []
    for bits in bits_list:
        for shift in shifts:
            for stochastic in (False, True):
                jobs.append(Job(values, en, shift, 0, bits, stochastic, relu=False))
    return jobs


def test_sim_every_value_of_a_small_accumulator():
    # All 2**10 accumulator values, both roundings, every code width, shifts around the interesting range.
    jobs = _exhaustive_jobs(8, 10, (-12, 0, 1, 3, 10, 26))
    dut = ConversionUnit(lanes=8, acc_width=10, max_beats=128)
    seeds = {j: 1000 + j for j in range(8)}
    assert rtl_convert(dut, jobs, seeds, stall=0.0) == ref_convert(8, jobs, seeds)


@pytest.mark.slow
def test_sim_every_value_every_shift():
    jobs = _exhaustive_jobs(8, 10, range(-20, 30))
    dut = ConversionUnit(lanes=8, acc_width=10, max_beats=128)
    seeds = {j: 1000 + j for j in range(8)}
    assert rtl_convert(dut, jobs, seeds, stall=0.0) == ref_convert(8, jobs, seeds)


def test_sim_thresholds_and_frac_limits():
    # Every small code through every threshold; the overflow rule at both ends of FRAC_RANGE.
    lanes = 4
    jobs = []
    for bits in PRECISIONS:
        lo, hi = code_range(bits)
        for k in range(1, MAX_THRESHOLD + 1):
            tau = 1 << k
            codes = sorted({c for c in [*range(-16, 17), tau - 1, tau, tau + 1, -tau + 1, -tau, -tau - 1, lo, hi]
                            if lo <= c <= hi})
            codes += [0] * (-len(codes) % lanes)
            acc = (np.array(codes, dtype=np.int64) << 3).reshape(-1, lanes)
            jobs.append(Job(acc, np.ones(acc.shape, dtype=bool), 3, 0, bits, True, threshold=k))
        full = np.full((2, lanes), hi + 1, dtype=np.int64)
        every = np.ones(full.shape, dtype=bool)
        for frac in (FRAC_RANGE[0], 5, FRAC_RANGE[1]):
            jobs.append(Job(full, every, 0, frac, bits, overflow_shift=1))           # frac - 1
            jobs.append(Job(full * 0, every, 0, frac, bits))                         # frac + 1
            jobs.append(Job(full - 1, every, 0, frac, bits, overflow_shift=2))       # frac
    lim = FRAC_RANGE
    dut = ConversionUnit(lanes=lanes, acc_width=20, max_beats=64)
    seeds = {j: 77 + j for j in range(lanes)}
    got = rtl_convert(dut, jobs, seeds, stall=0.2)
    want = ref_convert(lanes, jobs, seeds)
    assert got == want
    assert [s["next_frac"] for s in want["stats"][-9:]] == [lim[0], lim[0] + 1, lim[0], 4, 6, 5, lim[1] - 1, lim[1],
                                                          lim[1]]


def test_threshold_saturates_to_the_code_range():
    # Thresholds at or beyond bits - 1: a kept code is +-2**k saturated (golden and the unit alike).
    lfsrs = [Lfsr(1)]
    job = Job(np.array([[32767]] * 8), np.ones((8, 1), dtype=bool), 0, 0, 16, True, threshold=15)
    codes, _ = expected(job, lfsrs)
    assert codes.max() <= (1 << 15) - 1 and MAX_THRESHOLD == 15


def test_init():
    dut = ConversionUnit(lanes=8, acc_width=44)
    assert (dut.lanes, dut.acc_width, dut.max_beats, dut.latency) == (8, 44, 1 << 16, ConversionUnit.LATENCY)
    assert len(dut.cmd.payload.beats_m1) == 16 and len(dut.stats.payload.elements) == 20


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(lanes=0, acc_width=40), ValueError, "Lane count must be an integer in 1..64, not 0"),
    (dict(lanes=65, acc_width=40), ValueError, "Lane count must be an integer in 1..64, not 65"),
    (dict(lanes=2.0, acc_width=40), TypeError, "Lane count must be an integer, not 2.0"),
    (dict(lanes=2, acc_width=47), ValueError, "Accumulator width must be an integer in 2..46, not 47"),
    (dict(lanes=2, acc_width=1), ValueError, "Accumulator width must be an integer in 2..46, not 1"),
    (dict(lanes=2, acc_width=True), TypeError, "Accumulator width must be an integer, not True"),
    (dict(lanes=2, acc_width=40, max_beats=12), ValueError, "Maximum beat count must be a power of two >= 2, not 12"),
    (dict(lanes=2, acc_width=40, max_beats=1), ValueError, "Maximum beat count must be a power of two >= 2, not 1"),
    (dict(lanes=2, acc_width=40, max_beats="8"), TypeError, "Maximum beat count must be an integer, not '8'"),
])
def test_init_wrong(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        ConversionUnit(**kwargs)


def test_bench(simulator):
    result = run_bench("requant", preset("small"), simulator)
    assert result.tests == 4 and result.failed == 0 and result.passed, f"seed {result.seed}, log {result.run_dir}"



@pytest.mark.slow
def test_bench_default_config(simulator):
    # The default build: 8 lanes (44-bit accumulators for the conversion unit).
    result = run_bench("requant", preset("default"), simulator)
    assert result.tests == 4 and result.failed == 0 and result.passed, f"seed {result.seed}, log {result.run_dir}"

def test_bench_throughput(simulator, tmp_path):
    out = tmp_path / "perf.json"
    result = run_bench("requant", preset("small"), simulator, testcase="throughput",
                       extra_env={"EDGETRAIN_PERF_OUT": str(out), "EDGETRAIN_PERF_BEATS": "300"})
    assert result.passed, f"seed {result.seed}, log {result.run_dir}"
    report = json.loads(out.read_text())
    assert report["latency_cycles"] == ConversionUnit.LATENCY
    assert report["long_job"]["beats"] == 300 and report["long_job"]["cycles"] == 300
    assert report["one_beat_jobs"]["elements_per_cycle_per_lane"] == 1.0
