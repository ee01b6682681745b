"""DFA error-propagation engine: ``d = (B e) * mask`` with the binary feedback matrix B made on the fly."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .lfsr import TAPS, advance as lfsr_advance


__all__ = ["LFSR_TAPS", "command_layout", "DFAErrorEngine"]

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
    the forward pass) is 0. The ``cols`` LFSR steps of a row are one XOR network, and the row sum is an adder
    tree of ``+e_j`` or ``-e_j``; the result is exact.

    With ``lanes > 1`` the engine serves ``lanes`` error vectors (samples) at once: they share the row's
    feedback bits, each lane has its own adder tree, ``mask`` carries one bit per lane and ``o`` one result
    per lane (``lanes = 1`` keeps the single-vector ports).

    Throughput: one row per cycle; the next command is taken with the last row. Latency: a row is on ``o``
    the cycle after its mask bit is taken. Back-pressure on ``o`` stalls the engine; ``mask`` is taken only
    when a row is computed, so no bit is lost or used twice.

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

    Members
    -------
    cmd : In(stream.Signature(command_layout(cols, width, max_rows, lanes)))
    mask : In(stream.Signature(lanes))
        One ReLU-derivative bit per row (and lane), in row order.
    o : Out(stream.Signature(signed(width + ceil(log2(cols)) + 1)))
        The rows of ``(B e) * mask`` (with ``lanes > 1``, an ``ArrayLayout`` of them).
    """

    def __init__(self, *, cols, width=16, max_rows=1024, lanes=1):
        for name, value, low in (("Column count", cols, 1), ("Error width", width, 2), ("Row limit", max_rows, 1),
                                 ("Lane count", lanes, 1)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if value < low:
                raise ValueError(f"{name} must be at least {low}, not {value!r}")
        if lanes > 64:
            raise ValueError(f"Lane count must be at most 64, not {lanes!r}")
        self._cols, self._width, self._max_rows, self._lanes = cols, width, max_rows, lanes
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

    def elaborate(self, platform):
        m = Module()
        cols = self._cols
        active = Signal()
        state = Signal(32)
        remaining = Signal(len(self.cmd.payload.rows_m1))
        lanes = self._lanes
        e = Signal(self.cmd.payload.e.shape())

        advance = ~self.o.valid | self.o.ready
        row = active & self.mask.valid & advance          # a row is computed this cycle
        last = remaining == 0
        m.d.comb += [self.mask.ready.eq(row), self.cmd.ready.eq(~active | (row & last))]

        # The row's feedback bits: the LSBs of the next `cols` LFSR states (one XOR network each, in signals so
        # that every lane's adder tree shares them).
        bits = Signal(cols)
        next_state = Signal(32)
        m.d.comb += [bits[j].eq(lfsr_advance(state, j + 1)[0]) for j in range(cols)]
        m.d.comb += next_state.eq(lfsr_advance(state, cols))
        def row_sum(vector):
            total = 0
            for j in range(cols):
                total = total + Mux(bits[j], vector[j], -vector[j])
            return total

        with m.If(row):
            m.d.sync += [state.eq(next_state), remaining.eq(remaining - 1)]
            with m.If(last):
                m.d.sync += active.eq(0)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [active.eq(1), state.eq(self.cmd.payload.seed), remaining.eq(self.cmd.payload.rows_m1),
                         e.eq(self.cmd.payload.e)]
        with m.If(advance):
            m.d.sync += self.o.valid.eq(row)
            with m.If(row):
                if lanes == 1:
                    m.d.sync += self.o.payload.eq(Mux(self.mask.payload, row_sum(e), 0))
                else:
                    m.d.sync += [self.o.payload[k].eq(Mux(self.mask.payload[k], row_sum(e[k]), 0))
                                 for k in range(lanes)]
        return m
