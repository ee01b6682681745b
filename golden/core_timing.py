"""Cycle model of the TrainCore's engines: how long each FF, EP and WG operation takes on the core, and the
run's cycles that :func:`golden.pdfa_schedule.simulate` then predicts from them.

:mod:`golden.pdfa_schedule` is the controller, handshake for handshake, for any engine durations; this
module gives those durations from the structure of the engines (``hw/core_engines.py``,
``hw/tile_gemm.py``, ``hw/pe_array.py``), and the input stream's timing, so that
``predict(table, steps, ...)`` is the core's cycle count of a run. Durations do not depend on the data
(no engine skips work on values), so one number per operation holds for every step.

Duration of an operation: from the cycle its command is issued (the job handshake) to the first cycle its
engine offers ``done`` (:func:`golden.pdfa_schedule.simulate`'s ``duration``).

The GEMM (every FF, BP EP and WG)
---------------------------------
``O (m x n) = A (m x k) B (k x n)`` on the ``t x t`` PE array (:class:`hw.tile_gemm.TileGemm`):

* ``ceil(m / t) * ceil(n / t)`` output tiles; each takes ``beats = ceil(k / t) * t / lanes(p)`` beats,
  ``lanes(p)`` operand pairs per PE line (4 at DFXP-8, 1 at DFXP-12/16; :func:`golden.pe_array.lanes`);
* one beat per cycle (both operand fetchers read a tile word one word ahead);
* the array drains a tile ``t`` rows at one per cycle, rows beyond ``m`` included; with its two drain
  buffers only the drain bounds a tile shorter than ``t`` beats, so tiles follow each other every
  ``max(beats, t, ceil((d + t) / 2))`` cycles, ``d = 3 + stages`` the array's drain delay
  (:class:`hw.pe_array.PEArray`; the last term matters only for tiles of 4 with deep PEs);
* the first beat is taken :data:`GEMM_FIRST_BEAT` cycles after the job (engine job register, GEMM command,
  its size registers, the first tile read, the word into the fetch buffer); a tile's first row leaves the
  array :data:`PE_DRAIN_DELAY` cycles after its last beat (operand routing, PE products, accumulators,
  drain buffer), plus one per pipeline stage of the PEs;
* the operation's last kept row (row ``(m - 1) mod t`` of the last tile) then passes the engine's units,
  and ``done`` follows after the engine's tail: :data:`FF_TAIL` (conversion, its record, ``done``),
  :data:`EP_TAIL` (the dReLU-mask lookup first), :data:`WG_TAIL` (conversion, master lookup, weight
  update, the write of the new master, ``done``).

So a hidden FF layer takes ``GEMM_FIRST_BEAT + beats - 1 + PE_DRAIN_DELAY + (tiles - 1) * max(beats, t)
+ (m - 1) mod t + FF_TAIL`` cycles, and likewise BP EP and WG with their tails.

The last FF layer and the output-error unit
-------------------------------------------
The logits leave one sample group at a time (all row tiles of a column group) through the conversion unit
(:data:`CONVERSION_LATENCY`) into the output-error unit (:class:`hw.output_error.OutputErrorUnit`): a
group's first error code :func:`oe_latency` cycles after its last logit, groups at most one per
:func:`oe_group_cycles`, ``classes`` codes per group, then :data:`OE_TAIL` cycles to ``done``.

DFA error propagation
---------------------
Per group of ``t`` samples the EP engine reads the group's output error (``ceil(classes / t)`` tile
words, one per cycle) and runs the DFA engine, one row of ``B e`` per cycle, ``n_out`` rows; the next
group's error is read while the rows run (:data:`DFA_RELOAD` cycles after a command, plus a cycle per
word), so groups follow each other every ``max(n_out, words + DFA_RELOAD)`` cycles. The first row comes
:data:`DFA_FIRST_ROW` cycles after the job plus one per word and one per pipeline stage of the DFA engine;
the rows then take the BP EP's path (mask lookup, conversion): :data:`EP_TAIL`.

The input stream
----------------
A mini-batch is ``batch * (1 + ceil(n_in / 2))`` AXI4-Stream beats (label, then two codes per beat), one
per cycle when the host keeps ``tvalid`` high (the benches queue a run's samples before its start). The
core takes beats from the cycle after ``start`` (``layers + 1`` cycles before the controller's cycle 0: the
layer table goes to the controller one entry per cycle, then its start), into :data:`INPUT_SLOTS` (3)
buffers: mini-batch ``t`` may stream once ``t - 3``'s buffer is free (the cycle after ``WG(0, t - 3)``'s
``done``), and
``FF(0, t)`` is ready the cycle after its last beat. :func:`predict` models this as the FF engine's
``ready``.

The pipelined blocks' depths (``stages``: ``{"pe": n, "output_error": n, "weight_update": n, "dfa_ep": n}``, the
configuration's :meth:`hw.config.Config.stages`, :func:`hw.train_core.core_stages`) add their latencies.

The constants were read from the RTL's structure and checked cycle for cycle against traces of the
generated core (``scripts/bench_train_core.py`` reports the measured and modelled duration of every
operation).
"""

import dataclasses

from .core import RECIP_BITS
from .pdfa_schedule import check_table, program, simulate
from .pe_array import lanes


__all__ = [
    "GEMM_FIRST_BEAT", "PE_DRAIN_DELAY", "FF_TAIL", "EP_TAIL", "WG_TAIL", "CONVERSION_LATENCY", "OE_TAIL",
    "DFA_FIRST_ROW", "DFA_RELOAD", "RECIP_CYCLES", "INPUT_LEAD", "INPUT_SLOTS",
    "oe_latency", "oe_group_cycles", "gemm_rows", "CoreTiming", "predict",
]

#: Cycles from an engine's job handshake to the GEMM's first beat.
GEMM_FIRST_BEAT = 5
#: Cycles from a tile's last beat to its first row on the array's output.
PE_DRAIN_DELAY = 4
#: Cycles from an FF hidden layer's last kept row to ``done``.
FF_TAIL = 5
#: Cycles from an EP operation's last row (BP or DFA) to ``done``.
EP_TAIL = 6
#: Cycles from a WG operation's last kept row to ``done`` (plus the weight-update unit's pipeline stages).
WG_TAIL = 8
#: The conversion unit's latency (:attr:`hw.requant.ConversionUnit.LATENCY`).
CONVERSION_LATENCY = 2
#: Cycles from the output-error unit's last code to the FF engine's ``done``.
OE_TAIL = 3
#: Cycles from a DFA EP job to its first row, besides one per output-error word.
DFA_FIRST_ROW = 5
#: Cycles from a DFA command to the next group's command being ready, besides one per output-error word.
DFA_RELOAD = 3
#: Cycles of one reciprocal of the output-error unit (:data:`hw.output_error.RECIP_CYCLES`): the quotient
#: ``floor(2**RECIP_BITS / S)`` has ``RECIP_BITS - 14`` bits, two per cycle.
RECIP_CYCLES = -(-(RECIP_BITS - 15 + 1) // 2)
#: Cycles by which the input stream starts before the controller's cycle 0, besides one per layer.
INPUT_LEAD = 1
#: Mini-batch buffers of the input (:data:`hw.train_core.INPUT_SLOTS`).
INPUT_SLOTS = 3


def oe_latency(classes, stages=0):
    """Cycles from a group's last logit to its first error code (:attr:`hw.output_error.OutputErrorUnit.latency`)
    of an output-error unit of ``stages`` pipeline stages (two registers each: one in the exponent and the
    divider's loop, one before the output)."""
    return classes + RECIP_CYCLES + 8 + CONVERSION_LATENCY + 2 * stages


def oe_group_cycles(classes):
    """Cycles per group of the output-error unit in steady state (its ``group_cycles``)."""
    return classes + RECIP_CYCLES + 4


def _tiles(n, t):
    return -(-n // t)


def gemm_rows(m, n, k, *, tile, precision, pe_stages=0):
    """Timing of a GEMM on the array: ``(first_row, period, tiles, kept)``: the cycle (from the engine's job)
    at which the first tile's first row leaves the array, the cycles between tiles, the tile count and the
    row of the last tile that is the last kept one. ``pe_stages``: the PEs' pipeline stages."""
    t = tile
    per_word = t // lanes(precision, precision)
    beats = _tiles(k, t) * per_word
    first_row = GEMM_FIRST_BEAT + beats - 1 + PE_DRAIN_DELAY + pe_stages
    return first_row, max(beats, t, -(-(3 + pe_stages + t) // 2)), _tiles(m, t) * _tiles(n, t), (m - 1) % t


def _bits(precision):
    if isinstance(precision, str):
        if not precision.startswith("dfxp"):
            raise ValueError(f"precision must be a DFXP format on the TrainCore, not {precision!r}")
        return int(precision[4:])
    return int(precision)


@dataclasses.dataclass(frozen=True)
class CoreTiming:
    """Engine durations of a TrainCore with ``tile x tile`` arrays for a layer table and mini-batch.

    Parameters
    ----------
    table : list of golden.pdfa_schedule.Layer
        The layers (DFXP precisions; ``feedback`` "bp" or "dfa"); the last layer's ``n_out`` is the class
        count.
    tile : int
        The core's tile (``core.tile``).
    batch : int
        Samples per mini-batch.
    stages : dict
        Pipeline depths of the core's pipelined blocks (``{"pe": n, ...}``, absent = 0).
    """
    table: tuple
    tile: int
    batch: int
    stages: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "table", tuple(check_table(self.table)))
        for name in ("tile", "batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        for layer in self.table:
            p = _bits(layer.precision)
            if lanes(p, p) > self.tile:
                raise ValueError(f"precision {layer.precision} does not run on tiles of {self.tile}")

    @property
    def classes(self):
        return self.table[-1].n_out

    def _gemm(self, m, n, k, precision):
        return gemm_rows(m, n, k, tile=self.tile, precision=_bits(precision), pe_stages=self.stages.get("pe", 0))

    def ff(self, layer):
        """Cycles of ``FF(layer)``."""
        t, entry = self.tile, self.table[layer]
        first, period, tiles, kept = self._gemm(entry.n_out, self.batch, entry.n_in, entry.precision)
        if layer < len(self.table) - 1:
            return first + (tiles - 1) * period + kept + FF_TAIL
        # Logits, one sample group (all row tiles) at a time, into the output-error unit.
        row_tiles, groups = _tiles(entry.n_out, t), _tiles(self.batch, t)
        out = None
        for g in range(groups):
            last_logit = first + ((g + 1) * row_tiles - 1) * period + kept + CONVERSION_LATENCY
            start = last_logit + oe_latency(self.classes, self.stages.get("output_error", 0))
            out = start if out is None else max(start, out + oe_group_cycles(self.classes))
        return out + self.classes - 1 + OE_TAIL

    def ep(self, layer):
        """Cycles of ``EP(layer)`` (BP through ``W_{layer+1}^T`` or DFA, as the table says)."""
        t, entry = self.tile, self.table[layer]
        if entry.feedback == "bp":
            nxt = self.table[layer + 1]
            first, period, tiles, kept = self._gemm(entry.n_out, self.batch, nxt.n_out, nxt.precision)
            return first + (tiles - 1) * period + kept + EP_TAIL
        words = _tiles(self.classes, t)
        groups = _tiles(self.batch, t)
        rows = entry.n_out
        first = DFA_FIRST_ROW + words + self.stages.get("dfa_ep", 0)
        return first + rows + (groups - 1) * max(rows, words + DFA_RELOAD) - 1 + EP_TAIL

    def wg(self, layer):
        """Cycles of ``WG(layer)`` (gradient, conversion, update)."""
        entry = self.table[layer]
        first, period, tiles, kept = self._gemm(entry.n_out, entry.n_in, self.batch, entry.precision)
        return first + (tiles - 1) * period + kept + WG_TAIL + self.stages.get("weight_update", 0)

    def duration(self, engine, layer, sample=0):
        """:func:`golden.pdfa_schedule.simulate`'s ``duration``: cycles of an operation (any sample)."""
        return {"FF": self.ff, "EP": self.ep, "WG": self.wg}[engine](layer)

    def input_beats(self):
        """AXI4-Stream beats of one mini-batch."""
        return self.batch * (1 + _tiles(self.table[0].n_in, 2))


class _InputGate:
    """The FF engine's ``ready`` for :func:`golden.pdfa_schedule.simulate`: ``FF(0, t)`` waits for mini-batch
    ``t``. ``simulate`` asks an engine's ``ready`` for the operation at the head of its program and calls
    ``duration`` once that one issues, so the FF operation asked about is the one after the last FF
    ``duration`` call (checked)."""

    def __init__(self, timing, samples, pipelined, arrivals):
        self.timing, self.arrivals = timing, arrivals
        self.program = program("FF", len(timing.table), samples, pipelined=pipelined)
        self.issued = 0

    def ready(self, engine, cycle):
        if engine != "FF":
            return True
        layer, sample = self.program[self.issued]
        return layer != 0 or cycle >= self.arrivals[sample]

    def duration(self, engine, layer, sample):
        if engine == "FF":
            if (layer, sample) != self.program[self.issued]:
                raise RuntimeError(f"simulate issued FF({layer}, {sample}) out of program order")
            self.issued += 1
        return self.timing.duration(engine, layer, sample)


def _arrivals(timing, samples, free):
    """First cycle ``FF(0, t)`` may issue, for every ``t``, given the cycles at which each mini-batch's
    buffer is free (``free[t]``, None for the first :data:`INPUT_SLOTS`)."""
    beats = timing.input_beats()
    begin = -(len(timing.table) + INPUT_LEAD)
    out, end = [], begin
    for t in range(samples):
        first = end if free[t] is None else max(end, free[t])
        end = first + beats
        out.append(end)
    return out


def predict(table, samples, *, tile, batch, pipelined=False, serial=False, timing=None, stages=None):
    """The controller's schedule of a run of ``samples`` mini-batches on the core
    (:class:`golden.pdfa_schedule.Schedule`): :func:`golden.pdfa_schedule.simulate` with the durations of
    :class:`CoreTiming` (``stages``: its pipeline depths) and the input stream as the FF engine's ``ready``."""
    timing = timing or CoreTiming(table, tile, batch, dict(stages or {}))
    free = [None] * samples
    for _ in range(samples + 1):
        gate = _InputGate(timing, samples, pipelined, _arrivals(timing, samples, free))
        result = simulate(list(timing.table), samples, pipelined=pipelined, serial=serial,
                          duration=gate.duration, ready=gate.ready)
        ends = {(op.engine, op.layer, op.sample): op.end for op in result.ops}
        now = [None] * min(INPUT_SLOTS, samples) + [ends[("WG", 0, t - INPUT_SLOTS)] + 1
                                                    for t in range(INPUT_SLOTS, samples)]
        if now == free:
            return result
        free = now
    raise RuntimeError("the input model did not settle")        # cannot happen: each pass fixes a mini-batch
