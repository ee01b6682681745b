"""cocotb bench of the output-error unit against :func:`golden.core.output_error` and
:func:`golden.core.next_frac`.

Drivers: the ``cmd``, ``i`` and ``seed`` stream sources; monitors: the ``o`` and ``stats`` sinks. All of them
stall at random (``EDGETRAIN_STALL``, default 0.3). The model keeps one :class:`golden.dfxp.Lfsr` per lane,
seeded as the bench loads the unit's generators, and draws for each job in the unit's order
(:func:`golden.core.draw_in_order` with the tile ``(None, lanes)``: lane ``c`` takes sample ``c`` of each
group, classes in order); the scoreboard compares every code, every ``last`` flag, every stats record and
the generators' states (``state``) with it, bit for bit.

Stimulus: random mini-batches whose logit columns mix uniform codes, the extremes -32768 and 32767, all equal
logits, one logit far above the rest, ties for the maximum and logits a few codes apart; random labels;
``frac_z`` over its whole 7-bit range (and its ends), ``frac_e`` over its range, every error precision, random
overflow shifts, partial last groups (the padding lanes carry random logits, which must not matter). Directed:
a job of 17 groups (a group count whose bit 4 is set), every entry of the exponent table in every lane at the
smallest shift, stochastic rounding at its boundary (each lane's generator seeded so that its first draw
equals the fraction bits it is compared with, or one less), the overflow rule keeping a ``frac_e`` with its
bit 4 set and raising one at the top of its range, and ``o`` held an even and an odd number of cycles while a
group's last row waits in the softmax's output stage and the next group's reciprocal waits for it.
``training_logits`` takes the logits, labels, fractional lengths and generator states of real training
steps of :class:`golden.core.CoreTrainer` and checks the unit's counters, next ``frac_e`` and generator
states against the trainer's own after each step. ``throughput`` (only with ``EDGETRAIN_PERF_OUT`` set)
measures the group throughput without stalls for the benchmark. The unit is made from the configuration
(:data:`hw.build.BLOCKS`), so every test runs at its depth (``pipeline.output_error``), and the documented
latency and group rate the throughput test reports are that depth's.
"""

import dataclasses
import json
import os

import cocotb
import numpy as np
from amaranth.hdl import unsigned
from amaranth.lib import data
from cocotb.triggers import ClockCycles, RisingEdge

from golden.core import (ERROR_FRAC_IN, EXP2_TABLE, FRAC_RANGE, LOGIT_BITS, draw_in_order, next_frac,
                         output_error, softmax_parts)
from golden.dfxp import PRECISIONS, Lfsr
from hw.build import BLOCKS
from hw.lfsr import seed_layout
from hw.output_error import RECIP_CYCLES, command_layout, input_layout
from hw.pe_array import PRECISION_CODES
from hw.requant import ConversionUnit, output_layout
from verif.bench import BenchTB


__all__ = ["Job", "expected", "random_logits", "random_job", "table_differences", "first_fractions", "seed_for_draw",
           "OutputErrorTB"]

_Z_LO, _Z_HI = -(1 << (LOGIT_BITS - 1)), (1 << (LOGIT_BITS - 1)) - 1


@dataclasses.dataclass
class Job:
    """One job: the logits ``z`` (``classes x batch`` codes at ``frac_z``), the labels, the error's
    fractional length and precision (``bits`` in bits, 4 .. 16) and the overflow rule's shift. ``pad`` holds
    the logits and labels of the padding lanes of the last group (anything; the unit must ignore them)."""
    z: np.ndarray
    labels: np.ndarray
    frac_z: int
    frac_e: int
    bits: int
    overflow_shift: int = 0
    pad: tuple = None

    @property
    def batch(self):
        return self.z.shape[1]

    def groups(self, lanes):
        return -(-self.batch // lanes)

    def command(self, lanes):
        return {"frac_z": self.frac_z, "frac_e": self.frac_e, "bits": PRECISION_CODES[self.bits],
                "overflow_shift": self.overflow_shift, "groups_m1": self.groups(lanes) - 1}

    def beats(self, lanes):
        """The input beats: for each group, one per class."""
        classes = self.z.shape[0]
        width = self.groups(lanes) * lanes
        z = np.zeros((classes, width), dtype=np.int64)
        labels = np.zeros(width, dtype=np.int64)
        z[:, :self.batch], labels[:self.batch] = self.z, self.labels
        if self.pad is not None:
            pad_z, pad_labels = self.pad
            z[:, self.batch:], labels[self.batch:] = pad_z[:, :width - self.batch], pad_labels[:width - self.batch]
        out = []
        for g in range(self.groups(lanes)):
            cols = range(g * lanes, (g + 1) * lanes)
            en = sum(1 << c for c in range(lanes) if g * lanes + c < self.batch)
            for k in range(classes):
                out.append({"z": [int(z[k, c]) for c in cols], "label": [int(labels[c]) for c in cols], "en": en})
        return out


def expected(job, lfsrs):
    """The golden result of ``job`` with the lanes' generators ``lfsrs`` (advanced): ``(beats, stats)``,
    beats a list of ``(codes, last)`` in output order (code 0 in a padding lane), stats a dict of the
    ``stats`` record's fields."""
    lanes = len(lfsrs)
    draws = draw_in_order(lfsrs, np.ones(job.z.shape, dtype=bool), (None, lanes))[..., 0]
    result = output_error(job.z, job.frac_z, job.labels, job.bits, job.frac_e, draws)
    classes, groups = job.z.shape[0], job.groups(lanes)
    codes = np.zeros((classes, groups * lanes), dtype=np.int64)
    codes[:, :job.batch] = result.codes
    beats = []
    for g in range(groups):
        for k in range(classes):
            beats.append(([int(v) for v in codes[k, g * lanes:(g + 1) * lanes]],
                          int(g == groups - 1 and k == classes - 1)))
    ovf0, ovf1 = result.counts
    n = job.z.size
    stats = {"ovf0": ovf0, "ovf1": ovf1, "elements": n,
             "next_frac": next_frac(job.frac_e, ovf0, ovf1, n, job.overflow_shift)}
    return beats, stats


def random_logits(rng, classes, batch):
    """``classes x batch`` logit codes, each column of one kind: uniform, extremes only, all equal, one far
    above the rest, ties for the maximum, a few codes apart, or the spread of trained logits."""
    z = np.zeros((classes, batch), dtype=np.int64)
    for col in range(batch):
        kind = int(rng.integers(0, 7))
        if kind == 0:
            v = rng.integers(_Z_LO, _Z_HI + 1, classes)
        elif kind == 1:
            v = rng.choice([_Z_LO, _Z_HI], classes)
        elif kind == 2:
            v = np.full(classes, int(rng.choice([_Z_LO, _Z_HI, 0, int(rng.integers(_Z_LO, _Z_HI + 1))])))
        elif kind == 3:
            v = rng.choice([_Z_LO, int(rng.integers(_Z_LO, 0))], classes)
            v[rng.integers(0, classes)] = _Z_HI
        elif kind == 4:
            top = int(rng.integers(_Z_LO, _Z_HI + 1))
            v = top - rng.integers(0, 1 << int(rng.integers(0, 17)), classes)
            v[rng.choice(classes, int(rng.integers(2, classes + 1)), replace=False)] = top
        elif kind == 5:
            v = int(rng.integers(_Z_LO, _Z_HI + 1)) + rng.integers(-4, 5, classes)
        else:
            v = rng.normal(0, 1 << int(rng.integers(4, 13)), classes).round().astype(np.int64)
        z[:, col] = np.clip(v, _Z_LO, _Z_HI)
    return z


def _frac_z(rng):
    u = rng.random()
    if u < 0.15:
        return int(rng.choice([FRAC_RANGE[0], FRAC_RANGE[1], -7, -6, -5, 0]))
    if u < 0.55:
        return int(rng.integers(-2, 16))          # where trained logits are
    return int(rng.integers(FRAC_RANGE[0], FRAC_RANGE[1] + 1))


def random_job(rng, classes, lanes, *, batch=None, bits=None, frac_z=None):
    """A random job (fields drawn where not given); the last group is partial now and then."""
    batch = int(rng.integers(1, 4 * lanes + 1)) if batch is None else batch
    bits = int(rng.choice(PRECISIONS)) if bits is None else bits
    frac_z = _frac_z(rng) if frac_z is None else frac_z
    frac_e = int(rng.integers(bits - 4, bits + 4)) if rng.random() < 0.6 else \
        int(rng.integers(FRAC_RANGE[0], FRAC_RANGE[1] + 1))
    pad_width = -batch % lanes
    pad = (random_logits(rng, classes, pad_width), rng.integers(0, 1 << (classes - 1).bit_length(), pad_width))
    return Job(random_logits(rng, classes, batch), rng.integers(0, classes, batch), frac_z, frac_e, bits,
               int(rng.integers(0, 8)) if rng.random() < 0.8 else int(rng.integers(0, 32)), pad)


def table_differences(frac_z):
    """For each entry ``k`` of the exponent table, a logit difference ``d < 0`` whose exponent at ``frac_z``
    (:func:`golden.core.softmax_parts`) is ``EXP2_TABLE[k] >> 1``: the smallest shift, which keeps bits 1 to
    15 of the entry."""
    d = np.arange(-1, _Z_LO, -1)
    e, *_ = softmax_parts(np.stack([np.zeros_like(d), d]), frac_z)
    entry = {v >> 1: k for k, v in enumerate(EXP2_TABLE)}
    found = {}
    for dd, ee in zip(d, e[1]):
        if int(ee) in entry:
            found.setdefault(entry[int(ee)], int(dd))
    assert len(found) == len(EXP2_TABLE), f"frac_z {frac_z} reaches {len(found)} entries at shift 1"
    return [found[k] for k in range(len(EXP2_TABLE))]


def first_fractions(job, lanes):
    """The 16 fraction bits that stochastic rounding compares with its draw (:func:`golden.core.shift_round`)
    for the first element each lane draws for, class 0 of sample ``c`` (``0 < ERROR_FRAC_IN - frac_e <= 16``)."""
    shift = ERROR_FRAC_IN - job.frac_e
    if not 0 < shift <= 16:
        raise ValueError(f"frac_e must be in {ERROR_FRAC_IN - 16}..{ERROR_FRAC_IN - 1}, not {job.frac_e}")
    _, _, _, p = softmax_parts(job.z, job.frac_z)
    g = [int(p[0, c]) - (1 << 16) * int(job.labels[c] == 0) for c in range(min(lanes, job.batch))]
    return [(x & ((1 << shift) - 1)) << (16 - shift) for x in g]


def seed_for_draw(draw, high):
    """A generator state whose first draw is ``draw``: the state ``high << 16 | draw`` (``high`` 1 to
    0xFFFF) stepped back over the draw's :attr:`golden.dfxp.Lfsr.STEPS_PER_DRAW` steps."""
    state = (high << 16) | draw
    for _ in range(Lfsr.STEPS_PER_DRAW):
        msb = state >> 31                   # the bit the step shifted out, as the taps put it at the top
        state = (((state ^ Lfsr.TAPS) if msb else state) << 1 | msb) & 0xFFFF_FFFF
    assert Lfsr(state).draw(1)[0] == draw, f"seed {state:#x} does not draw {draw}"
    return state


class OutputErrorTB(BenchTB):
    """Sources, sinks, the per-lane golden generators and the scoreboard."""

    def __init__(self, dut, *, stall=None):
        super().__init__(dut, stall=stall)
        self.unit = BLOCKS["output_error"].make(self.config)
        self.lanes, self.classes = self.unit.lanes, self.unit.classes
        self.cmd_layout = command_layout(self.unit.max_groups)
        self.in_layout = input_layout(self.lanes, self.classes)
        self.out_layout = output_layout(self.lanes)
        self.stats_layout = self.unit.stats.payload.shape()
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
        """Queue one job and its expected beats and record; returns the expected stats."""
        self.cmd.send(self.cmd_layout.const(job.command(self.lanes)).as_bits())
        for beat in job.beats(self.lanes):
            self.i.send(self.in_layout.const(beat).as_bits())
        beats, stats = expected(job, self.lfsrs)
        desc = f"{label} (frac_z {job.frac_z}, frac_e {job.frac_e}, {job.bits} bits, batch {job.batch})"
        for n, (codes, last) in enumerate(beats):
            group, k = divmod(n, self.classes)
            self.beats.append((f"{desc} group {group} class {k}", codes, last))
        self.records.append((desc, stats))
        return stats

    async def wait_for(self, condition, idle_cycles=None):
        """Wait, a clock edge at a time, until ``condition()`` holds; fail once no stream has moved for
        ``idle_cycles`` cycles (default ``400 / (1 - stall)``), so that a unit that hangs fails fast."""
        idle_cycles = idle_cycles or round(400 / max(0.02, 1 - self.stall))
        streams = (self.cmd, self.i, self.seed, self.o, self.stats)
        moved, idle = -1, 0
        while not condition():
            count = sum(len(s.times) for s in streams)
            moved, idle = count, (idle + 1 if count == moved else 0)
            assert idle < idle_cycles, (f"no transfer for {idle_cycles} cycles: {len(self.o.items)} of "
                                        f"{len(self.beats)} beats and {len(self.stats.items)} of "
                                        f"{len(self.records)} records out, {len(self.cmd.queue)} commands and "
                                        f"{len(self.seed.queue)} seeds waiting")
            await RisingEdge(self.dut.clk)

    async def load_seeds(self, seeds):
        """Load ``{lane: seed}`` once the jobs queued so far have all been taken, as the model does."""
        await self.wait_for(lambda: not self.cmd.queue)
        for lane, seed in seeds.items():
            self.seed.send(self.seed_layout.const({"lane": lane, "state": seed}).as_bits())
            self.lfsrs[lane] = Lfsr(seed)
        await self.wait_for(lambda: not self.seed.queue)

    def states(self):
        return [int(v) for v in self.state_layout.from_bits(self.dut.state.value.to_unsigned())]

    async def finish(self):
        """Wait for every expected beat and record (:meth:`wait_for`) and a few cycles more (a surplus would
        show), then compare them all."""
        await self.wait_for(lambda: len(self.o.items) >= len(self.beats) and
                            len(self.stats.items) >= len(self.records))
        await ClockCycles(self.dut.clk, 5)
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
        assert self.states() == [g.state for g in self.lfsrs], \
            f"LFSR states {self.states()}, golden {[g.state for g in self.lfsrs]}"


def _seeds(tb):
    return {lane: tb.rng.randrange(1, 1 << 32) for lane in range(tb.lanes)}


@cocotb.test()
async def random_jobs(dut):
    """Random jobs in batches, the generators re-seeded (all lanes, or one) between batches."""
    tb = OutputErrorTB(dut)
    await tb.reset()
    await tb.load_seeds(_seeds(tb))
    for batch in range(3):
        for n in range(12):
            tb.job(random_job(tb.np_rng, tb.classes, tb.lanes), f"batch {batch} job {n}")
        await tb.load_seeds(_seeds(tb) if batch % 2 else {tb.rng.randrange(tb.lanes): tb.rng.randrange(1, 1 << 32)})
    await tb.finish()


@cocotb.test()
async def directed_corners(dut):
    """Every ``frac_z`` of the 7-bit range on logits with the largest gaps, gaps of multiples of 64, ties and
    equal values; every precision at the ends of the ``frac_e`` range; one-sample jobs; a job of full groups
    only; a job of 17 groups; every entry of the exponent table in every lane; draws at the rounding
    boundary; the overflow rule keeping ``frac_e`` 16 and holding 63 at the top; ``o`` held while the next
    group's reciprocal waits for the output stage."""
    tb = OutputErrorTB(dut)
    await tb.reset()
    await tb.load_seeds(_seeds(tb))
    classes, lanes = tb.classes, tb.lanes
    # A long job first, on the idle unit: 17 groups (groups_m1 = 16, its bit 4 set) at frac_z 7, where every
    # bit of frac_z moves the exponents, and at a frac_e and precision that keep the probabilities' bits.
    job = random_job(tb.np_rng, classes, lanes, batch=16 * lanes + 1, bits=16, frac_z=7)
    tb.job(dataclasses.replace(job, frac_e=12), "17 groups")
    corner = np.full((classes, 5), _Z_LO, dtype=np.int64)
    corner[0, 0] = _Z_HI                                        # the largest gap
    corner[:, 1] = _Z_HI                                        # all equal at the top
    corner[:2, 2] = 7                                           # a tie for the maximum
    corner[:, 3] = np.arange(classes) - classes                 # one code apart
    gaps = np.concatenate([[0], 64 << np.minimum(np.arange(classes - 1), 10)])
    corner[:, 4] = np.clip(_Z_HI - gaps, _Z_LO, _Z_HI)          # gaps of 64 * 2**k
    labels = np.arange(5) % classes
    for frac_z in range(FRAC_RANGE[0], FRAC_RANGE[1] + 1):
        tb.job(Job(corner, labels, frac_z, 12, 16), f"frac_z {frac_z}")
    for bits in PRECISIONS:
        for frac_e in (FRAC_RANGE[0], FRAC_RANGE[1], bits - 1, 0):
            job = dataclasses.replace(random_job(tb.np_rng, classes, lanes, bits=bits), frac_e=frac_e)
            tb.job(job, f"{bits} bits")
    for n in range(4):
        tb.job(random_job(tb.np_rng, classes, lanes, batch=1), f"one sample {n}")
    tb.job(random_job(tb.np_rng, classes, lanes, batch=2 * lanes), "full groups")
    # Every entry of the exponent table in every lane at shift 1 (bits 1 to 15 reach E): at frac_z 7 the
    # differences of table_differences, nine per sample below its maximum, in random order.
    groups = -(-len(EXP2_TABLE) // (classes - 1))
    z = np.zeros((classes, groups * lanes), dtype=np.int64)
    every = table_differences(7)
    for c in range(lanes):
        diffs = tb.np_rng.permutation(every + list(tb.np_rng.choice(every, groups * (classes - 1) - len(every))))
        for g in range(groups):
            top = int(tb.np_rng.integers(0, classes))
            z[np.arange(classes) != top, g * lanes + c] = diffs[g * (classes - 1):(g + 1) * (classes - 1)]
    tb.job(Job(z, tb.np_rng.integers(0, classes, groups * lanes), 7, 15, 16), "every table entry")
    # Stochastic rounding at its boundary: each lane's first draw equals the fraction bits it is compared
    # with (r < f fails: rounds down) or one less (rounds up). At frac_e = 1 the fraction's low bit is 0.
    for frac_e, below in ((1, 0), (0, 1), (9, 0)):
        job = Job(random_logits(tb.np_rng, classes, lanes), tb.np_rng.integers(0, classes, lanes),
                  _frac_z(tb.np_rng), frac_e, int(tb.np_rng.choice(PRECISIONS)))
        draws = [max(f - below, 0) for f in first_fractions(job, lanes)]
        await tb.load_seeds({c: seed_for_draw(d, tb.rng.randrange(1, 1 << 16)) for c, d in enumerate(draws)})
        first = draw_in_order([Lfsr(g.state) for g in tb.lfsrs], np.ones(job.z.shape, dtype=bool), (None, lanes))
        assert list(first[0, :, 0]) == draws, f"first draws {list(first[0, :, 0])}, meant {draws}"
        tb.job(job, f"draws at the fractions - {below}")
    # The overflow rule: frac_e 16 (bit 4 set) kept - no element overflows at 16, some at 17 (the label
    # 1 code above one other class, the rest far below); frac_e 63 raised but held at the top (all g = 0).
    cols = np.arange(lanes)
    labels = tb.np_rng.integers(0, classes, lanes)
    z = np.full((classes, lanes), _Z_LO, dtype=np.int64)
    z[labels, cols], z[(labels + 1) % classes, cols] = 0, -1
    stats = tb.job(Job(z, labels, 0, 16, 16, 3), "frac_e 16 kept")
    assert stats["ovf0"] <= stats["elements"] >> 3 < stats["ovf1"] and stats["next_frac"] == 16, stats
    z[:], z[labels, cols] = _Z_LO, _Z_HI
    stats = tb.job(Job(z, labels, 0, FRAC_RANGE[1], 16, 31), "frac_e at the top raised")
    assert stats["ovf1"] == 0 and stats["next_frac"] == FRAC_RANGE[1], stats
    await tb.finish()
    # No stalls, but o held for `hold` cycles from the edge after which a group's last row has just been read
    # by the softmax's output stage (`behind` rows wait behind o: the conversion's output register and two
    # stages, the softmax's output register, its product register at stages=1, and that row): the next
    # group's reciprocal completes meanwhile (its last E comes a few cycles later, then RECIP_CYCLES) and waits
    # for that row to leave, an even and an odd number of cycles.
    behind = ConversionUnit.LATENCY + 3 + tb.unit.stages
    tb.cmd.stall = tb.i.stall = tb.o.stall = tb.stats.stall = 0.0
    for hold in (2 * RECIP_CYCLES + 2, 2 * RECIP_CYCLES + 3):
        job = random_job(tb.np_rng, classes, lanes, batch=2 * lanes, bits=16)
        tb.job(dataclasses.replace(job, frac_e=12), f"o held {hold} cycles")
        target = len(tb.beats) - 2 * classes + classes - behind

        async def release(cycles):
            await ClockCycles(dut.clk, cycles)
            tb.o.stall = 0.0

        def hold_after(_, cycles=hold, target=target):
            if len(tb.o.items) == target:        # the sink decides its next ready after this edge
                tb.o.stall = 1.0
                cocotb.start_soon(release(cycles))
        tb.o.callback = hold_after
        await tb.finish()


@cocotb.test()
async def training_logits(dut):
    """Logits of real training steps (:class:`golden.core.CoreTrainer`, back-propagation, a batch with a
    partial last group) at three precisions; after each step the unit's record equals the trainer's
    ``overflow["e"]`` and next ``fracs["e"]``, and at the end its generators equal the trainer's."""
    from golden.core import CoreConfig, CoreTrainer, Unit
    from golden.training import load_digits_split

    tb = OutputErrorTB(dut)
    await tb.reset()
    classes, lanes = tb.classes, tb.lanes
    x_train, y_train, x_test, y_test = load_digits_split()
    data_set = (x_train, y_train % classes, x_test, y_test % classes)
    for precision in (8, 16, 4):
        cfg = CoreConfig(sizes=(64, 24, classes), algorithm="bp", precision=precision, batch=2 * lanes + 1,
                         array=(2, lanes), seed=tb.rng.randrange(1000))
        trainer = CoreTrainer(cfg, data_set)
        await tb.load_seeds({lane: g.state for lane, g in enumerate(trainer.lfsrs[Unit.ERROR])})
        for step, idx in enumerate(trainer.batches()[:3]):
            x, y = trainer.x_train[idx].T, trainer.y_train[idx]
            *_, z, frac_z = trainer.forward(trainer.masters, x, trainer.fracs, train=False)
            stats = tb.job(Job(z, y, frac_z, trainer.fracs["e"], precision, cfg.overflow_shift),
                           f"{precision}-bit step {step}")
            trainer.step_codes(x, y)
            assert trainer.overflow["e"] == (stats["ovf0"], stats["ovf1"], stats["elements"])
            assert trainer.fracs["e"] == stats["next_frac"]
        assert [g.state for g in tb.lfsrs] == [g.state for g in trainer.lfsrs[Unit.ERROR]]
        await tb.finish()


def _group_run(tb, first):
    """Figures of the output beats from ``first`` on, the groups of one run back to back: groups, cycles from
    the edge that hands over the run's first code to the one that hands over its last, the cycles between the
    first codes of consecutive groups (steady state: all but the first interval; the whole run when it has
    two groups) and samples per cycle per lane in steady state (a lane takes one sample per group)."""
    classes = tb.classes
    starts = tb.o.times[first::classes]
    gaps = [tb.cycles_between(a, b) - 1 for a, b in zip(starts, starts[1:])]
    steady = gaps[1:] or gaps
    per_group = sum(steady) / len(steady) if steady else None
    return {"groups": len(starts), "cycles": tb.cycles_between(tb.o.times[first], tb.o.times[-1]),
            "group_gaps": sorted(set(gaps)), "cycles_per_group": per_group,
            "samples_per_cycle_per_lane": 1 / per_group if per_group else None}


async def throughput(dut):
    """For a benchmark: the latency of one group, then the group throughput over one long job of full groups
    and over a run of one-group jobs, without stalls; every result still checked. Writes JSON to
    ``EDGETRAIN_PERF_OUT`` (groups of the long job from ``EDGETRAIN_PERF_GROUPS``, default 64, at most the
    unit's ``max_groups``), with the unit's documented ``latency`` and ``group_cycles`` beside the measured
    figures. A test only when ``EDGETRAIN_PERF_OUT`` is set (see below)."""
    tb = OutputErrorTB(dut, stall=0.0)
    await tb.reset()
    await tb.load_seeds(_seeds(tb))
    classes, lanes = tb.classes, tb.lanes
    tb.job(random_job(tb.np_rng, classes, lanes, batch=lanes), "latency probe")
    while len(tb.o.items) < len(tb.beats):
        await RisingEdge(dut.clk)
    # Edges from the one that takes the group's last logit beat to the one that takes its first code (the
    # sink never stalls here), as the unit documents its latency (`OutputErrorUnit.latency`).
    report = {"lanes": lanes, "classes": classes,
              "latency_cycles": tb.cycles_between(tb.i.times[-1], tb.o.times[-classes]) - 1,
              "documented_latency_cycles": tb.unit.latency, "documented_group_cycles": tb.unit.group_cycles}
    groups = int(os.environ.get("EDGETRAIN_PERF_GROUPS", "64"))
    for name, jobs in (("long_job", [random_job(tb.np_rng, classes, lanes, batch=groups * lanes)]),
                       ("one_group_jobs", [random_job(tb.np_rng, classes, lanes, batch=lanes) for _ in range(16)])):
        first, taken = len(tb.o.times), len(tb.i.times)
        for job in jobs:
            tb.job(job, name)
        while len(tb.o.items) < len(tb.beats):
            await RisingEdge(dut.clk)
        run = _group_run(tb, first)
        # From the edge that takes the run's first logit beat to the one that hands over its last code.
        run["cycles_from_first_input"] = tb.cycles_between(tb.i.times[taken], tb.o.times[-1])
        report[name] = {"jobs": len(jobs), **run}
    await tb.finish()
    with open(os.environ["EDGETRAIN_PERF_OUT"], "w") as f:
        json.dump(report, f, indent=2)


# Registered for a benchmark run only, rather than skipped otherwise: the regular bench's test count stays
# what tests/test_output_error.py expects.
if "EDGETRAIN_PERF_OUT" in os.environ:
    throughput = cocotb.test(throughput)
