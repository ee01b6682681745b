"""cocotb bench of the bit-scalable PE array against :mod:`golden.pe_array`.

Driver: the ``cmd``, ``a`` and ``b`` stream sources; monitor and scoreboard: the ``o`` sink checks every
output transfer (``pe.drain_rows`` tile rows), in order, bit for bit against the golden tile. Sources and
sink stall at random (probability ``EDGETRAIN_STALL``, default 0.3), so every handshake sees bubbles and
back-pressure. The random seed is
cocotb's (logged at start; set it with ``seed=`` in :func:`verif.runner.run_bench`).

Run through pytest (``tests/test_pe_array.py``) or ``verif.runner.run_bench("pe_array", config, sim)``.
"""

import json
import os
from collections import deque

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from golden import pe_array as golden
from golden.dfxp import code_range
from hw.pe_array import PRECISION_CODES, Mode, command_layout, output_layout
from verif.bench import BenchTB


class PEArrayTB(BenchTB):
    """The three sources, the output sink and the scoreboard."""

    def __init__(self, dut, *, stall=None):
        super().__init__(dut, stall=stall)
        self.cfg = self.config.pe
        self.cmd_layout = command_layout(self.cfg.max_k)
        # The array sends `per` tile rows per transfer (pe.drain_rows, at most the tile's rows).
        self.per = min(self.cfg.drain_rows, self.cfg.rows)
        self.steps = -(-self.cfg.rows // self.per)
        self.out_layout = output_layout(self.cfg.cols, self.cfg.acc_width, self.per)
        self.cmd = self.source("cmd")
        self.a = self.source("a")
        self.b = self.source("b")
        self.o = self.sink("o", callback=self._check)
        self.expected = deque()
        self.errors = []
        self.rows_checked = 0

    def submit(self, mode, pa, pb, job, label=""):
        """Queue one command (an output tile) and its beats; expect its rows."""
        self.cmd.send(self.cmd_layout.const({
            "mode": Mode[golden.Mode(mode).name],
            "prec_a": PRECISION_CODES[pa], "prec_b": PRECISION_CODES[pb],
            "beats_m1": len(job.beats) - 1,
        }).as_bits())
        for a_beat, b_beat in job.beats:
            self.a.send(a_beat)
            self.b.send(b_beat)
        # One expected transfer per `per` rows; rows beyond the tile (a partial last transfer) are zeros.
        cols = self.cfg.cols
        for s in range(self.steps):
            rows = range(s * self.per, (s + 1) * self.per)
            want = [int(job.expected[r][c]) if r < self.cfg.rows else 0 for r in rows for c in range(cols)]
            self.expected.append((f"{label} tile({job.m0},{job.n0}) rows {rows.start}..{rows.stop - 1}",
                                  want, int(s == self.steps - 1)))

    def _check(self, payload):
        view = self.out_layout.from_bits(payload)
        got = [int(view.data[i]) for i in range(self.per * self.cfg.cols)]
        if not self.expected:
            self.errors.append(f"unexpected output transfer {got}")
            return
        where, want, last = self.expected.popleft()
        self.rows_checked += self.per
        if got != want or int(view.last) != last:
            self.errors.append(f"{where}: got {got} last={int(view.last)}, expected {want} last={last}")

    async def finish(self, timeout_cycles=200_000):
        """Wait until every expected row has arrived, then fail on any mismatch."""
        await self.wait_until(lambda: not self.expected, timeout_cycles, settle=10)
        assert not self.errors, f"{len(self.errors)} mismatches, first: {self.errors[:3]}"
        assert not self.expected, (f"timeout: {len(self.expected)} transfers never came out "
                                   f"(next: {self.expected[0][0]})")
        assert int(self.dut.error.value) == 0, "error flag raised by a valid command"

    def operands(self, shape, p, corner=0.25):
        """Random ``p``-bit codes with a fraction ``corner`` of most negative, most positive, 0 and -1."""
        lo, hi = code_range(p)
        v = self.np_rng.integers(lo, hi + 1, size=shape)
        pick = self.np_rng.random(shape) < corner
        v[pick] = self.np_rng.choice([lo, hi, 0, -1], size=int(pick.sum()))
        return v


def _shapes(mode, out_m, red, out_n):
    """Stored shapes of the A and B tensors of a GEMM with an ``out_m x out_n`` result over ``red``."""
    return {
        golden.Mode.FF: ((out_m, red), (out_n, red)),   # W, Xs
        golden.Mode.EP: ((red, out_m), (out_n, red)),   # W (read transposed), Es
        golden.Mode.WG: ((red, out_m), (red, out_n)),   # Es, Xs (both read transposed)
    }[mode]


@cocotb.test()
async def precision_pairs(dut):
    """Every mode x every supported precision pair: random and corner values, full and ragged tiles."""
    tb = PEArrayTB(dut)
    await tb.reset()
    cfg = tb.cfg
    for mode in golden.Mode:
        for pa in cfg.precisions:
            for pb in cfg.precisions:
                n = golden.lanes(pa, pb)
                out_m = cfg.rows + tb.rng.randint(1, cfg.rows)       # one full and one ragged tile row
                out_n = cfg.cols + tb.rng.randint(1, cfg.cols)
                red = tb.rng.randint(1, min(3 * n, cfg.max_k * n))
                sa, sb = _shapes(mode, out_m, red, out_n)
                a_mem, b_mem = tb.operands(sa, pa), tb.operands(sb, pb)
                for job in golden.tile_jobs(mode, a_mem, b_mem, pa, pb, cfg.rows, cfg.cols):
                    tb.submit(mode, pa, pb, job, f"{mode.name} {pa}x{pb}")
    await tb.finish()
    dut._log.info("checked %d output rows", tb.rows_checked)


@cocotb.test()
async def accumulator_extremes(dut):
    """Longest reductions (max_k beats) of all-most-negative and mixed extreme operands, every pair:
    the largest and smallest sums the accumulator must hold."""
    tb = PEArrayTB(dut)
    await tb.reset()
    cfg = tb.cfg
    for pa in cfg.precisions:
        for pb in cfg.precisions:
            red = cfg.max_k * golden.lanes(pa, pb)
            (lo_a, hi_a), (lo_b, hi_b) = code_range(pa), code_range(pb)
            a_mem = np.full((cfg.rows, red), lo_a)
            a_mem[1::2] = hi_a                                   # odd rows: most positive
            b_mem = np.full((cfg.cols, red), lo_b)               # FF: W x Xs^T
            b_mem[1::2] = hi_b                                   # odd columns: most positive
            for job in golden.tile_jobs(golden.Mode.FF, a_mem, b_mem, pa, pb, cfg.rows, cfg.cols):
                tb.submit(golden.Mode.FF, pa, pb, job, f"extreme {pa}x{pb}")
    await tb.finish()


@cocotb.test(skip="EDGETRAIN_PERF_OUT" not in os.environ)
async def throughput(dut):
    """Cycle counts for the benchmark (scripts/bench_pe_array.py): no stalls, back-to-back commands.

    Reads the workload from ``EDGETRAIN_PERF_IN`` (JSON list of cases) and writes the measured cycles to
    ``EDGETRAIN_PERF_OUT``. Every output is still checked against golden."""
    tb = PEArrayTB(dut, stall=0.0)
    await tb.reset()
    cfg = tb.cfg
    cases = json.loads(open(os.environ["EDGETRAIN_PERF_IN"]).read())
    results = []
    for case in cases:
        mode, pa, pb = golden.Mode[case["mode"]], case["pa"], case["pb"]
        sa, sb = _shapes(mode, case["m"], case["k"], case["n"])
        a_mem, b_mem = tb.operands(sa, pa, corner=0), tb.operands(sb, pb, corner=0)
        jobs = golden.tile_jobs(mode, a_mem, b_mem, pa, pb, cfg.rows, cfg.cols)
        await RisingEdge(dut.clk)
        for job in jobs:
            tb.submit(mode, pa, pb, job, case["name"])
        first = len(tb.a.times)
        rows_before = len(tb.o.times)
        while tb.expected:
            await RisingEdge(dut.clk)
        # Cycles from the edge that takes the first beat to the edge that hands over the last output row.
        cycles = tb.cycles_between(tb.a.times[first], tb.o.times[-1])
        assert len(tb.o.times) - rows_before == len(jobs) * tb.steps
        results.append({**case, "beats": sum(len(j.beats) for j in jobs), "tiles": len(jobs),
                        "cycles": cycles})
    await tb.finish()
    with open(os.environ["EDGETRAIN_PERF_OUT"], "w") as f:
        json.dump(results, f)
