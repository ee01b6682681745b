"""cocotb bench of the input zero-skip unit against :func:`golden.sparsity.zero_skip_beats`.

Drivers: weights on ``w``, then input beats of ``window`` elements on ``i`` (random bubbles); monitor: the
``o`` sink with random back-pressure. Every output beat must equal the golden schedule (which element in
which slot, the ``last`` marks), every slot's weight must be ``weights[index]``, and the dot products
accumulated from the slots must equal the dense ones, exactly. Stimulus: random vectors at sparsity 0 to 1,
directed corners (vectors alone, dense vectors back to back, a vector longer than ``depth``), and DFXP-16
activations and errors of a DFA training step of :mod:`golden.training`.

``EDGETRAIN_ZS_RUNS`` (the path of a JSON file, for the benchmark) names vector sets to time without
stalls; the cycles from the first input transfer to the last output transfer of each set go to
``EDGETRAIN_ZS_OUT``.
"""

import json
import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from golden import sparsity
from hw.zero_skip import input_layout, output_layout, weight_layout
from verif.bench import BenchTB


class ZeroSkipTB(BenchTB):
    def __init__(self, dut, *, stall=None):
        super().__init__(dut, stall=stall)
        cfg = self.config.sparsity
        self.cfg = cfg
        self.in_l = input_layout(cfg.window, cfg.width)
        self.w_l = weight_layout(cfg.depth, cfg.weight_width)
        self.out_l = output_layout(cfg.slots, cfg.width, cfg.depth, cfg.weight_width)
        self.w = self.source("w")
        self.i = self.source("i")
        self.o = self.sink("o")
        self.weights = None

    async def load_weights(self, weights):
        for addr, value in enumerate(weights):
            self.w.send(self.w_l.const({"addr": addr, "data": int(value)}).as_bits())
        await self.w.wait_idle()
        await ClockCycles(self.dut.clk, 2)
        self.weights = [int(v) for v in weights]

    def send(self, vectors):
        n = self.cfg.window
        for vector in vectors:
            chunks = sparsity.beats(vector, n)
            for k, chunk in enumerate(chunks):
                self.i.send(self.in_l.const({"values": chunk, "last": k == len(chunks) - 1}).as_bits())

    async def check(self, vectors, first=0, timeout_cycles=200_000):
        """Wait for the beats of ``vectors`` (after ``first`` earlier beats) and compare them with golden."""
        want = sparsity.zero_skip_beats(vectors, self.cfg.slots)
        await self.wait_until(lambda: len(self.o.items) >= first + len(want), timeout_cycles)
        items = self.o.items[first:]
        assert len(items) == len(want), f"{len(items)} beats out, {len(want)} expected"
        got, dots, acc = [], [], 0
        for item in items:
            beat = self.out_l.from_bits(item)
            pairs = [(int(s.value), int(s.index), int(s.weight)) for s in beat.slots if s.valid]
            assert all(w == self.weights[i] for _, i, w in pairs), f"wrong weight in {pairs}"
            got.append(([(v, i) for v, i, _ in pairs], bool(beat.last)))
            acc += sum(v * w for v, _, w in pairs)
            if beat.last:
                dots.append(acc)
                acc = 0
        bad = [k for k, (g, w) in enumerate(zip(got, want)) if g != w]
        assert not bad, f"{len(bad)} beats differ from golden, first at {bad[0]}: {got[bad[0]]} != {want[bad[0]]}"
        dense = [sum(int(v) * self.weights[k] for k, v in enumerate(vector)) for vector in vectors]
        assert dots == dense, "dot products from the slots differ from the dense ones"
        assert not int(self.dut.error.value)
        return len(want)

    def random_vectors(self, count, sparsity_levels=(0.0, 0.25, 0.5, 0.75, 0.9, 1.0)):
        lo, hi = -(1 << (self.cfg.width - 1)), (1 << (self.cfg.width - 1)) - 1
        vectors = []
        for k in range(count):
            s = sparsity_levels[k % len(sparsity_levels)]
            length = self.rng.randint(1, self.cfg.depth)
            v = self.np_rng.integers(lo, hi + 1, length) * (self.np_rng.random(length) >= s)
            vectors.append(v)
        return vectors


@cocotb.test()
async def random_vectors(dut):
    """Random lengths and sparsity 0 to 1, extreme values, random stalls on every port."""
    tb = ZeroSkipTB(dut)
    await tb.reset()
    lo, hi = -(1 << (tb.cfg.weight_width - 1)), (1 << (tb.cfg.weight_width - 1)) - 1
    await tb.load_weights(tb.np_rng.integers(lo, hi + 1, tb.cfg.depth))
    vectors = tb.random_vectors(60)
    vectors.append(np.full(tb.cfg.depth, -(1 << (tb.cfg.width - 1))))
    vectors.append(np.zeros(tb.cfg.window, dtype=int))
    tb.send(vectors)
    await tb.check(vectors)


@cocotb.test()
async def directed_corners(dut):
    """Each vector alone (its beats must come out without a next vector behind it): every non-zero count up
    to 2 slots + 2 and dense lengths around multiples of the window; dense vectors back to back; the queue
    filled to its limit behind a stopped output, a vector's end on its newest entry; last, a vector longer
    than ``depth``: its first ``depth`` elements come out, the sticky ``error`` rises."""
    tb = ZeroSkipTB(dut)
    await tb.reset()
    cfg = tb.cfg
    lo, hi = -(1 << (cfg.weight_width - 1)), (1 << (cfg.weight_width - 1)) - 1
    await tb.load_weights(tb.np_rng.integers(lo, hi + 1, cfg.depth))

    def nonzero(count):
        return tb.np_rng.integers(1, 1 << (cfg.width - 1), count) * tb.np_rng.choice([-1, 1], count)

    alone = []
    for nnz in range(min(2 * cfg.slots + 3, cfg.depth + 1)):
        v = np.zeros(tb.rng.randint(max(nnz, 1), cfg.depth), dtype=int)
        v[tb.np_rng.choice(len(v), nnz, replace=False)] = nonzero(nnz)
        alone.append(v)
    lengths = sorted({n for k in range(1, cfg.depth // cfg.window + 1) for n in
                      (k * cfg.window - 1, k * cfg.window, k * cfg.window + 1) if 1 <= n <= cfg.depth})
    alone += [nonzero(n) for n in lengths]
    first = 0
    for v in alone:
        tb.send([v])
        first += await tb.check([v], first, timeout_cycles=20 * cfg.depth)
    dense = [nonzero(n) for n in lengths for _ in range(2)]
    tb.send(dense)
    first += await tb.check(dense, first)

    # A full queue: `a` entries of a vector, then a vector whose two beats fill the queue up to the input
    # limit, its end on the newest entry, while the output waits; then the output drains (pops `a`).
    n = cfg.window
    for a in range(1, cfg.slots + 1):
        fill = 2 * cfg.slots - a
        if not 0 <= fill <= n or 2 * n > cfg.depth:
            continue
        head = np.zeros(n, dtype=int)
        head[:a] = nonzero(a)
        tail = np.concatenate([nonzero(fill), np.zeros(n - fill, dtype=int), nonzero(n)])
        stalls = tb.i.stall, tb.o.stall
        tb.i.stall, tb.o.stall = 0.0, 1.0
        tb.send([head, tail])
        await tb.i.wait_idle()
        await ClockCycles(dut.clk, 2)
        tb.i.stall, tb.o.stall = stalls
        first += await tb.check([head, tail], first)

    long = nonzero(cfg.depth + cfg.window)
    tb.send([long])
    want = sparsity.zero_skip_beats([long[:cfg.depth]], cfg.slots)
    assert await tb.wait_until(lambda: len(tb.o.items) >= first + len(want), 20 * cfg.depth)
    got = []
    for item in tb.o.items[first:]:
        beat = tb.out_l.from_bits(item)
        got.append(([(int(x.value), int(x.index)) for x in beat.slots if x.valid], bool(beat.last)))
    assert got == want, "a vector longer than depth: its first depth elements differ from golden"
    for _ in range(4):
        await ClockCycles(dut.clk, 1)
        assert int(dut.error.value), "a vector longer than depth must raise error"


@cocotb.test()
async def training_tensors(dut):
    """Activations and errors of a DFA training step (DFXP-16 codes, clipped to the element width)."""
    from golden.training import TrainConfig, Trainer

    tb = ZeroSkipTB(dut)
    await tb.reset()
    cfg = tb.cfg
    trainer = Trainer(TrainConfig(sizes=(64, min(cfg.depth, 32), 10), algorithm="dfa", arithmetic="dfxp16"))
    record = {}
    trainer.step(trainer.data[0][:8], trainer.data[1][:8], record=record)
    lo, hi = -(1 << (cfg.width - 1)), (1 << (cfg.width - 1)) - 1
    shift = 16 - cfg.width
    vectors = []
    for key in ("a0.codes", "a1.codes", "e0.codes"):
        codes = record[key] >> shift                                   # keep the top `width` bits
        vectors += [np.clip(codes[:cfg.depth, col], lo, hi) for col in range(codes.shape[1])]
    await tb.load_weights(tb.np_rng.integers(lo, hi + 1, cfg.depth))
    tb.send(vectors)
    await tb.check(vectors)


@cocotb.test(skip="EDGETRAIN_ZS_RUNS" not in os.environ)
async def throughput(dut):
    """For the benchmark: each named vector set without stalls; cycles per set."""
    tb = ZeroSkipTB(dut, stall=0.0)
    await tb.reset()
    with open(os.environ["EDGETRAIN_ZS_RUNS"]) as f:
        runs = json.load(f)
    await tb.load_weights(runs["weights"])
    results, first = [], 0
    for name, vectors in runs["sets"].items():
        start_in = len(tb.i.times)
        tb.send(vectors)
        beats = await tb.check(vectors, first)
        t0, t1 = tb.i.times[start_in], tb.o.times[first + beats - 1]
        results.append({"name": name, "cycles": tb.cycles_between(t0, t1), "beats": beats})
        first += beats
    with open(os.environ["EDGETRAIN_ZS_OUT"], "w") as f:
        json.dump(results, f)
