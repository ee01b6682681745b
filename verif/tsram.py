"""cocotb bench of the transposable SRAM wrapper against :mod:`golden.tsram`.

Drivers: the ``w`` (row/column writes) and ``rreq`` (row/column read requests) stream sources, each with
random bubbles; monitor: the ``rresp`` sink with random back-pressure. Scoreboard: the drivers stamp every
transfer with its clock edge; the golden store replays all writes and reads in edge order (a read before
the write of its own edge: read-first) and every response is compared, word for word, in order.
"""

import json
import os

import cocotb

from golden.tsram import Access, Axis as GAxis, TransposableStore
from amaranth.hdl import unsigned
from amaranth.lib import data

from hw.tsram import Axis, request_layout, write_layout
from verif.bench import BenchTB


class TSRAMTB(BenchTB):
    def __init__(self, dut, *, stall=None):
        super().__init__(dut, stall=stall)
        cfg = self.config.tsram
        self.n, self.width, self.tiles = cfg.n, cfg.width, cfg.tiles
        self.w_layout = write_layout(self.n, self.width, self.tiles)
        self.r_layout = request_layout(self.n, self.tiles)
        self.resp_layout = data.ArrayLayout(unsigned(self.width), self.n)
        self.w = self.source("w")
        self.rreq = self.source("rreq")
        self.rresp = self.sink("rresp")
        self.writes = []
        self.reads = []

    def random_access(self):
        return Access(GAxis(self.rng.randrange(2)), self.rng.randrange(self.tiles), self.rng.randrange(self.n))

    def write(self, access, words):
        self.w.send(self.w_layout.const({"axis": Axis(access.axis), "tile": access.tile, "index": access.index,
                                         "data": list(words)}).as_bits())
        self.writes.append((access, list(words)))

    def read(self, access):
        self.rreq.send(self.r_layout.const({"axis": Axis(access.axis), "tile": access.tile,
                                            "index": access.index}).as_bits())
        self.reads.append(access)

    async def finish(self, timeout_cycles=200_000):
        await self.wait_until(lambda: len(self.rresp.items) == len(self.reads) and not self.w.queue, timeout_cycles)
        assert len(self.rresp.items) == len(self.reads), \
            f"{len(self.reads)} reads, {len(self.rresp.items)} responses"
        # Replay in edge order; at one edge the read goes first.
        events = [(t, 1, ("w", op)) for t, op in zip(self.w.times, self.writes)]
        events += [(t, 0, ("r", op)) for t, op in zip(self.rreq.times, self.reads)]
        store = TransposableStore(self.n, self.width, self.tiles)
        expected = []
        for _, _, (kind, op) in sorted(events, key=lambda e: (e[0], e[1])):
            if kind == "w":
                store.write(*op)
            else:
                expected.append(store.read(op))
        got = [[int(v) for v in self.resp_layout.from_bits(item)] for item in self.rresp.items]
        bad = [(i, self.reads[i], g, e) for i, (g, e) in enumerate(zip(got, expected)) if g != e]
        assert not bad, f"{len(bad)} wrong responses, first: {bad[:3]}"


@cocotb.test()
async def random_mix(dut):
    """Random row/column writes and reads over all tiles, with bubbles and back-pressure."""
    tb = TSRAMTB(dut)
    await tb.reset()
    for _ in range(3000):
        if tb.rng.random() < 0.5:
            tb.write(tb.random_access(), [tb.rng.randrange(1 << tb.width) for _ in range(tb.n)])
        else:
            tb.read(tb.random_access())
    await tb.finish()
    dut._log.info("%d writes, %d reads checked", len(tb.writes), len(tb.reads))


@cocotb.test()
async def transpose_every_tile(dut):
    """Write every tile by rows, read it back by columns; then write by columns and read by rows;
    then writes and reads of one row at the same edges (read-first)."""
    tb = TSRAMTB(dut, stall=0.0)
    await tb.reset()
    for axis_w, axis_r in ((GAxis.ROW, GAxis.COL), (GAxis.COL, GAxis.ROW)):
        for t in range(tb.tiles):
            for i in range(tb.n):
                tb.write(Access(axis_w, t, i), [tb.rng.randrange(1 << tb.width) for _ in range(tb.n)])
        await tb.finish()
        for t in range(tb.tiles):
            for i in range(tb.n):
                tb.read(Access(axis_r, t, i))
        await tb.finish()
    for i in range(2 * tb.n):
        access = Access(GAxis(i % 2), 0, i % tb.n)
        tb.write(access, [(i * 7 + e) & ((1 << tb.width) - 1) for e in range(tb.n)])
        tb.read(access)
    await tb.finish()
    same_edge = set(tb.w.times) & set(tb.rreq.times)
    assert len(same_edge) >= tb.n, "reads and writes did not share clock edges"


@cocotb.test(skip="EDGETRAIN_PERF_OUT" not in os.environ)
async def throughput(dut):
    """For the benchmark: 10k random operations with no stalls; transfers per cycle on each port."""
    tb = TSRAMTB(dut, stall=0.0)
    await tb.reset()
    ops = int(os.environ.get("EDGETRAIN_PERF_OPS", "10000"))
    for _ in range(ops):
        if tb.rng.random() < 0.5:
            tb.write(tb.random_access(), [tb.rng.randrange(1 << tb.width) for _ in range(tb.n)])
        else:
            tb.read(tb.random_access())
    await tb.finish()
    first = min(tb.w.times[0], tb.rreq.times[0])
    last = max(tb.w.times[-1], tb.rresp.times[-1])
    with open(os.environ["EDGETRAIN_PERF_OUT"], "w") as f:
        json.dump({"writes": len(tb.writes), "reads": len(tb.reads),
                   "write_cycles": tb.cycles_between(tb.w.times[0], tb.w.times[-1]),
                   "read_cycles": tb.cycles_between(tb.rreq.times[0], tb.rreq.times[-1]),
                   "total_cycles": tb.cycles_between(first, last)}, f)
