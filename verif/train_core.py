"""cocotb bench of the TrainCore against :class:`golden.core.CoreTrainer`, through its AXI ports only.

The bench is an SoC's host (:class:`verif.train_core_tb.CoreTB`): an AXI4-Lite master and an AXI4-Stream
source with random pauses on every channel, the generated register driver, ``irq`` watched. It never
touches an internal signal.

* ``train_<algorithm>_dfxp<bits>``: BP, DFA and PDFA at DFXP-8 and DFXP-16 (one DFA case at mixed DFXP-16,
  -12 and -8 layers) on small digits networks
  (:data:`CASES`: two to four weight layers (four: the table and the weight buffer full), ragged widths and
  batches, BP serial and overlapped; one BP case with stochastic thresholding of errors and gradients,
  12-bit gradients and an exact update; two whose first weight tile of every layer saturates as it is
  read at 8 or 12 bits). Each
  loads the golden model's initial state (masters, fractional lengths, LFSR states, the layer table and
  numerics), runs short runs of 1 to 3 mini-batches back to back (PDFA: 2 and 3, so that the forward pass
  reads the weights one update old) and after every run reads the state back - every master, every
  fractional length, every LFSR lane, every overflow counter - and compares it with the golden model's,
  bit for bit. Also checked after every run: ``status`` (not running, no error, ``steps_done``), the done
  interrupt and its ``w1c`` clear, every sample taken, the per-engine counters (busy + stall + idle =
  cycles).
* ``refusals``: every start check of :class:`golden.core.CoreError` (empty table, more layers than the core
  holds, a zero size, sizes that do not chain, DFXP-4 on a tile of 4, SE-FP8 and an unnamed precision code,
  a layer wider than the core, more weight or activation tiles than the buffers (also by one tile), a batch
  of 0 or above the maximum, a last layer that is not the class count, algorithm code 3, and two errors at
  once for the order) against :func:`verif.train_core_tb.start_error`: the code in ``status.error``, the error
  interrupt, ``irq`` = ``irq_status & irq_enable`` and its ``w1c`` clear, no sample taken, never
  running. Then SLVERR: holes in the map, the weight window outside the current table (layer, row and
  column), and while a run is in progress every locked configuration register and the window (their
  values unchanged); a start while running answers BUSY. That run goes on and ends bit-exact.
* ``reset_and_stop``: ``rst`` in the middle of a run (the registers come back at their reset values),
  then a reload (the logits at fractional length :data:`FINE_FRAC_Z`) and a bit-exact run; ``ctrl.stop``
  in the middle of a run (``status.running`` drops at once), then a reload and a bit-exact run.

Every wait has a cycle limit: a hang fails the test instead of stalling it.
"""

import dataclasses

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from golden.core import CoreConfig, CoreError, CoreTrainer
from golden.pdfa_schedule import PRECISIONS
from hw.axil import RESP_OKAY
from hw.pdfa import ENGINES
from verif.train_core_tb import CoreTB, bad_starts, start_error, table_after


#: Cycle limit of one run of at most 3 mini-batches of the small networks (they take 1 000 to 4 000).
RUN_LIMIT = 100_000
#: Cycles the core may take to answer a start or a stop.
ANSWER_LIMIT = 16
#: A logit fractional length above 25, where the output-error unit's shift amount frac_z + 6 clamps at 31.
FINE_FRAC_Z = 28


@dataclasses.dataclass(frozen=True)
class Case:
    """One bit-exact case: a network, its training setup, and the mini-batches of each run."""
    algorithm: str
    precision: object           # bits, one for every layer or one per layer
    sizes: tuple
    batch: int
    runs: tuple
    seed: int
    serial: bool = False
    threshold: int = 0
    grad_bits: int = 16
    lr_shift: int = 6
    saturated_tile: bool = False


CASES = {
    # One weight tile per layer at the top of the masters' range: its 8-bit reads round past the largest code
    # and saturate, in every element position of the tile, straight (FF) and transposed (EP).
    "bp_dfxp8": Case("bp", 8, (64, 8, 8, 10), batch=8, runs=(1, 2), seed=1, saturated_tile=True),
    "bp_dfxp16": Case("bp", 16, (64, 8, 8, 10), batch=5, runs=(2,), seed=2, serial=True),
    "dfa_dfxp8": Case("dfa", 8, (64, 8, 10), batch=6, runs=(1, 2), seed=3),
    # Four weight layers, the table's capacity, at DFXP-16, -12, -8 and -12 (every precision of the array's
    # routing); the weight buffer filled to its last tile (16*3 + 3*2 + 2*2 + 2*3 =
    # 64 tiles of 4x4); the first weight tile of every layer saturates as it is read at 12 and 8 bits.
    "dfa_mixed": Case("dfa", (16, 12, 8, 12), (64, 12, 6, 8, 10), batch=8, runs=(2,), seed=4, saturated_tile=True),
    # A last hidden layer of 4: the last layer's GEMMs reduce over one tile (drain-bound).
    "pdfa_dfxp8": Case("pdfa", 8, (64, 8, 4, 10), batch=8, runs=(2, 3), seed=5),
    "pdfa_dfxp16": Case("pdfa", 16, (64, 8, 10), batch=7, runs=(3,), seed=6),
    # Stochastic thresholding of errors and gradients at 2**1 (two draws per element; this seed keeps codes of
    # both signs in every lane), 12-bit gradients, and an exact update (lr_shift 0): every gradient code
    # reaches the masters.
    "bp_dfxp8_threshold": Case("bp", 8, (64, 12, 8, 10), batch=8, runs=(2,), seed=10, threshold=1, grad_bits=12,
                               lr_shift=0),
}


def make_trainer(tb, algorithm, precision, sizes, batch, seed, lr_shift=6, **kwargs):
    """A golden trainer for the bench's core: its array and accumulators, a learning rate that moves weights."""
    t = tb.config.core.tile
    return CoreTrainer(CoreConfig(sizes=sizes, algorithm=algorithm, precision=precision, batch=batch, seed=seed,
                                  array=(t, t), max_k=tb.config.pe.max_k, lr_shift=lr_shift, **kwargs))


def saturate_first_tile(trainer, t):
    """Set every layer's first ``t x t`` weight tile to masters in the top half step of the range (32 704 to
    32 767), before the trainer has run: reads at fewer than 16 bits round them past the largest code."""
    rng = np.random.default_rng(trainer.config.seed)
    for master in trainer.masters:
        master[:t, :t] = rng.integers(32704, 32768, size=(t, t))


async def check_run(tb, trainer, steps, what):
    """After a run: status, the done interrupt, every sample taken, the counters, the state bit for bit."""
    status = await tb.host.status()
    assert status == {"running": 0, "error": CoreError.NONE, "steps_done": steps}, f"{what}: status {status}"
    assert tb.axis.idle(), f"{what}: the core left {tb.axis.count()} samples of the run on the stream"
    assert (await tb.check_irq(what))["done"] == 1, f"{what}: no done interrupt"
    await tb.regs.write_fields("irq_status", done=1)
    assert (await tb.check_irq(what))["done"] == 0, f"{what}: w1c left the done interrupt set"
    counters = await tb.host.counters()
    for engine in ENGINES:
        parts = [counters[f"{engine}_{kind}"] for kind in ("busy", "stall", "idle")]
        assert sum(parts) == counters["cycles"] and parts[0] > 0, f"{what}: {engine} counters {parts}, {counters}"
    await tb.check_state(trainer, what)
    tb.dut._log.info(f"{what}: bit-exact; {counters}")


async def train(dut, name):
    case = CASES[name]
    tb = CoreTB(dut)
    await tb.reset()
    trainer = make_trainer(tb, case.algorithm, case.precision, case.sizes, case.batch, case.seed,
                           threshold=case.threshold, grad_bits=case.grad_bits, lr_shift=case.lr_shift)
    if case.saturated_tile:
        saturate_first_tile(trainer, tb.config.core.tile)
    await tb.regs.write_fields("irq_enable", done=1, error=1)
    await tb.host.load(trainer, case.runs[0], serial=case.serial)
    for i, steps in enumerate(case.runs):
        await tb.run(trainer, trainer.batches()[:steps], timeout_cycles=RUN_LIMIT)
        await check_run(tb, trainer, steps, f"{name}, run {i} ({steps} mini-batches)")


@cocotb.test()
async def train_bp_dfxp8(dut):
    await train(dut, "bp_dfxp8")


@cocotb.test()
async def train_bp_dfxp16(dut):
    await train(dut, "bp_dfxp16")


@cocotb.test()
async def train_dfa_dfxp8(dut):
    await train(dut, "dfa_dfxp8")


@cocotb.test()
async def train_dfa_mixed(dut):
    await train(dut, "dfa_mixed")


@cocotb.test()
async def train_pdfa_dfxp8(dut):
    await train(dut, "pdfa_dfxp8")


@cocotb.test()
async def train_pdfa_dfxp16(dut):
    await train(dut, "pdfa_dfxp16")


@cocotb.test()
async def train_bp_dfxp8_threshold(dut):
    await train(dut, "bp_dfxp8_threshold")


# -- refusals ----------------------------------------------------------------------------------------------

def edge_starts():
    """Bad starts at the edge of a buffer, as :func:`verif.train_core_tb.bad_starts` gives them: one weight tile
    more than the buffer holds (64 at the small preset), from three layers of 5 x 5, 5 x 5 and 5 x 3 tiles -
    odd counts, so that a sum of the layers' counts that loses a bit shows. Activations fit."""
    dfxp8 = PRECISIONS.index("dfxp8")
    return [("one weight tile more than the buffer", CoreError.TOO_LARGE,
             [("config", None, {"layers": 3, "batch": 4}), ("layer_size", 0, {"n_in": 20, "n_out": 20}),
              ("layer_size", 1, {"n_in": 20, "n_out": 20}), ("layer_size", 2, {"n_in": 20, "n_out": 10}),
              ("layer_cfg", 1, {"precision": dfxp8}), ("layer_cfg", 2, {"precision": dfxp8})])]


async def check_refusal(tb, what, want, irq_cycle):
    """A refused start: the error code, never running, no sample taken, the error interrupt, irq and w1c."""
    await tb.host.start()
    status = await tb.host.status()
    assert status["error"] == want and not status["running"], f"{what}: status {status}, want {want!r}"
    assert not int(tb.dut.s_axis_tready.value), f"{what}: the core takes samples after a refused start"
    flags = await tb.check_irq(what)
    assert flags == {"done": 0, "error": 1}, f"{what}: irq_status {flags}"
    if irq_cycle:
        # irq follows irq_status & irq_enable: enable the error cause, then clear it (w1c), then disable.
        await tb.regs.write_fields("irq_enable", error=1)
        await tb.check_irq(what)
        assert int(tb.dut.irq.value) == 1, f"{what}: irq low with the error cause set and enabled"
    await tb.regs.write_fields("irq_status", error=1)
    assert (await tb.check_irq(what))["error"] == 0, f"{what}: w1c left the error interrupt set"
    await tb.regs.write_fields("irq_enable", error=0)
    await ClockCycles(tb.dut.clk, ANSWER_LIMIT)
    assert not (await tb.host.status())["running"], f"{what}: the core runs after a refused start"


async def check_holes_and_window(tb, trainer):
    """SLVERR on holes of the map (read data 0) and on the weight window outside the current table."""
    regmap = tb.regmap
    holes = [a for a in range(0, 1 << regmap.addr_width, 4) if regmap.locate(a) is None]
    assert holes, "the register map has no hole to probe"
    for addr in sorted({holes[0], holes[len(holes) // 2], holes[-1]}):
        assert await tb.expect_slverr("hole", addr) == 0, f"a hole at {addr:#x} reads non-zero data"
        await tb.expect_slverr("hole", addr, 0xFFFFFFFF)
    sizes = trainer.config.sizes
    L = trainer.config.layers
    outside = [(L, 0, 0), (tb.config.pdfa.max_layers - 1, 0, 0), (0, sizes[1], 0), (L - 1, sizes[L], 0),
               (L - 1, 0, sizes[L - 1]), (L - 1, (1 << tb.geo["width_bits"]) - 1, (1 << tb.geo["width_bits"]) - 1)]
    for layer, row, col in outside:
        addr = tb.window_address(layer, row, col)
        assert await tb.expect_slverr(f"W{layer}[{row}, {col}] outside the table", addr) == 0
        await tb.expect_slverr(f"W{layer}[{row}, {col}] outside the table", addr, 0x1234)


@cocotb.test()
async def refusals(dut):
    tb = CoreTB(dut)
    await tb.reset()
    L = tb.config.pdfa.max_layers
    trainer = make_trainer(tb, "pdfa", 8, (64, 5, 10), batch=6, seed=7)
    await tb.host.load(trainer, 2)
    for n, (what, named, writes) in enumerate(bad_starts(trainer, L) + edge_starts()):
        table, batch, algorithm = table_after(trainer, writes, L)
        want = start_error(tb.config, table, batch=batch, algorithm=algorithm)
        assert want == named, f"{what}: the reference check says {want!r}, the case was meant for {named!r}"
        for reg, index, fields in writes:
            await tb.regs.write_fields(reg, index, **fields)
        await check_refusal(tb, what, want, irq_cycle=n < 2)
        await tb.host.configure(trainer, 2)                          # the good table again
    await check_holes_and_window(tb, trainer)

    # A run, and while it runs: BUSY, SLVERR on every locked register and on the window. The samples are
    # sent after these checks, so that the run cannot end before them (and the LFSR states stand still).
    batches = trainer.batches()[:2]
    trainer.begin_run()
    for idx in batches:
        trainer.step_codes(trainer.x_train[idx].T, trainer.y_train[idx])
    await tb.regs.write_fields("irq_enable", done=1, error=1)
    await tb.regs.write_fields("steps", count=len(batches))
    await tb.host.start()
    assert (await tb.host.status())["running"], "the good start was refused"
    await tb.host.start()
    status = await tb.host.status()
    assert status["error"] == CoreError.BUSY and status["running"], f"start while running: status {status}"
    assert (await tb.check_irq("start while running")) == {"done": 0, "error": 1}
    assert int(dut.irq.value) == 1
    await tb.regs.write_fields("irq_status", error=1)
    locked = [(reg.name, i) for reg in tb.regmap.registers if reg.locked_while_busy
              for i in (range(reg.count) if reg.is_array else [None])]
    for name, index in locked:
        addr = tb.regs.address(name, index)
        before = await tb.read(addr)                                 # locked registers still read
        await tb.expect_slverr(f"{name}[{index}] written while running", addr, before ^ 0xFFFFFFFF)
        assert await tb.read(addr) == before, f"{name}[{index}] changed by a refused write"
    await tb.expect_slverr("window written while running", tb.window_address(0, 0, 0), 0x1234)
    assert await tb.expect_slverr("window read while running", tb.window_address(0, 0, 0)) == 0
    assert (await tb.write_resp(tb.regs.address("irq_enable"), 0b11)) == RESP_OKAY
    for idx in batches:
        await tb.send_samples(trainer.x_train[idx], trainer.y_train[idx])
    await tb.wait_done(RUN_LIMIT)
    status = await tb.host.status()
    assert status == {"running": 0, "error": CoreError.BUSY, "steps_done": 2}, f"after the run: {status}"
    assert tb.axis.idle()
    # The done cause masked, then enabled, then cleared.
    await tb.regs.write_fields("irq_enable", done=0, error=1)
    assert (await tb.check_irq("done masked")) == {"done": 1, "error": 0} and not int(dut.irq.value)
    await tb.regs.write_fields("irq_enable", done=1)
    assert (await tb.check_irq("done enabled")) == {"done": 1, "error": 0} and int(dut.irq.value)
    await tb.regs.write_fields("irq_status", done=1)
    assert (await tb.check_irq("done cleared")) == {"done": 0, "error": 0} and not int(dut.irq.value)
    await tb.check_state(trainer, "the run that went on through a BUSY start and refused writes")


# -- reset and stop ----------------------------------------------------------------------------------------

async def abort_mid_run(tb, trainer, steps, min_cycles):
    """Start a run of ``steps`` mini-batches (no golden step) and return once it has run ``min_cycles``
    with at least one mini-batch still to land."""
    await tb.start_run(trainer, trainer.batches()[:steps])
    await ClockCycles(tb.dut.clk, min_cycles)
    status = await tb.host.status()
    assert status["running"] and status["steps_done"] < steps, f"not in the middle of the run: {status}"


@cocotb.test()
async def reset_and_stop(dut):
    tb = CoreTB(dut)
    await tb.reset()
    trainer = make_trainer(tb, "bp", 16, (64, 5, 10), batch=8, seed=8)
    await tb.regs.write_fields("irq_enable", done=1, error=1)
    await tb.host.load(trainer, 2)

    # rst in the middle of a run: every register back at its reset value (but the constants and the LFSR
    # lanes, which show the units' state), then a reload and a bit-exact run.
    await abort_mid_run(tb, trainer, 2, 400)
    await tb.reset()
    tb.flush_stream()
    for reg in tb.regmap.registers:
        if reg.name in ("info", "limits") or reg.name.startswith("lfsr_"):
            continue
        for i in range(reg.count) if reg.is_array else [None]:
            value = await tb.regs.read(reg.name, i)
            assert value == reg.reset, f"{reg.name}[{i}] is {value:#x} after reset, not {reg.reset:#x}"
    assert not int(dut.irq.value) and not int(dut.s_axis_tready.value)
    await tb.regs.write_fields("irq_enable", done=1, error=1)
    # The reload starts the logits at a fine fractional length: the output-error unit's exponent then shifts
    # by frac_z + 6 = 34 > 31, where its shifter clamps the amount (exp2_shift).
    trainer.fracs["z"] = FINE_FRAC_Z
    await tb.host.load(trainer, 1)
    await tb.run(trainer, trainer.batches()[:1], timeout_cycles=RUN_LIMIT)
    await check_run(tb, trainer, 1, "the run after a reset in the middle of a run")

    # ctrl.stop in the middle of a run: running drops at once; a reload and a bit-exact run.
    await abort_mid_run(tb, trainer, 2, 300)
    await tb.regs.write_fields("ctrl", stop=1)
    status = await tb.host.status()
    assert status["running"] == 0 and status["error"] == CoreError.NONE, f"after ctrl.stop: {status}"
    tb.flush_stream()
    await ClockCycles(dut.clk, ANSWER_LIMIT)
    assert not int(dut.s_axis_tready.value), "the core takes samples after a stop"
    assert (await tb.regs.read_fields("irq_status"))["done"] == 0, "a stopped run raised the done interrupt"
    await tb.host.load(trainer, 2)
    await tb.run(trainer, trainer.batches()[:2], timeout_cycles=RUN_LIMIT)
    await check_run(tb, trainer, 2, "the run after ctrl.stop")
