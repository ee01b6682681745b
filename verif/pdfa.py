"""cocotb bench of the PDFA training controller against :mod:`golden.pdfa_schedule`.

Drivers: the layer table on a stream source with random bubbles, the ``start`` command; three engine models
(FF, EP, WG) that take commands with random back-pressure (``ready`` drawn every cycle) and answer each
with ``done`` after a random duration; the ``status`` sink with random back-pressure. Scoreboard
(:func:`verif.pdfa_trace.check_run`): the golden schedule, replayed with the same durations and ready
patterns, must give the same issue and done cycle of every command, the same command fields, the same
cycle count and the same busy/stall/idle counters. Bad tables must be refused at once with the golden
error code. Directed runs reach the largest sample count and sizes, and (``long_run``) the counters' high
bits: there the bench waits out in one step each stretch in which nothing but the counters can change.

``EDGETRAIN_PDFA_RUNS`` (the path of a JSON file) replaces the random runs by fixed ones, for the
benchmark: a list of
``{"sizes": [...], "samples": n, "algorithm": "bp"|"dfa"|"pdfa", "serial": 0|1, "throughput": {...}}``;
the engines then never stall and take :class:`golden.pdfa_schedule.Engine` durations, and the measured
figures are written to ``EDGETRAIN_PDFA_OUT``.
"""

import json
import os

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge, Timer

from golden.pdfa_schedule import (ENGINES, PRECISIONS, Engine, Error, encode_table, engine_durations,
                                  hardware_error, mlp)
from hw.pdfa import command_layout, entry_layout, start_layout, status_layout
from verif.bench import BenchTB
from verif.pdfa_trace import COMMAND_FIELDS, check_run, random_durations, random_table


class PDFATB(BenchTB):
    """``table_driver`` False writes the table by driving the port directly instead of through a
    :class:`verif.streams.StreamSource`, whose per-cycle loop would run through the long waits of ``fast``
    runs."""

    def __init__(self, dut, *, stall=None, table_driver=True):
        super().__init__(dut, stall=stall)
        cfg = self.config.pdfa
        self.cfg = cfg
        self.entry = entry_layout(cfg.size_width)
        self.start_l = start_layout(cfg.sample_width)
        self.status_l = status_layout(cfg.counter_width)
        self.command = command_layout(cfg.max_layers, cfg.size_width, cfg.sample_width)
        self.table = self.source("table") if table_driver else None
        dut.table__valid.value = 0
        self.ports = {e: (getattr(dut, f"{e.lower()}_cmd__valid"), getattr(dut, f"{e.lower()}_cmd__ready"),
                          getattr(dut, f"{e.lower()}_cmd__payload"), getattr(dut, f"{e.lower()}_done__valid"),
                          getattr(dut, f"{e.lower()}_done__ready")) for e in ENGINES}
        for _, ready, _, done_valid, _ in self.ports.values():
            ready.value = 0
            done_valid.value = 0
        dut.start__valid.value = 0
        dut.status__ready.value = 0

    async def run(self, entries, samples, pipelined, serial, duration, ready_p, max_cycles=500_000, hold=None,
                  fast=False):
        """One run: write the table, start, play the engines; returns the observation of the run.

        ``hold`` (``{engine: cycles}``) keeps an engine's command ``ready`` low for the run's first cycles.
        ``fast`` (with ``ready_p`` 1 and no status stall) waits out in one step each stretch in which no input
        changes after two cycles without a transfer: the controller's state then changes no more until an
        input does (only the counters count), so long runs reach the counters' high bits in little time.
        """
        hold = hold or {}
        fast = fast and ready_p >= 1 and self.stall == 0
        clk, dut = self.dut.clk, self.dut
        if self.table is not None:
            for entry in entries:
                self.table.send(self.entry.const(entry).as_bits())
            await self.table.wait_idle()
        else:
            for entry in entries:
                dut.table__payload.value = self.entry.const(entry).as_bits()
                dut.table__valid.value = 1
                while True:
                    await ReadOnly()
                    taken = int(dut.table__ready.value)
                    await RisingEdge(clk)
                    if taken:
                        break
            dut.table__valid.value = 0
        await RisingEdge(clk)
        dut.start__payload.value = self.start_l.const({"samples": samples, "pipelined": pipelined,
                                                       "serial": serial}).as_bits()
        dut.start__valid.value = 1
        while True:
            await ReadOnly()
            assert not int(dut.running.value), "running is high before the start"
            taken = int(dut.start__ready.value)
            await RisingEdge(clk)
            if taken:
                break
        dut.start__valid.value = 0
        ready = {e: [] for e in ENGINES}
        trace = {e: [] for e in ENGINES}
        outstanding = dict.fromkeys(ENGINES)
        cycle, quiet = 0, False
        while cycle < max_cycles:
            for e, (_, cmd_ready, _, done_valid, _) in self.ports.items():
                ready[e].append(cycle >= hold.get(e, 0) and (ready_p >= 1 or self.rng.random() < ready_p))
                cmd_ready.value = int(ready[e][cycle])
                done_valid.value = int(outstanding[e] is not None and cycle >= outstanding[e])
            status_ready = self.rng.random() >= self.stall
            dut.status__ready.value = int(status_ready)
            await ReadOnly()
            assert int(dut.running.value), f"running is low in cycle {cycle} of the run, before the status is taken"
            moved = False
            for e, (cmd_valid, _, payload, done_valid, done_ready) in self.ports.items():
                if int(done_valid.value) and int(done_ready.value):
                    trace[e][-1][1] = cycle
                    outstanding[e] = None
                    moved = True
                if int(cmd_valid.value) and ready[e][cycle]:
                    assert outstanding[e] is None, f"{e} command issued while one is outstanding"
                    view = self.command.from_bits(payload.value.to_unsigned())
                    fields = {f: int(getattr(view, f)) for f in COMMAND_FIELDS}
                    outstanding[e] = cycle + duration(e, fields["layer"], fields["sample"])
                    trace[e].append([cycle, None, fields])
                    moved = True
            status = None
            if int(dut.status__valid.value) and status_ready:
                status = self.status_l.from_bits(dut.status__payload.value.to_unsigned())
            await RisingEdge(clk)
            if status is not None:
                break
            cycle += 1
            if fast and quiet and not moved:
                # Cycles cycle .. change - 1 see the inputs of the cycle before and no transfer: skip them.
                change = min([c for c in [*outstanding.values(), *hold.values()] if c is not None and c >= cycle],
                             default=max_cycles)
                skip = min(change, max_cycles) - cycle
                if skip > 0:
                    await Timer(self.PERIOD_NS * (skip - 1) + self.PERIOD_NS // 2, unit="ns")
                    await RisingEdge(clk)
                    for e in ENGINES:
                        ready[e].extend([ready[e][-1]] * skip)
                    cycle += skip
            quiet = not moved
        else:
            raise AssertionError(f"no status after {max_cycles} cycles: the controller hung")
        dut.status__ready.value = 0
        counters = {e: tuple(int(getattr(dut, f"{e.lower()}_{c}").value) for c in ("busy", "stall", "idle"))
                    for e in ENGINES}
        return {"error": int(status.error), "cycles": int(status.cycles), "trace": trace, "counters": counters,
                "ready": ready}


@cocotb.test()
async def random_runs(dut):
    """Random tables (1 to max_layers layers, mixed BP/DFA, every precision, sizes up to the field's largest),
    all three modes, random engine durations and back-pressure; every command, cycle and counter as golden."""
    tb = PDFATB(dut)
    await tb.reset()
    max_samples = min(5, (1 << tb.cfg.sample_width) - 1)
    for n in range(18):
        layers = 1 + n % tb.cfg.max_layers
        pipelined, serial = [(0, 0), (1, 0), (0, 1)][n % 3]
        size = (1 << tb.cfg.size_width) - 1 if n % 2 else min(24, (1 << tb.cfg.size_width) - 1)
        table = random_table(tb.rng, layers, pipelined=pipelined, size=size, precisions=tb.cfg.precisions)
        samples = tb.rng.randint(0 if n == 0 else 1, max_samples)
        duration = random_durations(tb.rng, high=3 if n % 4 == 0 else 15)
        entries = encode_table(table)
        got = await tb.run(entries, samples, pipelined, serial, duration, ready_p=tb.rng.choice([0.3, 0.7, 1.0]))
        check_run(table, samples, pipelined=pipelined, serial=serial, duration=duration, **got)


@cocotb.test()
async def bad_tables(dut):
    """Each bad table is refused at once with the golden error code and no command; good runs follow."""
    tb = PDFATB(dut)
    await tb.reset()
    cfg = tb.cfg
    good = encode_table(mlp([5, 4, 3], precision=cfg.precisions[0]))
    first = dict(good[0])
    missing = [i for i, p in enumerate(PRECISIONS) if p not in cfg.precisions] + [5, 6, 7]
    cases = [
        ([], 0),
        ([dict(first, n_in=4, n_out=4)] * cfg.max_layers + [dict(first, n_in=4, n_out=4, last=1)], 0),
        ([dict(good[0], n_out=0), dict(good[1], n_in=0)], 0),
        ([good[0], dict(good[1], n_in=3)], 0),
        ([dict(good[0], n_in=0, last=1)], 0),                  # a one-layer table: its only entry is checked
    ]
    # Every precision code the controller does not support, in a later entry and in a one-layer table.
    cases += [([good[0], dict(good[1], precision=code)], 0) for code in missing]
    cases += [([dict(good[0], precision=code, last=1)], 0) for code in missing]
    full = [dict(first, n_in=4, n_out=4, last=int(i == cfg.max_layers - 1)) for i in range(cfg.max_layers)]
    for i in range(cfg.max_layers):             # a zero size in each entry
        cases += [([*full[:i], dict(full[i], **{name: 0}), *full[i + 1:]], 0) for name in ("n_in", "n_out")]
    cases += [([dict(good[0], feedback=1), good[1]], 1), (good, 1)]
    for entries, pipelined in cases:
        want = hardware_error(entries, max_layers=cfg.max_layers, precisions=cfg.precisions, pipelined=pipelined)
        got = await tb.run(entries, 3, pipelined, 0, lambda *op: 2, ready_p=0.5)
        assert got["error"] == want, f"error {got['error']}, golden {int(want)} for {entries}"
        if want != Error.NONE:
            assert got["cycles"] == 0 and not any(got["trace"].values()), "a refused run issued commands"
    assert want == Error.NONE


@cocotb.test()
async def corner_runs(dut):
    """The largest sample count (every bit of the sample and program counters) in a one-layer run and in a
    pipelined run of max_layers layers of the largest sizes; a one-layer pipelined run whose WG engine is slow
    (FF(0, t) waits for WG(0, t - 2)); max_layers-layer tables whose sizes are one-bit values; every command,
    cycle and counter as golden."""
    tb = PDFATB(dut)
    await tb.reset()
    cfg = tb.cfg
    most, size = (1 << cfg.sample_width) - 1, (1 << cfg.size_width) - 1

    def slow_wg(engine, layer, sample):
        return 6 if engine == "WG" else 1
    cases = [(1, most, 0, random_durations(tb.rng, high=4), 0.7),
             (1, min(8, most), 1, slow_wg, 1.0),
             (cfg.max_layers, most, 1, random_durations(tb.rng, high=3), 0.7)]
    for layers, samples, pipelined, duration, ready_p in cases:
        table = random_table(tb.rng, layers, pipelined=pipelined, size=size, precisions=cfg.precisions)
        got = await tb.run(encode_table(table), samples, pipelined, 0, duration, ready_p=ready_p)
        check_run(table, samples, pipelined=pipelined, serial=0, duration=duration, **got)
    for b in range(cfg.size_width):         # one-bit sizes in every entry: a size check that drops a bit shows
        table = mlp([1 << (b + i) % cfg.size_width for i in range(cfg.max_layers + 1)],
                    precision=tb.rng.choice(cfg.precisions))
        duration = random_durations(tb.rng, high=2)
        got = await tb.run(encode_table(table), 1, 0, 0, duration, ready_p=0.7)
        check_run(table, 1, pipelined=0, serial=0, duration=duration, **got)


@cocotb.test()
async def long_run(dut):
    """The counters' high bits: a run of two layers (or one) in which the FF engine is held, then works, for
    2**(k-4) cycles each, the EP works for 2**(k-1) cycles and the WG is held for 2**k, each stretch waited
    out in one step; then a short run that clears the counters. Every cycle and counter as golden. k = 17 on
    Verilator; 14 on Icarus, which simulates the waits some twenty times slower; less for narrower
    counters."""
    tb = PDFATB(dut, stall=0.0, table_driver=False)
    await tb.reset()
    cfg = tb.cfg
    k = max(4, min(17 if cocotb.SIM_NAME.lower().startswith("verilator") else 14, cfg.counter_width - 2))
    table = random_table(tb.rng, min(2, cfg.max_layers), pipelined=0, size=(1 << cfg.size_width) - 1,
                         precisions=cfg.precisions)
    ff_hold = 1 << (k - 4)
    hold = {"FF": ff_hold, "WG": 2 * ff_hold + (1 << k) + 20}

    def duration(engine, layer, sample):
        return {"FF": (ff_hold >> 1) + layer + 1, "EP": (1 << (k - 1)) + 3, "WG": 3}[engine]

    got = await tb.run(encode_table(table), 1, 0, 0, duration, ready_p=1.0, hold=hold, fast=True,
                       max_cycles=1 << (k + 1))
    check_run(table, 1, pipelined=0, serial=0, duration=duration, **got)
    assert got["counters"]["WG"][1] > 1 << k, "the WG engine was not held long enough"

    def short(engine, layer, sample):
        return 2
    got = await tb.run(encode_table(table), 2, 0, 0, short, ready_p=1.0, fast=True)
    check_run(table, 2, pipelined=0, serial=0, duration=short, **got)


@cocotb.test()
async def counters_top_bits(dut):
    """Every busy, stall and idle counter past 2**(w - 1), its top bit (w = the counter width; at most 2**15
    on Icarus, which simulates the waits some twenty times slower), in runs of one sample on two layers,
    each stretch waited out in one step: the FF engine held (its stall, the others' idle); the EP and WG
    engines held after FF (their stall, FF's idle); then FF, EP and WG in turn each working that long (its
    busy). Each run twice, the stretch one cycle longer the second time: a fault that shows in a counter on
    every other count (a bit read inverted while a higher bit is set) shows in one of the two final values.
    Every cycle and counter as golden."""
    tb = PDFATB(dut, stall=0.0, table_driver=False)
    await tb.reset()
    cfg = tb.cfg
    bits = cfg.counter_width - 1 if cocotb.SIM_NAME.lower().startswith("verilator") else min(15, cfg.counter_width - 1)
    table = random_table(tb.rng, min(2, cfg.max_layers), pipelined=0, size=(1 << cfg.size_width) - 1,
                         precisions=cfg.precisions)

    def works(long, slow_engine=None):
        def duration(engine, layer, sample):
            return long if engine == slow_engine and layer == 0 else 2
        return duration
    runs = []
    for long in ((1 << bits) + 8, (1 << bits) + 9):
        runs += [({"FF": long}, works(long)), ({"EP": long + 64, "WG": long + 64}, works(long))]
        runs += [({}, works(long, engine)) for engine in ENGINES]
    reached = {engine: {kind: 0 for kind in ("busy", "stall", "idle")} for engine in ENGINES}
    for hold, duration in runs:
        got = await tb.run(encode_table(table), 1, 0, 0, duration, ready_p=1.0, hold=hold, fast=True,
                           max_cycles=1 << cfg.counter_width)
        check_run(table, 1, pipelined=0, serial=0, duration=duration, **got)
        for e, counts in got["counters"].items():
            for k, value in zip(("busy", "stall", "idle"), counts):
                reached[e][k] = max(reached[e][k], value)
    short = [f"{e}_{k} {v}" for e, kinds in reached.items() for k, v in kinds.items() if v < 1 << bits]
    assert not short, f"counters that never reached 2**{bits}: {', '.join(short)}"


@cocotb.test(skip="EDGETRAIN_PDFA_RUNS" not in os.environ)
async def benchmark(dut):
    """Fixed runs for scripts/bench_pdfa.py: engines never stall and take Engine durations."""
    tb = PDFATB(dut, stall=0.0)
    await tb.reset()
    results = []
    with open(os.environ["EDGETRAIN_PDFA_RUNS"]) as f:
        specs = json.load(f)
    for spec in specs:
        algorithm, samples, serial = spec["algorithm"], spec["samples"], spec.get("serial", 0)
        pipelined = int(algorithm == "pdfa")
        table = mlp(spec["sizes"], precision=spec.get("precision", "dfxp8"),
                    feedback="bp" if algorithm == "bp" else "dfa")
        engines = {e: Engine(spec["throughput"][e], spec.get("latency", {}).get(e, 0)) for e in ENGINES}
        duration = engine_durations(table, engines)
        got = await tb.run(encode_table(table), samples, pipelined, serial, duration, ready_p=1.0)
        golden = check_run(table, samples, pipelined=pipelined, serial=serial, duration=duration, **got)
        results.append(dict(spec, cycles=got["cycles"], golden_cycles=golden.cycles,
                            counters={e: dict(zip(("busy", "stall", "idle"), got["counters"][e])) for e in ENGINES}))
    with open(os.environ["EDGETRAIN_PDFA_OUT"], "w") as f:
        json.dump(results, f, indent=2)
