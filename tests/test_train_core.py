"""TrainCore: constructor; amaranth.sim runs through the AXI ports against golden.core (no simulator to build);
the cocotb bench (verif/train_core.py) on Verilator and Icarus."""

import dataclasses
import random
import types

import pytest
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from golden.core import CoreConfig, CoreError, CoreTrainer
from hw.axil import RESP_OKAY, RESP_SLVERR
from hw.config import apply_overrides, preset
from hw.pipeline import max_stages
from hw.train_core import CORE_PIPELINED, TrainCore, geometry, register_map
from verif.core_host import golden_state, sample_beats, state_differences
from verif.runner import run_bench, simulator_status
from verif.train_core import CASES
from verif.train_core_tb import bad_starts, start_error, table_after

from .core_sim import sim_host, stream_samples


CONFIG = preset("small")
#: Cycle limit of one short run (they take 1 000 to 4 000 cycles).
RUN_LIMIT = 100_000
#: Cycles the core may take to answer a start or a stop.
ANSWER_LIMIT = 16


def make_trainer(algorithm, precision, sizes, batch, seed, **kwargs):
    t = CONFIG.core.tile
    return CoreTrainer(CoreConfig(sizes=sizes, algorithm=algorithm, precision=precision, batch=batch, seed=seed,
                                  array=(t, t), max_k=CONFIG.pe.max_k, lr_shift=6, **kwargs))


def simulate(bench, config=CONFIG):
    """Run ``bench(ctx, dut)`` on a TrainCore of ``config``."""
    dut = TrainCore(config)

    async def testbench(ctx):
        await bench(ctx, dut)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


async def wait_idle(ctx, host, limit):
    for _ in range(0, limit, 16):
        if not (await host.status())["running"]:
            return
        await ctx.tick().repeat(16)
    raise TimeoutError(f"the run did not end within {limit} cycles")


# -- constructor ---------------------------------------------------------------------------------------------

def test_init():
    core = TrainCore(CONFIG)
    assert core.config is CONFIG
    assert core.regmap.addr_width == register_map(CONFIG).addr_width
    assert len(core.s_axil_awaddr) == len(core.s_axil_araddr) == core.regmap.addr_width
    assert (len(core.s_axil_wdata), len(core.s_axis_tdata), len(core.irq)) == (32, 32, 1)
    flows = {name: member.flow for name, member in core.signature.members.items()}
    assert flows["irq"] == flows["s_axis_tready"] == flows["s_axil_rdata"] == Out
    assert flows["s_axis_tdata"] == flows["s_axis_tvalid"] == flows["s_axil_awaddr"] == In


def test_init_wrong_config():
    with pytest.raises(TypeError, match=r"Configuration must be a hw.config.Config, not 'small'"):
        TrainCore("small")


# -- the reference of the start check ------------------------------------------------------------------------

def test_start_error_reference():
    trainer = make_trainer("pdfa", 8, (64, 5, 10), batch=6, seed=0)
    L = CONFIG.pdfa.max_layers
    good, batch, algorithm = table_after(trainer, [], L)
    assert start_error(CONFIG, good, batch=batch, algorithm=algorithm) == CoreError.NONE
    for what, named, writes in bad_starts(trainer, L):
        table, batch, algorithm = table_after(trainer, writes, L)
        assert start_error(CONFIG, table, batch=batch, algorithm=algorithm) == named, what
    # Every start error the core can answer (BUSY is a start while running; PIPELINED_BP is the
    # controller's, the core's feedback follows the algorithm).
    assert {named for _, named, _ in bad_starts(trainer, L)} == set(CoreError) - {
        CoreError.NONE, CoreError.BUSY, CoreError.PIPELINED_BP}
    for what, named, writes in BOUNDARIES:
        table, batch, algorithm = table_after(trainer, writes, L)
        assert start_error(CONFIG, table, batch=batch, algorithm=algorithm) == named, what


def table_writes(sizes, batch):
    """Register writes of a whole layer table of ``sizes`` at DFXP-8 and a batch."""
    writes = [("config", None, {"layers": len(sizes) - 1, "batch": batch})]
    for l, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        writes += [("layer_size", l, {"n_in": n_in, "n_out": n_out}), ("layer_cfg", l, {"precision": 1})]
    return writes


#: Starts at the edges of the buffers (small preset: 64 weight tiles, 16 activation tiles of 4 x 4).
BOUNDARIES = [
    ("64-12-8-8-10 fills the 64 weight tiles", CoreError.NONE, table_writes((64, 12, 8, 8, 10), 8)),
    ("64-12-8-12-10 needs 69 weight tiles", CoreError.TOO_LARGE, table_writes((64, 12, 8, 12, 10), 8)),
    ("16-16-16-10 at batch 8 fills the 16 activation tiles", CoreError.NONE, table_writes((16, 16, 16, 10), 8)),
    ("16-16-20-10 at batch 8 needs 18 activation tiles", CoreError.TOO_LARGE, table_writes((16, 16, 20, 10), 8)),
    ("16-16-20-10 at batch 4 needs 9", CoreError.NONE, table_writes((16, 16, 20, 10), 4)),
]


# -- amaranth.sim ----------------------------------------------------------------------------------------------

def rtl_train(trainer, runs, *, stall=0.3, seed=0):
    """Load ``trainer``'s state into the core, run ``runs`` (mini-batches per run) from its sample order,
    and return the core's state after each run (:func:`verif.core_host.golden_state` form)."""
    rng = random.Random(seed)
    states = []
    # What read_state reads: every tensor's overflow counters (the host asks the golden model which ones).
    L = trainer.config.layers
    names = [f"a{l}" for l in range(1, L)] + ["z", "e"] + [f"d{l}" for l in range(L - 1)] + [f"g{l}" for l in range(L)]
    shape = types.SimpleNamespace(config=trainer.config, lfsrs=trainer.lfsrs, overflow=dict.fromkeys(names))

    async def bench(ctx, dut):
        host, _ = sim_host(ctx, dut, CONFIG)
        await host.load(trainer, runs[0])
        for steps in runs:
            beats = []
            for idx in trainer.batches()[:steps]:
                beats += sample_beats(trainer.x_train[idx], trainer.y_train[idx])
            await host.regs.write_fields("steps", count=steps)
            await host.start()
            await stream_samples(ctx, dut, beats, rng=rng, stall=stall)
            await wait_idle(ctx, host, RUN_LIMIT)
            status = await host.status()
            assert status == {"running": 0, "error": 0, "steps_done": steps}, status
            states.append(await host.read_state(shape))

    simulate(bench)
    return states


def ref_train(trainer, runs):
    """The golden model's state after each run."""
    states = []
    for steps in runs:
        trainer.begin_run()
        for idx in trainer.batches()[:steps]:
            trainer.step_codes(trainer.x_train[idx].T, trainer.y_train[idx])
        states.append(golden_state(trainer))
    return states


def test_sim_pdfa_bit_exact():
    # Pipelined DFA (the forward pass of the second mini-batch reads weights one update old), mixed layer
    # precisions, ragged widths and batch, stochastic thresholding and 12-bit gradients.
    def trainer():
        return make_trainer("pdfa", (8, 16), (64, 6, 10), batch=5, seed=3, threshold=2, grad_bits=12)

    runs = (4,)     # the input slots wrap around (three of them)
    for run, (got, want) in enumerate(zip(rtl_train(trainer(), runs), ref_train(trainer(), runs), strict=True)):
        assert not state_differences(got, want), (run, state_differences(got, want))


def test_sim_single_layer():
    # One weight layer, pipelined: WG(0) of each step follows WG(0) of the step before on the WG engine, which
    # takes the next job in the cycle the last one's gradient fractional length is written (read forwarded).
    def trainer():
        return make_trainer("pdfa", 16, (64, 10), batch=4, seed=5)

    runs = (4,)
    for run, (got, want) in enumerate(zip(rtl_train(trainer(), runs, stall=0.0), ref_train(trainer(), runs),
                                          strict=True)):
        assert not state_differences(got, want), (run, state_differences(got, want))


def rtl_starts(trainer, cases, config=CONFIG):
    """For each case (register writes): the status, the interrupt flags, irq with only the error cause
    enabled, and tready, after a start written right after the last write (a start that is taken is
    stopped); the good table of ``trainer`` is written back after each."""
    out = []

    async def bench(ctx, dut):
        host, bus = sim_host(ctx, dut, config)
        await host.configure(trainer, 1)
        await host.regs.write_fields("irq_enable", error=1)
        for writes in cases:
            for reg, index, fields in writes:
                await host.regs.write_fields(reg, index, **fields)
            await host.start()
            await ctx.tick().repeat(4)
            out.append((await host.status(), await host.regs.read_fields("irq_status"), ctx.get(dut.irq),
                        ctx.get(dut.s_axis_tready)))
            await host.regs.write_fields("irq_status", error=1)
            assert not ctx.get(dut.irq)
            await host.regs.write_fields("ctrl", stop=1)
            assert not (await host.status())["running"]
            await host.configure(trainer, 1)

    simulate(bench, config)
    return out


def ref_starts(trainer, cases, config=CONFIG):
    out = []
    for writes in cases:
        table, batch, algorithm = table_after(trainer, writes, config.pdfa.max_layers)
        error = start_error(config, table, batch=batch, algorithm=algorithm)
        refused = error != CoreError.NONE
        out.append(({"running": int(not refused), "error": error, "steps_done": 0}, {"done": 0, "error": int(refused)},
                    int(refused), int(not refused)))
    return out


def test_sim_refusals():
    trainer = make_trainer("dfa", 16, (64, 8, 8, 10), batch=7, seed=4)
    cases = [writes for _, _, writes in bad_starts(trainer, CONFIG.pdfa.max_layers) + BOUNDARIES]
    assert rtl_starts(trainer, cases) == ref_starts(trainer, cases)


def test_sim_start_checks_the_table_just_written():
    # A start right after the last size or batch write is checked against the new table, also on a core of
    # 8 layers, whose chained buffer bases take 9 cycles to follow a size (the bus takes 5 per write).
    config = dataclasses.replace(CONFIG, pdfa=dataclasses.replace(CONFIG.pdfa, max_layers=8))
    trainer = make_trainer("dfa", 8, (64, 8, 8, 10), batch=7, seed=4)
    cases = [
        table_writes((56, 12, 8, 12, 10), 8) + [("layer_size", 0, {"n_in": 60})],     # 63 -> 66 weight tiles
        table_writes((60, 12, 8, 12, 10), 8) + [("layer_size", 0, {"n_in": 56})],     # 66 -> 63
        table_writes((16, 16, 20, 10), 4) + [("config", None, {"batch": 8})],          # 9 -> 18 activation tiles
        table_writes((16, 16, 20, 10), 8) + [("config", None, {"batch": 4})],          # 18 -> 9
    ]
    want = ref_starts(trainer, cases, config)
    assert [w[0]["error"] for w in want] == [CoreError.TOO_LARGE, CoreError.NONE] * 2
    assert rtl_starts(trainer, cases, config) == want


def test_sim_bus_errors_busy_stop():
    # SLVERR on a hole, on the window outside the table, on locked registers and the window while running;
    # a start while running answers BUSY; ctrl.stop ends the run (no samples were sent: it would never end)
    # and leaves the weights; a run of no mini-batches ends at once.
    trainer = make_trainer("bp", 8, (64, 8, 10), batch=4, seed=5)
    regmap = register_map(CONFIG)
    w = geometry(CONFIG)["width_bits"]

    def window(layer, row, col):
        return regmap.window("weights").offset + (((layer << 2 * w) | (row << w) | col) * 4)

    hole = next(a for a in range(0, 1 << regmap.addr_width, 4) if regmap.locate(a) is None)
    log = {}

    async def bench(ctx, dut):
        host, bus = sim_host(ctx, dut, CONFIG)
        await host.configure(trainer, 1)
        log["hole"] = (await bus.read_resp(hole), await bus.write_resp(hole, 1))
        log["outside"] = [(await bus.read_resp(window(*where)), await bus.write_resp(window(*where), 7))
                          for where in ((2, 0, 0), (0, 8, 0), (1, 0, 8))]
        log["inside"] = (await bus.write_resp(window(1, 9, 7), 0xFFFF_8001), await bus.read_resp(window(1, 9, 7)))
        await host.start()
        await host.start()
        log["busy"] = await host.status()
        log["locked"] = [await bus.write_resp(regmap.address(name, index), 0) for name, index in
                         (("config", None), ("steps", None), ("numerics", None), ("layer_size", 0), ("layer_cfg", 1),
                          ("fb_seed", 0), ("lfsr_wg", 3))]
        log["window"] = (await bus.write_resp(window(0, 0, 0), 1), await bus.read_resp(window(0, 0, 0)))
        log["unlocked"] = await bus.write_resp(regmap.address("irq_enable"), 3)
        await host.regs.write_fields("ctrl", stop=1)
        log["stopped"] = await host.status()
        log["after"] = await bus.read_resp(window(1, 9, 7))
        await host.regs.write_fields("irq_status", done=1, error=1)
        await host.regs.write_fields("steps", count=0)
        await host.start()
        await ctx.tick().repeat(ANSWER_LIMIT)
        log["no steps"] = (await host.status(), await host.regs.read_fields("irq_status"))

    simulate(bench)
    assert log["hole"] == ((0, RESP_SLVERR), RESP_SLVERR)
    assert log["outside"] == [((0, RESP_SLVERR), RESP_SLVERR)] * 3
    assert log["inside"] == (RESP_OKAY, (0xFFFF_8001, RESP_OKAY))          # a master reads sign-extended
    assert log["busy"] == {"running": 1, "error": CoreError.BUSY, "steps_done": 0}
    assert log["locked"] == [RESP_SLVERR] * 7
    assert log["window"] == (RESP_SLVERR, (0, RESP_SLVERR))
    assert log["unlocked"] == RESP_OKAY
    assert log["stopped"] == {"running": 0, "error": CoreError.BUSY, "steps_done": 0}
    assert log["after"] == (0xFFFF_8001, RESP_OKAY)
    assert log["no steps"] == ({"running": 0, "error": CoreError.NONE, "steps_done": 0}, {"done": 1, "error": 0})


# -- cocotb bench ----------------------------------------------------------------------------------------------

#: The bench's tests: the bit-exact matrix (bp, dfa, pdfa x DFXP-8, DFXP-16), refusals, reset and stop.
BENCH_TESTS = tuple(f"train_{name}" for name in CASES) + ("refusals", "reset_and_stop")
#: What Icarus runs by default (it simulates this core about 4x slower than Verilator): one of the matrix;
#: the rest is test_bench_icarus_rest (slow).
ICARUS_DEFAULT = ("train_pdfa_dfxp16",)


def test_bench(simulator):
    tests = BENCH_TESTS if simulator == "verilator" else ICARUS_DEFAULT
    result = run_bench("train_core", CONFIG, simulator, testcase=None if simulator == "verilator" else list(tests))
    assert result.tests == len(tests) and result.passed, f"seed {result.seed}, log {result.run_dir}"


@pytest.mark.slow
def test_bench_icarus_rest():
    available, reason = simulator_status("icarus")
    if not available:
        pytest.skip(reason)
    tests = [name for name in BENCH_TESTS if name not in ICARUS_DEFAULT]
    result = run_bench("train_core", CONFIG, "icarus", testcase=tests)
    assert result.tests == len(tests) and result.passed, f"seed {result.seed}, log {result.run_dir}"


@pytest.mark.slow
def test_bench_deepest(simulator):
    """The whole matrix with every pipelined block of the core at its deepest (Icarus: its default subset)."""
    deepest = [f"pipeline.{block}={max_stages(block)}" for block in CORE_PIPELINED]
    config = dataclasses.replace(apply_overrides(CONFIG, deepest), name=f"{CONFIG.name}-deepest")
    tests = BENCH_TESTS if simulator == "verilator" else ICARUS_DEFAULT
    result = run_bench("train_core", config, simulator, testcase=None if simulator == "verilator" else list(tests))
    assert result.tests == len(tests) and result.passed, f"seed {result.seed}, log {result.run_dir}"
