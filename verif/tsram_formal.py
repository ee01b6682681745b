"""Formal proof of the transposable SRAM wrapper with SymbiYosys (``yowasp-sby``, Yices via ``yices-smt2``).

Property: every read response returns, at every position of its row or column, the word last written to
that position (by a row write or a column write) before the cycle that took the read, or zero if none
was. The harness tracks one position ``(t, r, c)`` chosen freely by the solver (``AnyConst``) with a
shadow register; since the position is arbitrary, the property holds for all positions. Writes, read
requests and the response consumer's ``ready`` are free inputs every cycle (``AnySeq``); reset stays low.

A second assertion states where the tracked word lives - bank ``(r + c) mod N`` at address ``t*N + r`` holds
the shadow value at every cycle - read through the wrapper's formal-only observation port. With it the
property is inductive, so ``mode prove`` (k-induction) closes: the result holds for unbounded time, not
only to a BMC depth.
"""


from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Assume, Module, Mux, ResetSignal, Signal
from amaranth.lib import wiring

from hw.tsram import Axis, TransposableSRAM
from verif import formal


__all__ = ["TSRAMProperties", "run_sby"]


class TSRAMProperties(wiring.Component):
    """The wrapper with free inputs, one tracked position and the read-returns-last-write assertion."""

    def __init__(self, *, n=4, width=2, tiles=2):
        self._params = dict(n=n, width=width, tiles=tiles)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = TransposableSRAM(**self._params, observe=True)
        n, width, tiles = self._params["n"], self._params["width"], self._params["tiles"]
        for port in (dut.w, dut.rreq):
            m.d.comb += [port.valid.eq(AnySeq(1)), port.payload.eq(AnySeq(len(port.payload.as_value())))]
        m.d.comb += dut.rresp.ready.eq(AnySeq(1))
        m.d.comb += Assume(~ResetSignal())

        idx_bits = (n - 1).bit_length()
        tile = AnyConst(len(dut.w.payload.tile))
        row, col = AnyConst(idx_bits), AnyConst(idx_bits)
        m.d.comb += Assume(tile < tiles)

        def covers(req):
            return (req.tile == tile) & Mux(req.axis == Axis.ROW, req.index == row, req.index == col)

        # Shadow of the tracked word: the last value written to it (the memories start at zero).
        shadow = Signal(width)
        w = dut.w.payload
        with m.If(dut.w.valid & dut.w.ready & covers(w)):
            m.d.sync += shadow.eq(Mux(w.axis == Axis.ROW, w.data[col], w.data[row]))

        # The request behind the current response: does it cover the tracked word, where, and what must
        # it read (the shadow before this cycle's write: read-first)?
        q = dut.rreq.payload
        pending = Signal()
        expect = Signal(width)
        position = Signal(idx_bits)
        with m.If(dut.rreq.valid & dut.rreq.ready):
            m.d.sync += [pending.eq(covers(q)), expect.eq(shadow),
                         position.eq(Mux(q.axis == Axis.ROW, col, row))]
        with m.If(dut.rresp.valid & pending):
            m.d.comb += Assert(dut.rresp.payload[position] == expect)

        # The invariant that makes the property inductive: the tracked word, where the skewed layout puts
        # it (bank (r + c) mod N, address t*N + r), holds the shadow value at all times.
        bank = Signal(idx_bits)
        m.d.comb += bank.eq(row + col)
        address = (tile * n + row) if tiles > 1 else row
        for b in range(n):
            m.d.comb += dut.peek_addr[b].eq(address)
        m.d.comb += Assert(dut.peek_data[bank] == shadow)
        return m


def run_sby(workdir, *, mode="bmc", depth=20, n=4, width=2, tiles=2):
    """Run one SymbiYosys task on the harness; returns ``(passed, log text)``."""
    return formal.run_sby(workdir, TSRAMProperties(n=n, width=width, tiles=tiles), "tsram_props", mode=mode,
                          depth=depth)
