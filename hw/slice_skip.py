"""Slice-skipping PE: a bit-scalable dot-product PE whose 4-bit slice multipliers take only the slices an
operand needs (no zero low slices, no sign-extension top slices), so small and zero values cost fewer
multiplier slots and more pairs fit a cycle. The schedule is :func:`golden.sparsity.slice_skip_groups`."""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.dfxp import PRECISIONS

from .muxes import select


__all__ = ["STAGE_DELAYS_NS", "input_layout", "SliceSkipPE"]

#: Estimated critical path (ns, sky130_fd_sc_hd typical with flip-flop overhead, default configuration) at
#: each ``stages`` depth, shallowest first (:mod:`hw.pipeline`).
STAGE_DELAYS_NS = (14.62,)


def input_layout(pairs, bits):
    """One beat: ``pairs`` operand pairs; ``last`` ends the dot product."""
    return data.StructLayout({"a": data.ArrayLayout(signed(bits), pairs), "b": data.ArrayLayout(signed(bits), pairs),
                              "last": unsigned(1)})


def _window(m, code, bits, name):
    """``(low, count)`` of the slices ``code`` needs (see :func:`golden.sparsity.slice_window`)."""
    total = bits // 4
    top = Const(1, 3)
    for k in range(1, total):
        top = Mux((code < -(1 << (4 * k - 1))) | (code >= (1 << (4 * k - 1))), k + 1, top)
    pattern = code.as_unsigned()
    low = Const(0, 2)
    for k in reversed(range(total)):
        low = Mux(pattern[4 * k:4 * k + 4] != 0, k, low)
    low_s, count_s = Signal(2, name=f"{name}_low"), Signal(3, name=f"{name}_count")
    m.d.comb += [low_s.eq(low), count_s.eq(Mux(code == 0, 0, top - low))]
    return low_s, count_s


class SliceSkipPE(wiring.Component):
    """Dot products of ``bits``-bit signed operands on ``slots`` 4-bit slice multipliers, skipping slices.

    Each beat on ``i`` carries ``pairs`` pairs. Every cycle the PE takes the next pairs of the current beat
    whose slice products ``needed(a) * needed(b)`` fit ``slots`` together; each needed slice product goes to
    one multiplier (5 x 5-bit signed: the top slice of an operand is signed, the others unsigned) and is
    shifted by 4 times the sum of its slice positions. A zero operand takes no slot. A beat takes at least
    one cycle; a dense 16-bit operand pair takes all 16 slots, as in the 16 x 16 mode of
    :class:`hw.pe.BitScalablePE`. After the beat with ``last``, the dot product goes out on ``o`` and the
    accumulator restarts.

    Parameters
    ----------
    bits : int
        Operand width, one of 4, 8, 12, 16.
    pairs : int
        Pairs per input beat (the lookahead).
    slots : int
        Slice multipliers, at least ``(bits / 4) ** 2`` (one dense pair).
    acc_width : int
        Accumulator width (wraps modulo ``2**acc_width``).
    """

    def __init__(self, *, bits=16, pairs=8, slots=16, acc_width=48):
        for name, value in (("Operand width", bits), ("Pair count", pairs), ("Slot count", slots),
                            ("Accumulator width", acc_width)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
        if bits not in PRECISIONS:
            raise ValueError(f"Operand width must be one of {', '.join(map(str, PRECISIONS))}, not {bits}")
        if pairs < 1:
            raise ValueError(f"Pair count must be at least 1, not {pairs}")
        if slots < (bits // 4) ** 2:
            raise ValueError(f"Slot count must be at least {(bits // 4) ** 2} for {bits}-bit operands, not {slots}")
        if acc_width < 2 * bits:
            raise ValueError(f"Accumulator width must be at least {2 * bits}, not {acc_width}")
        self._bits, self._pairs, self._slots, self._acc_width = bits, pairs, slots, acc_width
        super().__init__({
            "i": In(stream.Signature(input_layout(pairs, bits))),
            "o": Out(stream.Signature(signed(acc_width))),
        })

    def elaborate(self, platform):
        m = Module()
        bits, n, slots = self._bits, self._pairs, self._slots
        beat = Signal(input_layout(n, bits))
        full = Signal()                            # `beat` holds pairs still to take
        pos = Signal(range(n + 1))                 # first pair not taken yet
        acc = Signal(signed(self._acc_width))
        out_full = Signal()

        # Slice windows and costs of the beat's pairs; cost prefix sums over the beat.
        wa = [_window(m, beat.a[p], bits, f"a{p}") for p in range(n)]
        wb = [_window(m, beat.b[p], bits, f"b{p}") for p in range(n)]
        cost = [Signal(5, name=f"cost{p}") for p in range(n)]
        prefix = [Signal(range(16 * n + 1), name=f"prefix{p}") for p in range(n + 1)]
        for p in range(n):
            m.d.comb += [cost[p].eq(wa[p][1] * wb[p][1]), prefix[p + 1].eq(prefix[p] + cost[p])]

        # This cycle takes pairs pos .. stop-1: those whose cost, from pos on, fits the slots (at least one).
        start = Signal.like(prefix[n])
        m.d.comb += start.eq(select(prefix, pos))
        taken = [Signal(name=f"taken{p}") for p in range(n)]
        stop = Signal(range(n + 1))
        stop_value = Const(n, len(stop))
        for p in reversed(range(n)):
            fits = prefix[p + 1] - start <= slots
            m.d.comb += taken[p].eq((p >= pos) & (fits | (p == pos)))
            stop_value = Mux((p > pos) & ~fits, p, stop_value)
        m.d.comb += stop.eq(stop_value)

        # Slot s holds slice product number start + s: of pair p when prefix[p] <= start + s < prefix[p+1].
        terms = []
        for s in range(slots):
            g = start + s
            product = Const(0, signed(10))
            shift = Const(0, 3)
            for p in range(n):
                mine = taken[p] & (prefix[p] <= g) & (g < prefix[p + 1])
                local = Signal(4, name=f"local{s}_{p}")
                m.d.comb += local.eq(g - prefix[p])
                (la, ka), (lb, kb) = wa[p], wb[p]
                i = Signal(2, name=f"i{s}_{p}")
                j = Signal(2, name=f"j{s}_{p}")
                # local = i * kb + j with j < kb (kb in 1..4).
                m.d.comb += [i.eq(Mux(kb == 1, local, Mux(kb == 2, local >> 1, Mux(kb == 4, local >> 2,
                                                                                 _div3(local))))),
                             j.eq(local - i * kb)]
                sa = _slice(beat.a[p], la + i, (la + i) == (la + ka - 1))
                sb = _slice(beat.b[p], lb + j, (lb + j) == (lb + kb - 1))
                product = Mux(mine, sa * sb, product)
                shift = Mux(mine, la + i + lb + j, shift)
            term = Signal(signed(10 + 24), name=f"term{s}")
            m.d.comb += term.eq(product << (shift * 4))
            terms.append(term)
        total = Signal(signed(self._acc_width), name="cycle_sum")
        m.d.comb += total.eq(_tree(terms))

        step = full & (~out_full | self.o.ready)      # a result waiting is taken this cycle
        last_step = step & (stop == n)
        m.d.comb += self.i.ready.eq(~full | last_step)
        with m.If(step):
            m.d.sync += [acc.eq(acc + total), pos.eq(stop)]
            with m.If(stop == n):
                m.d.sync += full.eq(0)
                with m.If(beat.last):
                    m.d.sync += [out_full.eq(1), acc.eq(0), self.o.payload.eq(acc + total)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [beat.eq(self.i.payload), full.eq(1), pos.eq(0)]
        m.d.comb += self.o.valid.eq(out_full)
        with m.If(self.o.valid & self.o.ready & ~(last_step & beat.last)):
            m.d.sync += out_full.eq(0)
        return m


def _div3(value):
    """``value // 3`` for a 4-bit value (at most 15 // 3 = 5, but only 0..3 occur: local < 3 * 4)."""
    result = Const(0, 3)
    for k in (1, 2, 3):
        result = Mux(value >= 3 * k, k, result)
    return result


def _slice(code, index, top):
    """Slice ``index`` of ``code`` as a 5-bit signed value: signed when it is the top needed slice."""
    nibble = code.as_unsigned().word_select(index, 4)
    return Mux(top, nibble.as_signed(), nibble)


def _tree(terms):
    while len(terms) > 1:
        terms = [terms[k] + terms[k + 1] if k + 1 < len(terms) else terms[k] for k in range(0, len(terms), 2)]
    return terms[0]
