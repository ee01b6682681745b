"""cocotb bench of the PDFA training controller against :mod:`golden.pdfa_schedule`.

Drivers: the layer table on a stream source with random bubbles, the ``start`` command; three engine models
(FF, EP, WG) that take commands with random back-pressure (``ready`` drawn every cycle) and answer each
with ``done`` after a random duration; the ``status`` sink with random back-pressure. Scoreboard
(:func:`verif.pdfa_trace.check_run`): the golden schedule, replayed with the same durations and ready
patterns, must give the same issue and done cycle of every command, the same command fields, the same
cycle count and the same busy/stall/idle counters. Bad tables must be refused at once with the golden
error code.

``EDGETRAIN_PDFA_RUNS`` (the path of a JSON file) replaces the random runs by fixed ones, for the
benchmark: a list of
``{"sizes": [...], "samples": n, "algorithm": "bp"|"dfa"|"pdfa", "serial": 0|1, "throughput": {...}}``;
the engines then never stall and take :class:`golden.pdfa_schedule.Engine` durations, and the measured
figures are written to ``EDGETRAIN_PDFA_OUT``.
"""

import json
import os

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from golden.pdfa_schedule import (ENGINES, PRECISIONS, Engine, Error, encode_table, engine_durations,
                                  hardware_error, mlp)
from hw.pdfa import command_layout, entry_layout, start_layout, status_layout
from verif.bench import BenchTB
from verif.pdfa_trace import COMMAND_FIELDS, check_run, random_durations, random_table


class PDFATB(BenchTB):
    def __init__(self, dut, *, stall=None):
        super().__init__(dut, stall=stall)
        cfg = self.config.pdfa
        self.cfg = cfg
        self.entry = entry_layout(cfg.size_width)
        self.start_l = start_layout(cfg.sample_width)
        self.status_l = status_layout(cfg.counter_width)
        self.command = command_layout(cfg.max_layers, cfg.size_width, cfg.sample_width)
        self.table = self.source("table")
        self.ports = {e: (getattr(dut, f"{e.lower()}_cmd__valid"), getattr(dut, f"{e.lower()}_cmd__ready"),
                          getattr(dut, f"{e.lower()}_cmd__payload"), getattr(dut, f"{e.lower()}_done__valid"),
                          getattr(dut, f"{e.lower()}_done__ready")) for e in ENGINES}
        for _, ready, _, done_valid, _ in self.ports.values():
            ready.value = 0
            done_valid.value = 0
        dut.start__valid.value = 0
        dut.status__ready.value = 0

    async def run(self, entries, samples, pipelined, serial, duration, ready_p, max_cycles=500_000):
        """One run: write the table, start, play the engines; returns the observation of the run."""
        for entry in entries:
            self.table.send(self.entry.const(entry).as_bits())
        await self.table.wait_idle()
        clk, dut = self.dut.clk, self.dut
        await RisingEdge(clk)
        dut.start__payload.value = self.start_l.const({"samples": samples, "pipelined": pipelined,
                                                       "serial": serial}).as_bits()
        dut.start__valid.value = 1
        while True:
            await ReadOnly()
            taken = int(dut.start__ready.value)
            await RisingEdge(clk)
            if taken:
                break
        dut.start__valid.value = 0
        ready = {e: [] for e in ENGINES}
        trace = {e: [] for e in ENGINES}
        outstanding = dict.fromkeys(ENGINES)
        for cycle in range(max_cycles):
            for e, (_, cmd_ready, _, done_valid, _) in self.ports.items():
                ready[e].append(ready_p >= 1 or self.rng.random() < ready_p)
                cmd_ready.value = int(ready[e][cycle])
                done_valid.value = int(outstanding[e] is not None and cycle >= outstanding[e])
            status_ready = self.rng.random() >= self.stall
            dut.status__ready.value = int(status_ready)
            await ReadOnly()
            for e, (cmd_valid, _, payload, done_valid, done_ready) in self.ports.items():
                if int(done_valid.value) and int(done_ready.value):
                    trace[e][-1][1] = cycle
                    outstanding[e] = None
                if int(cmd_valid.value) and ready[e][cycle]:
                    assert outstanding[e] is None, f"{e} command issued while one is outstanding"
                    view = self.command.from_bits(payload.value.to_unsigned())
                    fields = {f: int(getattr(view, f)) for f in COMMAND_FIELDS}
                    outstanding[e] = cycle + duration(e, fields["layer"], fields["sample"])
                    trace[e].append([cycle, None, fields])
            status = None
            if int(dut.status__valid.value) and status_ready:
                status = self.status_l.from_bits(dut.status__payload.value.to_unsigned())
            await RisingEdge(clk)
            if status is not None:
                break
        else:
            raise AssertionError(f"no status after {max_cycles} cycles: the controller hung")
        dut.status__ready.value = 0
        counters = {e: tuple(int(getattr(dut, f"{e.lower()}_{c}").value) for c in ("busy", "stall", "idle"))
                    for e in ENGINES}
        return {"error": int(status.error), "cycles": int(status.cycles), "trace": trace, "counters": counters,
                "ready": ready}


@cocotb.test()
async def random_runs(dut):
    """Random tables (1 to max_layers layers, mixed BP/DFA, every precision), all three modes, random engine
    durations and back-pressure; every command, cycle and counter as golden."""
    tb = PDFATB(dut)
    await tb.reset()
    max_samples = min(5, (1 << tb.cfg.sample_width) - 1)
    for n in range(18):
        layers = 1 + n % tb.cfg.max_layers
        pipelined, serial = [(0, 0), (1, 0), (0, 1)][n % 3]
        table = random_table(tb.rng, layers, pipelined=pipelined, size=min(24, (1 << tb.cfg.size_width) - 1),
                             precisions=tb.cfg.precisions)
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
        ([good[0], dict(good[1], precision=tb.rng.choice(missing))], 0),
        ([dict(good[0], feedback=1), good[1]], 1),
        (good, 1),
    ]
    for entries, pipelined in cases:
        want = hardware_error(entries, max_layers=cfg.max_layers, precisions=cfg.precisions, pipelined=pipelined)
        got = await tb.run(entries, 3, pipelined, 0, lambda *op: 2, ready_p=0.5)
        assert got["error"] == want, f"error {got['error']}, golden {int(want)} for {entries}"
        if want != Error.NONE:
            assert got["cycles"] == 0 and not any(got["trace"].values()), "a refused run issued commands"
    assert want == Error.NONE


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
