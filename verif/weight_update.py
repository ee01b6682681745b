"""cocotb bench of the weight-update unit against :func:`golden.core.weight_update`.

Drivers: the ``cmd``, ``i`` and ``seed`` stream sources; monitor: the ``o`` sink. All of them stall at random
(``EDGETRAIN_STALL``, default 0.3). The model keeps one :class:`golden.dfxp.Lfsr` per lane, seeded as the
bench loads the unit's generators, and draws one number per enabled element in the unit's order
(:func:`golden.core.draw_in_order`); the scoreboard compares every output weight, every ``last`` flag and the
generators' final states (``state``) with it, bit for bit.

Stimulus: random jobs (shifts over the whole 9-bit range, random enables) whose masters and gradients mix
the 16-bit extremes, values near saturation, small values and uniform ones; generators re-seeded between
batches; directed corners (saturation both ways, exact left shifts up to the largest, exact halves and
other remainders against the draws, disabled lanes); jobs built from the draws the generators will give, so
that roundings fall right at their boundary. ``throughput`` (only with ``EDGETRAIN_PERF_OUT``
set) measures weights per cycle per lane without stalls for a benchmark, and the latency beside the one the
unit documents at the configuration's depth (``pipeline.weight_update``). The unit is made from the
configuration (:data:`hw.build.BLOCKS`), so every test runs at that depth.
"""

import dataclasses
import json
import os

import cocotb
import numpy as np
from amaranth.hdl import unsigned
from amaranth.lib import data
from cocotb.triggers import RisingEdge

from golden.core import MASTER_BITS, draw_in_order, weight_update
from golden.dfxp import Lfsr, code_range
from hw.build import BLOCKS
from hw.lfsr import seed_layout
from hw.weight_update import command_layout, input_layout, output_layout
from verif.bench import BenchTB


SHIFT_RANGE = (-256, 255)
LO, HI = code_range(MASTER_BITS)


@dataclasses.dataclass
class UpdateJob:
    """One update job: ``master``, ``grad`` and ``en`` are ``beats x lanes`` (lane ``j`` of beat ``k`` is
    element ``k`` of lane ``j``); ``shift = frac_g + lr_shift - frac_w``."""
    master: np.ndarray
    grad: np.ndarray
    en: np.ndarray
    shift: int

    @property
    def beats(self):
        return len(self.master)

    def command(self):
        return {"shift": self.shift, "beats_m1": self.beats - 1}

    def beat(self, k):
        return {"master": [int(v) for v in self.master[k]], "grad": [int(v) for v in self.grad[k]],
                "en": sum(int(b) << j for j, b in enumerate(self.en[k]))}


def expected(job, lfsrs):
    """The new masters of ``job`` (``beats x lanes``; disabled elements keep theirs), drawing from the
    lanes' generators ``lfsrs`` (advanced)."""
    en = np.asarray(job.en, dtype=bool)
    draws = draw_in_order(lfsrs, en, (None, len(lfsrs)))[..., 0]
    return np.where(en, weight_update(job.master, job.grad, job.shift, draws), job.master)


def random_words(rng, n):
    """``n`` 16-bit words: uniform, the extremes, near the extremes, small."""
    kind = rng.integers(0, 4, n)
    uniform = rng.integers(LO, HI, n, endpoint=True)
    extreme = rng.choice([LO, LO + 1, HI, HI - 1, 0, 1, -1], n)
    near = rng.choice([LO, HI], n) + rng.integers(-300, 301, n)
    small = rng.integers(-64, 65, n)
    return np.clip(np.choose(kind, [uniform, extreme, near, small]), LO, HI).astype(np.int64)


def random_shift(rng):
    u = rng.random()
    if u < 0.7:
        return int(rng.integers(-20, 40))
    if u < 0.85:
        return int(rng.integers(SHIFT_RANGE[0], SHIFT_RANGE[1] + 1))
    return int(rng.choice([SHIFT_RANGE[0], SHIFT_RANGE[1], -19, -18, -17, -16, -1, 0, 1, 15, 16, 17, 31, 32, 33]))


def random_update(rng, lanes, *, beats, shift=None):
    u = rng.random()
    en = np.ones((beats, lanes), dtype=bool) if u < 0.5 else (
        rng.random((beats, lanes)) < 0.6 if u < 0.9 else np.zeros((beats, lanes), dtype=bool))
    return UpdateJob(random_words(rng, beats * lanes).reshape(beats, lanes),
                     random_words(rng, beats * lanes).reshape(beats, lanes), en,
                     random_shift(rng) if shift is None else shift)


def boundary_updates(lfsrs, rng, *, beats=4):
    """Jobs whose rounding is decided by the draw itself, built from the draws the generators ``lfsrs`` will
    give (read from copies; ``lfsrs`` do not move): at shift 16 the gradient's 16 fraction bits are the
    element's draw or one off it; at shift 15 its 15 fraction bits are the draw's top 15 bits or one off."""
    lanes = len(lfsrs)
    peek = [Lfsr(g.state) for g in lfsrs]
    every = np.ones((beats, lanes), dtype=bool)
    jobs = []
    for shift in (16, 15):
        draws = np.stack([g.draw(beats).astype(np.int64) for g in peek], axis=1)
        frac = np.clip((draws >> (16 - shift)) + rng.integers(-1, 2, draws.shape), 0, (1 << shift) - 1)
        if shift == 16:
            grad = frac - np.where(frac >= 1 << 15, 1 << 16, 0)         # the 16-bit word of those bits
        else:
            grad = frac - rng.integers(0, 2, draws.shape) * (1 << 15)   # integer part 0 or -1
        jobs.append(UpdateJob(random_words(rng, beats * lanes).reshape(beats, lanes), grad, every, shift))
    return jobs


class UpdateTB(BenchTB):
    """Sources, sink, the per-lane golden generators and the scoreboard."""

    def __init__(self, dut, *, stall=None):
        super().__init__(dut, stall=stall)
        self.unit = BLOCKS["weight_update"].make(self.config)
        self.lanes, self.max_beats = self.unit.lanes, self.unit.max_beats
        self.cmd_layout = command_layout(self.max_beats)
        self.in_layout = input_layout(self.lanes)
        self.out_layout = output_layout(self.lanes)
        self.seed_layout = seed_layout(self.lanes)
        self.state_layout = data.ArrayLayout(unsigned(32), self.lanes)
        self.cmd = self.source("cmd")
        self.i = self.source("i")
        self.seed = self.source("seed")
        self.o = self.sink("o")
        self.lfsrs = [Lfsr() for _ in range(self.lanes)]
        self.beats = []         # (label, masters, last) per expected output beat

    def job(self, job, label=""):
        self.cmd.send(self.cmd_layout.const(job.command()).as_bits())
        for k in range(job.beats):
            self.i.send(self.in_layout.const(job.beat(k)).as_bits())
        new = expected(job, self.lfsrs)
        for k in range(job.beats):
            self.beats.append((f"{label} beat {k} (shift {job.shift}, master {job.master[k].tolist()}, "
                               f"grad {job.grad[k].tolist()}, en {job.en[k].tolist()})",
                               [int(v) for v in new[k]], int(k == job.beats - 1)))

    async def load_seeds(self, seeds):
        """Load ``{lane: seed}`` after the jobs queued so far have all been taken, as the model does."""
        await self.cmd.wait_idle()
        for lane, seed in seeds.items():
            self.seed.send(self.seed_layout.const({"lane": lane, "state": seed}).as_bits())
            if lane < self.lanes:
                self.lfsrs[lane] = Lfsr(seed)
        await self.seed.wait_idle()

    def states(self):
        return [int(v) for v in self.state_layout.from_bits(self.dut.state.value.to_unsigned())]

    async def finish(self, timeout_cycles=200_000):
        await self.wait_until(lambda: len(self.o.items) >= len(self.beats), timeout_cycles)
        assert len(self.o.items) == len(self.beats), f"{len(self.o.items)} beats out, {len(self.beats)} expected"
        bad = []
        for item, (label, masters, last) in zip(self.o.items, self.beats):
            view = self.out_layout.from_bits(item)
            got = [int(view.master[j]) for j in range(self.lanes)]
            if got != masters or int(view.last) != last:
                bad.append(f"{label}: {got} last {int(view.last)}, golden {masters} last {last}")
        assert not bad, f"{len(bad)} wrong beats, first: {bad[:3]}"
        assert self.states() == [g.state for g in self.lfsrs], \
            f"LFSR states {self.states()}, golden {[g.state for g in self.lfsrs]}"


def _seeds(tb):
    return {lane: tb.rng.randrange(1, 1 << 32) for lane in range(tb.lanes)}


@cocotb.test()
async def random_jobs(dut):
    """Random update jobs in batches, the generators re-seeded (all lanes, or one) between batches."""
    tb = UpdateTB(dut)
    await tb.reset()
    await tb.load_seeds(_seeds(tb))
    for batch in range(4):
        for n in range(60):
            beats = int(tb.np_rng.integers(1, 9)) if n % 10 else int(tb.np_rng.integers(9, 40))
            tb.job(random_update(tb.np_rng, tb.lanes, beats=beats), f"batch {batch} job {n}")
        seeds = _seeds(tb) if batch % 2 else {tb.rng.randrange(tb.lanes): tb.rng.randrange(1, 1 << 32)}
        await tb.load_seeds(seeds)
    await tb.finish()


@cocotb.test()
async def directed_corners(dut):
    """Saturation both ways, exact left shifts up to the largest, remainders of exactly a half and of one
    unit against the draws, the largest right shifts, disabled lanes and one-beat jobs."""
    tb = UpdateTB(dut)
    await tb.reset()
    await tb.load_seeds(_seeds(tb))
    lanes = tb.lanes

    def job(masters, grads, shift, en=None):
        pairs = [(m, g) for m in masters for g in grads]
        pairs += [(0, 0)] * (-len(pairs) % lanes)
        master = np.array([p[0] for p in pairs], dtype=np.int64).reshape(-1, lanes)
        grad = np.array([p[1] for p in pairs], dtype=np.int64).reshape(-1, lanes)
        return UpdateJob(master, grad, np.ones(master.shape, dtype=bool) if en is None else en, shift)

    masters = [LO, LO + 1, -1, 0, 1, HI - 1, HI]
    grads = [LO, LO + 1, -2, -1, 0, 1, 2, HI - 1, HI]
    for shift in (SHIFT_RANGE[0], -40, -19, -18, -17, -16, -15, -2, -1, 0):
        tb.job(job(masters, grads, shift), f"left shift {-shift}")
    for shift in (1, 2, 3, 8, 15, 16, 17, 20, 31, 32, 33, 62, 63, SHIFT_RANGE[1]):
        half = 1 << (shift - 1) if shift <= 16 else 0
        odd = [g for g in (half, -half, 3 * half, -3 * half, half + 1, half - 1, (1 << min(shift, 15)) - 1)
               if LO <= g <= HI]
        tb.job(job([LO, 0, HI], grads + odd, shift), f"right shift {shift}")
    # A saturating step into each end, and the most negative gradient's exact step.
    tb.job(job([HI, HI - 3], [LO, -4, -3, -2], 0), "saturate high")
    tb.job(job([LO, LO + 3], [HI, 4, 3, 2], 0), "saturate low")
    # Disabled lanes keep their masters and draw nothing; one-beat jobs back to back.
    base = job([100, -100, HI], [LO, 5, -7], 1)
    en = np.zeros(base.master.shape, dtype=bool)
    en[1::2, 0] = True
    tb.job(dataclasses.replace(base, en=en), "some lanes")
    for n in range(20):
        tb.job(random_update(tb.np_rng, lanes, beats=1), f"one beat {n}")
    await tb.finish()


@cocotb.test()
async def draw_boundaries(dut):
    """Roundings decided by the draw itself: fraction bits equal to the draw or one off it
    (:func:`boundary_updates`)."""
    tb = UpdateTB(dut)
    await tb.reset()
    await tb.load_seeds(_seeds(tb))
    for n in range(10):
        for job in boundary_updates(tb.lfsrs, tb.np_rng, beats=int(tb.np_rng.integers(1, 9))):
            tb.job(job, f"boundary round {n}")
    await tb.finish()


@cocotb.test(skip="EDGETRAIN_PERF_OUT" not in os.environ)
async def throughput(dut):
    """For a benchmark: latency (and the documented one), then weights per cycle per lane over one long job and
    over a run of one-beat jobs, without stalls; every result still checked. Writes JSON to ``EDGETRAIN_PERF_OUT`` (beats of the
    long job from ``EDGETRAIN_PERF_BEATS``, default 2000)."""
    tb = UpdateTB(dut, stall=0.0)
    await tb.reset()
    await tb.load_seeds(_seeds(tb))
    lanes = tb.lanes
    tb.job(random_update(tb.np_rng, lanes, beats=1), "latency probe")
    while len(tb.o.items) < len(tb.beats):
        await RisingEdge(dut.clk)
    # Edges from the one that takes the beat to the first with its weights valid (the sink takes them one later).
    report = {"lanes": lanes, "latency_cycles": tb.cycles_between(tb.i.times[-1], tb.o.times[-1]) - 2,
              "stages": tb.unit.stages, "documented_latency_cycles": tb.unit.latency}
    beats = int(os.environ.get("EDGETRAIN_PERF_BEATS", "2000"))
    every = np.ones((beats, lanes), dtype=bool)
    for name, jobs in (("long_job", [dataclasses.replace(random_update(tb.np_rng, lanes, beats=beats, shift=9),
                                                         en=every)]),
                       ("one_beat_jobs", [dataclasses.replace(random_update(tb.np_rng, lanes, beats=1),
                                                              en=every[:1]) for _ in range(200)])):
        first = len(tb.o.times)
        for job in jobs:
            tb.job(job, name)
        while len(tb.o.items) < len(tb.beats):
            await RisingEdge(dut.clk)
        count = sum(job.beats for job in jobs)
        cycles = tb.cycles_between(tb.o.times[first], tb.o.times[-1])
        report[name] = {"jobs": len(jobs), "beats": count, "cycles": cycles,
                        "weights_per_cycle_per_lane": count / cycles}
    await tb.finish()
    with open(os.environ["EDGETRAIN_PERF_OUT"], "w") as f:
        json.dump(report, f, indent=2)
