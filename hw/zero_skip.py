"""Input zero-skip unit: packs the non-zero elements of activation vectors into compute slots, with the
matching weights. The schedule is :func:`golden.sparsity.zero_skip_beats`."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .muxes import any_of, select


__all__ = ["STAGE_DELAYS_NS", "input_layout", "weight_layout", "output_layout", "ZeroSkip"]

#: Estimated critical path (ns, sky130_fd_sc_hd typical with flip-flop overhead, default configuration) at
#: each ``stages`` depth, shallowest first (:mod:`hw.pipeline`).
STAGE_DELAYS_NS = (9.28,)


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
    slots)`` times the dense rate of ``slots`` elements per cycle.

    ``error`` (sticky) is set when a vector runs past ``depth`` elements; those elements are dropped.

    Parameters
    ----------
    window, slots : int
        Elements taken per input beat, compute slots per output beat (``window >= slots >= 1``).
    width, weight_width : int
        Bits of an element and of a weight (signed).
    depth : int
        Longest vector, and words of the weight memory.
    """

    def __init__(self, *, window=32, slots=4, width=16, weight_width=16, depth=256):
        for name, value, low in (("Window", window, 1), ("Slot count", slots, 1), ("Element width", width, 2),
                                 ("Weight width", weight_width, 2), ("Depth", depth, 1)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if value < low:
                raise ValueError(f"{name} must be at least {low}, not {value!r}")
        if window < slots:
            raise ValueError(f"Window must be at least the slot count ({slots}), not {window}")
        self._window, self._slots, self._width = window, slots, width
        self._weight_width, self._depth = weight_width, depth
        super().__init__({
            "i": In(stream.Signature(input_layout(window, width))),
            "w": In(stream.Signature(weight_layout(depth, weight_width))),
            "o": Out(stream.Signature(output_layout(slots, width, depth, weight_width))),
            "error": Out(1),
        })

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

        # Input beat: compact the non-zero elements (prefix sums give each one its queue position).
        chunk = Signal(range(-(-depth // n) + 1))
        m.d.comb += self.i.ready.eq(count + n + 1 <= cap)
        accept = self.i.valid & self.i.ready
        values = self.i.payload.values
        first_index = Signal(range(n * (-(-depth // n) + 1)))
        m.d.comb += first_index.eq(chunk * n)
        in_range = [first_index + j < depth for j in range(n)]
        nonzero = [(values[j] != 0) & in_range[j] for j in range(n)]
        dropped = 0
        for j in range(n):
            dropped = dropped | ((values[j] != 0) & ~in_range[j])
        # Prefix sums: element j goes to compacted position prefix[j]; compacted position k takes the
        # element whose prefix is k (only elements j >= k can).
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

        # The vector's end: on the last compacted element, else on the newest queued entry of this vector,
        # else a marker entry of its own.
        is_last = accept & self.i.payload.last
        mark_prev = Signal()
        marker = Signal()
        empty_end = is_last & (nnz == 0)
        m.d.comb += [mark_prev.eq(empty_end & (base != 0) & ~select(end, count - 1)),
                     marker.eq(empty_end & ~mark_prev)]
        pushed = Signal(range(n + 2))
        m.d.comb += pushed.eq(Mux(accept, nnz + marker, 0))

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
                             value[i].eq(Mux(marker, 0, select(packed_value, offset, lo, hi))),
                             index[i].eq(Mux(marker, 0, first_index + select(packed_offset, offset, lo, hi))),
                             end[i].eq(marker | (is_last & (offset + 1 == nnz)))]
        m.d.sync += count.eq(base + pushed)

        with m.If(accept):
            with m.If(self.i.payload.last):
                m.d.sync += chunk.eq(0)
            with m.Elif(first_index < depth):
                m.d.sync += chunk.eq(chunk + 1)
            with m.If(dropped):
                m.d.sync += self.error.eq(1)
        return m
