"""R x C array of bit-scalable PEs running the three training GEMMs (FF, EP, WG) on stream interfaces."""

import contextlib
import contextvars
import math

from amaranth.hdl import Array, Cat, ClockSignal, Const, Instance, Module, Mux, ResetSignal, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.dfxp import PRECISIONS
from golden.pe_array import Mode as _GoldenMode, precision_code

from .pe import GRID, MAX_STAGES, BitScalablePE, PEControl
from .pipeline import check_stages


__all__ = ["Mode", "LINE_BITS", "PRECISION_CODES", "command_layout", "output_layout", "PEArray", "shared_pe_modules"]

#: Bits of one PE-row (or column) operand line: 16 slices of 4 bits.
LINE_BITS = 64
#: Command encoding of the operand precisions (:func:`golden.pe_array.precision_code`).
PRECISION_CODES = {p: precision_code(p) for p in PRECISIONS}


_SHARED_PES = contextvars.ContextVar("shared_pes", default=None)


@contextlib.contextmanager
def shared_pe_modules():
    """While converting to Verilog or RTLIL inside this context, every PE array instantiates one shared
    module per distinct PE (``edgetrain_pe_acc<width>``), per distinct line router (the routing and
    operand sum of a PE row or column, ``edgetrain_pe_router_<a|b>_acc<width>_p<precisions>``) and per
    distinct output column drain (``edgetrain_pe_drain_r<rows>_d<rows per transfer>_b<buffers>_acc<width>``)
    instead of elaborating each of its PEs, lines and columns into logic of its own; the context yields
    ``{module name: component}``, to be converted once and emitted beside the design. A 64-PE array then
    costs one PE's, two routers' and one drain's text, not 64 PEs', 16 lines' and 8 columns' (simulation and
    synthesis see the same logic). Outside the context (e.g. ``amaranth.sim``, which cannot simulate an
    instance of a module it does not know) they are elaborated inline as submodules."""
    token = _SHARED_PES.set({})
    try:
        yield _SHARED_PES.get()
    finally:
        _SHARED_PES.reset(token)


class Mode(enum.Enum, shape=2):
    """GEMM of a command, i.e. how the two operand streams are read.

    ``FF``: ``Y = W X`` (A: W straight, B: stored activations straight); ``EP``: ``E' = W^T E`` (A: W
    transposed, B: stored errors straight); ``WG``: ``G = E X^T`` (A: stored errors transposed, B: stored
    activations transposed). The value 3 is reserved: it sets the error flag and runs as ``FF``. The values
    are :class:`golden.pe_array.Mode`'s.
    """
    FF = _GoldenMode.FF.value
    EP = _GoldenMode.EP.value
    WG = _GoldenMode.WG.value


def command_layout(max_k):
    """Layout of one command: the GEMM mode, the operand precisions and the number of beats minus one."""
    return data.StructLayout({
        "mode": Mode,
        "prec_a": unsigned(2),
        "prec_b": unsigned(2),
        "beats_m1": unsigned(int(math.log2(max_k))),
    })


def output_layout(cols, acc_width, drain_rows=1):
    """Layout of one output beat: ``drain_rows`` rows of the output tile, row ``j`` of the beat in elements
    ``j*cols .. j*cols + cols - 1`` of ``data`` (one row: ``data[c]`` is column ``c``), and a flag on the
    tile's last beat."""
    return data.StructLayout({
        "data": data.ArrayLayout(signed(acc_width), cols * drain_rows),
        "last": unsigned(1),
    })


_SPAN = {1: 1, 2: 2, 3: 4, 4: 4}    # grid rows/columns spanned by an operand of n 4-bit slices


def _slice_source(*, a_side, transposed, na, nb, index):
    """Where multiplier ``index`` of an operand line takes its slice from, for one configuration.

    Returns ``(kind, view)`` with kind ``"low"`` (a low slice, as is), ``"top"`` (the top slice, whose top
    bit is flipped to make the operand offset binary) or ``"zero"`` (the fourth slot of a 12-bit operand,
    view ``None``). The view names the slice the same way for every line (:func:`_view_position` finds it
    in the beat): ``("straight", offset)``, slice ``offset`` of the line's own 64 bits, or
    ``("transposed", own, lane, slot)``, slice ``slot`` of the line's element in lane ``lane`` when
    elements have ``own`` slices.
    """
    row, col = divmod(index, GRID)
    sa, sb = _SPAN[na], _SPAN[nb]
    lane = (row // sa) * (GRID // sb) + col // sb
    own = na if a_side else nb
    slot = (row % sa) if a_side else (col % sb)
    if slot >= own:
        return "zero", None
    kind = "top" if slot == own - 1 else "low"
    if transposed:
        return kind, ("transposed", own, lane, slot)
    return kind, ("straight", lane * own + slot)


def _view_position(view, *, size, line):
    """Position in the beat (in 4-bit slices) of the slice ``view`` (:func:`_slice_source`) of line ``line``
    of a side of ``size`` lines."""
    if view[0] == "straight":
        return line * (LINE_BITS // 4) + view[1]
    _, own, lane, slot = view
    return (lane * size + line) * own + slot


def _configurations(precisions):
    """``(transposed, code_a, code_b)`` of every routed configuration, and its ``Switch`` pattern on
    ``Cat(prec_a, prec_b, transposed)``."""
    codes = [PRECISION_CODES[p] for p in precisions]
    return [((t, ca, cb), ca | cb << 2 | t << 4) for t in (0, 1) for ca in codes for cb in codes]


def _line_views(*, a_side, precisions):
    """The views (:func:`_slice_source`) a line of one side reads with ``precisions``: the slices a
    :class:`_LineRouter` takes, in an order that is the same for every line (a straight view is one
    position for all precisions; a transposed view's position depends on the line, so the views of the
    several precisions stay apart even where they meet for some line)."""
    views = {_slice_source(a_side=a_side, transposed=t, na=ca + 1, nb=cb + 1, index=index)[1]
             for (t, ca, cb), _ in _configurations(precisions) for index in range(GRID * GRID)}
    views.discard(None)
    return tuple(sorted(views))


def _stage_suffix(stages):
    return f"_s{stages}" if stages else ""


def _pe_name(*, acc_width, stages):
    """Module name of the shared :class:`hw.pe.BitScalablePE` of these parameters."""
    return f"edgetrain_pe_acc{acc_width}{_stage_suffix(stages)}"


def _router_name(*, a_side, precisions, acc_width, stages):
    """Module name of the shared :class:`_LineRouter` of these parameters."""
    return (f"edgetrain_pe_router_{'a' if a_side else 'b'}_acc{acc_width}_p{'_'.join(map(str, precisions))}"
            f"{_stage_suffix(stages)}")


def _gather(beat, views, *, size, line):
    """The slices ``views`` of line ``line`` of a side of ``size`` lines, from ``beat``: pure wiring."""
    return Cat(*(beat[4 * p:4 * p + 4] for p in (_view_position(v, size=size, line=line) for v in views)))


class _LineRouter(wiring.Component):
    """The per-line logic of one side of a :class:`PEArray`, the same for every PE row (A side) or column
    (B side), so that a converted array holds it once, like its PEs (:func:`shared_pe_modules`).

    Takes the slices of the beat the line can read (:func:`_line_views`, gathered by the array as wiring)
    and routes them to the 16 multipliers of the line's PEs for the command's (transposed, prec_a,
    prec_b), in offset binary, into the operand register (zeros on cycles without a beat: the PEs then add
    zero, so they need no enable). Beside the PEs and with their timing, it accumulates the line's
    correction, which turns the PEs' offset-binary sums into signed results (see :mod:`golden.pe_array`):
    the line's sum of offset-binary operands, shifted by the other side's precision, less (A side) the
    offsets' products; each beat adds its share, so the correction is ready with the PEs' sums and the
    drain takes it without arithmetic.

    Latency: ``ops`` 1 cycle after ``slices``; ``sum`` ``2 + stages`` cycles after ``ops`` and ``ctl``, as
    the PE's ``acc`` (with ``stages`` >= 1 the line's four slot sums are registered, then the beat's line
    sum, delayed by ``stages - 1`` more registers, then the accumulator).

    Parameters
    ----------
    a_side : bool
        The A side (PE rows) or the B side (PE columns).
    precisions : tuple of int
        The array's supported precisions (sorted); other codes route zeros.
    acc_width : int
        Width of the accumulated sum.
    stages : int
        The PEs' pipeline stages (:class:`hw.pe.BitScalablePE`).

    Members
    -------
    slices : In(ArrayLayout(unsigned(4), len(_line_views(...))))
        The beat slices of the line's views, in :func:`_line_views` order.
    transposed : In(1)
        The side is read transposed.
    prec_a, prec_b : In(2)
        Precision codes of the command (of the beat taken this cycle).
    go : In(1)
        A beat is taken this cycle.
    ctl : In(PEControl)
        The control of the beat in ``ops`` (the array's PE control).
    first : In(1)
        The line sum in the last line-sum register is a reduction's first (``ctl.first`` ``1 + stages``
        cycles later).
    ops : Out(ArrayLayout(unsigned(4), 16))
        The multiplier operands of the line's PEs.
    sum : Out(unsigned(acc_width))
        The line's correction (modulo ``2**acc_width``): the row correction ``row_sum << (pb - 1) - beats *
        lanes * 2**(pa + pb - 2)`` (A side) or the column correction ``col_sum << (pa - 1)`` (B side).
    """

    def __init__(self, *, a_side, precisions, acc_width, stages=0):
        self._a_side = bool(a_side)
        self._precisions = tuple(precisions)
        self._acc_width = acc_width
        self._stages = stages
        self._views = _line_views(a_side=self._a_side, precisions=self._precisions)
        super().__init__({
            "slices": In(data.ArrayLayout(unsigned(4), len(self._views))),
            "transposed": In(1),
            "prec_a": In(2),
            "prec_b": In(2),
            "go": In(1),
            "ctl": In(PEControl),
            "first": In(1),
            "ops": Out(data.ArrayLayout(unsigned(4), GRID * GRID)),
            "sum": Out(unsigned(acc_width)),
        })

    def elaborate(self, platform):
        m = Module()
        routed = Signal.like(self.ops)
        column = {view: i for i, view in enumerate(self._views)}
        for index in range(GRID * GRID):
            by_source = {}
            for (t, ca, cb), pattern in _configurations(self._precisions):
                src = _slice_source(a_side=self._a_side, transposed=t, na=ca + 1, nb=cb + 1, index=index)
                by_source.setdefault(src, []).append(pattern)
            with m.Switch(Cat(self.prec_a, self.prec_b, self.transposed)):
                for (kind, view), patterns in by_source.items():
                    if kind == "low":
                        value = self.slices[column[view]]
                    elif kind == "top":
                        value = self.slices[column[view]] ^ 0b1000
                    else:
                        value = Const(0, 4)
                    with m.Case(*patterns):
                        m.d.comb += routed[index].eq(value)
        m.d.sync += self.ops.eq(Mux(self.go, routed, 0))

        # The operand sum. Each lane's slices appear once per grid column (A side) or row (B side) of its
        # block, so only the first column (row) of every block is counted, each slice weighted by
        # ``16**slot``.
        ctl = self.ctl
        a_spans, b_spans = (ctl.a_ge2, ctl.a_eq4), (ctl.b_ge2, ctl.b_eq4)
        (own_ge2, own_eq4), (other_ge2, other_eq4) = (a_spans, b_spans) if self._a_side else (b_spans, a_spans)
        # Position p along the other axis starts a block iff p % span == 0.
        starts = [None, ~other_ge2, ~other_eq4, ~other_ge2]
        parts = []
        for slot_pos in range(GRID):
            part = 0
            for p in range(GRID):
                index = GRID * slot_pos + p if self._a_side else GRID * p + slot_pos
                term = self.ops[index]
                part = part + (term if starts[p] is None else Mux(starts[p], term, 0))
            parts.append(part)
        # The beat's precision codes and whether it counts (a beat of supported precisions) travel with it.
        supported = Const(sum(1 << PRECISION_CODES[p] for p in self._precisions), 4)
        beat = Signal(data.StructLayout({"ca": 2, "cb": 2, "ok": 1}))
        m.d.sync += beat.eq(Cat(self.prec_a, self.prec_b, self.go & supported.bit_select(self.prec_a, 1)
                                & supported.bit_select(self.prec_b, 1)))
        if self._stages:
            regs = [Signal(6, name=f"part{i}") for i in range(GRID)]      # four slices: at most 60
            spans = Signal(2)
            beat_reg = Signal.like(beat, name="beat_s")
            m.d.sync += [reg.eq(part) for reg, part in zip(regs, parts)] + [spans.eq(Cat(own_ge2, own_eq4))]
            m.d.sync += beat_reg.eq(beat)
            parts, (own_ge2, own_eq4), beat = regs, (spans[0], spans[1]), beat_reg
        total = 0
        for slot_pos, part in enumerate(parts):
            # Weight 16**(slot_pos % span): 1, 16 if span >= 2, 256 if span 4, 4096 / 16 / 1 for slot 3.
            if slot_pos == 0:
                total = total + part
            elif slot_pos == 1:
                total = total + Mux(own_ge2, part << 4, part)
            elif slot_pos == 2:
                total = total + Mux(own_eq4, part << 8, part)
            else:
                total = total + Mux(own_eq4, part << 12, Mux(own_ge2, part << 4, part))
        # The beat's share of the line's correction (golden.pe_array): the A side's row correction is
        # row_sum << (pb - 1) - beats * lanes * 2**(pa + pb - 2), the B side's column correction
        # col_sum << (pa - 1), with pa - 1 = 4 * code_a + 3. Each beat adds its line sum shifted and, on the A
        # side, less its lanes * 2**(pa + pb - 2), so the accumulated sum is the correction itself and the
        # drain takes it as it is.
        width = self._acc_width
        other = beat.cb if self._a_side else beat.ca
        shifted = Array(total << (4 * code + 3) for code in range(4))[other]
        if self._a_side:
            def lanes_term(ca, cb):
                # lanes = (4 / span_a) * (4 / span_b), spans 1, 2, 4, 4 for codes 0..3; pa + pb - 2 = 4 *
                # (code_a + code_b) + 6.
                log2_span = (0, 1, 2, 2)
                return 1 << (10 + 4 * (ca + cb) - log2_span[ca] - log2_span[cb])
            terms = Array(Const(lanes_term(code & 3, code >> 2), width) for code in range(16))
            offset = Mux(beat.ok, terms[Cat(beat.ca, beat.cb)], 0)
            shifted = shifted - offset
        line_sum = Signal(width)
        m.d.sync += line_sum.eq(shifted)
        for i in range(self._stages - 1):
            line_sum, previous = Signal(width, name=f"line_sum_d{i}"), line_sum
            m.d.sync += line_sum.eq(previous)
        m.d.sync += self.sum.eq(Mux(self.first, line_sum, self.sum + line_sum))
        return m


def _drain_name(*, rows, per, buffers, acc_width):
    """Module name of the shared :class:`_DrainColumn` of these parameters."""
    return f"edgetrain_pe_drain_r{rows}_d{per}_b{buffers}_acc{acc_width}"


class _DrainColumn(wiring.Component):
    """The drain of one output column of a :class:`PEArray`, the same for every column, so that a converted
    array holds it once, like its PEs and routers (:func:`shared_pe_modules`).

    A shift register of the column's ``rows`` results (and, with two buffers, a second one that holds a
    finished tile while the previous one drains) and the column's correction; ``data`` is its top ``per``
    results corrected by the column's and the given rows' corrections (:mod:`golden.pe_array`), zero beyond
    the tile on a partial last transfer. The array's drain control drives the strobes; a load wins over the
    shift.

    Parameters
    ----------
    rows, per, buffers, acc_width : int
        Tile rows, rows per transfer (at most ``rows``), drain buffers (1 or 2), result width.

    Members
    -------
    tile : In(unsigned(rows * acc_width))
        The PEs' sums of the column, row ``r`` at bits ``r * acc_width``.
    tile_corr : In(unsigned(acc_width))
        The column correction of the finishing tile.
    row_corr : In(unsigned(per * acc_width))
        The row corrections of the ``per`` rows on the output.
    ld_new, ld_hold, cap_hold, shift, last : In(1)
        Load the finishing tile; load the held tile; hold the finishing tile; shift by ``per`` rows; the
        transfer on the output is the tile's last.
    data : Out(unsigned(per * acc_width))
        The corrected results of the ``per`` rows on the output.
    """

    def __init__(self, *, rows, per, buffers, acc_width):
        self._rows, self._per, self._buffers, self._width = rows, per, buffers, acc_width
        super().__init__({
            "tile": In(unsigned(rows * acc_width)),
            "tile_corr": In(unsigned(acc_width)),
            "row_corr": In(unsigned(per * acc_width)),
            "ld_new": In(1), "ld_hold": In(1), "cap_hold": In(1), "shift": In(1), "last": In(1),
            "data": Out(unsigned(per * acc_width)),
        })

    def elaborate(self, platform):
        m = Module()
        rows, per, w = self._rows, self._per, self._width
        tile = [self.tile[r * w:(r + 1) * w] for r in range(rows)]
        obuf = [Signal(w, name=f"obuf{r}") for r in range(rows)]
        corr = Signal(w)
        hold = [Signal(w, name=f"hold{r}") for r in range(rows)] if self._buffers == 2 else None
        hold_corr = Signal(w) if self._buffers == 2 else None
        with m.If(self.ld_new):
            m.d.sync += [obuf[r].eq(tile[r]) for r in range(rows)] + [corr.eq(self.tile_corr)]
        if hold is not None:
            with m.Elif(self.ld_hold):
                m.d.sync += [obuf[r].eq(hold[r]) for r in range(rows)] + [corr.eq(hold_corr)]
            with m.If(self.cap_hold):
                m.d.sync += [hold[r].eq(tile[r]) for r in range(rows)] + [hold_corr.eq(self.tile_corr)]
        with m.If(~self.ld_new & (~self.ld_hold if hold is not None else 1) & self.shift):
            # Rows past the end keep what they hold: they are sent only as zeros of a partial transfer.
            m.d.sync += [obuf[r].eq(obuf[r + per]) for r in range(rows - per)]
        for j in range(per):
            value = obuf[j] - self.row_corr[j * w:(j + 1) * w] - corr
            beyond = 0 < rows % per <= j        # a partial last transfer sends zeros beyond the tile
            m.d.comb += self.data[j * w:(j + 1) * w].eq(Mux(self.last, 0, value) if beyond else value)
        return m


class PEArray(wiring.Component):
    """Output-stationary array of ``rows x cols`` bit-scalable PEs for the training GEMMs.

    A command (``cmd``) selects the GEMM (:class:`Mode`), the A and B operand precisions and the number of
    beats of the reduction. The array then takes that many beats, each one ``a`` and one ``b`` transfer
    taken together, and produces the ``rows x cols`` output tile on ``o``, ``drain_rows`` tile rows per
    transfer (``ceil(rows / drain_rows)`` transfers, top rows first), ``last`` on the final one. Beats carry operand blocks as read from memory; the mode sets
    whether each side is read straight or transposed (see :mod:`golden.pe_array` for the bit layout), and
    per-row/per-column multiplexers route the slices to the PEs' multipliers, in offset binary. Beside the
    PEs, one accumulator per PE row and per PE column sums that line's correction (its operands' sum, shifted
    and offset per beat); as the tile drains, each result less its row's and column's corrections is the
    exact signed dot product.

    Throughput: one beat per cycle, ``rows*cols*lanes(pa, pb)`` MACs per cycle, with back-to-back commands
    (the next command is taken with the last beat of the current one). The output tile is copied into a
    drain buffer, so draining overlaps the next reduction. A tile owns a buffer from its last beat (3
    cycles in the pipeline, ``3 + stages`` with pipelined PEs, its precisions and length travelling with it)
    until its last transfer of ``s = ceil(rows / drain_rows)`` leaves, and a last beat waits while every
    buffer is owned: with one buffer, commands shorter than ``d + s`` beats (``d = 3 + stages``) are
    drain-bound; with ``drain_buffers=2`` (one more tile
    of accumulator-wide registers), only those shorter than ``max(s, (d + s) / 2)`` beats (the drain
    itself sends one tile per ``s`` cycles). Short reductions are common
    in training (an error propagated over 10 classes is 3 beats at 8 bits), and at one row per transfer
    the output, not the multipliers, would bound them: ``drain_rows`` widens ``o`` (and its result
    correction) to serve them at full rate. Latency: the first output transfer is valid ``3 + stages``
    cycles after the clock edge that takes the last beat (:attr:`drain_delay`).

    Back-pressure: ``a``/``b`` are taken only together (``ready`` is raised for both when both are valid);
    any stall of ``cmd``, ``a``, ``b`` or ``o`` only delays the array, no data is lost or repeated.

    Parameters
    ----------
    rows, cols : int
        PE grid size, 1 to 64 each.
    max_k : int
        Largest beat count of one command; a power of two >= 2. Sets the accumulator width.
    precisions : tuple of int
        Supported operand precisions, a subset of (4, 8, 12, 16). A command with another precision sets
        ``error`` and computes zeros.
    drain_buffers : int
        1 or 2 output tiles buffered for draining.
    drain_rows : int
        Tile rows per output transfer, 1 to 64; an array of fewer rows sends its whole tile at once
        (``min(drain_rows, rows)`` rows per transfer). When ``rows`` is not a multiple, the tile's last
        transfer is partial and its elements beyond the tile are zero.
    stages : int
        Pipeline stages of the PEs and of the line sums beside them, 0 to :data:`hw.pe.MAX_STAGES`
        (:class:`hw.pe.BitScalablePE`); each adds a cycle to the latency, none to the throughput.

    Members
    -------
    cmd : In(stream.Signature(command_layout(max_k)))
    a : In(stream.Signature(unsigned(64 * rows)))
        A-side beats.
    b : In(stream.Signature(unsigned(64 * cols)))
        B-side beats.
    o : Out(stream.Signature(output_layout(cols, acc_width, min(drain_rows, rows))))
        Output tile rows, top row first.
    error : Out(1)
        Sticky: a command had an unsupported precision or the reserved mode.

    Raises
    ------
    TypeError, ValueError
        On a bad parameter.
    """

    def __init__(self, *, rows, cols, max_k=4096, precisions=PRECISIONS, drain_buffers=1, drain_rows=1,
                 stages=0):
        for name, value in (("Row count", rows), ("Column count", cols), ("Maximum beat count", max_k)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
        if not 1 <= rows <= 64:
            raise ValueError(f"Row count must be an integer in 1..64, not {rows!r}")
        if not 1 <= cols <= 64:
            raise ValueError(f"Column count must be an integer in 1..64, not {cols!r}")
        if max_k < 2 or max_k & (max_k - 1):
            raise ValueError(f"Maximum beat count must be a power of two >= 2, not {max_k!r}")
        precisions = tuple(precisions)
        if not precisions or any(p not in PRECISION_CODES for p in precisions):
            raise ValueError(f"Precisions must be a non-empty subset of {PRECISIONS}, not {precisions!r}")
        if drain_buffers not in (1, 2) or isinstance(drain_buffers, bool):
            raise ValueError(f"Drain buffer count must be 1 or 2, not {drain_buffers!r}")
        if not isinstance(drain_rows, int) or isinstance(drain_rows, bool):
            raise TypeError(f"Drain row count must be an integer, not {drain_rows!r}")
        if not 1 <= drain_rows <= 64:
            raise ValueError(f"Drain row count must be an integer in 1..64, not {drain_rows!r}")
        check_stages(stages, MAX_STAGES)
        self._stages = stages
        self._rows, self._cols, self._max_k = rows, cols, max_k
        self._drain_buffers = drain_buffers
        self._drain_rows = min(drain_rows, rows)
        self._precisions = tuple(sorted(set(precisions)))
        self._acc_width = 32 + int(math.log2(max_k))
        super().__init__({
            "cmd": In(stream.Signature(command_layout(max_k))),
            "a": In(stream.Signature(unsigned(LINE_BITS * rows))),
            "b": In(stream.Signature(unsigned(LINE_BITS * cols))),
            "o": Out(stream.Signature(output_layout(cols, self._acc_width, self._drain_rows))),
            "error": Out(1),
        })

    rows = property(lambda self: self._rows)
    cols = property(lambda self: self._cols)
    max_k = property(lambda self: self._max_k)
    precisions = property(lambda self: self._precisions)
    acc_width = property(lambda self: self._acc_width)
    drain_buffers = property(lambda self: self._drain_buffers)
    drain_rows = property(lambda self: self._drain_rows)      # rows per transfer, at most ``rows``
    stages = property(lambda self: self._stages)

    @property
    def drain_delay(self):
        """Cycles from the clock edge that takes a command's last beat to its tile's first output transfer."""
        return 3 + self._stages

    def elaborate(self, platform):
        m = Module()
        rows, cols = self._rows, self._cols
        k_width = int(math.log2(self._max_k))

        # Command state.
        active = Signal()
        mode = Signal(Mode)
        prec_a = Signal(2)
        prec_b = Signal(2)
        remaining = Signal(k_width)
        first = Signal()
        # Output state: the tiles past their last beat (in the PE pipeline, held or draining), a tile in
        # the drain buffer.
        owned = Signal(range(self._drain_buffers + 1))
        leaving = Signal()      # a tile's last transfer leaves this cycle
        busy = Signal()

        is_last = remaining == 0
        held = Signal()         # (two drain buffers) a finished tile waits behind the one draining
        # The last beat of a reduction may go only when a drain buffer will be free to take its tile: fewer
        # than `drain_buffers` tiles owned, not counting one that leaves this cycle.
        go = active & self.a.valid & self.b.valid & (~is_last | (owned - leaving < self._drain_buffers))
        m.d.sync += owned.eq(owned + (go & is_last) - leaving)
        m.d.comb += [self.a.ready.eq(go), self.b.ready.eq(go)]
        m.d.comb += self.cmd.ready.eq(~active | (go & is_last))

        with m.If(go):
            m.d.sync += [remaining.eq(remaining - 1), first.eq(0)]
            with m.If(is_last):
                m.d.sync += active.eq(0)
        with m.If(self.cmd.valid & self.cmd.ready):
            payload = self.cmd.payload
            m.d.sync += [
                active.eq(1), mode.eq(payload.mode), prec_a.eq(payload.prec_a), prec_b.eq(payload.prec_b),
                remaining.eq(payload.beats_m1), first.eq(1),
            ]
            supported = Const(sum(1 << PRECISION_CODES[p] for p in self._precisions), 4)
            prec_valid = supported.bit_select(payload.prec_a, 1) & supported.bit_select(payload.prec_b, 1)
            with m.If((payload.mode.as_value() == 3) | ~prec_valid):
                m.d.sync += self.error.eq(1)

        # Stage 0: route the beat's slices to the multipliers, once per PE row (A) and column (B); stage 1-2:
        # beside the PEs and with their timing, the per-row sums of the A operands and per-column sums of the B
        # operands that turn the PEs' offset-binary sums into signed results (see golden.pe_array). Both are a
        # line's router (_LineRouter), the same for every line of a side: each takes the beat slices its line
        # can read, gathered here as wiring, so a converted array holds one router per side, as it holds one
        # PE (shared_pe_modules).
        t_a = (mode == Mode.EP) | (mode == Mode.WG)
        t_b = mode == Mode.WG
        ctl = Signal(PEControl)
        # A last beat's flag down the pipeline (ctl's cycle, then one per PE stage): `done` when its tile is in
        # the accumulators.
        lasts = [Signal(name=f"last{i}") for i in range(2 + self._stages)]
        done = Signal()
        m.d.sync += [
            ctl.first.eq(go & first),
            ctl.a_ge2.eq(go & (prec_a >= 1)), ctl.a_eq4.eq(go & (prec_a >= 2)),
            ctl.b_ge2.eq(go & (prec_b >= 1)), ctl.b_eq4.eq(go & (prec_b >= 2)),
            lasts[0].eq(go & is_last), done.eq(lasts[-1]),
        ] + [later.eq(earlier) for earlier, later in zip(lasts, lasts[1:])]
        firsts = [Signal(name=f"first{i + 1}") for i in range(1 + self._stages)]   # ctl.first down the line sums
        m.d.sync += [firsts[0].eq(ctl.first)] + [later.eq(earlier) for earlier, later in zip(firsts, firsts[1:])]
        first1 = firsts[-1]
        width = self._acc_width
        shared = _SHARED_PES.get()

        def route_lines(a_side, beat, transposed, size):
            side = "a" if a_side else "b"
            params = {"a_side": a_side, "precisions": self._precisions, "acc_width": width, "stages": self._stages}
            name = _router_name(**params)
            views = _line_views(a_side=a_side, precisions=self._precisions)
            if shared is not None and name not in shared:
                shared[name] = _LineRouter(**params)
            ops, sums = [], []
            for line in range(size):
                op = Signal(data.ArrayLayout(unsigned(4), GRID * GRID), name=f"{side}_ops{line}")
                line_sum = Signal(width, name=f"{'row' if a_side else 'col'}_sum{line}")
                inputs = {"slices": _gather(beat, views, size=size, line=line), "transposed": transposed,
                          "prec_a": prec_a, "prec_b": prec_b, "go": go, "ctl": ctl.as_value(), "first": first1}
                if shared is None:
                    router = _LineRouter(**params)
                    m.submodules[f"{side}_router{line}"] = router
                    m.d.comb += [getattr(router, port).eq(value) for port, value in inputs.items()]
                    m.d.comb += [op.eq(router.ops), line_sum.eq(router.sum)]
                else:
                    m.submodules[f"{side}_router{line}"] = Instance(
                        name, i_clk=ClockSignal(), i_rst=ResetSignal(),
                        **{f"i_{port}": value for port, value in inputs.items()},
                        o_ops=op.as_value(), o_sum=line_sum)
                ops.append(op)
                sums.append(line_sum)
            return ops, sums

        a_ops, row_sums = route_lines(True, self.a.payload, t_a, rows)
        b_ops, col_sums = route_lines(False, self.b.payload, t_b, cols)

        accs = []
        pe_name = _pe_name(acc_width=width, stages=self._stages)
        if shared is not None:
            if pe_name not in shared:
                shared[pe_name] = BitScalablePE(acc_width=width, stages=self._stages)
        for r in range(rows):
            row = []
            # One signal per PE row takes the instances' sums: a signal per PE costs the conversion more.
            row_acc = None if shared is None else Signal(width * cols, name=f"acc_{r}")
            for c in range(cols):
                if shared is None:
                    pe = BitScalablePE(acc_width=width, stages=self._stages)
                    m.submodules[f"pe_{r}_{c}"] = pe
                    m.d.comb += [pe.a.eq(a_ops[r]), pe.b.eq(b_ops[c]), pe.ctl.eq(ctl)]
                    row.append(pe.acc)
                else:
                    acc = row_acc[c * width:(c + 1) * width]
                    m.submodules[f"pe_{r}_{c}"] = Instance(
                        pe_name, i_clk=ClockSignal(), i_rst=ResetSignal(), i_a=a_ops[r].as_value(),
                        i_b=b_ops[c].as_value(), i_ctl=ctl.as_value(), o_acc=acc)
                    row.append(acc)
            accs.append(row)

        # Drain buffer: per column a shift register of tile rows (a _DrainColumn, the same for every column),
        # the top `drain_rows` rows on `o`, corrected on the way out; each transfer shifts by `drain_rows` rows.
        # The row corrections are shared by the columns and shift here.
        per = self._drain_rows
        steps = -(-rows // per)
        two = self._drain_buffers == 2
        obuf_row_corr = [Signal(width, name=f"obuf_row_corr{r}") for r in range(rows)]
        hold_row_corr = [Signal(width, name=f"hold_row_corr{r}") for r in range(rows)] if two else None
        row_count = Signal(range(max(steps, 2)))   # transfers of the tile done (one bit when there is one)
        final = row_count == steps - 1
        # The line sums are the corrections (see _LineRouter).
        new_row_corr, new_col_corr = row_sums, col_sums

        take = self.o.valid & self.o.ready
        finishing = take & final
        m.d.comb += [leaving.eq(finishing), self.o.valid.eq(busy), self.o.payload.last.eq(final)]
        # Strobes: load the finishing tile, load the held tile, hold the finishing tile (a load wins over the
        # shift of a transfer). One buffer: `done` implies the buffer is empty, the last beat waited for it.
        # Two: a tile that finishes while the previous one drains waits in `hold` and moves to the drain
        # buffer as its last row leaves (`done` never meets a full `hold`: the last beat waited).
        ld_new = Signal()
        ld_hold = Signal()
        cap_hold = Signal()
        if two:
            m.d.comb += [ld_new.eq(done & Mux(finishing, ~held, ~busy)), ld_hold.eq(finishing & held),
                         cap_hold.eq(done & ~finishing & busy)]
        else:
            m.d.comb += ld_new.eq(done)

        drain_params = {"rows": rows, "per": per, "buffers": self._drain_buffers, "acc_width": width}
        drain_name = _drain_name(**drain_params)
        if shared is not None and drain_name not in shared:
            shared[drain_name] = _DrainColumn(**drain_params)
        top_corr = Cat(*obuf_row_corr[:per])
        out = Signal(per * cols * width)
        for c in range(cols):
            # (Port names avoid SystemVerilog keywords: `new`, `final`.)
            inputs = {"tile": Cat(*(accs[r][c] for r in range(rows))), "tile_corr": new_col_corr[c],
                      "row_corr": top_corr, "ld_new": ld_new, "ld_hold": ld_hold, "cap_hold": cap_hold,
                      "shift": take, "last": final}
            data_c = out[c * per * width:(c + 1) * per * width]
            if shared is None:
                column = _DrainColumn(**drain_params)
                m.submodules[f"drain{c}"] = column
                m.d.comb += [getattr(column, port).eq(value) for port, value in inputs.items()]
                m.d.comb += data_c.eq(column.data)
            else:
                m.submodules[f"drain{c}"] = Instance(
                    drain_name, i_clk=ClockSignal(), i_rst=ResetSignal(),
                    **{f"i_{port}": value for port, value in inputs.items()}, o_data=data_c)
        for j in range(per):
            for c in range(cols):
                base = (c * per + j) * width
                m.d.comb += self.o.payload.data[j * cols + c].eq(out[base:base + width])

        # Row corrections and the drain state.
        with m.If(ld_new):
            m.d.sync += [obuf_row_corr[r].eq(new_row_corr[r]) for r in range(rows)]
        if two:
            with m.Elif(ld_hold):
                m.d.sync += [obuf_row_corr[r].eq(hold_row_corr[r]) for r in range(rows)]
            with m.If(cap_hold):
                m.d.sync += [hold_row_corr[r].eq(new_row_corr[r]) for r in range(rows)]
        with m.If(~ld_new & ~ld_hold & take):
            m.d.sync += [obuf_row_corr[r].eq(obuf_row_corr[r + per]) for r in range(rows - per)]
        with m.If(take):
            m.d.sync += row_count.eq(Mux(final, 0, row_count + 1))
        with m.If(ld_new | ld_hold):
            m.d.sync += [busy.eq(1), row_count.eq(0)]
        with m.Elif(finishing):
            m.d.sync += busy.eq(0)
        if two:
            with m.If(cap_hold):
                m.d.sync += held.eq(1)
            with m.Elif(ld_hold):
                m.d.sync += held.eq(0)
        return m
