"""Cycle-level schedule of the three training engines - forward (FF), error propagation (EP), weight
gradient and update (WG) - for back-propagation and for pipelined DFA (DF-LNPU).

Operations
----------
An MLP has weight layers ``l = 0 .. L-1`` (``sizes[l] -> sizes[l+1]``); a sample (or mini-batch) ``t``
needs, per layer:

* ``FF(l, t)``: ``a_{l+1} = f(W_l a_l)``; ``sizes[l] * sizes[l+1]`` MACs per sample column.
* ``EP(l, t)`` for hidden layers ``l = 0 .. L-2``: the error at layer ``l``'s output. BP:
  ``(W_{l+1}^T d_{l+1}) * mask``, ``sizes[l+1] * sizes[l+2]`` MACs. DFA: ``(B_l e) * mask``,
  ``sizes[l+1] * sizes[L]`` additions (B is +1/-1). The output error ``e`` itself comes with ``FF(L-1, t)``.
* ``WG(l, t)``: ``G_l = d_l a_l^T`` and the update of ``W_l``; ``sizes[l] * sizes[l+1]`` MACs.

Dependencies (an operation may start on the cycle its last dependency ends):

* ``FF(l, t)`` after ``FF(l-1, t)``; and after the weight update it reads: ``WG(l, t-1)`` for BP,
  ``WG(l, t-1-s)`` for PDFA with staleness ``s`` (the forward pass of ``t+1`` overlaps EP and WG of ``t``;
  this is :mod:`golden.training`'s weight-version rule).
* BP: ``EP(l, t)`` after ``EP(l+1, t)`` (or ``FF(L-1, t)`` for the last hidden layer); ``WG(l, t)`` after
  ``EP(l, t)`` (or ``FF(L-1, t)`` for ``l = L-1``) and, for ``l >= 1``, after ``EP(l-1, t)`` - the EP
  that reads ``W_l`` transposed must finish before ``W_l`` is overwritten.
* DFA/PDFA: ``EP(l, t)`` after ``FF(L-1, t)`` (the output error) only; ``WG(l, t)`` after ``EP(l, t)``
  (or ``FF(L-1, t)`` for ``l = L-1``).

Engines run their operations strictly in program order - FF: samples in order, layers ascending; EP:
samples in order, layers descending; WG: samples in order, layers descending - one at a time. An operation
takes ``latency + ceil(work / throughput)`` cycles of its engine. It starts at the later of its engine
becoming free and its dependencies ending.
"""

import dataclasses
import math


__all__ = ["Engine", "Op", "Schedule", "schedule"]


@dataclasses.dataclass(frozen=True)
class Engine:
    """Timing of one engine: ``throughput`` operations (MACs or additions) per cycle, fixed ``latency``."""
    throughput: int
    latency: int = 0

    def __post_init__(self):
        if not isinstance(self.throughput, int) or self.throughput < 1:
            raise ValueError(f"Engine throughput must be a positive integer, not {self.throughput!r}")
        if not isinstance(self.latency, int) or self.latency < 0:
            raise ValueError(f"Engine latency must be a non-negative integer, not {self.latency!r}")

    def cycles(self, work):
        return self.latency + math.ceil(work / self.throughput)


@dataclasses.dataclass(frozen=True)
class Op:
    engine: str        # "FF", "EP" or "WG"
    layer: int
    sample: int
    start: int
    end: int


@dataclasses.dataclass
class Schedule:
    ops: list
    cycles: int
    busy: dict          # engine -> busy cycles

    def utilization(self):
        return {engine: busy / self.cycles for engine, busy in self.busy.items()}

    def order(self, engine):
        """The operations of one engine in issue order, as ``(layer, sample)``."""
        return [(op.layer, op.sample) for op in self.ops if op.engine == engine]


def schedule(sizes, samples, *, algorithm="pdfa", staleness=1, batch=1, ff=Engine(64), ep=Engine(64),
             wg=Engine(64)):
    """Simulate ``samples`` training steps; returns the :class:`Schedule`."""
    sizes = list(sizes)
    if len(sizes) < 2 or any(not isinstance(n, int) or n < 1 for n in sizes):
        raise ValueError(f"Layer sizes must be at least two positive integers, not {sizes!r}")
    if algorithm not in ("bp", "dfa", "pdfa"):
        raise ValueError(f"Algorithm must be one of ['bp', 'dfa', 'pdfa'], not {algorithm!r}")
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"Sample count must be a positive integer, not {samples!r}")
    s = staleness if algorithm == "pdfa" else 0
    layers = len(sizes) - 1
    engines = {"FF": ff, "EP": ep, "WG": wg}
    end = {}
    free = {"FF": 0, "EP": 0, "WG": 0}
    busy = {"FF": 0, "EP": 0, "WG": 0}
    ops = []

    def run(engine, layer, sample, work, deps):
        start = max([free[engine]] + [end[d] for d in deps if d in end])
        finish = start + engines[engine].cycles(work)
        free[engine] = finish
        busy[engine] += finish - start
        end[(engine, layer, sample)] = finish
        ops.append(Op(engine, layer, sample, start, finish))

    # Operations are simulated in an order that respects every dependency and every engine's program order:
    # sample by sample, FF then EP then WG (an engine's next operation never depends on a later one).
    for t in range(samples):
        for l in range(layers):
            deps = [("FF", l - 1, t), ("WG", l, t - 1 - s)]
            run("FF", l, t, sizes[l] * sizes[l + 1] * batch, deps)
        out = ("FF", layers - 1, t)
        for l in range(layers - 2, -1, -1):
            if algorithm == "bp":
                deps = [("EP", l + 1, t) if l + 1 < layers - 1 else out]
                work = sizes[l + 1] * sizes[l + 2] * batch
            else:
                deps = [out]
                work = sizes[l + 1] * sizes[-1] * batch
            run("EP", l, t, work, deps)
        for l in range(layers - 1, -1, -1):
            deps = [("EP", l, t) if l < layers - 1 else out]
            if algorithm == "bp" and l >= 1:
                deps.append(("EP", l - 1, t))
            run("WG", l, t, sizes[l] * sizes[l + 1] * batch, deps)
    ops.sort(key=lambda op: (op.start, op.engine))
    cycles = max(op.end for op in ops)
    return Schedule(ops, cycles, busy)
