"""DFA error-propagation engine: ``d = (B e) * mask`` with the binary feedback matrix B made on the fly."""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["LFSR_TAPS", "command_layout", "DFAErrorEngine"]

#: Galois LFSR mask (x^32 + x^22 + x^2 + x + 1), as golden.dfxp.Lfsr.
LFSR_TAPS = 0x80200003


def command_layout(cols, width, max_rows):
    """One layer's job: the LFSR seed of its B, its row count minus one and the output error vector."""
    return data.StructLayout({
        "seed": unsigned(32),
        "rows_m1": unsigned(max(1, (max_rows - 1).bit_length())),
        "e": data.ArrayLayout(signed(width), cols),
    })


def _lfsr_step(state):
    """One right-shifting Galois step, as logic: ``(s >> 1) ^ (TAPS if s & 1 else 0)``."""
    shifted = state >> 1
    return shifted ^ Mux(state[0], Const(LFSR_TAPS, 32), Const(0, 32))


class DFAErrorEngine(wiring.Component):
    """Direct-feedback-alignment error propagation without multipliers and without a stored B.

    A command on ``cmd`` carries one error vector ``e`` (``cols`` signed codes), the LFSR seed of a layer's
    feedback matrix and its row count. The engine then produces one row per cycle on ``o``:
    ``sum_j B[i, j] e[j]``, with ``B[i, j] = +1`` when bit ``i*cols + j`` of the LFSR stream is 1 and ``-1``
    otherwise (see :mod:`golden.dfa_ep`), zeroed when that row's bit on ``mask`` (the ReLU derivative from
    the forward pass) is 0. The ``cols`` LFSR steps of a row are one XOR network, and the row sum is an adder
    tree of ``+e_j`` or ``-e_j``; the result is exact.

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

    Members
    -------
    cmd : In(stream.Signature(command_layout(cols, width, max_rows)))
    mask : In(stream.Signature(1))
        One ReLU-derivative bit per row, in row order.
    o : Out(stream.Signature(signed(width + ceil(log2(cols)) + 1)))
        The rows of ``(B e) * mask``.
    """

    def __init__(self, *, cols, width=16, max_rows=1024):
        for name, value, low in (("Column count", cols, 1), ("Error width", width, 2), ("Row limit", max_rows, 1)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if value < low:
                raise ValueError(f"{name} must be at least {low}, not {value!r}")
        self._cols, self._width, self._max_rows = cols, width, max_rows
        self._out_width = width + (cols - 1).bit_length() + 1
        super().__init__({
            "cmd": In(stream.Signature(command_layout(cols, width, max_rows))),
            "mask": In(stream.Signature(1)),
            "o": Out(stream.Signature(signed(self._out_width))),
        })

    cols = property(lambda self: self._cols)
    out_width = property(lambda self: self._out_width)

    def elaborate(self, platform):
        m = Module()
        cols = self._cols
        active = Signal()
        state = Signal(32)
        remaining = Signal(len(self.cmd.payload.rows_m1))
        e = Signal(data.ArrayLayout(signed(self._width), cols))

        advance = ~self.o.valid | self.o.ready
        row = active & self.mask.valid & advance          # a row is computed this cycle
        last = remaining == 0
        m.d.comb += [self.mask.ready.eq(row), self.cmd.ready.eq(~active | (row & last))]

        # The row's feedback bits: the LSBs of the next `cols` LFSR states.
        states = [state]
        for _ in range(cols):
            states.append(_lfsr_step(states[-1]))
        total = 0
        for j in range(cols):
            total = total + Mux(states[j + 1][0], e[j], -e[j])

        with m.If(row):
            m.d.sync += [state.eq(states[cols]), remaining.eq(remaining - 1)]
            with m.If(last):
                m.d.sync += active.eq(0)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [active.eq(1), state.eq(self.cmd.payload.seed), remaining.eq(self.cmd.payload.rows_m1),
                         e.eq(self.cmd.payload.e)]
        with m.If(advance):
            m.d.sync += self.o.valid.eq(row)
            with m.If(row):
                m.d.sync += self.o.payload.eq(Mux(self.mask.payload, total, 0))
        return m
