"""What every cocotb bench of the TrainCore shares: an SoC's view of the core.

:class:`CoreTB` drives the core only through its ports, as an SoC would: cocotbext-axi's ``AxiLiteMaster``
on ``s_axil_*`` (random pauses on all five channels), an ``AxiStreamSource`` on ``s_axis_*`` (random
pauses), ``irq`` watched. On top, the register driver generated from :func:`hw.train_core.register_map`
and :class:`verif.core_host.CoreHost`, so the bench addresses registers and fields by name.

:func:`start_error` is the reference of the core's start check (:class:`golden.core.CoreError`, in its
order) for a layer table, a batch and an algorithm code, so that a bench predicts every refusal;
:func:`bad_starts` lists the bad starts the benches make from a good configuration, :func:`table_after` the
table the registers then hold.
"""

import logging
import random

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamFrame, AxiStreamSource

from golden.core import CoreError
from golden.pdfa_schedule import PRECISIONS
from hw.axil import RESP_OKAY, RESP_SLVERR
from hw.train_core import core_layer_precisions, geometry, register_map
from verif.bench import BenchTB
from verif.core_host import CoreHost, golden_state, sample_beats, state_differences


__all__ = ["CoreTB", "BusError", "start_error", "bad_starts", "table_after"]


class BusError(RuntimeError):
    """An AXI4-Lite access answered SLVERR where the bench expected OKAY."""


def _pauses(rng, stall):
    while True:
        yield rng.random() < stall


def _tiles(n, t):
    return -(-n // t)


def start_error(config, table, *, batch, algorithm):
    """The :class:`golden.core.CoreError` a core of ``config`` answers to a start with layer table ``table``
    (``(n_in, n_out, precision code)`` per layer, the code an index of
    :data:`golden.pdfa_schedule.PRECISIONS`), ``batch`` samples per mini-batch and algorithm code
    ``algorithm`` (0 bp, 1 dfa, 2 pdfa).

    The checks and their order are :class:`golden.core.CoreError`'s; ``TOO_LARGE`` counts the buffers of
    :func:`hw.train_core.geometry`: weight tiles (``ceil(n_out / t) * ceil(n_in / t)`` per layer) against
    ``core.weight_tiles``, and the activations of hidden layers and the errors and masks of hidden outputs
    (``ceil(batch / t) * ceil(n / t)`` each) against ``core.act_tiles``.
    """
    t = config.core.tile
    supported = {PRECISIONS.index(name) for name in core_layer_precisions(config)}
    layers = len(table)
    if layers == 0:
        return CoreError.EMPTY_TABLE
    if layers > config.pdfa.max_layers:
        return CoreError.TOO_MANY_LAYERS
    if any(n_in == 0 or n_out == 0 for n_in, n_out, _ in table):
        return CoreError.ZERO_SIZE
    if any(a[1] != b[0] for a, b in zip(table, table[1:])):
        return CoreError.SIZE_MISMATCH
    if any(p not in supported for *_, p in table):
        return CoreError.BAD_PRECISION
    bt = _tiles(batch, t)
    weights = sum(_tiles(n_out, t) * _tiles(n_in, t) for n_in, n_out, _ in table)
    acts = sum(bt * _tiles(n_in, t) for n_in, _, _ in table[1:])
    errors = sum(bt * _tiles(n_out, t) for _, n_out, _ in table[:-1])
    if (any(max(n_in, n_out) > config.core.max_width for n_in, n_out, _ in table)
            or not 1 <= batch <= config.core.max_batch
            or weights > config.core.weight_tiles or max(acts, errors) > config.core.act_tiles):
        return CoreError.TOO_LARGE
    if table[-1][1] != config.dfa.classes:
        return CoreError.BAD_OUTPUT
    if algorithm not in (0, 1, 2):
        return CoreError.BAD_ALGORITHM
    return CoreError.NONE


def _code(name):
    return PRECISIONS.index(name)


def bad_starts(trainer, max_layers):
    """Bad starts from ``trainer``'s good table: ``(what, error, writes)``, ``writes`` the register writes
    that make it (``(register, index, fields)``, for :meth:`hw.regmap.RegisterDriver.write_fields`) and
    ``error`` the check it is meant to hit (the last two cases break two checks at once, for the order)."""
    last = trainer.config.layers - 1
    dfxp4, dfxp8, sefp8 = _code("dfxp4"), _code("dfxp8"), _code("sefp8")
    return [
        ("an empty table", CoreError.EMPTY_TABLE, [("config", None, {"layers": 0})]),
        ("more layers than the core holds", CoreError.TOO_MANY_LAYERS,
         [("config", None, {"layers": max_layers + 1})]),
        ("a layer with no input", CoreError.ZERO_SIZE, [("layer_size", 0, {"n_in": 0})]),
        ("sizes that do not chain", CoreError.SIZE_MISMATCH, [("layer_size", last, {"n_in": 9})]),
        ("dfxp4 on a tile of 4", CoreError.BAD_PRECISION, [("layer_cfg", 0, {"precision": dfxp4})]),
        ("sefp8", CoreError.BAD_PRECISION, [("layer_cfg", last, {"precision": sefp8})]),
        ("precision code 7", CoreError.BAD_PRECISION, [("layer_cfg", 0, {"precision": 7})]),
        ("a layer wider than the core", CoreError.TOO_LARGE, [("layer_size", 0, {"n_in": 65})]),
        ("more weight tiles than the buffer", CoreError.TOO_LARGE,
         [("layer_size", 0, {"n_out": 32}), ("layer_size", 1, {"n_in": 32})]),
        ("more activation tiles than the buffer", CoreError.TOO_LARGE,
         [("config", None, {"layers": 3, "batch": 8}), ("layer_size", 0, {"n_in": 16, "n_out": 20}),
          ("layer_size", 1, {"n_in": 20, "n_out": 20}), ("layer_size", 2, {"n_in": 20, "n_out": 10}),
          ("layer_cfg", 1, {"precision": dfxp8}), ("layer_cfg", 2, {"precision": dfxp8})]),
        ("a batch of 0", CoreError.TOO_LARGE, [("config", None, {"batch": 0})]),
        ("a batch above the maximum", CoreError.TOO_LARGE, [("config", None, {"batch": 9})]),
        ("a last layer that is not the class count", CoreError.BAD_OUTPUT, [("layer_size", last, {"n_out": 9})]),
        ("algorithm code 3", CoreError.BAD_ALGORITHM, [("config", None, {"algorithm": 3})]),
        ("a zero size that also breaks the chain", CoreError.ZERO_SIZE, [("layer_size", last, {"n_in": 0})]),
        ("dfxp4 on a layer too wide", CoreError.BAD_PRECISION,
         [("layer_cfg", 0, {"precision": dfxp4}), ("layer_size", 0, {"n_in": 65})]),
    ]


def table_after(trainer, writes, max_layers):
    """``(table, batch, algorithm code)`` the registers hold after ``writes`` to ``trainer``'s configuration
    (layer registers beyond its layers at their reset value), in the arguments of :func:`start_error`."""
    cfg = trainer.config
    regs = {"layers": cfg.layers, "batch": cfg.batch, "algorithm": ("bp", "dfa", "pdfa").index(cfg.algorithm)}
    rows = [[n_in, n_out, _code(f"dfxp{p}")] for n_in, n_out, p in zip(cfg.sizes, cfg.sizes[1:], cfg.precision)]
    rows += [[0, 0, 0] for _ in range(max_layers - len(rows))]
    for reg, index, fields in writes:
        if reg == "config":
            regs.update(fields)
        else:
            for key, value in fields.items():
                rows[index][{"n_in": 0, "n_out": 1, "precision": 2}[key]] = value
    table = [tuple(r) for r in rows[:regs["layers"]]]
    table += [(1, 1, _code("dfxp8"))] * (regs["layers"] - len(table))   # beyond the core: never read
    return table, regs["batch"], regs["algorithm"]


class CoreTB(BenchTB):
    """Clock, reset, AXI4-Lite master, AXI4-Stream source, register driver and host of a TrainCore bench.

    ``stall`` (or ``EDGETRAIN_STALL``, default 0.3) is the pause probability of every AXI channel.
    ``bus_log`` keeps cocotbext-axi's log of every transfer (off: it is thousands of lines per run and
    slows the simulation down).
    """

    def __init__(self, dut, *, stall=None, bus_log=False):
        super().__init__(dut, stall=stall)
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        for channel in (self.axil.write_if.aw_channel, self.axil.write_if.w_channel, self.axil.write_if.b_channel,
                        self.axil.read_if.ar_channel, self.axil.read_if.r_channel):
            channel.set_pause_generator(_pauses(random.Random(self.rng.random()), self.stall))
        self.axis = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        self.axis.set_pause_generator(_pauses(random.Random(self.rng.random()), self.stall))
        if not bus_log:
            for log in (self.axil.write_if.log, self.axil.read_if.log, self.axis.log):
                log.setLevel(logging.WARNING)
        self.regmap = register_map(self.config)
        self.geo = geometry(self.config)
        self.regs = self.regmap.driver(self.read, self.write)
        self.host = CoreHost(self.regs, self.config)

    # -- the bus ----------------------------------------------------------------------------------------
    async def read_resp(self, addr):
        """Read a word: ``(value, resp)``."""
        result = await self.axil.read(addr, 4)
        return int.from_bytes(result.data, "little"), int(result.resp)

    async def write_resp(self, addr, value):
        result = await self.axil.write(addr, int(value).to_bytes(4, "little"))
        return int(result.resp)

    async def read(self, addr):
        value, resp = await self.read_resp(addr)
        if resp != RESP_OKAY:
            raise BusError(f"SLVERR reading {addr:#x}")
        return value

    async def write(self, addr, value):
        resp = await self.write_resp(addr, value)
        if resp != RESP_OKAY:
            raise BusError(f"SLVERR writing {value:#x} to {addr:#x}")

    def window_address(self, layer, row, col):
        """Bus address of master ``W_layer[row, col]`` in the weight window."""
        w = self.geo["width_bits"]
        return self.regs.window_address("weights", ((layer << 2 * w) | (row << w) | col) * 4)

    async def expect_slverr(self, what, addr, value=None):
        """Read (``value`` None) or write ``addr`` and assert the answer is SLVERR; returns the read data."""
        if value is None:
            data, resp = await self.read_resp(addr)
        else:
            data, resp = None, await self.write_resp(addr, value)
        assert resp == RESP_SLVERR, f"{what}: {'read' if value is None else 'write'} of {addr:#x} answered {resp:#b}"
        return data

    # -- runs -------------------------------------------------------------------------------------------
    async def send_samples(self, codes, labels):
        """Queue the samples (codes ``samples x features``, labels) on the AXI4-Stream, one frame each."""
        beats = sample_beats(codes, labels)
        frame = []
        for data, last in beats:
            frame.append(data)
            if last:
                await self.axis.send(AxiStreamFrame(b"".join(w.to_bytes(4, "little") for w in frame)))
                frame = []

    def flush_stream(self):
        """Drop the samples still queued on the AXI4-Stream and the frame being sent (after an aborted run:
        the core takes no more beats until the next start, which must begin with a new sample)."""
        self.axis.clear()
        self.axis.assert_reset()

    async def wait_done(self, timeout_cycles):
        """Wait for the end of the run (``status.running`` low, polled every 64 cycles); returns the cycles
        waited, or raises TimeoutError."""
        waited = 0
        while waited < timeout_cycles:
            await ClockCycles(self.dut.clk, 64)
            waited += 64
            if not (await self.host.status())["running"]:
                return waited
        raise TimeoutError(f"the run did not end within {timeout_cycles} cycles")

    async def wait_irq(self, timeout_cycles):
        """Wait until ``irq`` is high; returns whether it rose within ``timeout_cycles``."""
        for _ in range(timeout_cycles):
            if int(self.dut.irq.value):
                return True
            await RisingEdge(self.dut.clk)
        return bool(int(self.dut.irq.value))

    async def start_run(self, trainer, batches):
        """Set the run's step count, start, and queue its samples (does not wait, runs no golden step)."""
        await self.regs.write_fields("steps", count=len(batches))
        await self.host.start()
        for idx in batches:
            await self.send_samples(trainer.x_train[idx], trainer.y_train[idx])

    async def run(self, trainer, batches, *, timeout_cycles=2_000_000, golden=True):
        """One run of ``batches`` (index arrays into ``trainer``'s training set): start, stream the samples,
        wait for the end; the golden model runs the same steps when ``golden``."""
        if golden:
            trainer.begin_run()
            for idx in batches:
                trainer.step_codes(trainer.x_train[idx].T, trainer.y_train[idx])
        await self.start_run(trainer, batches)
        return await self.wait_done(timeout_cycles)

    async def check_state(self, trainer, what=""):
        """Read the core's state back and assert it equals ``trainer``'s, bit for bit."""
        got = await self.host.read_state(trainer)
        diffs = state_differences(got, golden_state(trainer))
        assert not diffs, f"{what}: the core differs from golden.core:\n" + "\n".join(diffs)

    async def check_irq(self, what=""):
        """Assert that ``irq`` is ``irq_status & irq_enable`` (any bit); returns the status fields."""
        status = await self.regs.read_fields("irq_status")
        enable = await self.regs.read_fields("irq_enable")
        want = any(status[k] and enable[k] for k in status)
        irq = int(self.dut.irq.value)
        assert irq == want, f"{what}: irq {irq}, status {status}, enable {enable}"
        return status

    async def reset(self):
        await super().reset()
        await ClockCycles(self.dut.clk, 2)


def start_soon(coro):
    return cocotb.start_soon(coro)

