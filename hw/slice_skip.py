"""Slice-skipping PE: a bit-scalable dot-product PE whose 4-bit slice multipliers take only the slices an
operand needs (no zero low slices, no sign-extension top slices), so small and zero values cost fewer
multiplier slots and more pairs fit a cycle. The schedule is :func:`golden.sparsity.slice_skip_groups`."""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.dfxp import PRECISIONS

from .muxes import any_of, balanced_sum, select
from .pipeline import check_stages


__all__ = ["STAGE_DELAYS_NS", "input_layout", "SliceSkipPE"]

#: Estimated critical path (ns, sky130_fd_sc_hd typical with flip-flop overhead, default configuration) at
#: each ``stages`` depth, shallowest first (:mod:`hw.pipeline`), as
#: ``python -m hw.build --target synth --block slice_skip --set pipeline.slice_skip=D`` reports it (depth 0: the
#: design before pipelining, as measured then).
STAGE_DELAYS_NS = (14.62, 5.69, 5.01, 4.99)

# The register cuts at each depth, in the order the data passes them: after the selection of each slot's
# two slices ("operands"), after the slice products ("products"), after their adder tree ("tree").
_CUTS = {1: ("operands",), 2: ("operands", "products"), 3: ("operands", "products", "tree")}


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

    Throughput and latency: a beat is taken the cycle the one before takes its last pairs (the schedule of
    :func:`golden.sparsity.slice_skip_groups`, the same at every depth). The dot product is offered on ``o``
    the cycle after its last pairs are taken at ``stages=0``, +1 per stage (register stages between the
    slice selection and the accumulator). Back-pressure: while a result waits on ``o`` the whole PE stands
    still (a new beat can still be taken when none is held).

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
    stages : int
        Register stages, 0 to ``len(STAGE_DELAYS_NS) - 1``: 1 after the selection of each multiplier's two
        slices, 2 also after the slice products, 3 also after their adder tree (the accumulator then adds
        one register). From 1 on, the slice windows and the costs of a beat are worked out as it is taken.

    Members
    -------
    i : ``In(stream.Signature(input_layout(pairs, bits)))``
        Operand beats.
    o : ``Out(stream.Signature(signed(acc_width)))``
        Dot products.
    """

    def __init__(self, *, bits=16, pairs=8, slots=16, acc_width=48, stages=0):
        for name, value in (("Operand width", bits), ("Pair count", pairs), ("Slot count", slots),
                            ("Accumulator width", acc_width)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
        check_stages(stages, len(STAGE_DELAYS_NS) - 1)
        if bits not in PRECISIONS:
            raise ValueError(f"Operand width must be one of {', '.join(map(str, PRECISIONS))}, not {bits}")
        if pairs < 1:
            raise ValueError(f"Pair count must be at least 1, not {pairs}")
        if slots < (bits // 4) ** 2:
            raise ValueError(f"Slot count must be at least {(bits // 4) ** 2} for {bits}-bit operands, not {slots}")
        if acc_width < 2 * bits:
            raise ValueError(f"Accumulator width must be at least {2 * bits}, not {acc_width}")
        self._bits, self._pairs, self._slots, self._acc_width = bits, pairs, slots, acc_width
        self._stages = stages
        super().__init__({
            "i": In(stream.Signature(input_layout(pairs, bits))),
            "o": Out(stream.Signature(signed(acc_width))),
        })

    @property
    def stages(self):
        return self._stages

    def elaborate(self, platform):
        m = Module()
        bits, n, slots = self._bits, self._pairs, self._slots
        beat = Signal(input_layout(n, bits))
        full = Signal()                            # `beat` holds pairs still to take
        pos = Signal(range(n + 1))                 # first pair not taken yet
        acc = Signal(signed(self._acc_width))
        out_full = Signal()
        load = self.i.valid & self.i.ready

        # Slice windows and costs of the beat's pairs; cost prefix sums over the beat (pipelined: worked out
        # from the input as the beat is taken, and kept beside it).
        if self._stages == 0:
            src = beat
        else:
            src = self.i.payload
        wa = [_window(m, src.a[p], bits, f"a{p}") for p in range(n)]
        wb = [_window(m, src.b[p], bits, f"b{p}") for p in range(n)]
        cost = [Signal(5, name=f"cost{p}") for p in range(n)]
        prefix = [Signal(range(16 * n + 1), name=f"prefix{p}") for p in range(n + 1)]
        for p in range(n):
            m.d.comb += cost[p].eq(wa[p][1] * wb[p][1])
        if self._stages == 0:
            m.d.comb += [prefix[p + 1].eq(prefix[p] + cost[p]) for p in range(n)]
        else:
            # Parallel prefix sums (Kogge-Stone, log2(pairs) levels): they lie on the input's path.
            sums, step = list(cost), 1
            while step < n:
                sums = [sums[p] + sums[p - step] if p >= step else sums[p] for p in range(n)]
                step *= 2
            m.d.comb += [prefix[p + 1].eq(sums[p]) for p in range(n)]
        if self._stages != 0:
            kept = [Signal.like(x, name=f"beat_{x.name}") for w in wa + wb for x in w]
            with m.If(load):
                m.d.sync += [k.eq(x) for k, x in zip(kept, [x for w in wa + wb for x in w])]
            wa = [(kept[2 * p], kept[2 * p + 1]) for p in range(n)]
            wb = [(kept[2 * (n + p)], kept[2 * (n + p) + 1]) for p in range(n)]

        # This cycle takes pairs pos .. stop-1: those whose cost, from pos on, fits the slots (at least one).
        taken = [Signal(name=f"taken{p}") for p in range(n)]
        stop = Signal(range(n + 1))
        stop_value = Const(n, len(stop))
        if self._stages == 0:
            start = Signal.like(prefix[n])
            m.d.comb += start.eq(select(prefix, pos))
            fits = [prefix[p + 1] - start <= slots for p in range(n)]
        else:
            # Pipelined: rel[p] = prefix[p] - start kept in registers (the prefix sums as the beat is taken,
            # then less rel[stop] each step), so that neither the schedule nor the slots wait on a subtraction.
            rel = [Signal(signed(len(prefix[n]) + 1), name=f"rel{p}") for p in range(n + 1)]
            fits = [rel[p + 1] <= slots for p in range(n)]
        for p in reversed(range(n)):
            m.d.comb += taken[p].eq((p >= pos) & (fits[p] | (p == pos)))
            stop_value = Mux((p > pos) & ~fits[p], p, stop_value)
        m.d.comb += stop.eq(stop_value)

        # Slot s holds slice product number start + s: of pair p when prefix[p] <= start + s < prefix[p+1].
        # local = i * kb + j with j < kb (kb in 1..4): slice la + i of a times slice lb + j of b.
        def slices(s, p):
            local = Signal(4, name=f"local{s}_{p}")
            if self._stages == 0:
                g = start + s
                mine = taken[p] & (prefix[p] <= g) & (g < prefix[p + 1])
                m.d.comb += local.eq(g - prefix[p])
            else:
                mine = taken[p] & (rel[p] <= s) & (s < rel[p + 1])
                m.d.comb += local.eq(s - rel[p])
            (la, ka), (lb, kb) = wa[p], wb[p]
            i = Signal(2, name=f"i{s}_{p}")
            j = Signal(2, name=f"j{s}_{p}")
            m.d.comb += [i.eq(Mux(kb == 1, local, Mux(kb == 2, local >> 1, Mux(kb == 4, local >> 2,
                                                                             _div3(local))))),
                         j.eq(local - i * kb)]
            sa = _slice(beat.a[p], la + i, (la + i) == (la + ka - 1))
            sb = _slice(beat.b[p], lb + j, (lb + j) == (lb + kb - 1))
            return mine, sa, sb, la + i + lb + j

        step = full & (~out_full | self.o.ready)      # a result waiting is taken this cycle
        last_step = step & (stop == n)
        if self._stages == 0:
            terms = []
            for s in range(slots):
                product = Const(0, signed(10))
                shift = Const(0, 3)
                for p in range(n):
                    mine, sa, sb, position = slices(s, p)
                    product = Mux(mine, sa * sb, product)
                    shift = Mux(mine, position, shift)
                term = Signal(signed(10 + 24), name=f"term{s}")
                m.d.comb += term.eq(product << (shift * 4))
                terms.append(term)
            total = Signal(signed(self._acc_width), name="cycle_sum")
            m.d.comb += total.eq(balanced_sum(terms))
            sum_valid, sum_last = step, last_step & beat.last
        else:
            # Pipelined: each slot's two slices (one pair owns a slot, so an AND-OR selects them), then
            # register stages that all move together while no result waits on `o` (`advance`), each with
            # the valid and end-of-dot-product bits of its cycle.
            advance = ~out_full | self.o.ready
            cuts = _CUTS[self._stages]
            ops = []
            for s in range(slots):
                chosen = [slices(s, p) for p in range(n)]
                ops += [any_of(Mux(mine, sa, 0) for mine, sa, _, _ in chosen),
                        any_of(Mux(mine, sb, 0) for mine, _, sb, _ in chosen),
                        any_of(Mux(mine, position, 0) for mine, _, _, position in chosen)]
            flags = [step, last_step & beat.last]
            flags, ops = _stage(m, "operands", advance, flags, ops, [1, 1] + [signed(5), signed(5), 3] * slots)
            prods = []
            for s in range(slots):
                sa, sb, shift = ops[3 * s:3 * s + 3]
                prods += [sa * sb, shift]
            if "products" in cuts:
                flags, prods = _stage(m, "products", advance, flags, prods, [1, 1] + [signed(10), 3] * slots)
            terms = []
            for s in range(slots):
                product, shift = prods[2 * s:2 * s + 2]
                term = Signal(signed(10 + 24), name=f"term{s}")
                m.d.comb += term.eq(product << (shift * 4))
                terms.append(term)
            total = Signal(signed(self._acc_width), name="cycle_sum")
            if "tree" in cuts:
                flags, (total,) = _stage(m, "tree", advance, flags, [balanced_sum(terms)],
                                         [1, 1, signed(self._acc_width)])
            else:
                m.d.comb += total.eq(balanced_sum(terms))
            (sum_valid, sum_last) = (flags[0] & advance, flags[1] & advance)

        m.d.comb += self.i.ready.eq(~full | last_step)
        with m.If(step):
            m.d.sync += pos.eq(stop)
            with m.If(stop == n):
                m.d.sync += full.eq(0)
        with m.If(sum_valid):
            m.d.sync += acc.eq(acc + total)
            with m.If(sum_last):
                m.d.sync += [out_full.eq(1), acc.eq(0), self.o.payload.eq(acc + total)]
        if self._stages != 0:
            with m.If(step):
                m.d.sync += [r.eq(r - _pick(rel, stop)) for r in rel]
            with m.If(load):
                m.d.sync += [r.eq(x) for r, x in zip(rel, prefix)]
        with m.If(load):
            m.d.sync += [beat.eq(self.i.payload), full.eq(1), pos.eq(0)]
        m.d.comb += self.o.valid.eq(out_full)
        with m.If(self.o.valid & self.o.ready & ~sum_last):
            m.d.sync += out_full.eq(0)
        return m


def _stage(m, name, advance, flags, values, shapes):
    """Registers of a pipeline stage, loaded while ``advance`` is high: returns (flags, values)."""
    regs = [Signal(shape, name=f"{name}_{k}") for k, shape in enumerate(shapes)]
    with m.If(advance):
        m.d.sync += [r.eq(v) for r, v in zip(regs, flags + values)]
    return regs[:len(flags)], regs[len(flags):]


def _pick(signals, index):
    """``signals[index]`` as an AND-OR (shallower than :func:`select`'s chain)."""
    return any_of(Mux(index == k, v, 0) for k, v in enumerate(signals))


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


