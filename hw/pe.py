"""Bit-scalable processing element (HNPU / Bit Fusion style) and the fixed 16x16-bit baseline PE."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .pipeline import check_stages


__all__ = ["STAGE_DELAYS_NS", "MAX_STAGES", "GRID", "PEControl", "shift_by_spans", "BitScalablePE", "Fixed16PE"]

#: Critical path of the PE (ns, sky130_fd_sc_hd typical with flip-flop overhead, default configuration, as
#: ``python -m hw.build --target synth --block pe --set pipeline.pe=D`` measures it) at each ``stages`` depth
#: D, shallowest first (:mod:`hw.pipeline`).
STAGE_DELAYS_NS = (5.25, 4.54, 3.69)

#: The deepest ``stages`` of :class:`BitScalablePE`.
MAX_STAGES = len(STAGE_DELAYS_NS) - 1

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


def shift_by_spans(value, lo_bit, hi_bit, step):
    """``value << step * (lo_bit + hi_bit)`` for span flags (None = always 0), as two 2:1 multiplexers at most."""
    if lo_bit is None and hi_bit is None:
        return value
    if hi_bit is None:
        return Mux(lo_bit, value << step, value)
    if lo_bit is None:
        return Mux(hi_bit, value << step, value)
    return Mux(lo_bit, Mux(hi_bit, value << 2 * step, value << step), Mux(hi_bit, value << step, value))


def _register(m, name, values, width):
    """Registers of ``values`` (named ``name<i>``; ``width`` bits, or the value's own shape when None)."""
    regs = []
    for i, value in enumerate(values):
        reg = Signal(width, name=f"{name}{i}") if width is not None else Signal.like(value, name=f"{name}{i}")
        m.d.sync += reg.eq(value)
        regs.append(reg)
    return regs


def _check_acc_width(acc_width):
    if not isinstance(acc_width, int) or isinstance(acc_width, bool):
        raise TypeError(f"Accumulator width must be an integer, not {acc_width!r}")
    if acc_width < 33:
        raise ValueError(f"Accumulator width must be at least 33 bits, not {acc_width!r}")


class BitScalablePE(wiring.Component):
    """Bit-scalable PE: 16 unsigned 4x4-bit slice multipliers summed into one exact accumulator.

    Operands arrive in offset binary (``A = a + 2**(p-1)``, see :mod:`golden.pe_array`), already split into
    slices and routed to the multipliers by the array (once per PE row or column): multiplier ``(I, K)``
    multiplies ``a[4*I + K]`` by ``b[4*I + K]``. Unsigned slices need no sign extension anywhere in the
    adder tree, which keeps the PE close to a plain 16x16-bit multiplier in area; the array turns the
    offset-binary sum into the signed result with one correction per PE row and column.

    The products are combined in two levels whose shifts depend only on the operand spans:

    * level 1, inside each 2x2 sub-grid, local slice ``(i, k)`` is shifted by ``4*(i*a_ge2 + k*b_ge2)``;
    * level 2, sub-grid ``(BI, BK)`` is shifted by ``8*(BI*a_eq4 + BK*b_eq4)``.

    At 4x4 every product has weight 1 (16 independent pairs), at 16x16 product ``(I, K)`` has weight
    ``16**(I+K)`` (one pair), and every mix in between follows: each beat adds ``sum_j A_j * B_j`` over its
    lanes, exactly. Only 3 + 3 small multiplexers per sub-grid and level are needed, not one per product.

    Latency: ``2 + stages`` cycles from the inputs to ``acc`` (a beat sum register, then the accumulator;
    ``stages`` = 1 registers the four sub-grid sums between the two levels, 2 also the 16 slice products).
    Throughput: one beat per cycle at every depth; zero slices add nothing, so idle cycles need no enable.

    Parameters
    ----------
    acc_width : int
        Accumulator width, at least 33 bits (one beat sum is below 2**32).
    stages : int
        Pipeline registers added to the product path, 0 to :data:`MAX_STAGES` (:mod:`hw.pipeline`).

    Members
    -------
    a : In(ArrayLayout(unsigned(4), 16))
        A-side slice of each multiplier.
    b : In(ArrayLayout(unsigned(4), 16))
        B-side slice of each multiplier.
    ctl : In(PEControl)
        Operand spans and the start-of-reduction flag of the beat on ``a``/``b``.
    acc : Out(unsigned(acc_width))
        Running sum of the beats (modulo ``2**acc_width``); after a beat with ``ctl.first`` it restarts from
        that beat's sum.
    """

    def __init__(self, *, acc_width, stages=0):
        _check_acc_width(acc_width)
        check_stages(stages, MAX_STAGES)
        self._acc_width = acc_width
        self._stages = stages
        super().__init__({
            "a": In(data.ArrayLayout(unsigned(4), GRID * GRID)),
            "b": In(data.ArrayLayout(unsigned(4), GRID * GRID)),
            "ctl": In(PEControl),
            "acc": Out(unsigned(acc_width)),
        })

    @property
    def acc_width(self):
        return self._acc_width

    @property
    def stages(self):
        return self._stages

    @property
    def latency(self):
        """Cycles from a beat on the inputs to its sum in ``acc``."""
        return 2 + self._stages

    def elaborate(self, platform):
        m = Module()
        ctl = self.ctl
        products = [self.a[idx] * self.b[idx] for idx in range(GRID * GRID)]
        if self._stages >= 2:
            products, ctl = _register(m, "product", products, 8), _register(m, "ctl_p", [ctl], None)[0]

        sub_sums = []
        for bi in range(2):
            for bk in range(2):
                terms = []
                for i in range(2):
                    for k in range(2):
                        product = products[GRID * (2 * bi + i) + (2 * bk + k)]
                        terms.append(shift_by_spans(product, ctl.a_ge2 if i else None,
                                                    ctl.b_ge2 if k else None, 4))
                sub_sums.append(terms[0] + terms[1] + terms[2] + terms[3])
        if self._stages >= 1:
            # A sub-grid sum is below 4 * 2**8 * 2**8 (its four products, the widest shifted by 8).
            sub_sums, ctl = _register(m, "sub_sum", sub_sums, 18), _register(m, "ctl_s", [ctl], None)[0]
        beat = (sub_sums[0]
                + shift_by_spans(sub_sums[2], ctl.a_eq4, None, 8)
                + shift_by_spans(sub_sums[1], None, ctl.b_eq4, 8)
                + shift_by_spans(sub_sums[3], ctl.a_eq4, ctl.b_eq4, 8))

        # A beat adds at most (2**16 - 1)**2 < 2**32 (one 16x16 pair; narrower modes add less).
        beat_q = Signal(32)
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
