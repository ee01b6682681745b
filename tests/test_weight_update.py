import dataclasses
import json
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.core import weight_update
from golden.dfxp import Lfsr
from hw.config import apply_overrides, preset
from hw.weight_update import STAGE_DELAYS_NS, WeightUpdateUnit
from verif.runner import run_bench
from verif.weight_update import HI, LO, UpdateJob, boundary_updates, expected, random_update

from .sim_streams import stream_get, stream_put


DEPTHS = range(len(STAGE_DELAYS_NS))
DEEPEST = len(STAGE_DELAYS_NS) - 1


def rtl_update(dut, jobs, seeds, *, stall=0.3, seed=0, reseed=None):
    """Run ``jobs`` through the unit after loading ``seeds`` ({lane: state}); ``reseed = (n, seeds)`` loads
    more after the ``n``-th command, while that job runs. Returns the new masters and ``last`` per beat and
    the final generator states."""
    rng = random.Random(seed)
    out = {"master": [], "last": [], "states": None}
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
        while len(out["master"]) < total:
            view = await stream_get(ctx, dut.o, rng=rng, stall=stall)
            out["master"].append([int(view.master[j]) for j in range(dut.lanes)])
            out["last"].append(int(view.last))
        await ctx.tick().repeat(5)
        out["states"] = [ctx.get(dut.state[j]) for j in range(dut.lanes)]

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(commands, background=True)
    sim.add_testbench(beats, background=True)
    sim.add_testbench(outputs)
    sim.run()
    return out


def ref_update(lanes, jobs, seeds, *, reseed=None):
    """The golden model of :func:`rtl_update`'s run."""
    lfsrs = [Lfsr() for _ in range(lanes)]
    for lane, state in seeds.items():
        lfsrs[lane] = Lfsr(state)
    out = {"master": [], "last": [], "states": None}
    for n, job in enumerate(jobs):
        out["master"] += [[int(v) for v in row] for row in expected(job, lfsrs)]
        out["last"] += [int(k == job.beats - 1) for k in range(job.beats)]
        if reseed and n == reseed[0]:
            for lane, state in reseed[1].items():
                if lane < lanes:
                    lfsrs[lane] = Lfsr(state)
    out["states"] = [g.state for g in lfsrs]
    return out


@pytest.mark.parametrize("stages", DEPTHS)
@pytest.mark.parametrize("lanes", [1, 3, 8])
def test_sim_against_golden(lanes, stages):
    rng = np.random.default_rng(lanes)
    jobs = [random_update(rng, lanes, beats=int(rng.integers(1, 7))) for _ in range(40)]
    seeds = {j: int(rng.integers(1, 1 << 32)) for j in range(lanes)}
    dut = WeightUpdateUnit(lanes=lanes, max_beats=8, stages=stages)
    assert rtl_update(dut, jobs, seeds) == ref_update(lanes, jobs, seeds)


@pytest.mark.parametrize("stages", DEPTHS)
def test_sim_heavy_stalls(stages):
    # Stalls on every stream at once, often: the pipeline holds and resumes at every depth.
    rng = np.random.default_rng(40 + stages)
    jobs = [random_update(rng, 3, beats=int(rng.integers(1, 9))) for _ in range(25)]
    seeds = {j: int(rng.integers(1, 1 << 32)) for j in range(3)}
    dut = WeightUpdateUnit(lanes=3, max_beats=8, stages=stages)
    for stall, seed in ((0.7, 1), (0.5, 2)):
        assert rtl_update(dut, jobs, seeds, stall=stall, seed=seed) == ref_update(3, jobs, seeds)


@pytest.mark.parametrize("stages", DEPTHS)
def test_sim_every_shift(stages):
    # Every shift the golden model distinguishes, and both ends of the 9-bit field, over the extremes and a
    # sample of gradients (including exact halves for the draws to decide).
    lanes = 4
    grads = [LO, LO + 1, -3, -2, -1, 0, 1, 2, 3, HI - 1, HI, 0x4000, -0x4000, 0x2001, 0x7F80, -0x7F80]
    masters = [LO, -1, 0, HI]
    pairs = np.array([(m, g) for m in masters for g in grads], dtype=np.int64)
    master, grad = pairs[:, 0].reshape(-1, lanes), pairs[:, 1].reshape(-1, lanes)
    en = np.ones(master.shape, dtype=bool)
    jobs = [UpdateJob(master, grad, en, s) for s in [-256, *range(-20, 36), 62, 63, 255]]
    seeds = {j: 99 + j for j in range(lanes)}
    dut = WeightUpdateUnit(lanes=lanes, max_beats=16, stages=stages)
    assert rtl_update(dut, jobs, seeds, stall=0.0) == ref_update(lanes, jobs, seeds)


@pytest.mark.parametrize("stages", DEPTHS)
def test_sim_draw_boundaries(stages):
    # Roundings made by the draw itself: fraction bits = draw +- 1.
    rng = np.random.default_rng(12)
    seeds = {0: 0x1111, 1: 0x2222, 2: 0x3333}
    lfsrs = [Lfsr(seeds[j]) for j in range(3)]
    jobs = []
    for _ in range(4):
        batch = boundary_updates(lfsrs, rng, beats=6)
        for job in batch:
            expected(job, lfsrs)                # move the model's generators past the batch
        jobs += batch
    dut = WeightUpdateUnit(lanes=3, max_beats=8, stages=stages)
    assert rtl_update(dut, jobs, seeds, stall=0.2) == ref_update(3, jobs, seeds)


@pytest.mark.parametrize("stages", DEPTHS)
def test_sim_reseed_and_disabled_lanes(stages):
    # A seed sent while a job runs lands after it; disabled lanes keep their masters and draw nothing.
    rng = np.random.default_rng(5)
    jobs = [random_update(rng, 3, beats=5) for _ in range(4)]
    for job in jobs:
        job.en = rng.random(job.en.shape) < 0.5
    seeds, reseed = {0: 1, 1: 2, 2: 3}, (1, {2: 0xC0FFEE, 3: 5})     # lane 3 does not exist
    dut = WeightUpdateUnit(lanes=3, max_beats=8, stages=stages)
    for stall in (0.0, 0.5):
        assert rtl_update(dut, jobs, seeds, stall=stall, reseed=reseed) == ref_update(3, jobs, seeds, reseed=reseed)


@pytest.mark.parametrize("stages", DEPTHS)
def test_sim_throughput_and_latency(stages):
    rng = np.random.default_rng(6)
    jobs = [random_update(rng, 2, beats=b) for b in (4, 1, 1, 2)]
    dut = WeightUpdateUnit(lanes=2, max_beats=8, stages=stages)
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
    assert taken == list(range(taken[0], taken[0] + len(taken)))
    assert dut.latency == WeightUpdateUnit.LATENCY + stages == 1 + stages
    assert [g - t for g, t in zip(given, taken)] == [dut.latency + 1] * len(taken)


def test_ref_left_shift_and_step_limit():
    # The model the bench trusts: exact left shifts, the +-2**17 step limit, saturation both ways.
    assert weight_update([0], [3], -2, [0]).tolist() == [-12]
    assert weight_update([HI], [LO], 0, [0]).tolist() == [HI]
    assert weight_update([LO], [1], -17, [0]).tolist() == [LO]
    assert weight_update([5, 100], [-1, 1], -14, [0, 0]).tolist() == [5 + (1 << 14), 100 - (1 << 14)]
    assert weight_update([5, -5], [-1, 1], -16, [0, 0]).tolist() == [HI, LO]


def test_init():
    dut = WeightUpdateUnit(lanes=8)
    assert (dut.lanes, dut.max_beats, dut.stages, dut.latency) == (8, 1 << 16, 0, WeightUpdateUnit.LATENCY)
    assert WeightUpdateUnit(lanes=8, stages=DEEPEST).latency == WeightUpdateUnit.LATENCY + DEEPEST
    assert len(dut.cmd.payload.beats_m1) == 16 and len(dut.cmd.payload.shift) == 9


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(lanes=0), ValueError, "Lane count must be an integer in 1..64, not 0"),
    (dict(lanes=65), ValueError, "Lane count must be an integer in 1..64, not 65"),
    (dict(lanes="8"), TypeError, "Lane count must be an integer, not '8'"),
    (dict(lanes=8, max_beats=3), ValueError, "Maximum beat count must be a power of two >= 2, not 3"),
    (dict(lanes=8, max_beats=1.0), TypeError, "Maximum beat count must be an integer, not 1.0"),
    (dict(lanes=8, stages=1.0), TypeError, "Stages must be an integer, not 1.0"),
    (dict(lanes=8, stages=True), TypeError, "Stages must be an integer, not True"),
    (dict(lanes=8, stages=-1), ValueError, f"Stages must be from 0 to {DEEPEST}, not -1"),
    (dict(lanes=8, stages=DEEPEST + 1), ValueError, f"Stages must be from 0 to {DEEPEST}, not {DEEPEST + 1}"),
])
def test_init_wrong(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        WeightUpdateUnit(**kwargs)


def test_bench(simulator):
    result = run_bench("weight_update", preset("small"), simulator)
    assert result.tests == 4 and result.failed == 0 and result.passed, f"seed {result.seed}, log {result.run_dir}"


def _at_depth(stages):
    config = apply_overrides(preset("small"), [f"pipeline.weight_update={stages}"])
    return dataclasses.replace(config, name=f"small-wu{stages}")


def test_bench_deepest(simulator):
    result = run_bench("weight_update", _at_depth(DEEPEST), simulator)
    assert result.tests == 4 and result.failed == 0 and result.passed, f"seed {result.seed}, log {result.run_dir}"


@pytest.mark.slow
@pytest.mark.parametrize("stages", DEPTHS)
def test_bench_every_depth(simulator, stages):
    result = run_bench("weight_update", _at_depth(stages), simulator)
    assert result.tests == 4 and result.failed == 0 and result.passed, f"seed {result.seed}, log {result.run_dir}"


@pytest.mark.slow
def test_bench_default_config(simulator):
    # The default build: 8 lanes (44-bit accumulators for the conversion unit).
    result = run_bench("weight_update", preset("default"), simulator)
    assert result.tests == 4 and result.failed == 0 and result.passed, f"seed {result.seed}, log {result.run_dir}"


@pytest.mark.parametrize("stages", ["auto", 0])
def test_bench_throughput(simulator, tmp_path, stages):
    # The default (auto) depth and the shallowest: the same beat rate, the latency of the depth.
    config = preset("small") if stages == "auto" else _at_depth(stages)
    out = tmp_path / "perf.json"
    result = run_bench("weight_update", config, simulator, testcase="throughput",
                       extra_env={"EDGETRAIN_PERF_OUT": str(out), "EDGETRAIN_PERF_BEATS": "300"})
    assert result.passed, f"seed {result.seed}, log {result.run_dir}"
    report = json.loads(out.read_text())
    assert report["latency_cycles"] == report["documented_latency_cycles"] \
        == WeightUpdateUnit.LATENCY + config.stages("weight_update")
    assert report["long_job"]["beats"] == 300 and report["long_job"]["cycles"] == 300
    assert report["one_beat_jobs"]["weights_per_cycle_per_lane"] == 1.0
