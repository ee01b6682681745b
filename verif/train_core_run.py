"""cocotb testcases that use the TrainCore as an SoC would: train a network on it (``train``, run by
``scripts/train_rtl.py``) and measure its cycles per training step (``benchmark``, run by
``scripts/bench_train_core.py``). Both drive the core only through its AXI ports (:class:`CoreTB`, no
random pauses: the figures are the core's, not the bench's) and check it against
:class:`golden.core.CoreTrainer` after every run.

What long runs need on top of :class:`verif.train_core_tb.CoreTB` (:class:`CoreRunner`):

* the weight window read and written with up to :data:`IN_FLIGHT` AXI4-Lite accesses in flight (the core's
  slave takes one every few cycles; one at a time, the bench would wait for the Python side);
* the samples of a run queued on the AXI4-Stream before its ``start``, so that the stream is never the
  bench's bottleneck (one beat per cycle whenever the core takes one);
* a wait for the end of a run that polls ``status`` every :data:`POLL_CYCLES` cycles and reports the
  mini-batches done;
* a trace of every engine operation (issue and ``done`` cycles of the controller's commands), watched on
  the controller's handshake signals (read only; skipped when the simulator does not show them).

Files (environment variables): ``EDGETRAIN_RUN_IN`` the job (JSON), ``EDGETRAIN_RUN_OUT`` the result (JSON),
``EDGETRAIN_RUN_PROGRESS`` (optional) a file to which progress is appended, one JSON object per line.

``train`` job: ``{"core": CoreConfig fields, "epochs": N, "limit_steps": K or null}``. One run of the core
per epoch over :meth:`golden.core.CoreTrainer.batches` (the first ``limit_steps`` mini-batches in all, when
given); after each, the state is read back and compared with the golden model's, and the read-back masters
are evaluated with the golden integer inference. Result: the figures of every epoch.

``benchmark`` job: ``{"mlps": [{"name", "core": CoreConfig fields, "runs": [{"algorithm", "serial",
"steps"}, ...]}, ...]}``. Per MLP, the trainer's state is loaded once and the runs follow one another on it
(the golden trainer switching algorithm with the core): per run, ``steps`` mini-batches, the cycle count and
counters, the trace and the registers' state against the golden model's; after the MLP's last run, its
masters too. Result: one record per run.
"""

import dataclasses
import json
import logging
import os
import time

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge, Timer
from cocotb.utils import get_sim_time

from golden.core import CoreConfig, CoreTrainer
from golden.pdfa_schedule import ENGINES, program
from hw.train_core import core_layer_precisions
from verif.core_host import CoreHost, golden_state, state_differences
from verif.train_core_tb import CoreTB


__all__ = ["IN_FLIGHT", "POLL_CYCLES", "fit_error", "CoreRunner", "RunFailed", "train", "benchmark"]

#: AXI4-Lite accesses of the weight window kept in flight.
IN_FLIGHT = 16
#: Cycles between two polls of ``status`` while a run goes on.
POLL_CYCLES = 512


def fit_error(config, core):
    """Why a core of ``config`` (:class:`hw.config.Config`) refuses to train ``core``
    (:class:`golden.core.CoreConfig`), in the order of its start checks (:class:`golden.core.CoreError`), as
    one line; None when it fits. Mirrors the checks of :class:`hw.train_core.TrainCore`."""
    cfg, sizes, layers = config.core, core.sizes, core.layers
    t = cfg.tile
    if layers > config.pdfa.max_layers:
        return f"the core holds at most {config.pdfa.max_layers} layers (pdfa.max_layers), not {layers}"
    names = core_layer_precisions(config)
    for l, p in enumerate(core.precision):
        if f"dfxp{p}" not in names:
            return f"layer {l}: precision dfxp{p} does not run on this core (it runs {', '.join(names)})"
    if max(sizes) > cfg.max_width:
        return f"layer widths must be at most {cfg.max_width} (core.max_width), not {max(sizes)}"
    if core.batch > cfg.max_batch:
        return f"batch must be at most {cfg.max_batch} (core.max_batch), not {core.batch}"
    tiles = [-(-n // t) for n in sizes]
    bt = -(-core.batch // t)
    # Weights: every layer's tiles; hidden activations, errors and masks: a mini-batch of each hidden layer.
    need = {"weight": (sum(a * b for a, b in zip(tiles, tiles[1:])), cfg.weight_tiles, "core.weight_tiles"),
            "activation": (sum(bt * n for n in tiles[1:-1]), cfg.act_tiles, "core.act_tiles")}
    for what, (used, have, key) in need.items():
        if used > have:
            return f"the network needs {used} {what} tiles of {t}x{t}; the core has {have} ({key})"
    if sizes[-1] != config.dfa.classes:
        return f"the last layer must have the core's {config.dfa.classes} classes (dfa.classes), not {sizes[-1]}"
    return None


class RunFailed(RuntimeError):
    """The core refused a start or did not finish a run."""


class _BulkHost(CoreHost):
    """:class:`CoreHost` whose weight-window transfers keep several accesses in flight."""

    def __init__(self, regs, config, read, write):
        super().__init__(regs, config)
        self._read, self._write = read, write

    async def _many(self, calls):
        tasks, out = [], []
        for call in calls:
            tasks.append(cocotb.start_soon(call()))
            if len(tasks) >= IN_FLIGHT:
                out.append(await tasks.pop(0))
        for task in tasks:
            out.append(await task)
        return out

    def _addr(self, layer, row, col):
        return self.regs.window_address("weights", self._window_offset(layer, row, col))

    async def write_weights(self, masters):
        calls = []
        for l, w in enumerate(masters):
            for (row, col), value in np.ndenumerate(np.asarray(w)):
                addr = self._addr(l, row, col)
                calls.append(lambda addr=addr, value=int(value) & 0xFFFF: self._write(addr, value))
        await self._many(calls)

    async def read_weights(self, shapes):
        calls = [lambda addr=self._addr(l, row, col): self._read(addr)
                 for l, (rows, cols) in enumerate(shapes) for row in range(rows) for col in range(cols)]
        words = iter(await self._many(calls))
        out = []
        for rows, cols in shapes:
            w = np.array([next(words) for _ in range(rows * cols)], dtype=np.int64).reshape(rows, cols)
            out.append(np.where(w >> 31, w - (1 << 32), w))
        return out


class _Trace:
    """Issue and ``done`` cycles of the controller's commands, from its handshake signals.

    Per engine, operations follow :func:`golden.pdfa_schedule.program`, so the ``i``-th command of an engine
    is its program's ``i``-th operation. A command is *issued* in the cycle its ``valid`` and ``ready`` are
    both high; its ``done`` is the first cycle the engine's ``done`` valid is high, and it is *taken* in the
    last such cycle (a WG waiting to commit holds it). Cycles are counted from the controller's cycle 0, the
    cycle after its ``start`` handshake (:mod:`golden.pdfa_schedule`).
    """

    def __init__(self, dut, period_ns):
        self.dut, self.period = dut, period_ns
        names = {e: [f"{e.lower()}_{s}" for s in ("cmd__valid", "cmd__ready", "done__valid")] for e in ENGINES}
        try:
            self.signals = {e: [getattr(dut, n) for n in names[e]] for e in ENGINES}
            self.start_signals = (dut.start__valid, dut.start__ready)
        except AttributeError:
            self.signals = None
        self.ops = {}
        self.origin = None
        self.tasks = []

    available = property(lambda self: self.signals is not None)

    def _cycle(self):
        return int(get_sim_time("ns")) // self.period

    async def _engine(self, engine, ops):
        valid, ready, done = self.signals[engine]
        clk = self.dut.clk
        for op in ops:
            await ReadOnly()
            if not int(valid.value):
                await RisingEdge(valid)
                await ReadOnly()
            while not (int(valid.value) and int(ready.value)):
                await RisingEdge(clk)
                await ReadOnly()
            issue = self._cycle()
            await RisingEdge(clk)
            await ReadOnly()
            if not int(done.value):
                await RisingEdge(done)
                await ReadOnly()
            first = self._cycle()
            await FallingEdge(done)           # in the cycle after the transfer, which may issue the next
            self.ops[(engine, *op)] = (issue, first, self._cycle() - 1)

    async def _origin(self):
        valid, ready = self.start_signals
        await ReadOnly()
        while not (int(valid.value) and int(ready.value)):
            await RisingEdge(self.dut.clk)
            await ReadOnly()
        self.origin = self._cycle() + 1

    def start(self, layers, samples, pipelined):
        self.ops = {}
        self.origin = None
        if self.available:
            self.tasks = [cocotb.start_soon(self._engine(e, program(e, layers, samples, pipelined=pipelined)))
                          for e in ENGINES] + [cocotb.start_soon(self._origin())]

    def stop(self):
        for task in self.tasks:
            task.cancel()
        self.tasks = []

    def records(self):
        """``[engine, layer, sample, issue, done, taken]`` per operation, in issue order."""
        o = self.origin or 0
        return [[e, l, t, i - o, d - o, k - o] for (e, l, t), (i, d, k) in sorted(
            self.ops.items(), key=lambda item: item[1][0])]


class CoreRunner:
    """A :class:`CoreTB` (no random pauses, quiet AXI logs) with the bulk weight transfers, queued samples,
    polled waits and the operation trace that long runs need."""

    def __init__(self, dut):
        self.dut = dut
        self.tb = CoreTB(dut, stall=0.0)
        for log in (self.tb.axil.write_if.log, self.tb.axil.read_if.log, self.tb.axis.log):
            log.setLevel(logging.WARNING)
        self.host = _BulkHost(self.tb.regs, self.tb.config, self.tb.read, self.tb.write)
        self.tb.host = self.host
        self.trace = _Trace(dut, CoreTB.PERIOD_NS)

    config = property(lambda self: self.tb.config)

    def cycle(self):
        return int(get_sim_time("ns")) // CoreTB.PERIOD_NS

    async def reset(self):
        await self.tb.reset()

    async def load(self, trainer, *, serial=False):
        await self.host.load(trainer, 1, serial=serial)

    async def run(self, trainer, batches, *, on_step=None, timeout_cycles=10_000_000):
        """One run of ``batches`` on the core and on ``trainer``; returns its figures: the golden model's
        mean loss, the core's cycles and counters, the wall-clock seconds and the trace."""
        trainer.begin_run()
        losses = [trainer.step_codes(trainer.x_train[idx].T, trainer.y_train[idx]) for idx in batches]
        await self.tb.regs.write_fields("steps", count=len(batches))
        for idx in batches:
            await self.tb.send_samples(trainer.x_train[idx], trainer.y_train[idx])
        cfg = trainer.config
        self.trace.start(cfg.layers, len(batches), cfg.pipelined)
        wall = time.monotonic()
        await self.host.start()
        done = waited = 0
        while True:
            if waited > timeout_cycles:
                self.trace.stop()
                raise RunFailed(f"the run did not end within {timeout_cycles} cycles")
            await Timer(POLL_CYCLES * CoreTB.PERIOD_NS, "ns")
            waited += POLL_CYCLES
            status = await self.host.status()
            if status["error"]:
                self.trace.stop()
                raise RunFailed(f"the core refused the start: error {status['error']}")
            if status["steps_done"] != done:
                done = status["steps_done"]
                if on_step:
                    on_step(done, len(batches))
            if not status["running"]:
                break
        wall = time.monotonic() - wall
        self.trace.stop()
        counters = await self.host.counters()
        if self.tb.axis.count() or done != len(batches):
            raise RunFailed(f"the run ended after {done} of {len(batches)} mini-batches with "
                            f"{self.tb.axis.count()} samples left on the stream")
        return {"loss": float(np.mean(losses)), "cycles": counters.pop("cycles"), "counters": counters,
                "seconds": wall, "trace": self.trace.records()}

    async def check(self, trainer, *, masters=True):
        """The core's state against the golden model's: ``(state, differences)``; without ``masters`` the
        weights are not read (fractional lengths, LFSR states and overflow counters only)."""
        want = golden_state(trainer)
        if masters:
            got = await self.host.read_state(trainer)
        else:
            read_weights = self.host.read_weights
            self.host.read_weights = _no_weights
            try:
                got = await self.host.read_state(trainer)
            finally:
                self.host.read_weights = read_weights
            got["masters"] = want["masters"]
        return got, state_differences(got, want)


async def _no_weights(shapes):
    return None


def _job():
    with open(os.environ["EDGETRAIN_RUN_IN"]) as f:
        return json.load(f)


def _write_result(result):
    path = os.environ["EDGETRAIN_RUN_OUT"]
    with open(path + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(path + ".tmp", path)


class _Progress:
    """Progress lines (JSON objects) appended to ``EDGETRAIN_RUN_PROGRESS``, if set."""

    def __init__(self):
        self.path = os.environ.get("EDGETRAIN_RUN_PROGRESS")

    def __call__(self, **fields):
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps(fields) + "\n")


def _core_config(fields, config):
    """A CoreConfig from job fields, for a core of ``config`` (its tile and ``pe.max_k``)."""
    t = config.core.tile
    return CoreConfig(**{"array": (t, t), "max_k": config.pe.max_k, **fields})


def _accuracy(trainer, masters, x, y):
    """Accuracy of ``masters`` in the golden integer inference of ``trainer`` (its other state unchanged)."""
    saved = trainer.masters
    trainer.masters = masters
    try:
        return float(np.mean(trainer.predict(x) == y))
    finally:
        trainer.masters = saved


@cocotb.test()
async def train(dut):
    """Train for the job's epochs, one run per epoch, checking the state after each."""
    started = time.time()
    job = _job()
    progress = _Progress()
    runner = CoreRunner(dut)
    await runner.reset()
    trainer = CoreTrainer(_core_config(job["core"], runner.config))
    wall = time.monotonic()
    progress(phase="load", epoch=0, epochs=job["epochs"])
    await runner.load(trainer)
    load_seconds = time.monotonic() - wall
    left = job.get("limit_steps")
    epochs = []
    for epoch in range(job["epochs"]):
        batches = trainer.batches()
        if left is not None:
            batches = batches[:left]
            left -= len(batches)
        progress(phase="run", epoch=epoch, epochs=job["epochs"], step=0, steps=len(batches))
        result = await runner.run(trainer, batches, timeout_cycles=job.get("timeout_cycles", 10_000_000),
                                  on_step=lambda done, steps, epoch=epoch: progress(
                                      phase="run", epoch=epoch, epochs=job["epochs"], step=done, steps=steps))
        progress(phase="check", epoch=epoch, epochs=job["epochs"])
        start = time.monotonic()
        got, diffs = await runner.check(trainer)
        check_seconds = time.monotonic() - start
        epochs.append({
            "epoch": epoch + 1, "steps": len(batches), "loss": result["loss"], "cycles": result["cycles"],
            "counters": result["counters"], "run_seconds": round(result["seconds"], 3),
            "check_seconds": round(check_seconds, 3),
            "test_accuracy": _accuracy(trainer, got["masters"], trainer.x_test, trainer.y_test),
            "train_accuracy": _accuracy(trainer, got["masters"], trainer.x_train, trainer.y_train),
            "golden_test_accuracy": float(np.mean(trainer.predict(trainer.x_test) == trainer.y_test)),
            "weights_equal_golden": not diffs, "differences": diffs[:10],
        })
        progress(phase="epoch", epoch=epoch, epochs=job["epochs"], test_accuracy=epochs[-1]["test_accuracy"],
                 weights_equal_golden=not diffs)
        if left is not None and left <= 0:
            break
    _write_result({"epochs": epochs, "started": started, "load_seconds": round(load_seconds, 3),
                   "sim_seconds": round(time.monotonic() - wall, 3), "sim_cycles": runner.cycle(),
                   "trainer": {"frac_in": int(trainer.frac_in), "frac_w": [int(f) for f in trainer.frac_w]}})
    assert all(e["weights_equal_golden"] for e in epochs), "\n".join(
        d for e in epochs for d in e["differences"])


@cocotb.test()
async def benchmark(dut):
    """Measure the job's runs. Each MLP's state is loaded once and its runs follow one another on the state
    the previous one left, the golden trainer switching algorithm with the core; after every run the
    registers' state is compared, and after an MLP's last run its masters too."""
    started = time.time()
    job = _job()
    progress = _Progress()
    runner = CoreRunner(dut)
    await runner.reset()
    records = []
    total = sum(len(mlp["runs"]) for mlp in job["mlps"])
    for mlp in job["mlps"]:
        trainer = None
        first = len(records)
        for run in mlp["runs"]:
            progress(phase="run", index=len(records), runs=total, name=mlp["name"], algorithm=run["algorithm"],
                     serial=run["serial"], steps=run["steps"])
            if trainer is None:
                trainer = CoreTrainer(_core_config({**mlp["core"], "algorithm": run["algorithm"]}, runner.config))
                wall = time.monotonic()
                await runner.load(trainer, serial=bool(run["serial"]))
                load_seconds = time.monotonic() - wall
            else:
                trainer.config = dataclasses.replace(trainer.config, algorithm=run["algorithm"])
                await runner.host.configure(trainer, 1, serial=bool(run["serial"]))
            batches = trainer.batches()[:run["steps"]]
            result = await runner.run(trainer, batches, timeout_cycles=run.get("timeout_cycles", 10_000_000))
            _, diffs = await runner.check(trainer, masters=False)
            records.append({"name": mlp["name"], "sizes": list(trainer.config.sizes), **run,
                            "cycles": result["cycles"], "counters": result["counters"],
                            "seconds": round(result["seconds"], 3), "trace": result["trace"],
                            "state_equal": not diffs, "differences": diffs[:10]})
        progress(phase="check", name=mlp["name"])
        wall = time.monotonic()
        _, diffs = await runner.check(trainer)
        for record in records[first:]:
            record["masters_equal"] = not diffs
            record["bit_exact"] = record["state_equal"] and not diffs
            record["differences"] += diffs[:10]
            record["load_seconds"] = round(load_seconds, 3)
            record["check_seconds"] = round(time.monotonic() - wall, 3)
    _write_result({"runs": records, "trace_available": runner.trace.available, "started": started,
                   "sim_seconds": round(time.time() - started, 3), "sim_cycles": runner.cycle()})
