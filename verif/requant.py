"""cocotb bench of the conversion unit against :func:`golden.core.convert` and :func:`golden.core.next_frac`.

Drivers: the ``cmd``, ``i`` and ``seed`` stream sources; monitors: the ``o`` and ``stats`` sinks. All of them
stall at random (``EDGETRAIN_STALL``, default 0.3). The model keeps one :class:`golden.dfxp.Lfsr` per lane,
seeded as the bench loads the unit's generators, and draws for each job in the unit's order
(:func:`golden.core.draw_in_order`); the scoreboard compares every code, every ``last`` flag, every stats
record, the ``counters`` port and the generators' states (``state``) with it, bit for bit.

Stimulus: random jobs (every precision, both roundings, ReLU, thresholding, random enables, shifts over the
whole 9-bit range) whose accumulators mix the extremes of the accumulator width, values near rounding ties
and near the saturation thresholds at ``frac`` and ``frac + 1``, small codes for thresholding, and uniform
values; generators re-seeded between batches of jobs; directed corners; jobs built from the draws the
generators will give, so that stochastic decisions fall right at their boundaries. ``throughput`` (only with
``EDGETRAIN_PERF_OUT`` set) measures elements per cycle per lane without stalls for the benchmark.
"""

import dataclasses
import json
import os

import cocotb
import numpy as np
from amaranth.hdl import unsigned
from amaranth.lib import data
from cocotb.triggers import RisingEdge

from golden.core import FRAC_RANGE, Rounding, convert, draw_in_order, next_frac
from golden.dfxp import PRECISIONS, Lfsr, code_range
from hw.build import BLOCKS
from hw.lfsr import seed_layout
from hw.pe_array import PRECISION_CODES
from hw.requant import command_layout, input_layout, output_layout, stats_layout
from verif.bench import BenchTB


SHIFT_RANGE = (-256, 255)
#: Largest threshold of the 4-bit field (a kept code saturates to the code range beyond ``bits - 2``).
MAX_THRESHOLD = 15


@dataclasses.dataclass
class Job:
    """One conversion job: ``acc`` and ``en`` are ``beats x lanes`` (lane ``j`` of beat ``k`` is element
    ``k`` of lane ``j``); the rest are the command's fields, ``bits`` in bits (4 .. 16)."""
    acc: np.ndarray
    en: np.ndarray
    shift: int
    frac: int
    bits: int
    stochastic: bool = False
    relu: bool = False
    threshold: int = 0
    overflow_shift: int = 0

    @property
    def beats(self):
        return len(self.acc)

    def command(self):
        return {"shift": self.shift, "frac": self.frac, "bits": PRECISION_CODES[self.bits],
                "stochastic": int(self.stochastic), "relu": int(self.relu), "threshold": self.threshold,
                "overflow_shift": self.overflow_shift, "beats_m1": self.beats - 1}

    def beat(self, k):
        return {"acc": [int(v) for v in self.acc[k]], "en": sum(int(b) << j for j, b in enumerate(self.en[k]))}


def expected(job, lfsrs):
    """The golden result of ``job`` with the lanes' generators ``lfsrs`` (advanced): ``(codes, stats)``,
    codes ``beats x lanes`` (0 where disabled), stats a dict of the ``stats`` record's fields."""
    kwargs = {}
    if job.stochastic:
        per = 2 if job.threshold else 1
        draws = draw_in_order(lfsrs, job.en, (None, len(lfsrs)), per)
        kwargs = {"rounding": Rounding.STOCHASTIC, "draws": draws[..., 0]}
        if job.threshold:
            kwargs.update(threshold=job.threshold, threshold_draws=draws[..., 1])
    result = convert(job.acc, job.frac + job.shift, job.bits, job.frac, relu=job.relu, **kwargs)
    en = np.asarray(job.en, dtype=bool)
    ovf0, ovf1, n = int((result.ovf0 & en).sum()), int((result.ovf1 & en).sum()), int(en.sum())
    stats = {"ovf0": ovf0, "ovf1": ovf1, "elements": n,
             "next_frac": next_frac(job.frac, ovf0, ovf1, n, job.overflow_shift)}
    return np.where(en, result.codes, 0), stats


def _shift_values(rng, acc_width):
    """A shift: mostly where results are neither all saturated nor all zero, sometimes anywhere, sometimes a
    corner of the shifter."""
    u = rng.random()
    if u < 0.7:
        return int(rng.integers(-20, acc_width + 20))
    if u < 0.85:
        return int(rng.integers(SHIFT_RANGE[0], SHIFT_RANGE[1] + 1))
    return int(rng.choice([SHIFT_RANGE[0], SHIFT_RANGE[1], -17, -16, -15, -1, 0, 1, 15, 16, 17,
                           acc_width - 1, acc_width, acc_width + 15, acc_width + 16, acc_width + 17]))


def random_values(rng, n, *, shift, bits, acc_width, threshold=0):
    """``n`` accumulators for a job: uniform, log-uniform magnitudes, the accumulator's extremes, values
    near the code range's edges at ``frac`` and ``frac + 1`` and near rounding ties, small codes."""
    lo_acc, hi_acc = -(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1
    lo, hi = code_range(bits)
    out = []
    for kind in rng.integers(0, 7, n).tolist():
        if kind == 0:
            v = int(rng.integers(lo_acc, hi_acc, endpoint=True))
        elif kind == 1:
            v = int(rng.integers(0, 1 << int(rng.integers(0, acc_width)))) * int(rng.choice([-1, 1]))
        elif kind == 2:
            v = int(rng.choice([lo_acc, lo_acc + 1, hi_acc, hi_acc - 1, 0, 1, -1]))
        else:
            s = shift - (kind == 4)                 # the rule's second flag: one more integer bit
            if kind == 5:
                code = int(rng.integers(lo, hi + 1))
            elif kind == 6:
                code = int(rng.integers(-(1 << max(threshold, 1)), 1 << max(threshold, 1), endpoint=True))
            else:
                code = int(rng.choice([hi, hi + 1, hi - 1, lo, lo - 1, lo + 1, 0, -1]))
            if s > 0:
                half = 1 << (s - 1)
                offsets = [0, half - 1, half, half + 1, -half, -half - 1, -1, 1, int(rng.integers(0, 1 << min(s, 62)))]
                v = (code << s) + offsets[int(rng.integers(len(offsets)))]
            else:
                v = (code >> -s) + int(rng.integers(-1, 2))
        out.append(min(max(v, lo_acc), hi_acc))
    return np.array(out, dtype=np.int64)


def random_job(rng, lanes, acc_width, *, beats, bits=None, stochastic=None, shift=None):
    """A random job of ``beats`` beats (fields drawn where not given)."""
    bits = int(rng.choice(PRECISIONS)) if bits is None else bits
    stochastic = bool(rng.random() < 0.5) if stochastic is None else stochastic
    shift = _shift_values(rng, acc_width) if shift is None else shift
    # Thresholding with nearest-even is ignored by the unit: send it anyway now and then.
    threshold = int(rng.integers(1, MAX_THRESHOLD + 1)) if rng.random() < 0.4 else 0
    frac = int(rng.choice([FRAC_RANGE[0], FRAC_RANGE[1], int(rng.integers(FRAC_RANGE[0], FRAC_RANGE[1] + 1))],
                          p=[0.1, 0.1, 0.8]))
    u = rng.random()
    en = np.ones((beats, lanes), dtype=bool) if u < 0.5 else (
        rng.random((beats, lanes)) < 0.6 if u < 0.9 else np.zeros((beats, lanes), dtype=bool))
    acc = random_values(rng, beats * lanes, shift=shift, bits=bits, acc_width=acc_width,
                        threshold=threshold).reshape(beats, lanes)
    return Job(acc, en, shift, frac, bits, stochastic, bool(rng.random() < 0.3),
               threshold if stochastic or rng.random() < 0.3 else 0,
               int(rng.integers(0, 8)) if rng.random() < 0.8 else int(rng.integers(0, 32)))


def boundary_jobs(lfsrs, rng, *, beats=4):
    """Stochastic jobs whose decisions sit next to their boundary, built from the draws the generators
    ``lfsrs`` will give (read from copies; ``lfsrs`` do not move). Rounding: the top 16 fraction bits are
    the element's draw or one off it, at shifts 16, 17 and 20 (bits below them set at random); thresholding
    (at 1, 2, 8 and 14): the code's magnitude scaled to 16 bits is just below or just above the second draw.
    Needs an accumulator of at least 29 bits."""
    lanes = len(lfsrs)
    peek = [Lfsr(g.state) for g in lfsrs]
    every = np.ones((beats, lanes), dtype=bool)
    jobs = []
    for shift in (16, 17, 20):
        draws = np.stack([g.draw(beats).astype(np.int64) for g in peek], axis=1)
        top = np.clip(draws + rng.integers(-1, 2, draws.shape), 0, 0xFFFF)
        codes = rng.integers(-100, 101, draws.shape)
        below = rng.integers(0, 1 << (shift - 16), draws.shape)
        jobs.append(Job((codes << shift) + (top << (shift - 16)) + below, every, shift, 0, 8, True))
    for k in (1, 2, 8, 14):
        draws = np.stack([g.draw(2 * beats).astype(np.int64).reshape(beats, 2)[:, 1] for g in peek], axis=1)
        mag = np.clip((draws >> (16 - k)) + rng.integers(0, 2, draws.shape), 1, (1 << k) - 1)
        jobs.append(Job((mag * rng.choice([-1, 1], draws.shape)) << 16, every, 16, 0, 16, True, threshold=k))
    return jobs


def golden_job(job):
    """``job`` as the golden model sees it: thresholding is ignored with nearest-even rounding."""
    return job if job.stochastic else dataclasses.replace(job, threshold=0)


class ConversionTB(BenchTB):
    """Sources, sinks, the per-lane golden generators and the scoreboard."""

    def __init__(self, dut, *, stall=None):
        super().__init__(dut, stall=stall)
        self.unit = BLOCKS["requant"].make(self.config)
        self.lanes, self.acc_width, self.max_beats = self.unit.lanes, self.unit.acc_width, self.unit.max_beats
        self.cmd_layout = command_layout(self.max_beats)
        self.in_layout = input_layout(self.lanes, self.acc_width)
        self.out_layout = output_layout(self.lanes)
        self.stats_layout = stats_layout(self.lanes, self.max_beats)
        self.seed_layout = seed_layout(self.lanes)
        self.state_layout = data.ArrayLayout(unsigned(32), self.lanes)
        self.cmd = self.source("cmd")
        self.i = self.source("i")
        self.seed = self.source("seed")
        self.o = self.sink("o")
        self.stats = self.sink("stats")
        self.lfsrs = [Lfsr() for _ in range(self.lanes)]
        self.beats = []         # (label, codes, last) per expected output beat
        self.records = []       # (label, stats) per job

    def job(self, job, label=""):
        """Queue one job and its expected beats and record."""
        self.cmd.send(self.cmd_layout.const(job.command()).as_bits())
        for k in range(job.beats):
            self.i.send(self.in_layout.const(job.beat(k)).as_bits())
        codes, stats = expected(golden_job(job), self.lfsrs)
        for k in range(job.beats):
            self.beats.append((f"{label} beat {k} ({job.command()})", [int(v) for v in codes[k]],
                               int(k == job.beats - 1)))
        self.records.append((f"{label} ({job.command()})", stats))

    async def load_seeds(self, seeds):
        """Load ``{lane: seed}`` once the jobs queued so far have all been taken (so the seeds land after
        them and before the next ones), as the model does."""
        await self.cmd.wait_idle()
        for lane, seed in seeds.items():
            self.seed.send(self.seed_layout.const({"lane": lane, "state": seed}).as_bits())
            if lane < self.lanes:
                self.lfsrs[lane] = Lfsr(seed)
        await self.seed.wait_idle()

    def states(self):
        return [int(v) for v in self.state_layout.from_bits(self.dut.state.value.to_unsigned())]

    async def finish(self, timeout_cycles=200_000):
        await self.wait_until(lambda: len(self.o.items) >= len(self.beats) and
                              len(self.stats.items) >= len(self.records), timeout_cycles)
        assert len(self.o.items) == len(self.beats), f"{len(self.o.items)} beats out, {len(self.beats)} expected"
        bad = []
        for item, (label, codes, last) in zip(self.o.items, self.beats):
            view = self.out_layout.from_bits(item)
            got = [int(view.code[j]) for j in range(self.lanes)]
            if got != codes or int(view.last) != last:
                bad.append(f"{label}: codes {got} last {int(view.last)}, golden {codes} last {last}")
        assert not bad, f"{len(bad)} wrong beats, first: {bad[:3]}"
        assert len(self.stats.items) == len(self.records), \
            f"{len(self.stats.items)} stats records out, {len(self.records)} expected"
        for item, (label, want) in zip(self.stats.items, self.records):
            view = self.stats_layout.from_bits(item)
            got = {name: int(getattr(view, name)) for name in want}
            assert got == want, f"{label}: stats {got}, golden {want}"
        if self.records:
            view = self.stats_layout.from_bits(self.dut.counters.value.to_unsigned())
            got = {name: int(getattr(view, name)) for name in self.records[-1][1]}
            assert got == self.records[-1][1], f"counters {got}, golden {self.records[-1][1]}"
        assert self.states() == [g.state for g in self.lfsrs], \
            f"LFSR states {self.states()}, golden {[g.state for g in self.lfsrs]}"


def _seeds(tb):
    return {lane: tb.rng.randrange(1, 1 << 32) for lane in range(tb.lanes)}


@cocotb.test()
async def random_jobs(dut):
    """Random jobs in batches, the generators re-seeded (all lanes, or some) between batches."""
    tb = ConversionTB(dut)
    await tb.reset()
    await tb.load_seeds(_seeds(tb))
    for batch in range(4):
        for n in range(60):
            beats = int(tb.np_rng.integers(1, 9)) if n % 10 else int(tb.np_rng.integers(9, 40))
            tb.job(random_job(tb.np_rng, tb.lanes, tb.acc_width, beats=beats), f"batch {batch} job {n}")
        seeds = _seeds(tb) if batch % 2 else {tb.rng.randrange(tb.lanes): tb.rng.randrange(1, 1 << 32)}
        await tb.load_seeds(seeds)
    await tb.finish()


@cocotb.test()
async def directed_corners(dut):
    """Every precision and rounding at the accumulator's extremes, exact ties, ties broken by a single
    sticky bit at every position, the saturation thresholds, the most negative code, the largest shifts both
    ways, thresholding of the smallest codes, the overflow rule at the ends of the fractional-length range,
    overflow counts past 2**9 in one job, disabled lanes, an empty job and one-beat jobs."""
    tb = ConversionTB(dut)
    await tb.reset()
    await tb.load_seeds(_seeds(tb))
    w, lanes = tb.acc_width, tb.lanes
    lo_acc, hi_acc = -(1 << (w - 1)), (1 << (w - 1)) - 1

    def job(values, shift, bits, **kw):
        values = np.array([min(max(int(v), lo_acc), hi_acc) for v in values], dtype=np.int64)
        values = np.concatenate([values, np.zeros(-len(values) % lanes, dtype=np.int64)]).reshape(-1, lanes)
        en = kw.pop("en", np.ones(values.shape, dtype=bool))
        return Job(values, en, shift, kw.pop("frac", 0), bits, **kw)

    for bits in PRECISIONS:
        lo, hi = code_range(bits)
        for stochastic in (False, True):
            for shift in (SHIFT_RANGE[0], -40, -17, -16, -3, 0, 1, 2, 5, 16, 17, w - 1, w + 16, w + 17,
                          SHIFT_RANGE[1]):
                values = [lo_acc, lo_acc + 1, hi_acc, hi_acc - 1, 0, 1, -1]
                if shift > 0:
                    half = 1 << (shift - 1)
                    for code in (hi, hi + 1, lo, lo - 1, 2, 3, -2, -3, 0):
                        values += [(code << shift) + d for d in (half - 1, half, half + 1, -1, 0)]
                else:
                    for code in (hi, hi + 1, lo, lo - 1, 1, -1):
                        values += [(code >> -shift) + d for d in (-1, 0, 1)]
                tb.job(job(values, shift, bits, stochastic=stochastic), f"{bits}-bit shift {shift}")
                tb.job(job(values, shift, bits, stochastic=stochastic, relu=True), f"{bits}-bit relu {shift}")
            # Thresholding of every small code, at every threshold the code width allows.
            for k in range(1, MAX_THRESHOLD + 1):
                tau = 1 << k
                codes = [c for c in [*range(-8, 9), tau - 1, tau, tau + 1, 1 - tau, -tau, -tau - 1, lo, hi]
                         if lo <= c <= hi]
                tb.job(job([c << 4 for c in codes] * 2, 4, bits, stochastic=True, threshold=k),
                       f"{bits}-bit threshold {k}")
        # The overflow rule at the ends of the range: all overflow at frac_lo, none at frac_hi.
        tb.job(job([hi_acc] * lanes * 2, 0, bits, frac=FRAC_RANGE[0]), f"{bits}-bit all overflow at frac_lo")
        tb.job(job([0] * lanes * 2, 0, bits, frac=FRAC_RANGE[1]), f"{bits}-bit none at frac_hi")
        tb.job(job([hi] * lanes * 4, 0, bits, frac=3, overflow_shift=1), f"{bits}-bit only at frac + 1")
    # Ties broken by one sticky bit alone, at every position below the 16 fraction bits a lane keeps, in
    # every lane (even codes: without the sticky bit the tie would round down).
    for shift in range(17, w):
        half = 1 << (shift - 1)
        values = [(code << shift) + half + (1 << b) for code in (0, -2) for b in range(shift - 16)]
        tb.job(job(np.repeat(values, lanes), shift, 16, stochastic=False), f"sticky bits at shift {shift}")
    # Overflow counts past 2**9 in one job (every element of 200 beats overflows at both lengths).
    tb.job(job([hi_acc] * lanes * 200, 0, 8), "long job, every element overflowing")
    # A seed for a lane that does not exist loads nothing.
    if 1 << tb.seed_layout["lane"].width > lanes:
        await tb.load_seeds({lanes: 12345})
    # Disabled lanes (codes 0, no draws, no counts), an empty job, one-beat jobs back to back.
    values = [hi_acc, -5, 7] * lanes
    en = np.zeros((len(values) // lanes, lanes), dtype=bool)
    en[::2, 0] = True
    tb.job(job(values, 1, 8, stochastic=True, threshold=3, en=en), "some lanes")
    tb.job(job([1] * lanes, 0, 8, en=np.zeros((1, lanes), dtype=bool)), "no lane enabled")
    for n in range(20):
        tb.job(random_job(tb.np_rng, lanes, w, beats=1), f"one beat {n}")
    await tb.finish()


@cocotb.test()
async def draw_boundaries(dut):
    """Stochastic rounding and thresholding decided by the draw itself: fraction bits equal to the draw or
    one off it, scaled code magnitudes just below or above the second draw (:func:`boundary_jobs`)."""
    tb = ConversionTB(dut)
    await tb.reset()
    await tb.load_seeds(_seeds(tb))
    for n in range(6):
        for job in boundary_jobs(tb.lfsrs, tb.np_rng, beats=int(tb.np_rng.integers(1, 9))):
            tb.job(job, f"boundary round {n}")
    await tb.finish()


@cocotb.test(skip="EDGETRAIN_PERF_OUT" not in os.environ)
async def throughput(dut):
    """For a benchmark: latency of one beat, then elements per cycle per lane over one long stochastic,
    thresholded job and over a run of one-beat jobs, without stalls; every result still checked. Writes JSON
    to ``EDGETRAIN_PERF_OUT`` (beats of the long job from ``EDGETRAIN_PERF_BEATS``, default 2000)."""
    tb = ConversionTB(dut, stall=0.0)
    await tb.reset()
    await tb.load_seeds(_seeds(tb))
    lanes, w = tb.lanes, tb.acc_width
    tb.job(random_job(tb.np_rng, lanes, w, beats=1), "latency probe")
    while len(tb.o.items) < len(tb.beats):
        await RisingEdge(dut.clk)
    # Edges from the one that takes the beat to the first with its codes valid (the sink takes them one later).
    latency = tb.cycles_between(tb.i.times[-1], tb.o.times[-1]) - 2
    report = {"lanes": lanes, "acc_width": w, "latency_cycles": latency}
    beats = int(os.environ.get("EDGETRAIN_PERF_BEATS", "2000"))
    for name, jobs in (("long_job", [dataclasses.replace(
                            random_job(tb.np_rng, lanes, w, beats=beats, bits=8, stochastic=True, shift=12),
                            en=np.ones((beats, lanes), dtype=bool), threshold=2)]),
                       ("one_beat_jobs", [dataclasses.replace(random_job(tb.np_rng, lanes, w, beats=1),
                                                              en=np.ones((1, lanes), dtype=bool))
                                          for _ in range(200)])):
        first = len(tb.o.times)
        for job in jobs:
            tb.job(job, name)
        while len(tb.o.items) < len(tb.beats):
            await RisingEdge(dut.clk)
        count = sum(job.beats for job in jobs)
        # Cycles from the edge that hands over the first beat of the run to the one that hands over its last.
        cycles = tb.cycles_between(tb.o.times[first], tb.o.times[-1])
        report[name] = {"jobs": len(jobs), "beats": count, "cycles": cycles,
                        "elements_per_cycle_per_lane": count / cycles}
    await tb.finish()
    with open(os.environ["EDGETRAIN_PERF_OUT"], "w") as f:
        json.dump(report, f, indent=2)
