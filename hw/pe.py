"""Bit-scalable processing element (HNPU / Bit Fusion style) and the fixed 16x16-bit baseline PE."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["GRID", "PEControl", "BitScalablePE", "Fixed16PE"]

#: The multiplier grid is GRID x GRID 4-bit slice multipliers; multiplier ``(I, K)`` has index ``GRID*I + K``.
GRID = 4


class PEControl(data.Struct):
    """Per-beat control that travels with the operands.

    ``a_ge2``/``b_ge2``: the A/B operand spans at least 2 grid rows/columns (8 bits or more);
    ``a_eq4``/``b_eq4``: it spans all 4 (12 or 16 bits); ``first``: the beat starts a new reduction.
    """
    first: 1
    a_ge2: 1
    a_eq4: 1
    b_ge2: 1
    b_eq4: 1


def _check_acc_width(acc_width):
    if not isinstance(acc_width, int) or isinstance(acc_width, bool):
        raise TypeError(f"Accumulator width must be an integer, not {acc_width!r}")
    if acc_width < 33:
        raise ValueError(f"Accumulator width must be at least 33 bits, not {acc_width!r}")


class BitScalablePE(wiring.Component):
    """Bit-scalable PE: 16 signed 5x5-bit slice multipliers summed into one exact accumulator.

    The operand slices arrive already routed to the multipliers (the array does the routing once per PE row
    or column): multiplier ``(I, K)`` multiplies ``a[4*I + K]`` by ``b[4*I + K]``, each a 4-bit slice
    extended to 5 bits signed (the top slice of an operand sign-extends, the others zero-extend). The
    products are combined in two levels whose shifts depend only on the operand spans:

    * level 1, inside each 2x2 sub-grid, local slice ``(i, k)`` is shifted by ``4*(i*a_ge2 + k*b_ge2)``;
    * level 2, sub-grid ``(BI, BK)`` is shifted by ``8*(BI*a_eq4 + BK*b_eq4)``.

    At 4x4 every product has weight 1 (16 independent pairs), at 16x16 product ``(I, K)`` has weight
    ``16**(I+K)`` (one pair), and every mix in between follows, so the beat sum is the exact dot product of
    the lanes. Only 3 + 3 small multiplexers per sub-grid and level are needed, not one per product.

    Latency: 2 cycles from the inputs to ``acc`` (a beat sum register, then the accumulator). Throughput:
    one beat per cycle; inputs of zero add nothing, so idle cycles need no enable.

    Parameters
    ----------
    acc_width : int
        Accumulator width, at least 33 bits (one beat sum takes 32 bits signed).

    Members
    -------
    a : In(ArrayLayout(signed(5), 16))
        A-side slice of each multiplier.
    b : In(ArrayLayout(signed(5), 16))
        B-side slice of each multiplier.
    ctl : In(PEControl)
        Operand spans and the start-of-reduction flag of the beat on ``a``/``b``.
    acc : Out(signed(acc_width))
        Running sum; after the beat with ``ctl.first`` it restarts from that beat's sum.
    """

    def __init__(self, *, acc_width):
        _check_acc_width(acc_width)
        self._acc_width = acc_width
        super().__init__({
            "a": In(data.ArrayLayout(signed(5), GRID * GRID)),
            "b": In(data.ArrayLayout(signed(5), GRID * GRID)),
            "ctl": In(PEControl),
            "acc": Out(signed(acc_width)),
        })

    @property
    def acc_width(self):
        return self._acc_width

    def elaborate(self, platform):
        m = Module()
        ctl = self.ctl

        def shift2(value, lo_bit, hi_bit, step):
            # value << step*(lo_bit + hi_bit) for a local 2x2 position, as two 2:1 multiplexers at most.
            if lo_bit is None and hi_bit is None:
                return value
            if hi_bit is None:
                return Mux(lo_bit, value << step, value)
            if lo_bit is None:
                return Mux(hi_bit, value << step, value)
            return Mux(lo_bit, Mux(hi_bit, value << 2 * step, value << step),
                       Mux(hi_bit, value << step, value))

        sub_sums = {}
        for bi in range(2):
            for bk in range(2):
                terms = []
                for i in range(2):
                    for k in range(2):
                        idx = GRID * (2 * bi + i) + (2 * bk + k)
                        product = self.a[idx] * self.b[idx]
                        terms.append(shift2(product, ctl.a_ge2 if i else None, ctl.b_ge2 if k else None, 4))
                sub_sums[bi, bk] = terms[0] + terms[1] + terms[2] + terms[3]
        beat = (sub_sums[0, 0]
                + shift2(sub_sums[1, 0], ctl.a_eq4, None, 8)
                + shift2(sub_sums[0, 1], None, ctl.b_eq4, 8)
                + shift2(sub_sums[1, 1], ctl.a_eq4, ctl.b_eq4, 8))

        # |beat| <= 2**30 (two most-negative 16-bit operands), so 32 bits signed hold it.
        beat_q = Signal(signed(32))
        first_q = Signal()
        m.d.sync += [beat_q.eq(beat), first_q.eq(ctl.first)]
        m.d.sync += self.acc.eq(Mux(first_q, beat_q, self.acc + beat_q))
        return m


class Fixed16PE(wiring.Component):
    """Baseline PE for area comparisons: one fixed 16x16-bit signed multiplier and an accumulator.

    Same pipeline as :class:`BitScalablePE` (product register, then accumulator; latency 2 cycles), one
    16x16-bit MAC per cycle whatever the operands' real precision.

    Parameters
    ----------
    acc_width : int
        Accumulator width, at least 33 bits.

    Members
    -------
    a : In(signed(16))
    b : In(signed(16))
    first : In(1)
        The operands start a new reduction.
    acc : Out(signed(acc_width))
    """

    def __init__(self, *, acc_width):
        _check_acc_width(acc_width)
        self._acc_width = acc_width
        super().__init__({
            "a": In(signed(16)),
            "b": In(signed(16)),
            "first": In(1),
            "acc": Out(signed(acc_width)),
        })

    @property
    def acc_width(self):
        return self._acc_width

    def elaborate(self, platform):
        m = Module()
        product = Signal(signed(32))
        first_q = Signal()
        m.d.sync += [product.eq(self.a * self.b), first_q.eq(self.first)]
        m.d.sync += self.acc.eq(Mux(first_q, product, self.acc + product))
        return m
