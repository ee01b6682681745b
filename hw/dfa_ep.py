"""DFA error-propagation engine: ``d = (B e) * mask`` with the binary feedback matrix B made on the fly."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .lfsr import TAPS, advance as lfsr_advance
from .muxes import balanced_sum
from .pipeline import check_stages


__all__ = ["STAGE_DELAYS_NS", "LFSR_TAPS", "command_layout", "DFAErrorEngine"]

#: Estimated critical path (ns, sky130_fd_sc_hd typical with flip-flop overhead) at each ``stages`` depth,
#: shallowest first (:mod:`hw.pipeline`), of the engine as the default core's EP engine instantiates it: 10
#: classes, 16-bit codes and 8 lanes (``core.tile``), whose every feedback bit drives 8 adder trees. That
#: is the engine's widest use and the one the depth is placed for; the stand-alone block of the default
#: configuration (one lane), as ``python -m hw.build --target synth --block dfa_ep --set pipeline.dfa_ep=D``
#: reports it, measures 4.54 and 2.98 ns.
STAGE_DELAYS_NS = (4.93, 3.64)

#: Terms of a row sum added before the register cut of ``stages=1``.
_GROUP = 4

#: Galois LFSR mask (x^32 + x^22 + x^2 + x + 1), as golden.dfxp.Lfsr (from :mod:`hw.lfsr`).
LFSR_TAPS = TAPS


def command_layout(cols, width, max_rows, lanes=1):
    """One layer's job: the LFSR seed of its B, its row count minus one and the output error vector (with
    ``lanes > 1``, one vector per lane: ``e[lane][j]``)."""
    vector = data.ArrayLayout(signed(width), cols)
    return data.StructLayout({
        "seed": unsigned(32),
        "rows_m1": unsigned(max(1, (max_rows - 1).bit_length())),
        "e": vector if lanes == 1 else data.ArrayLayout(vector, lanes),
    })


class DFAErrorEngine(wiring.Component):
    """Direct-feedback-alignment error propagation without multipliers and without a stored B.

    A command on ``cmd`` carries one error vector ``e`` (``cols`` signed codes), the LFSR seed of a layer's
    feedback matrix and its row count. The engine then produces one row per cycle on ``o``:
    ``sum_j B[i, j] e[j]``, with ``B[i, j] = +1`` when bit ``i*cols + j`` of the LFSR stream is 1 and ``-1``
    otherwise (see :mod:`golden.dfa_ep`), zeroed when that row's bit on ``mask`` (the ReLU derivative from
    the forward pass) is 0. The ``cols`` LFSR steps of a row are one XOR network, registered a row ahead; the
    row sum is a balanced adder tree of ``e_j`` or ``~e_j`` (``-e_j = ~e_j + 1``: the ones of the negated
    terms are gathered in one small term); the result is exact.

    With ``lanes > 1`` the engine serves ``lanes`` error vectors (samples) at once: they share the row's
    feedback bits, each lane has its own adder tree, ``mask`` carries one bit per lane and ``o`` one result
    per lane (``lanes = 1`` keeps the single-vector ports).

    Throughput: one row per cycle at every depth; the next command is taken with the last row. Latency: a
    row is on ``o`` ``1 + stages`` cycles after its mask bit is taken. With ``stages=1`` the adder trees are
    cut after their first levels (sums of up to four terms) and the mask is applied after the cut.
    Back-pressure on ``o`` stalls the whole pipeline; ``mask`` is taken only when a row is computed, so no bit
    is lost or used twice.

    Timing (default configuration, sky130_fd_sc_hd typical, :data:`STAGE_DELAYS_NS`): at ``stages=0`` the
    path is the feedback bits' multiplexers and the whole adder tree in one cycle.

    Parameters
    ----------
    cols : int
        Length of the error vector (output classes), at least 1.
    width : int
        Bits of an error code, at least 2.
    max_rows : int
        Largest row count of a command.
    lanes : int
        Error vectors served at once (1 to 64).
    stages : int
        Register stages added for the clock (:mod:`hw.pipeline`, ``pipeline.dfa_ep``), 0 or 1.

    Members
    -------
    cmd : In(stream.Signature(command_layout(cols, width, max_rows, lanes)))
    mask : In(stream.Signature(lanes))
        One ReLU-derivative bit per row (and lane), in row order.
    o : Out(stream.Signature(signed(width + ceil(log2(cols)) + 1)))
        The rows of ``(B e) * mask`` (with ``lanes > 1``, an ``ArrayLayout`` of them).
    """

    def __init__(self, *, cols, width=16, max_rows=1024, lanes=1, stages=0):
        for name, value, low in (("Column count", cols, 1), ("Error width", width, 2), ("Row limit", max_rows, 1),
                                 ("Lane count", lanes, 1)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if value < low:
                raise ValueError(f"{name} must be at least {low}, not {value!r}")
        if lanes > 64:
            raise ValueError(f"Lane count must be at most 64, not {lanes!r}")
        check_stages(stages, len(STAGE_DELAYS_NS) - 1)
        self._cols, self._width, self._max_rows, self._lanes, self._stages = cols, width, max_rows, lanes, stages
        self._out_width = width + (cols - 1).bit_length() + 1
        out = signed(self._out_width)
        super().__init__({
            "cmd": In(stream.Signature(command_layout(cols, width, max_rows, lanes))),
            "mask": In(stream.Signature(lanes)),
            "o": Out(stream.Signature(out if lanes == 1 else data.ArrayLayout(out, lanes))),
        })

    cols = property(lambda self: self._cols)
    lanes = property(lambda self: self._lanes)
    out_width = property(lambda self: self._out_width)
    stages = property(lambda self: self._stages)

    def elaborate(self, platform):
        m = Module()
        cols, lanes = self._cols, self._lanes
        active = Signal()
        state = Signal(32)
        remaining = Signal(len(self.cmd.payload.rows_m1))
        e = Signal(self.cmd.payload.e.shape())
        vectors = [e] if lanes == 1 else [e[k] for k in range(lanes)]
        mask_bits = [self.mask.payload] if lanes == 1 else [self.mask.payload[k] for k in range(lanes)]
        outputs = [self.o.payload] if lanes == 1 else [self.o.payload[k] for k in range(lanes)]

        advance = ~self.o.valid | self.o.ready            # the pipeline moves (it stalls as a whole)
        row = active & self.mask.valid & advance          # a row is computed this cycle
        last = remaining == 0
        m.d.comb += [self.mask.ready.eq(row), self.cmd.ready.eq(~active | (row & last))]

        # A row's feedback bits: the LSBs of the next `cols` LFSR states from the row's state (one XOR network
        # each). They are registered with the state, a row ahead (`bits` holds those of `state`), so that the
        # XOR networks stay off the adder trees' path; every lane's tree shares them.
        def row_bits(start):
            return Cat(lfsr_advance(start, j + 1)[0] for j in range(cols))
        bits = Signal(cols)
        next_state = Signal(32)
        m.d.comb += next_state.eq(lfsr_advance(state, cols))
        with m.If(row):
            m.d.sync += [state.eq(next_state), bits.eq(row_bits(next_state)), remaining.eq(remaining - 1)]
            with m.If(last):
                m.d.sync += active.eq(0)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [active.eq(1), state.eq(self.cmd.payload.seed), bits.eq(row_bits(self.cmd.payload.seed)),
                         remaining.eq(self.cmd.payload.rows_m1), e.eq(self.cmd.payload.e)]

        # sum_j (+e_j if bit j else -e_j) = sum_j (e_j if bit j else ~e_j) + (number of 0 bits).
        ones = sum(~bits[j] for j in range(cols))
        def terms(vector):
            return [Mux(bits[j], vector[j], ~vector[j]) for j in range(cols)]

        if self._stages == 0:
            with m.If(advance):
                m.d.sync += self.o.valid.eq(row)
                with m.If(row):
                    m.d.sync += [out.eq(Mux(bit, balanced_sum(terms(vector) + [ones]), 0))
                                 for out, bit, vector in zip(outputs, mask_bits, vectors)]
            return m

        # stages=1: groups of up to _GROUP terms summed, registered with the ones count and the mask bits.
        cut_valid = Signal()
        cut_ones = Signal(range(cols + 1))
        cut_mask = Signal(lanes)
        cut_parts = []
        for k, vector in enumerate(vectors):
            t = terms(vector)
            groups = [balanced_sum(t[i:i + _GROUP]) for i in range(0, cols, _GROUP)]
            regs = [Signal(signed(self._out_width), name=f"part{k}_{g}") for g in range(len(groups))]
            with m.If(row):
                m.d.sync += [r.eq(v) for r, v in zip(regs, groups)]
            cut_parts.append(regs)
        with m.If(advance):
            m.d.sync += [cut_valid.eq(row), self.o.valid.eq(cut_valid)]
            with m.If(row):
                m.d.sync += [cut_ones.eq(ones), cut_mask.eq(Cat(mask_bits))]
            with m.If(cut_valid):
                m.d.sync += [out.eq(Mux(cut_mask[k], balanced_sum(parts + [cut_ones]), 0))
                             for k, (out, parts) in enumerate(zip(outputs, cut_parts))]
        return m
