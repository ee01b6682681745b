"""cocotb bench of the slice-skipping PE against exact integer dot products and
:func:`golden.sparsity.slice_skip_groups`.

Driver: beats of ``slice_pairs`` operand pairs on ``i`` (random bubbles); monitor: the ``o`` sink (random
back-pressure). Every dot product must be exact. Stimulus: random operands at every magnitude (full range,
small, zero) with extreme codes; every code (:func:`corner_codes`) at every pair position of a beat, as ``a``
and as ``b``, without stalls, each beat taking exactly the cycles of its groups in
:func:`golden.sparsity.slice_skip_groups` (at every pipeline depth); a result held on ``o`` (``o.ready``
low) while the PE finishes it, offered after :func:`golden.sparsity.slice_skip_latency`, and then waits;
and the DFXP error and activation codes of a training step of :mod:`golden.training` (the weight-gradient
GEMM's operands).

``EDGETRAIN_SS_RUNS`` (the path of a JSON file of named operand sets, for the benchmark) times each set
without stalls, from the first input transfer to the last result; the cycles go to ``EDGETRAIN_SS_OUT``.
"""

import json
import os

import cocotb
import numpy as np
from amaranth.hdl import signed
from amaranth.lib import data
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

from golden import sparsity
from hw.slice_skip import input_layout
from verif.bench import BenchTB


def corner_codes(bits):
    """Operand codes that reach every slice window of a ``bits``-bit code: all of them up to 8 bits; beyond,
    zero, the extremes, +-2**j and their neighbours, and every non-zero nibble at every slice position with
    either sign (sorted, without repeats)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if bits <= 8:
        return list(range(lo, hi + 1))
    codes = {0, lo, hi}
    for j in range(bits):
        codes |= {sign * ((1 << j) + d) for sign in (1, -1) for d in (-1, 0, 1)}
    for k in range(bits // 4):
        codes |= {sign * (n << (4 * k)) for n in range(1, 16) for sign in (1, -1)}
    return sorted(v for v in codes if lo <= v <= hi)


class SliceSkipTB(BenchTB):
    def __init__(self, dut, *, stall=None):
        super().__init__(dut, stall=stall)
        self.cfg = self.config.sparsity
        self.bits, self.pairs = self.cfg.slice_bits, self.cfg.slice_pairs
        self.in_l = input_layout(self.pairs, self.bits)
        self.out_l = data.ArrayLayout(signed(self.config.pe.acc_width), 1)
        self.i = self.source("i")
        self.o = self.sink("o")

    def send(self, dots):
        for a, b in dots:
            a_beats, b_beats = sparsity.beats(a, self.pairs), sparsity.beats(b, self.pairs)
            for k, (a_beat, b_beat) in enumerate(zip(a_beats, b_beats)):
                self.i.send(self.in_l.const({"a": a_beat, "b": b_beat, "last": k == len(a_beats) - 1}).as_bits())

    def edges(self, t0, t1):
        """Clock edges from the edge at ``t0`` to the one at ``t1`` (ns)."""
        return round((t1 - t0) / self.PERIOD_NS)

    async def check_schedule(self, dots, first_beat=0):
        """Without stalls on ``i``, each beat of ``dots`` is taken as many edges after the one before as the
        one before has groups in :func:`golden.sparsity.slice_skip_groups` (``first_beat``: the beats sent
        before ``dots``). Returns the time of the last beat's edge and its group count."""
        a_beats = [beat for a, _ in dots for beat in sparsity.beats(a, self.pairs)]
        b_beats = [beat for _, b in dots for beat in sparsity.beats(b, self.pairs)]
        cycles = [len(g) for g in sparsity.slice_skip_groups(a_beats, b_beats, self.bits, self.cfg.slice_slots)]
        end = first_beat + len(a_beats)
        await self.wait_until(lambda: len(self.i.times) >= end, 10 * sum(cycles) + 100, settle=0)
        times = self.i.times[first_beat:end]
        assert len(times) == len(cycles), f"{len(times)} beats taken, {len(cycles)} sent"
        got = [self.edges(t0, t1) for t0, t1 in zip(times, times[1:])]
        bad = [k for k, (g, w) in enumerate(zip(got, cycles)) if g != w]
        assert not bad, (f"{len(bad)} beats took the wrong number of cycles, first beat {bad[0]}: {got[bad[0]]}, "
                         f"schedule {cycles[bad[0]]} (a {a_beats[bad[0]]}, b {b_beats[bad[0]]})")
        return times[-1], cycles[-1]

    async def check(self, dots, first=0):
        await self.wait_until(lambda: len(self.o.items) >= first + len(dots),
                              100 * sum(len(a) for a, _ in dots) + 100, settle=3)
        got = [int(self.out_l.from_bits(v)[0]) for v in self.o.items[first:]]
        want = [int(np.dot(np.asarray(a, dtype=object), np.asarray(b, dtype=object))) for a, b in dots]
        assert len(got) == len(want), f"{len(got)} results, {len(want)} expected"
        bad = [k for k, (g, w) in enumerate(zip(got, want)) if g != w]
        assert not bad, f"{len(bad)} wrong dot products, first {bad[0]}: {got[bad[0]]} != {want[bad[0]]}"


@cocotb.test()
async def random_operands(dut):
    tb = SliceSkipTB(dut)
    await tb.reset()
    lo, hi = -(1 << (tb.bits - 1)), (1 << (tb.bits - 1)) - 1
    dots = []
    for k in range(60):
        length = tb.rng.randint(1, 4 * tb.pairs)
        scale = (hi, hi >> 4, hi >> 8, 7, 1, 0)[k % 6]
        a = tb.np_rng.integers(-scale, scale + 1, length)
        b = tb.np_rng.integers(lo, hi + 1, length)
        a[tb.np_rng.random(length) < 0.15] = lo
        b[tb.np_rng.random(length) < 0.15] = tb.np_rng.choice([lo, hi, 0, -1])
        dots.append((a, b))
    tb.send(dots)
    await tb.check(dots)


@cocotb.test()
async def every_code(dut):
    """Every code of :func:`corner_codes` at every pair position, as ``a`` against random ``b`` codes and as
    ``b`` against random ``a`` codes; one beat per dot product, no stalls: the results and the schedule."""
    tb = SliceSkipTB(dut, stall=0.0)
    await tb.reset()
    lo, hi = -(1 << (tb.bits - 1)), (1 << (tb.bits - 1)) - 1
    codes = corner_codes(tb.bits)
    codes += [0] * (-len(codes) % tb.pairs)
    codes = [codes[k] for k in tb.np_rng.permutation(len(codes))]
    dots = []
    for swap in (False, True):
        for r in range(tb.pairs):        # code tb.pairs * k + q at position (q - r) mod pairs
            for k in range(0, len(codes), tb.pairs):
                own = [codes[k + (p + r) % tb.pairs] for p in range(tb.pairs)]
                other = [int(v) for v in tb.np_rng.integers(lo, hi + 1, tb.pairs)]
                dots.append((other, own) if swap else (own, other))
    tb.send(dots)
    await tb.check_schedule(dots)
    await tb.check(dots)


@cocotb.test()
async def held_result(dut):
    """``o.ready`` low: the PE still finishes a dot product of several beats in its schedule's cycles and
    offers it after its latency (:func:`golden.sparsity.slice_skip_latency` at the configured depth). The
    next one's first beat is taken; with pipeline stages the PE goes on with it for as many cycles as it
    has stages (the result was still in the pipeline), taking the beats its schedule reaches in them; then
    it waits, and nothing else is taken. Once ``o`` takes again, both results are exact."""
    tb = SliceSkipTB(dut, stall=0.0)
    tb.o.stall = 1.0
    await tb.reset()
    lo, hi = -(1 << (tb.bits - 1)), (1 << (tb.bits - 1)) - 1
    beats = 3
    dots = [(tb.np_rng.integers(lo, hi + 1, beats * tb.pairs), tb.np_rng.integers(lo, hi + 1, beats * tb.pairs))
            for _ in range(2)]
    tb.send(dots)
    last_beat, cycles = await tb.check_schedule(dots[:1])
    # The last beat's pairs are taken in its `cycles` cycles, the last of them `cycles - 1` edges after the
    # beat; the result follows the pipeline's latency later.
    stages = tb.config.stages("slice_skip")
    want = cycles - 1 + sparsity.slice_skip_latency(stages)
    for _ in range(want + 2):
        await RisingEdge(dut.clk)
        await ReadOnly()
        if int(dut.o__valid.value):
            break
    assert int(dut.o__valid.value), f"no result offered {want + 2} cycles after the last beat"
    got = tb.edges(last_beat, get_sim_time("ns"))
    assert got == want, f"result offered {got} cycles after the last beat, schedule and latency {want}"
    # The next dot product's beats completed in the `stages` cycles the PE still steps.
    a_next, b_next = sparsity.beats(dots[1][0], tb.pairs), sparsity.beats(dots[1][1], tb.pairs)
    done = used = 0
    for groups in sparsity.slice_skip_groups(a_next, b_next, tb.bits, tb.cfg.slice_slots):
        if used + len(groups) > stages:
            break
        used, done = used + len(groups), done + 1
    taken = beats + min(beats, 1 + done)
    await ClockCycles(dut.clk, 2 * beats * tb.pairs)     # longer than the next dot product would take
    await ReadOnly()
    assert len(tb.i.times) == taken and int(dut.o__valid.value), \
        f"{len(tb.i.times)} beats taken ({taken} expected) and o.valid {int(dut.o__valid.value)} while the " \
        f"result is held"
    tb.o.stall = 0.0
    await tb.check(dots)


@cocotb.test()
async def training_operands(dut):
    """WG operands of a DFA training step: each output error row against each input activation row."""
    from golden.training import TrainConfig, Trainer
    tb = SliceSkipTB(dut)
    await tb.reset()
    trainer = Trainer(TrainConfig(sizes=(64, 32, 10), algorithm="dfa", arithmetic="dfxp16"))
    record = {}
    trainer.step(trainer.data[0][:16], trainer.data[1][:16], record=record)
    shift = 16 - tb.bits
    e, a = record["e0.codes"] >> shift, record["a0.codes"] >> shift      # keep the top `bits` bits
    dots = [(e[i], a[j]) for i in range(0, e.shape[0], 4) for j in range(0, a.shape[0], 8)]
    tb.send(dots)
    await tb.check(dots)


@cocotb.test(skip="EDGETRAIN_SS_RUNS" not in os.environ)
async def throughput(dut):
    tb = SliceSkipTB(dut, stall=0.0)
    await tb.reset()
    with open(os.environ["EDGETRAIN_SS_RUNS"]) as f:
        sets = json.load(f)
    results, first = [], 0
    for name, dots in sets.items():
        start = len(tb.i.times)
        tb.send(dots)
        await tb.check(dots, first)
        first += len(dots)
        results.append({"name": name, "cycles": tb.cycles_between(tb.i.times[start], tb.o.times[first - 1])})
    with open(os.environ["EDGETRAIN_SS_OUT"], "w") as f:
        json.dump(results, f)
