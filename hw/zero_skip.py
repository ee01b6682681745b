"""Input zero-skip unit: packs the non-zero elements of activation vectors into compute slots, with the
matching weights. The schedule is :func:`golden.sparsity.zero_skip_beats`."""

from amaranth.hdl import Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .muxes import any_of, select
from .pipeline import check_stages


__all__ = ["STAGE_DELAYS_NS", "input_layout", "weight_layout", "output_layout", "ZeroSkip"]

#: Estimated critical path (ns, sky130_fd_sc_hd typical with flip-flop overhead, default configuration) at
#: each ``stages`` depth, shallowest first (:mod:`hw.pipeline`), as
#: ``python -m hw.build --target synth --block zero_skip --set pipeline.zero_skip=D`` reports it (depth 0: the
#: design before pipelining, as measured then).
STAGE_DELAYS_NS = (9.28, 4.96, 4.91)

# Where the register cuts go at each depth, on the way from the input to the queue: after the element count
# prefix sums ("prefix") and after the compaction ("packed").
_CUTS = {1: ("packed",), 2: ("prefix", "packed")}


def input_layout(window, width):
    """One input beat: ``window`` consecutive elements of a vector; ``last`` on the vector's final beat (a
    ragged tail is padded with zeros, which cost nothing)."""
    return data.StructLayout({"values": data.ArrayLayout(signed(width), window), "last": unsigned(1)})


def weight_layout(depth, weight_width):
    return data.StructLayout({"addr": unsigned(max(1, (depth - 1).bit_length())),
                              "data": signed(weight_width)})


def output_layout(slots, width, depth, weight_width):
    """One output beat: ``slots`` slots of (valid, value, index, weight); ``last`` on a vector's final beat."""
    slot = data.StructLayout({"valid": unsigned(1), "value": signed(width),
                              "index": unsigned(max(1, (depth - 1).bit_length())), "weight": signed(weight_width)})
    return data.StructLayout({"slots": data.ArrayLayout(slot, slots), "last": unsigned(1)})


class ZeroSkip(wiring.Component):
    """Zero-skipping front end of a MAC array.

    Each cycle the unit takes one input beat of ``window`` elements (the lookahead window) when its queue
    has room, compacts the non-zero ones with their indices into the queue, and sends ``slots`` of them per
    output beat with the weights their indices select (``weights[index]``, written on ``w``). Beats never mix
    vectors; a vector's last beat carries ``last`` and may be partly empty. Throughput: up to ``slots``
    non-zeros and ``window`` elements per cycle, so at sparsity ``s`` up to ``min(1 / (1 - s), window /
    slots)`` times the dense rate of ``slots`` elements per cycle, at every depth.

    Latency: an input beat reaches the queue, and its first elements can go out, 1 cycle after it is taken
    at ``stages=0``, +1 per stage (the stages are register slices between the input and the queue, with
    their own valid bits: a beat waits in the last one while the queue is full, and ``i.ready`` is high while
    any slice will have room, so back-pressure costs no throughput). A weight written on ``w`` is read from
    the cycle after.

    ``error`` (sticky) is set when a vector runs past ``depth`` elements; those elements are dropped.

    Parameters
    ----------
    window, slots : int
        Elements taken per input beat, compute slots per output beat (``window >= slots >= 1``).
    width, weight_width : int
        Bits of an element and of a weight (signed).
    depth : int
        Longest vector, and words of the weight memory.
    stages : int
        Register stages between the input and the queue, 0 to ``len(STAGE_DELAYS_NS) - 1``: 1 after the
        compaction, 2 also after the prefix sums that place the non-zero elements.

    Members
    -------
    i : ``In(stream.Signature(input_layout(window, width)))``
        Input beats.
    w : ``In(stream.Signature(weight_layout(depth, weight_width)))``
        Weight writes (always ready).
    o : ``Out(stream.Signature(output_layout(slots, width, depth, weight_width)))``
        Output beats.
    error : ``Out(1)``
        A vector ran past ``depth`` elements (sticky).
    """

    def __init__(self, *, window=32, slots=4, width=16, weight_width=16, depth=256, stages=0):
        for name, value, low in (("Window", window, 1), ("Slot count", slots, 1), ("Element width", width, 2),
                                 ("Weight width", weight_width, 2), ("Depth", depth, 1)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if value < low:
                raise ValueError(f"{name} must be at least {low}, not {value!r}")
        check_stages(stages, len(STAGE_DELAYS_NS) - 1)
        if window < slots:
            raise ValueError(f"Window must be at least the slot count ({slots}), not {window}")
        self._window, self._slots, self._width = window, slots, width
        self._weight_width, self._depth, self._stages = weight_width, depth, stages
        super().__init__({
            "i": In(stream.Signature(input_layout(window, width))),
            "w": In(stream.Signature(weight_layout(depth, weight_width))),
            "o": Out(stream.Signature(output_layout(slots, width, depth, weight_width))),
            "error": Out(1),
        })

    @property
    def stages(self):
        return self._stages

    def elaborate(self, platform):
        m = Module()
        n, s, depth = self._window, self._slots, self._depth
        # Queue entries. A beat is taken when at most cap - n - 1 = 2s entries are queued; draining s per
        # cycle, the queue then still holds more than s, so the output never waits on the input.
        cap = n + 2 * s + 1
        iw = max(1, (depth - 1).bit_length())

        m.submodules.mem = mem = Memory(shape=signed(self._weight_width), depth=depth, init=[])
        wp = mem.write_port()
        m.d.comb += [wp.addr.eq(self.w.payload.addr), wp.data.eq(self.w.payload.data),
                     wp.en.eq(self.w.valid), self.w.ready.eq(1)]

        # The queue: entries 0 .. count-1, oldest first. `has` = carries an element (else an end marker),
        # `end` = the vector's last entry.
        value = [Signal(signed(self._width), name=f"q_value{i}") for i in range(cap)]
        index = [Signal(iw, name=f"q_index{i}") for i in range(cap)]
        has = [Signal(name=f"q_has{i}") for i in range(cap)]
        end = [Signal(name=f"q_end{i}") for i in range(cap)]
        count = Signal(range(cap + 1))
        room = Signal()                            # the queue takes a compacted beat this cycle if one comes
        m.d.comb += room.eq(count + n + 1 <= cap)

        # Output beat: up to the first end among the first `slots` entries, else `slots` entries when one
        # more follows them (so that a vector's newest entry stays queued until its end is known).
        take = Signal(range(s + 1))
        last = Signal()
        ends = [(i < count) & end[i] for i in range(s)]
        choice = Mux(count > s, s, 0)
        for i in reversed(range(s)):
            choice = Mux(ends[i], i + 1, choice)
        m.d.comb += [take.eq(choice), last.eq(any_of(ends))]
        m.d.comb += [self.o.valid.eq(take != 0), self.o.payload.last.eq(last)]
        for i in range(s):
            slot = self.o.payload.slots[i]
            rp = mem.read_port(domain="comb")
            m.d.comb += [rp.addr.eq(index[i]), slot.valid.eq(has[i] & (i < take)), slot.value.eq(value[i]),
                         slot.index.eq(index[i]), slot.weight.eq(rp.data)]
        pop = Signal(range(s + 1))
        m.d.comb += pop.eq(Mux(self.o.valid & self.o.ready, take, 0))
        base = Signal(range(cap + 1))
        m.d.comb += base.eq(count - pop)

        # Input beat: which elements are non-zero (and within `depth`), the index of the first.
        chunk = Signal(range(-(-depth // n) + 1))
        taken = self.i.valid & self.i.ready
        values = self.i.payload.values
        first_index = Signal(range(n * (-(-depth // n) + 1)))
        m.d.comb += first_index.eq(chunk * n)
        in_range = [first_index + j < depth for j in range(n)]
        nonzero = [(values[j] != 0) & in_range[j] for j in range(n)]
        dropped = 0
        for j in range(n):
            dropped = dropped | ((values[j] != 0) & ~in_range[j])
        with m.If(taken):
            with m.If(self.i.payload.last):
                m.d.sync += chunk.eq(0)
            with m.Elif(first_index < depth):
                m.d.sync += chunk.eq(chunk + 1)
            with m.If(dropped):
                m.d.sync += self.error.eq(1)

        # Compaction: element j goes to compacted position prefix[j] (the non-zeros before it); compacted
        # position k takes the element whose prefix is k (only elements j >= k can).
        if self._stages == 0:
            prefix = [Signal(range(n + 1), name=f"prefix{j}") for j in range(n + 1)]
            for j in range(n):
                m.d.comb += prefix[j + 1].eq(prefix[j] + nonzero[j])
            nnz = prefix[n]
            packed_value = [Signal(signed(self._width), name=f"packed_value{k}") for k in range(n)]
            packed_offset = [Signal(range(n), name=f"packed_offset{k}") for k in range(n)]
            for k in range(n):
                v, o = 0, 0
                for j in reversed(range(k, n)):
                    hit = nonzero[j] & (prefix[j] == k)
                    v, o = Mux(hit, values[j], v), Mux(hit, j, o)
                m.d.comb += [packed_value[k].eq(v), packed_offset[k].eq(o)]
            beat_valid, beat_last = self.i.valid, self.i.payload.last
            m.d.comb += self.i.ready.eq(room)

            def new_value(offset, lo, hi):
                return select(packed_value, offset, lo, hi)

            def new_index(offset, lo, hi):
                return first_index + select(packed_offset, offset, lo, hi)
        else:
            # Pipelined: the counts as parallel prefix sums and each compacted position as an AND-OR of the
            # elements (exactly one hits), in log depth; register slices at the cuts of _CUTS.
            cuts = _CUTS[self._stages]
            slices = []                            # (full, ready) of each slice, input side first
            beat_valid, beat_last, beat_first = self.i.valid, self.i.payload.last, first_index
            values = [values[j] for j in range(n)]
            inclusive = _prefix_sums(m, nonzero)   # non-zeros up to and including element j
            if "prefix" in cuts:
                (beat_last, beat_first, *rest), full, ready = _slice(
                    m, "prefix", beat_valid, [beat_last, beat_first, *values, *nonzero, *inclusive],
                    [None, None] + [signed(self._width)] * n + [None] * (2 * n))
                values, nonzero, inclusive = rest[:n], rest[n:2 * n], rest[2 * n:]
                slices.append((full, ready))
                beat_valid = full
            nnz = inclusive[n - 1]
            packed_value, packed_index = [], []
            for k in range(n):
                hits = [(j, nonzero[j] & (inclusive[j] == k + 1)) for j in range(k, n)]
                packed_value.append(any_of(Mux(hit, values[j], 0) for j, hit in hits))
                # 0 where no element lands: the unused entries index the weight memory too, never past it.
                packed_index.append(any_of(Mux(hit, beat_first + j, 0) for j, hit in hits))
            (beat_last, nnz, *rest), full, ready = _slice(
                m, "packed", beat_valid, [beat_last, nnz, *packed_value, *packed_index],
                [None, None] + [signed(self._width)] * n + [iw] * n)
            packed_value, packed_index = rest[:n], rest[n:]
            slices.append((full, ready))
            beat_valid = full

            # The queue picks each new entry's element by an AND-OR, its index worked out before the cut.
            def new_value(offset, lo, hi):
                return _pick(packed_value, offset, lo, hi)

            def new_index(offset, lo, hi):
                return _pick(packed_index, offset, lo, hi)

            # A slice takes a beat when it is empty or passes its own on, the last one to the queue.
            m.d.comb += self.i.ready.eq(slices[0][1])
            for (full, ready), after in zip(slices, [ready for _, ready in slices[1:]] + [room]):
                m.d.comb += ready.eq(~full | after)

        accept = beat_valid & room

        # The vector's end: on the last compacted element, else on the newest queued entry of this vector,
        # else a marker entry of its own.
        is_last = accept & beat_last
        mark_prev = Signal()
        marker = Signal()
        empty_end = is_last & (nnz == 0)
        pushed = Signal(range(n + 2))
        m.d.comb += pushed.eq(Mux(accept, nnz + marker, 0))
        if self._stages == 0:
            newest_end = select(end, count - 1)
        else:
            # `end` of the newest entry (count - 1) as a register of its own, not a `cap`-way multiplexer:
            # the newest entry is the last one pushed, an end when its beat was a vector's last, and stays
            # the newest (ending when marked) until the next push.
            newest_end = Signal()
            m.d.sync += newest_end.eq(Mux(pushed != 0, is_last, newest_end | mark_prev))
        m.d.comb += [mark_prev.eq(empty_end & (base != 0) & ~newest_end),
                     marker.eq(empty_end & ~mark_prev)]

        if self._stages != 0:
            # Entries at or beyond the new count are never read, so each entry simply loads its survivor or
            # its new element, with no hold: one multiplexer level. Its offset from the new entries, i - base,
            # is (i - count) + pop: one small addition after `pop`.
            for i in range(cap):
                offset = Signal(range(-cap, cap + s + 1), name=f"offset{i}")
                m.d.comb += offset.eq(i - count + pop)
                kept = offset < 0
                ks = [k for k in range(s + 1) if i + k < cap]

                def survivor(regs):
                    return _pick([regs[i + k] for k in ks], pop, 0, len(ks) - 1)
                lo, hi = max(0, i - 2 * s), min(n - 1, i)
                if lo <= hi:
                    new = [~marker, Mux(marker, 0, new_value(offset, lo, hi)),
                           Mux(marker, 0, new_index(offset, lo, hi)), marker | (is_last & (offset + 1 == nnz))]
                else:
                    new = [0, 0, 0, 0]
                old = [survivor(has), survivor(value), survivor(index),
                       survivor(end) | (mark_prev & (offset == -1))]
                m.d.sync += [reg.eq(Mux(kept, o, v))
                             for reg, o, v in zip((has[i], value[i], index[i], end[i]), old, new)]
        else:
            for i in range(cap):
                kept = i < base
                # Survivor i comes from entry i + pop.
                src = {k: i + k for k in range(s + 1) if i + k < cap}
                for k, j in src.items():
                    with m.If(kept & (pop == k)):
                        m.d.sync += [value[i].eq(value[j]), index[i].eq(index[j]), has[i].eq(has[j]),
                                     end[i].eq(end[j] | (mark_prev & (i == base - 1)))]
                # New entry i is packed element i - base. A beat is taken only when base <= count <= 2s, so
                # entry i can only be packed element i - 2s .. i (none beyond entry n + 2s - 1).
                lo, hi = max(0, i - 2 * s), min(n - 1, i)
                if lo > hi:
                    continue
                offset = Signal(range(-cap, cap), name=f"offset{i}")
                m.d.comb += offset.eq(i - base)
                with m.If(~kept & (i < base + pushed)):
                    m.d.sync += [has[i].eq(~marker),
                                 value[i].eq(Mux(marker, 0, new_value(offset, lo, hi))),
                                 index[i].eq(Mux(marker, 0, new_index(offset, lo, hi))),
                                 end[i].eq(marker | (is_last & (offset + 1 == nnz)))]
        m.d.sync += count.eq(base + pushed)
        return m


def _prefix_sums(m, bits):
    """Inclusive prefix sums of the 1-bit ``bits`` (Kogge-Stone: log2 levels of small adders)."""
    n = len(bits)
    sums = list(bits)
    step, level = 1, 0
    while step < n:
        level += 1
        width = min(level + 1, n.bit_length())
        nxt = []
        for j in range(n):
            if j >= step:
                total = Signal(width, name=f"prefix_l{level}_{j}")
                m.d.comb += total.eq(sums[j] + sums[j - step])
                nxt.append(total)
            else:
                nxt.append(sums[j])
        sums, step = nxt, step * 2
    result = [Signal(range(n + 1), name=f"inclusive{j}") for j in range(n)]
    m.d.comb += [r.eq(v) for r, v in zip(result, sums)]
    return result


def _slice(m, name, valid, values, shapes=None):
    """A pipeline register slice: it loads ``valid`` whenever its ``ready`` is high (empty, or passing its beat
    on; the caller drives ``ready``), and ``values`` with a valid beat. Returns (registers, full, ready)."""
    shapes = shapes or [None] * len(values)
    regs = [Signal(shape if shape is not None else Value.cast(v).shape(), name=f"{name}_{k}")
            for k, (v, shape) in enumerate(zip(values, shapes))]
    full, ready = Signal(name=f"{name}_full"), Signal(name=f"{name}_ready")
    with m.If(ready):
        m.d.sync += full.eq(valid)
        # Only a beat's own values: the queue's unused entries copy them, and must stay defined values.
        with m.If(valid):
            m.d.sync += [r.eq(v) for r, v in zip(regs, values)]
    return regs, full, ready


def _pick(signals, index, lo, hi):
    """``signals[index]`` for ``index`` in ``lo .. hi`` as an AND-OR (shallower than :func:`select`'s chain)."""
    return any_of(Mux(index == k, signals[k], 0) for k in range(lo, hi + 1))
