"""The LFSR of stochastic rounding as logic: step and jump expressions, and a bank of per-lane generators.

The generator is :class:`golden.dfxp.Lfsr` (32-bit right-shifting Galois LFSR, taps
:attr:`golden.dfxp.Lfsr.TAPS`; a draw is 16 steps and takes the low 16 bits of the state after them). The
state is linear over GF(2), so any number of steps is one XOR network: :func:`advance` builds it from the
jump matrix, each next-state bit the XOR of a few state bits, with no chain of single steps.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.dfxp import Lfsr


__all__ = ["TAPS", "STATE_BITS", "DRAW_BITS", "STEPS_PER_DRAW", "step", "advance", "jump_matrix",
           "seed_layout", "LfsrBank"]

#: Galois mask (x^32 + x^22 + x^2 + x + 1), from the golden model.
TAPS = Lfsr.TAPS
#: Bits of a generator's state.
STATE_BITS = 32
#: Bits of one draw.
DRAW_BITS = 16
#: LFSR steps per draw.
STEPS_PER_DRAW = Lfsr.STEPS_PER_DRAW


def step(state):
    """One right-shifting Galois step of a 32-bit ``state`` value: ``(s >> 1) ^ (TAPS if s & 1 else 0)``."""
    return (state >> 1) ^ Mux(state[0], Const(TAPS, STATE_BITS), Const(0, STATE_BITS))


def jump_matrix(steps):
    """The GF(2) matrix of ``steps`` steps as 32 row masks: bit ``j`` of row ``i`` is set when state bit
    ``j`` enters next-state bit ``i``."""
    if not isinstance(steps, int) or isinstance(steps, bool):
        raise TypeError(f"Step count must be an integer, not {steps!r}")
    if steps < 0:
        raise ValueError(f"Step count must be non-negative, not {steps!r}")
    columns = []
    for j in range(STATE_BITS):
        s = 1 << j
        for _ in range(steps):
            s = Lfsr.step(s)
        columns.append(s)
    return [sum(1 << j for j in range(STATE_BITS) if columns[j] >> i & 1) for i in range(STATE_BITS)]


def advance(state, steps):
    """The state ``steps`` steps after the 32-bit ``state`` value, as one XOR network (one XOR per
    next-state bit: the parity of the state bits its row of :func:`jump_matrix` selects)."""
    state = state[:STATE_BITS]
    return Cat(*((state & Const(row, STATE_BITS)).xor() for row in jump_matrix(steps)))


def seed_layout(lanes):
    """One seed load: the lane and its new state."""
    return data.StructLayout({
        "lane": unsigned(max(1, (lanes - 1).bit_length())),
        "state": unsigned(STATE_BITS),
    })


class LfsrBank(wiring.Component):
    """``lanes`` independent :class:`golden.dfxp.Lfsr` generators, each giving up to ``draws`` draws per
    cycle.

    ``draw[j][d]`` is draw ``d`` of lane ``j`` from its current state: the low 16 bits of the state
    ``16 * (d + 1)`` steps ahead. The lane's state moves past the first ``take[j]`` of them at the clock edge
    (``take[j]`` in ``0 .. draws``); so a unit that takes ``n`` draws of a lane in a cycle sees exactly the
    next ``n`` numbers :meth:`golden.dfxp.Lfsr.draw` gives. Both are XOR networks of the current state, no
    stepping chain: one cycle whatever ``draws``.

    A transfer on ``seed`` replaces one lane's state (a lane index of ``lanes`` or more loads nothing); it is
    taken only while ``busy`` is low, so the unit that owns the bank raises ``busy`` for as long as it draws
    for a job, and a seed lands between jobs. A loaded state of 0 stays 0 (the golden model refuses it). At
    reset every lane holds :class:`golden.dfxp.Lfsr`'s default seed unless ``init`` says otherwise.

    Parameters
    ----------
    lanes : int
        Number of generators, 1 to 64.
    draws : int
        Most draws a lane takes in one cycle, 1 or 2.
    init : sequence of int, optional
        Reset state of each lane (non-zero 32-bit values).

    Members
    -------
    seed : In(stream.Signature(seed_layout(lanes)))
    busy : In(1)
        Holds off ``seed``.
    take : In(data.ArrayLayout(unsigned(ceil(log2(draws + 1))), lanes))
        Draws each lane takes this cycle.
    draw : Out(data.ArrayLayout(data.ArrayLayout(unsigned(16), draws), lanes))
    state : Out(data.ArrayLayout(unsigned(32), lanes))
        The current states.
    """

    def __init__(self, *, lanes, draws=1, init=None):
        for name, value in (("Lane count", lanes), ("Draw count", draws)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
        if not 1 <= lanes <= 64:
            raise ValueError(f"Lane count must be an integer in 1..64, not {lanes!r}")
        if draws not in (1, 2):
            raise ValueError(f"Draw count must be 1 or 2, not {draws!r}")
        if init is None:
            init = (Lfsr().state,) * lanes
        init = tuple(init)
        if len(init) != lanes or any(not isinstance(v, int) or isinstance(v, bool) or not 0 < v < 1 << 32
                                     for v in init):
            raise ValueError(f"Initial states must be {lanes} non-zero 32-bit integers, not {init!r}")
        self._lanes, self._draws, self._init = lanes, draws, init
        super().__init__({
            "seed": In(stream.Signature(seed_layout(lanes))),
            "busy": In(1),
            "take": In(data.ArrayLayout(unsigned(draws.bit_length()), lanes)),
            "draw": Out(data.ArrayLayout(data.ArrayLayout(unsigned(DRAW_BITS), draws), lanes)),
            "state": Out(data.ArrayLayout(unsigned(STATE_BITS), lanes)),
        })

    lanes = property(lambda self: self._lanes)
    draws = property(lambda self: self._draws)
    init = property(lambda self: self._init)

    def elaborate(self, platform):
        m = Module()
        states = Signal(data.ArrayLayout(unsigned(STATE_BITS), self._lanes), init=list(self._init))
        m.d.comb += [self.state.eq(states), self.seed.ready.eq(~self.busy)]
        load = self.seed.valid & self.seed.ready
        for j in range(self._lanes):
            ahead = [states[j]]
            for d in range(self._draws):
                # In a signal: each network is used twice (the draw and the next state).
                net = Signal(STATE_BITS, name=f"ahead{j}_{d + 1}")
                m.d.comb += net.eq(advance(states[j], STEPS_PER_DRAW * (d + 1)))
                ahead.append(net)
            for d in range(self._draws):
                m.d.comb += self.draw[j][d].eq(ahead[d + 1][:DRAW_BITS])
            nxt = ahead[0]
            for d in range(1, self._draws + 1):
                nxt = Mux(self.take[j] == d, ahead[d], nxt)
            m.d.sync += states[j].eq(Mux(load & (self.seed.payload.lane == j), self.seed.payload.state, nxt))
        return m
