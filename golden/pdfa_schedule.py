"""Cycle-level schedule of the three training engines - forward (FF), error propagation (EP), weight
gradient and update (WG) - for back-propagation and for pipelined DFA (DF-LNPU), as the controller
(:mod:`hw.pdfa`) issues them, handshake for handshake.

Layer table
-----------
An MLP is a table of weight layers ``l = 0 .. L-1`` (:class:`Layer`): ``n_in -> n_out`` (chained: ``n_out``
of a layer is ``n_in`` of the next), the precision of its operands, how the error reaches its output
(``feedback``: ``"bp"`` through ``W_{l+1}^T``, or ``"dfa"`` through the fixed binary ``B_l``) and the
learning-rate shift of its update. A run trains ``samples`` mini-batches, either *sequentially* or
*pipelined* (staleness 1: the forward pass of ``t + 1`` overlaps EP and WG of ``t``).

Operations
----------
* ``FF(l, t)``: ``a_{l+1} = f(W_l a_l)``.
* ``EP(l, t)`` for hidden layers ``l = 0 .. L-2``: the error at layer ``l``'s output. BP:
  ``(W_{l+1}^T d_{l+1}) * mask``; DFA: ``(B_l e) * mask``. The output error ``e`` comes with ``FF(L-1, t)``.
* ``WG(l, t)``: ``G_l = d_l a_l^T`` and the update of ``W_l``.

Each operation names the matrix it streams, ``rows x cols`` (:func:`op_matrix`): ``W_l`` (``n_out x n_in``)
for FF and WG, ``W_{l+1}^T`` for a BP EP, ``B_l`` (``n_out x classes``) for a DFA EP.

Dependencies
------------
Weight versions follow :mod:`golden.training`: the forward pass of mini-batch ``t`` reads ``v_{t-s}``
(``s`` = 1 when pipelined, else 0), where ``v_{t+1}`` is ``v_t`` after ``WG(., t)``. A WG operation
computes its gradient and then *commits* the update of ``W_l`` on its ``done`` handshake, which the
controller accepts only once every reader of the old version is done. Hence:

* ``FF(l, t)`` starts after ``FF(l-1, t)`` and after ``WG(l, t-1-s)`` (read after write); when pipelined
  also after ``WG(l+1, t-2)``, the last reader of the activation buffer it overwrites (two buffers per
  layer, by sample parity);
* ``EP(l, t)`` starts after ``FF(L-1, t)``; a BP EP also after ``EP(l+1, t)``;
* ``WG(l, t)`` starts after ``EP(l, t)`` (``FF(L-1, t)`` for ``l = L-1``) and, in *serial* mode, after every
  EP of sample ``t`` (the stage-sequential BP: FF, then EP, then WG); it commits after ``EP(l-1, t)`` when
  that EP is BP (it reads ``W_l``) and, when pipelined, after ``FF(l, t+1)`` (it reads ``v_t``): write after
  read.

Pipelining is defined for DFA only: a BP EP under staleness would read a weight version the training
model does not define, so a pipelined table with a BP layer is an error (:func:`check_table`).

Engines and handshake
---------------------
Each engine runs its operations in program order, one at a time - FF: samples in order, layers
ascending; EP and WG: samples in order, layers descending (BP needs it), or ascending when pipelined (so
that ``WG(l, t)`` commits right after ``FF(l, t+1)``, layer by layer). Cycle 0 is the
first cycle after the start command. An operation is *offered* (command ``valid``) from the first cycle
``c`` at which its engine is free (the cycle after its previous operation's ``done``) and every dependency's
``done`` lies before ``c``; it is *issued* on the first offered cycle its engine is ``ready``; the engine
offers ``done`` ``duration`` (>= 1) cycles after the issue, and the controller takes it on the first cycle
its commit dependencies are done before (FF and EP ``done`` are taken at once). The run ends the cycle after the last
``done``: ``cycles`` is that cycle's number. Per engine and cycle of the run, exactly one counter counts:
``busy`` from the issue cycle to the ``done`` cycle (a WG waiting to commit is busy), ``stall`` while
offered and not ready, ``idle`` otherwise.
"""

import dataclasses
import enum
import math


__all__ = [
    "PRECISIONS", "ENGINES", "Error", "Feedback", "Layer", "TableError", "Engine", "Op", "Schedule",
    "mlp", "check_table", "encode", "encode_table", "hardware_error", "program", "dependencies", "op_matrix",
    "engine_durations", "simulate", "schedule",
]

#: Operand formats of a layer, in the order of their 3-bit hardware codes.
PRECISIONS = ("dfxp4", "dfxp8", "dfxp12", "dfxp16", "sefp8")
#: Quarter-cycles per MAC of a PE-array engine at each precision, relative to 8 x 8 bits (the bit-scalable
#: array runs 4x as many 4-bit and 1/4 as many 12/16-bit products).
_QUARTERS = {"dfxp4": 1, "dfxp8": 4, "dfxp12": 16, "dfxp16": 16, "sefp8": 4}
ENGINES = ("FF", "EP", "WG")


class Error(enum.IntEnum):
    """The controller's ``status.error``: why it refused a run (checked in this order), or ``NONE``."""
    NONE = 0
    EMPTY_TABLE = 1         # no layer written
    TOO_MANY_LAYERS = 2     # more entries than the controller holds before the one marked last
    ZERO_SIZE = 3           # a layer with n_in or n_out = 0
    SIZE_MISMATCH = 4       # n_out of layer l differs from n_in of layer l+1
    BAD_PRECISION = 5       # a precision code the controller was not built for
    PIPELINED_BP = 6        # a pipelined run with BP feedback on a hidden layer


class Feedback(enum.IntEnum):
    DFA = 0
    BP = 1


class TableError(ValueError):
    """A layer table the controller cannot run."""


@dataclasses.dataclass(frozen=True)
class Layer:
    n_in: int
    n_out: int
    precision: str = "dfxp8"
    feedback: str = "dfa"
    lr_shift: int = 0


def mlp(sizes, *, precision="dfxp8", feedback="dfa", lr_shift=0):
    """The table of a plain MLP ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``."""
    return [Layer(a, b, precision, feedback, lr_shift) for a, b in zip(sizes, sizes[1:])]


def check_table(table, *, max_layers=None, precisions=PRECISIONS, pipelined=False, size_limit=None,
                lr_shift_limit=None):
    """Raise :class:`TableError` with one line naming the first problem of ``table``."""
    table = list(table)
    if not table:
        raise TableError("layer table must have at least one layer, not 0")
    if max_layers is not None and len(table) > max_layers:
        raise TableError(f"layer table has {len(table)} layers; the controller was built for at most "
                         f"{max_layers}")
    for l, layer in enumerate(table):
        if not isinstance(layer, Layer):
            raise TableError(f"layer {l} must be a Layer, not {layer!r}")
        for name in ("n_in", "n_out"):
            value = getattr(layer, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TableError(f"layer {l} {name} must be a positive integer, not {value!r}")
            if size_limit is not None and value > size_limit:
                raise TableError(f"layer {l} {name} must be at most {size_limit}, not {value}")
        if layer.precision not in precisions:
            raise TableError(f"layer {l} precision must be one of {list(precisions)}, not {layer.precision!r}")
        if layer.feedback not in ("bp", "dfa"):
            raise TableError(f"layer {l} feedback must be 'bp' or 'dfa', not {layer.feedback!r}")
        shift_max = 15 if lr_shift_limit is None else lr_shift_limit
        if not isinstance(layer.lr_shift, int) or not 0 <= layer.lr_shift <= shift_max:
            raise TableError(f"layer {l} lr_shift must be an integer in [0, {shift_max}], not {layer.lr_shift!r}")
        if l and table[l - 1].n_out != layer.n_in:
            raise TableError(f"layer {l} n_in must equal layer {l - 1} n_out ({table[l - 1].n_out}), "
                             f"not {layer.n_in}")
    if pipelined:
        bp = [l for l, layer in enumerate(table[:-1]) if layer.feedback == "bp"]
        if bp:
            raise TableError(f"a pipelined run needs DFA feedback on every hidden layer; layer {bp[0]} is BP")
    return table


def encode(layer, *, last=False):
    """The controller's table entry of ``layer`` (field values of :func:`hw.pdfa.entry_layout`)."""
    return {"n_in": layer.n_in, "n_out": layer.n_out, "precision": PRECISIONS.index(layer.precision),
            "feedback": int(Feedback.BP if layer.feedback == "bp" else Feedback.DFA),
            "lr_shift": layer.lr_shift, "last": int(last)}


def encode_table(table):
    """The controller's table entries of ``table``, ``last`` on the final one."""
    return [encode(layer, last=i == len(table) - 1) for i, layer in enumerate(table)]


def hardware_error(entries, *, max_layers, precisions=PRECISIONS, pipelined=False):
    """The :class:`Error` the controller reports for a table written as ``entries`` (raw entry dicts as
    :func:`encode` makes, any values; only the first ``max_layers`` are stored)."""
    codes = {PRECISIONS.index(p) for p in precisions}
    stored = entries[:max_layers]
    hidden = stored[:-1]
    if not entries:
        return Error.EMPTY_TABLE
    if len(entries) > max_layers:
        return Error.TOO_MANY_LAYERS
    if any(e["n_in"] == 0 or e["n_out"] == 0 for e in stored):
        return Error.ZERO_SIZE
    if any(a["n_out"] != b["n_in"] for a, b in zip(stored, stored[1:])):
        return Error.SIZE_MISMATCH
    if any(e["precision"] not in codes for e in stored):
        return Error.BAD_PRECISION
    if pipelined and any(e["feedback"] == Feedback.BP for e in hidden):
        return Error.PIPELINED_BP
    return Error.NONE


@dataclasses.dataclass(frozen=True)
class Engine:
    """Timing of one engine: ``throughput`` MACs (8 x 8 bits) or additions per cycle, fixed ``latency``.

    An operation on an ``rows x cols`` matrix for ``batch`` columns takes
    ``latency + ceil(rows * cols * batch * q / (4 * throughput))`` cycles, where ``q`` is the precision's
    quarter-cycles per MAC (1 for DFXP-4, 4 for DFXP-8 and SE-FP8, 16 for DFXP-12/16), and ``q = 4`` for the
    additions of a DFA EP. At least one cycle.
    """
    throughput: int
    latency: int = 0

    def __post_init__(self):
        if not isinstance(self.throughput, int) or self.throughput < 1:
            raise ValueError(f"Engine throughput must be a positive integer, not {self.throughput!r}")
        if not isinstance(self.latency, int) or self.latency < 0:
            raise ValueError(f"Engine latency must be a non-negative integer, not {self.latency!r}")

    def cycles(self, work, precision="dfxp8"):
        return max(1, self.latency + math.ceil(work * _QUARTERS[precision] / (4 * self.throughput)))


@dataclasses.dataclass(frozen=True)
class Op:
    engine: str        # "FF", "EP" or "WG"
    layer: int
    sample: int
    start: int         # issue cycle
    end: int           # done cycle


@dataclasses.dataclass
class Schedule:
    ops: list
    cycles: int
    busy: dict          # engine -> busy cycles
    stall: dict         # engine -> cycles offered but not taken
    idle: dict          # engine -> the other cycles

    def utilization(self):
        return {engine: (busy / self.cycles if self.cycles else 0.0) for engine, busy in self.busy.items()}

    def order(self, engine):
        """The operations of one engine in issue order, as ``(layer, sample)``."""
        return [(op.layer, op.sample) for op in sorted(self.ops, key=lambda op: op.start)
                if op.engine == engine]


def program(engine, layers, samples, *, pipelined=False):
    """An engine's operations in program order, as ``(layer, sample)``."""
    if engine == "FF":
        return [(l, t) for t in range(samples) for l in range(layers)]
    top = layers - 1 if engine == "WG" else layers - 2
    order = range(top + 1) if pipelined else range(top, -1, -1)
    return [(l, t) for t in range(samples) for l in order]


def dependencies(table, samples, engine, layer, sample, *, pipelined=False, serial=False):
    """``(start, commit)``: the operations ``(engine, layer, sample)`` whose ``done`` an operation's issue
    and its ``done`` wait for (see the module docstring); operations outside the run are left out."""
    layers = len(table)
    l, t = layer, sample
    out = ("FF", layers - 1, t)
    start, commit = [], []
    if engine == "FF":
        start = [("FF", l - 1, t), ("WG", l, t - 1 - int(pipelined))]
        if pipelined and l + 1 < layers:
            start.append(("WG", l + 1, t - 2))
    elif engine == "EP":
        start = [out] + ([("EP", l + 1, t)] if table[l].feedback == "bp" and l + 1 < layers - 1 else [])
    else:
        start = [("EP", l, t) if l < layers - 1 else out]
        if serial and layers >= 2:
            start.append(("EP", 0 if not pipelined else layers - 2, t))
        if l >= 1 and table[l - 1].feedback == "bp":
            commit.append(("EP", l - 1, t))
        if pipelined:
            commit.append(("FF", l, t + 1))

    def keep(deps):
        return [d for d in deps if d[1] >= 0 and 0 <= d[2] < samples]
    return keep(start), keep(commit)


def op_matrix(table, engine, layer):
    """``(rows, cols, precision)`` of the matrix an operation streams; the EP precision is layer ``l``'s."""
    entry = table[layer]
    if engine != "EP":
        return entry.n_out, entry.n_in, entry.precision
    if entry.feedback == "bp":
        return entry.n_out, table[layer + 1].n_out, entry.precision
    return entry.n_out, table[-1].n_out, entry.precision


def engine_durations(table, engines, batch=1):
    """``duration(engine, layer, sample)`` of every operation of ``table`` on ``engines`` (:class:`Engine` by name)."""
    def duration(engine, layer, sample):
        rows, cols, precision = op_matrix(table, engine, layer)
        if engine == "EP" and table[layer].feedback == "dfa":
            precision = "dfxp8"              # additions: one per cycle per unit of throughput
        return engines[engine].cycles(rows * cols * batch, precision)
    return duration


def simulate(table, samples, *, pipelined=False, serial=False, engines=None, batch=1, duration=None,
             ready=None):
    """Run the controller's schedule of ``samples`` training steps of ``table``; returns a :class:`Schedule`.

    ``engines`` maps "FF"/"EP"/"WG" to :class:`Engine` (64 MACs per cycle, no latency, by default);
    ``duration(engine, layer, sample)`` overrides their timing; ``ready(engine, cycle)`` is the engine's
    command ``ready`` (always, by default).
    """
    table = check_table(table, pipelined=pipelined)
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 0:
        raise ValueError(f"Sample count must be a non-negative integer, not {samples!r}")
    engines = {name: Engine(64) for name in ENGINES} | dict(engines or {})
    duration = duration or engine_durations(table, engines, batch)
    ready = ready or (lambda engine, cycle: True)
    layers = len(table)
    queues = {name: program(name, layers, samples, pipelined=pipelined) for name in ENGINES}
    position = dict.fromkeys(ENGINES, 0)
    free = dict.fromkeys(ENGINES, 0)
    busy, stall = dict.fromkeys(ENGINES, 0), dict.fromkeys(ENGINES, 0)
    end, ops = {}, []
    while any(position[e] < len(queues[e]) for e in ENGINES):
        progressed = False
        for name in ENGINES:
            while position[name] < len(queues[name]):
                layer, sample = queues[name][position[name]]
                start, commit = dependencies(table, samples, name, layer, sample, pipelined=pipelined,
                                             serial=serial)
                if any(d not in end for d in start + commit):
                    break
                offered = max([free[name]] + [end[d] + 1 for d in start])
                issue = offered
                while not ready(name, issue):
                    issue += 1
                length = duration(name, layer, sample)
                if not isinstance(length, int) or length < 1:
                    raise ValueError(f"duration of {name}({layer}, {sample}) must be at least 1 cycle, "
                                     f"not {length!r}")
                done = max([issue + length] + [end[d] + 1 for d in commit])
                stall[name] += issue - offered
                busy[name] += done - issue + 1
                end[(name, layer, sample)] = done
                free[name] = done + 1
                ops.append(Op(name, layer, sample, issue, done))
                position[name] += 1
                progressed = True
        if not progressed:
            raise RuntimeError("the dependency rules deadlock")       # a bug in the rules, never the input
    cycles = max((op.end for op in ops), default=-1) + 1
    idle = {name: cycles - busy[name] - stall[name] for name in ENGINES}
    ops.sort(key=lambda op: (op.start, ENGINES.index(op.engine)))
    return Schedule(ops, cycles, busy, stall, idle)


def schedule(sizes, samples, *, algorithm="pdfa", batch=1, ff=Engine(64), ep=Engine(64), wg=Engine(64),
             serial=False, precision="dfxp8"):
    """:func:`simulate` for a plain MLP: ``algorithm`` "bp" (every layer BP, sequential), "dfa" (every layer
    DFA, sequential) or "pdfa" (DFA, pipelined)."""
    sizes = list(sizes)
    if len(sizes) < 2 or any(not isinstance(n, int) or n < 1 for n in sizes):
        raise ValueError(f"Layer sizes must be at least two positive integers, not {sizes!r}")
    if algorithm not in ("bp", "dfa", "pdfa"):
        raise ValueError(f"Algorithm must be one of ['bp', 'dfa', 'pdfa'], not {algorithm!r}")
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"Sample count must be a positive integer, not {samples!r}")
    table = mlp(sizes, precision=precision, feedback="bp" if algorithm == "bp" else "dfa")
    return simulate(table, samples, pipelined=algorithm == "pdfa", serial=serial, batch=batch,
                    engines={"FF": ff, "EP": ep, "WG": wg})
