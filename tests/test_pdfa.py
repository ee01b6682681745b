import random

import pytest
from amaranth.sim import Simulator

import hw.pdfa

from golden.pdfa_schedule import PRECISIONS, Error, encode_table, hardware_error, mlp
from hw.config import preset
from hw.pdfa import PDFAController
from verif import pdfa_trace
from verif.pdfa_trace import COMMAND_FIELDS, random_durations, random_table
from verif.pdfa_formal import run_sby
from verif.runner import run_bench
from verif.formal import formal_status

from .sim_streams import stream_put


def run_rtl(dut, runs, *, seed=0, ready_p=0.6, max_cycles=200_000):
    """Drive ``runs`` [(entries, start dict, duration(engine, layer, sample))] through the controller with
    engine models: random command back-pressure (ready with probability ``ready_p``), done after the
    given duration. Returns per run: status, {engine: [(issue, done, payload)]}, counters, ready patterns."""
    rng = random.Random(seed)
    results = []

    async def bench(ctx):
        for entries, start, duration in runs:
            for entry in entries:
                await stream_put(ctx, dut.table, entry)
            await stream_put(ctx, dut.start, start)
            patterns = {e: [] for e in ("FF", "EP", "WG")}
            trace = {e: [] for e in patterns}
            outstanding = dict.fromkeys(patterns)
            ctx.set(dut.status.ready, 1)
            for cycle in range(max_cycles):
                for e in patterns:
                    cmd, done = getattr(dut, f"{e.lower()}_cmd"), getattr(dut, f"{e.lower()}_done")
                    patterns[e].append(rng.random() < ready_p)
                    ctx.set(cmd.ready, patterns[e][cycle])
                    ctx.set(done.valid, outstanding[e] is not None and cycle >= outstanding[e][1])
                signals = [dut.status.valid, dut.status.payload]
                for e in patterns:
                    cmd, done = getattr(dut, f"{e.lower()}_cmd"), getattr(dut, f"{e.lower()}_done")
                    signals += [cmd.valid, cmd.ready, cmd.payload, done.valid, done.ready]
                values = (await ctx.tick().sample(*signals))[-len(signals):]
                status_valid, status = values[:2]
                for i, e in enumerate(patterns):
                    cv, cr, payload, dv, dr = values[2 + 5 * i: 7 + 5 * i]
                    if dv and dr:
                        trace[e][-1][1] = cycle
                        outstanding[e] = None
                    if cv and cr:
                        assert outstanding[e] is None, f"{e} issued with a command outstanding"
                        length = duration(e, payload.layer, payload.sample)
                        outstanding[e] = (cycle, cycle + length)
                        trace[e].append([cycle, None, payload])
                if status_valid:
                    break
            else:
                raise AssertionError("no status: the controller hung")
            ctx.set(dut.status.ready, 0)
            counters = {e: tuple(ctx.get(getattr(dut, f"{e.lower()}_{c}")) for c in ("busy", "stall", "idle"))
                        for e in patterns}
            results.append((status, trace, counters, patterns))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results


def check_run(table, samples, pipelined, serial, result, duration):
    status, trace, counters, patterns = result
    fields = {e: [(issue, done, {f: int(getattr(p, f)) for f in COMMAND_FIELDS}) for issue, done, p in ops]
              for e, ops in trace.items()}
    pdfa_trace.check_run(table, samples, pipelined=pipelined, serial=serial, error=status.error,
                         cycles=status.cycles, trace=fields, counters=counters, ready=patterns, duration=duration)


@pytest.mark.parametrize("seed", range(4))
def test_sim_random_tables(seed):
    rng = random.Random(seed)
    dut = PDFAController(max_layers=5, size_width=8, sample_width=6, counter_width=16)
    runs, cases = [], []
    for layers in (1, 2, 3, 5):
        for pipelined, serial in ((0, 0), (1, 0), (0, 1)):
            table = random_table(rng, layers, pipelined=pipelined, size=40)
            samples = rng.randint(0 if layers == 1 else 1, 4)
            duration = random_durations(rng, high=12)
            entries = encode_table(table)
            runs.append((entries, {"samples": samples, "pipelined": pipelined, "serial": serial}, duration))
            cases.append((table, samples, pipelined, serial, duration))
    for case, result in zip(cases, run_rtl(dut, runs, seed=seed)):
        table, samples, pipelined, serial, duration = case
        check_run(table, samples, pipelined, serial, result, duration)


def test_sim_bad_tables():
    # Every error is reported at once, without a command, and a good run afterwards still works.
    dut = PDFAController(max_layers=3, size_width=8, sample_width=4, counter_width=16,
                         precisions=("dfxp8", "dfxp16"))
    good = encode_table(mlp([5, 4, 3]))
    e8 = dict(good[0], last=0)
    cases = [
        (good[:1] + [dict(good[1], n_in=3)], 0, Error.SIZE_MISMATCH),
        ([dict(e8, n_in=4, n_out=4)] * 3 + [dict(e8, n_in=4, n_out=4, last=1)], 0, Error.TOO_MANY_LAYERS),
        ([dict(good[0], n_out=0), dict(good[1], n_in=0)], 0, Error.ZERO_SIZE),
        ([good[0], dict(good[1], precision=PRECISIONS.index("dfxp4"))], 0, Error.BAD_PRECISION),
        ([good[0], dict(good[1], precision=7)], 0, Error.BAD_PRECISION),
        ([dict(good[0], feedback=1), good[1]], 1, Error.PIPELINED_BP),
        ([dict(good[0], feedback=1), good[1]], 0, Error.NONE),
        ([good[0], dict(good[1], feedback=1)], 1, Error.NONE),   # the top layer's is unused
    ]
    runs = [(entries, {"samples": 2, "pipelined": pipelined, "serial": 0}, lambda *op: 3)
            for entries, pipelined, _ in cases]
    results = run_rtl(dut, runs)
    for (entries, pipelined, want), (status, trace, counters, _) in zip(cases, results):
        assert hardware_error(entries, max_layers=3, precisions=("dfxp8", "dfxp16"), pipelined=pipelined) == want
        assert status.error == want, (entries, status.error)
        if want != Error.NONE:
            assert status.cycles == 0 and not any(trace.values())


def test_sim_empty_table():
    dut = PDFAController(max_layers=2, size_width=4, sample_width=4, counter_width=8)
    (status, trace, _, _), = run_rtl(dut, [([], {"samples": 3, "pipelined": 0, "serial": 0}, None)])
    assert status.error == Error.EMPTY_TABLE and not any(trace.values())


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(max_layers=0), ValueError, "Layer limit must be at least 1, not 0"),
    (dict(size_width="8"), TypeError, "Size width must be an integer, not '8'"),
    (dict(precisions=("fp16",)), ValueError, "Precisions must be a non-empty subset of"),
    (dict(precisions=()), ValueError, "Precisions must be a non-empty subset of"),
])
def test_init_wrong(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        PDFAController(**kwargs)


def test_bench(simulator):
    result = run_bench("pdfa", preset("small"), simulator)
    assert result.tests >= 2 and result.passed, f"seed {result.seed}, log {result.run_dir}"


# -- formal ---------------------------------------------------------------------------------------------

@pytest.fixture
def formal():
    available, reason = formal_status()
    if not available:
        pytest.skip(reason)


def test_formal_bmc(formal, tmp_path):
    # Weight versions, stream rules and no deadlock from reset to depth 20 (a full three-layer pipelined
    # run of three samples takes 31 cycles: see the cover; the slow test goes to 32).
    passed, log = run_sby(tmp_path, mode="bmc", depth=20)
    assert passed, log[-2000:]


def test_formal_cover(formal, tmp_path):
    passed, log = run_sby(tmp_path, mode="cover", depth=40)
    assert passed and "Reached cover statement" in log, log[-2000:]


@pytest.mark.slow
def test_formal_bmc_deep(formal, tmp_path):
    passed, log = run_sby(tmp_path, mode="bmc", depth=32)
    assert passed, log[-2000:]


def test_formal_catches_an_early_read(formal, tmp_path, monkeypatch):
    # Not vacuous: counting an operation as done while it is still outstanding lets a read overtake a write.
    monkeypatch.setattr(hw.pdfa, "_past", lambda t, p, sample, position:
                        (t > sample) | ((t == sample) & (p >= position)))
    passed, log = run_sby(tmp_path, mode="bmc", depth=20)
    assert not passed and "Assert failed" in log


def test_formal_catches_a_deadlock(formal, tmp_path, monkeypatch):
    # Waiting for the operation one sample later (FF(l, t) for WG(l, t)) deadlocks the run.
    monkeypatch.setattr(hw.pdfa, "_past", lambda t, p, sample, position:
                        (t > sample + 1) | ((t == sample + 1) & (p > position)))
    passed, log = run_sby(tmp_path, mode="bmc", depth=20)
    assert not passed and "Assert failed" in log
