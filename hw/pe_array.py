"""R x C array of bit-scalable PEs running the three training GEMMs (FF, EP, WG) on stream interfaces."""

import contextlib
import contextvars
import math

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, ResetSignal, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.dfxp import PRECISIONS
from golden.pe_array import Mode as _GoldenMode, precision_code

from .pe import GRID, BitScalablePE, PEControl


__all__ = ["Mode", "LINE_BITS", "PRECISION_CODES", "command_layout", "output_layout", "PEArray", "shared_pe_modules"]

#: Bits of one PE-row (or column) operand line: 16 slices of 4 bits.
LINE_BITS = 64
#: Command encoding of the operand precisions (:func:`golden.pe_array.precision_code`).
PRECISION_CODES = {p: precision_code(p) for p in PRECISIONS}


_SHARED_PES = contextvars.ContextVar("shared_pes", default=None)


@contextlib.contextmanager
def shared_pe_modules():
    """While converting to Verilog or RTLIL inside this context, every PE array instantiates one shared
    module per distinct PE (``edgetrain_pe_acc<width>``) instead of elaborating each of its PEs into a module
    of its own; the context yields ``{module name: PE component}``, to be converted once and emitted beside
    the design. A 64-PE array then costs one PE's text, not 64 (simulation and synthesis see the same
    logic). Outside the context (e.g. ``amaranth.sim``, which cannot simulate an instance of a module it
    does not know) the PEs are elaborated inline as before."""
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


def output_layout(cols, acc_width):
    """Layout of one output beat: one row of the output tile and a flag on the tile's last row."""
    return data.StructLayout({
        "data": data.ArrayLayout(signed(acc_width), cols),
        "last": unsigned(1),
    })


_SPAN = {1: 1, 2: 2, 3: 4, 4: 4}    # grid rows/columns spanned by an operand of n 4-bit slices


def _slice_source(*, a_side, transposed, na, nb, size, line, index):
    """Where multiplier ``index`` of operand line ``line`` takes its slice from, for one configuration.

    Returns ``(kind, slice_position_in_beat)`` with kind ``"low"`` (a low slice, as is), ``"top"`` (the top
    slice, whose top bit is flipped to make the operand offset binary) or ``"zero"`` (the fourth slot of a
    12-bit operand).
    """
    row, col = divmod(index, GRID)
    sa, sb = _SPAN[na], _SPAN[nb]
    lane = (row // sa) * (GRID // sb) + col // sb
    own = na if a_side else nb
    slot = (row % sa) if a_side else (col % sb)
    kind = "top" if slot == own - 1 else "low"
    if slot >= own:
        return "zero", 0
    if transposed:
        position = (lane * size + line) * own + slot
    else:
        position = line * (LINE_BITS // 4) + lane * own + slot
    return kind, position


class PEArray(wiring.Component):
    """Output-stationary array of ``rows x cols`` bit-scalable PEs for the training GEMMs.

    A command (``cmd``) selects the GEMM (:class:`Mode`), the A and B operand precisions and the number of
    beats of the reduction. The array then takes that many beats, each one ``a`` and one ``b`` transfer
    taken together, and produces the ``rows x cols`` output tile as ``rows`` transfers on ``o``, one tile
    row each, ``last`` on the final row. Beats carry operand blocks as read from memory; the mode sets
    whether each side is read straight or transposed (see :mod:`golden.pe_array` for the bit layout), and
    per-row/per-column multiplexers route the slices to the PEs' multipliers, in offset binary. Beside the
    PEs, one accumulator per PE row and per PE column sums that line's operands; as the tile drains, each
    result is corrected from its row's and column's sums into the exact signed dot product.

    Throughput: one beat per cycle, ``rows*cols*lanes(pa, pb)`` MACs per cycle, with back-to-back commands
    (the next command is taken with the last beat of the current one). The output tile is copied into a
    drain buffer, so draining overlaps the next reduction; the last beat of a command waits while the
    buffer still holds the previous tile, so commands shorter than about ``rows + 4`` beats are
    drain-bound. With ``drain_buffers=2`` a second buffer holds a finished tile while the previous one
    drains, so only commands shorter than ``rows`` beats are drain-bound (a tile of ``rows`` rows leaves one
    row per cycle), at the cost of one more tile of accumulator-wide registers. Latency: the first output row is valid 3 cycles after the clock edge that takes the last
    beat.

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

    Members
    -------
    cmd : In(stream.Signature(command_layout(max_k)))
    a : In(stream.Signature(unsigned(64 * rows)))
        A-side beats.
    b : In(stream.Signature(unsigned(64 * cols)))
        B-side beats.
    o : Out(stream.Signature(output_layout(cols, acc_width)))
        Output tile rows, top row first.
    error : Out(1)
        Sticky: a command had an unsupported precision or the reserved mode.

    Raises
    ------
    TypeError, ValueError
        On a bad parameter.
    """

    def __init__(self, *, rows, cols, max_k=4096, precisions=PRECISIONS, drain_buffers=1):
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
        self._rows, self._cols, self._max_k = rows, cols, max_k
        self._drain_buffers = drain_buffers
        self._precisions = tuple(sorted(set(precisions)))
        self._acc_width = 32 + int(math.log2(max_k))
        super().__init__({
            "cmd": In(stream.Signature(command_layout(max_k))),
            "a": In(stream.Signature(unsigned(LINE_BITS * rows))),
            "b": In(stream.Signature(unsigned(LINE_BITS * cols))),
            "o": Out(stream.Signature(output_layout(cols, self._acc_width))),
            "error": Out(1),
        })

    rows = property(lambda self: self._rows)
    cols = property(lambda self: self._cols)
    max_k = property(lambda self: self._max_k)
    precisions = property(lambda self: self._precisions)
    acc_width = property(lambda self: self._acc_width)

    def _route(self, m, *, a_side, beat, transposed, prec_a, prec_b, size, line):
        """Multiplier operands of one line, chosen by (transposed, prec_a, prec_b)."""
        out = Signal(data.ArrayLayout(unsigned(4), GRID * GRID), name=f"{'a' if a_side else 'b'}_route{line}")
        slices = [beat[4 * i:4 * i + 4] for i in range(len(beat) // 4)]
        codes = [PRECISION_CODES[p] for p in self._precisions]
        for index in range(GRID * GRID):
            by_source = {}
            for t in (0, 1):
                for ca in codes:
                    for cb in codes:
                        src = _slice_source(a_side=a_side, transposed=t, na=ca + 1, nb=cb + 1,
                                            size=size, line=line, index=index)
                        by_source.setdefault(src, []).append(ca | cb << 2 | t << 4)
            with m.Switch(Cat(prec_a, prec_b, transposed)):
                for (kind, pos), patterns in by_source.items():
                    if kind == "low":
                        value = slices[pos]
                    elif kind == "top":
                        value = slices[pos] ^ 0b1000
                    else:
                        value = Const(0, 4)
                    with m.Case(*patterns):
                        m.d.comb += out[index].eq(value)
        return out

    def _operand_sum(self, m, ops, ctl, *, a_side, first, name):
        """Accumulated sum of one line's offset-binary operands, from its routed multiplier slices.

        Each lane's slices appear once per grid column (A side) or row (B side) of its block, so only the
        first column (row) of every block is counted, each slice weighted by ``16**slot``.
        """
        a_spans, b_spans = (ctl.a_ge2, ctl.a_eq4), (ctl.b_ge2, ctl.b_eq4)
        (own_ge2, own_eq4), (other_ge2, other_eq4) = (a_spans, b_spans) if a_side else (b_spans, a_spans)
        # Position p along the other axis starts a block iff p % span == 0.
        starts = [None, ~other_ge2, ~other_eq4, ~other_ge2]
        total = 0
        for slot_pos in range(GRID):
            part = 0
            for p in range(GRID):
                index = GRID * slot_pos + p if a_side else GRID * p + slot_pos
                term = ops[index]
                part = part + (term if starts[p] is None else Mux(starts[p], term, 0))
            # Weight 16**(slot_pos % span): 1, 16 if span >= 2, 256 if span 4, 4096 / 16 / 1 for slot 3.
            if slot_pos == 0:
                total = total + part
            elif slot_pos == 1:
                total = total + Mux(own_ge2, part << 4, part)
            elif slot_pos == 2:
                total = total + Mux(own_eq4, part << 8, part)
            else:
                total = total + Mux(own_eq4, part << 12, Mux(own_ge2, part << 4, part))
        line_sum = Signal(20, name=f"{name}_beat")
        acc = Signal(self._acc_width, name=name)
        m.d.sync += line_sum.eq(total)
        m.d.sync += acc.eq(Mux(first, line_sum, acc + line_sum))
        return acc

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
        prec_ok = Signal()      # routing exists for the command's precisions (else all slices are zero)
        # Output state: a tile in flight in the PE pipeline, a tile in the drain buffer.
        pending = Signal()
        busy = Signal()

        is_last = remaining == 0
        held = Signal()         # (two drain buffers) a finished tile waits behind the one draining
        # The last beat of a reduction may go only when a drain buffer will be free to take its tile.
        room = ~busy if self._drain_buffers == 1 else ~held
        go = active & self.a.valid & self.b.valid & (~is_last | (~pending & room))
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
            m.d.sync += prec_ok.eq(prec_valid)
            with m.If((payload.mode.as_value() == 3) | ~prec_valid):
                m.d.sync += self.error.eq(1)

        # Stage 0: route the beat's slices to the multipliers, once per PE row (A) and column (B).
        t_a = (mode == Mode.EP) | (mode == Mode.WG)
        t_b = mode == Mode.WG
        a_ops = [Signal(data.ArrayLayout(unsigned(4), GRID * GRID), name=f"a_ops{r}") for r in range(rows)]
        b_ops = [Signal(data.ArrayLayout(unsigned(4), GRID * GRID), name=f"b_ops{c}") for c in range(cols)]
        ctl = Signal(PEControl)
        last0 = Signal()
        last1 = Signal()
        done = Signal()
        # Idle cycles load zero operands: the PEs then add zero, so they need no enable.
        for r in range(rows):
            routed = self._route(m, a_side=True, beat=self.a.payload, transposed=t_a,
                                 prec_a=prec_a, prec_b=prec_b, size=rows, line=r)
            m.d.sync += a_ops[r].eq(Mux(go, routed, 0))
        for c in range(cols):
            routed = self._route(m, a_side=False, beat=self.b.payload, transposed=t_b,
                                 prec_a=prec_a, prec_b=prec_b, size=cols, line=c)
            m.d.sync += b_ops[c].eq(Mux(go, routed, 0))
        m.d.sync += [
            ctl.first.eq(go & first),
            ctl.a_ge2.eq(go & (prec_a >= 1)), ctl.a_eq4.eq(go & (prec_a >= 2)),
            ctl.b_ge2.eq(go & (prec_b >= 1)), ctl.b_eq4.eq(go & (prec_b >= 2)),
            last0.eq(go & is_last), last1.eq(last0), done.eq(last1),
        ]

        # Stage 1-2: the PEs (beat sum register, accumulator), and beside them, with the same timing, the
        # per-row sums of the A operands and per-column sums of the B operands that turn the PEs'
        # offset-binary sums into signed results (see golden.pe_array).
        width = self._acc_width
        accs = []
        shared = _SHARED_PES.get()
        pe_name = f"edgetrain_pe_acc{width}"
        if shared is not None:
            if pe_name not in shared:
                shared[pe_name] = BitScalablePE(acc_width=width)
        for r in range(rows):
            row = []
            for c in range(cols):
                if shared is None:
                    pe = BitScalablePE(acc_width=width)
                    m.submodules[f"pe_{r}_{c}"] = pe
                    m.d.comb += [pe.a.eq(a_ops[r]), pe.b.eq(b_ops[c]), pe.ctl.eq(ctl)]
                    row.append(pe.acc)
                else:
                    acc = Signal(width, name=f"acc_{r}_{c}")
                    m.submodules[f"pe_{r}_{c}"] = Instance(
                        pe_name, i_clk=ClockSignal(), i_rst=ResetSignal(), i_a=a_ops[r].as_value(),
                        i_b=b_ops[c].as_value(), i_ctl=ctl.as_value(), o_acc=acc)
                    row.append(acc)
            accs.append(row)
        first1 = Signal()
        m.d.sync += first1.eq(ctl.first)
        row_sums = [self._operand_sum(m, a_ops[r], ctl, a_side=True, first=first1, name=f"row_sum{r}")
                    for r in range(rows)]
        col_sums = [self._operand_sum(m, b_ops[c], ctl, a_side=False, first=first1, name=f"col_sum{c}")
                    for c in range(cols)]

        # The finishing tile's precisions and length, kept for its correction while the next one starts.
        beats_m1 = Signal(k_width)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += beats_m1.eq(self.cmd.payload.beats_m1)
        tile_pa = Signal(2)
        tile_pb = Signal(2)
        tile_beats = Signal(k_width + 1)
        with m.If(go & is_last):
            m.d.sync += [pending.eq(1), tile_pa.eq(prec_a), tile_pb.eq(prec_b), tile_beats.eq(Mux(prec_ok, beats_m1 + 1, 0))]

        # Corrections: result[r][c] = acc[r][c] - row_corr[r] - col_corr[c], modulo 2**acc_width, with
        # row_corr = row_sum << (pb - 1) - beats * lanes * 2**(pa + pb - 2), col_corr = col_sum << (pa - 1).
        row_shift = Signal(range(16))
        col_shift = Signal(range(16))
        const_shift = Signal(range(64))
        m.d.comb += [row_shift.eq(4 * tile_pb + 3), col_shift.eq(4 * tile_pa + 3)]
        def log2_span(code):    # spans 1, 2, 4, 4 for codes 0..3
            return Mux(code[1], 2, code[0])
        # log2(lanes) = (2 - log2 span_a) + (2 - log2 span_b); pa + pb - 2 = 4*(code_a + code_b) + 6.
        m.d.comb += const_shift.eq(10 + 4 * (tile_pa + tile_pb) - log2_span(tile_pa) - log2_span(tile_pb))

        # Drain buffer: a shift register of tile rows, top row on `o`, corrected on the way out.
        obuf = [Signal(data.ArrayLayout(unsigned(width), cols), name=f"obuf{r}") for r in range(rows)]
        obuf_row_corr = [Signal(width, name=f"obuf_row_corr{r}") for r in range(rows)]
        col_corr = [Signal(width, name=f"col_corr{c}") for c in range(cols)]
        row_count = Signal(range(rows))
        m.d.comb += [
            self.o.valid.eq(busy),
            self.o.payload.last.eq(row_count == rows - 1),
        ]
        for c in range(cols):
            m.d.comb += self.o.payload.data[c].eq(obuf[0][c] - obuf_row_corr[0] - col_corr[c])
        new_rows = [Cat(*accs[r]) for r in range(rows)]
        new_row_corr = [(row_sums[r] << row_shift) - (tile_beats << const_shift) for r in range(rows)]
        new_col_corr = [col_sums[c] << col_shift for c in range(cols)]

        def load(rows_, row_corr, col_corr_):
            stmts = [obuf[r].eq(rows_[r]) for r in range(rows)] + [obuf_row_corr[r].eq(row_corr[r]) for r in range(rows)]
            return stmts + [col_corr[c].eq(col_corr_[c]) for c in range(cols)]

        take = self.o.valid & self.o.ready
        finishing = take & (row_count == rows - 1)
        with m.If(done):
            m.d.sync += pending.eq(0)
        if self._drain_buffers == 1:
            with m.If(done):
                # `done` implies the buffer is empty: the last beat waited for it.
                m.d.sync += [busy.eq(1), row_count.eq(0)] + load(new_rows, new_row_corr, new_col_corr)
            with m.Elif(take):
                for r in range(rows - 1):
                    m.d.sync += [obuf[r].eq(obuf[r + 1]), obuf_row_corr[r].eq(obuf_row_corr[r + 1])]
                m.d.sync += row_count.eq(row_count + 1)
                with m.If(finishing):
                    m.d.sync += [busy.eq(0), row_count.eq(0)]
            return m

        # Two buffers: a tile that finishes while the previous one drains waits in `hold` and moves to the
        # drain buffer as its last row leaves. (`done` never meets a full `hold`: the last beat waited.)
        hold = [Signal(data.ArrayLayout(unsigned(width), cols), name=f"hold{r}") for r in range(rows)]
        hold_row_corr = [Signal(width, name=f"hold_row_corr{r}") for r in range(rows)]
        hold_col_corr = [Signal(width, name=f"hold_col_corr{c}") for c in range(cols)]
        with m.If(take):
            for r in range(rows - 1):
                m.d.sync += [obuf[r].eq(obuf[r + 1]), obuf_row_corr[r].eq(obuf_row_corr[r + 1])]
            m.d.sync += row_count.eq(row_count + 1)
        with m.If(finishing):
            m.d.sync += row_count.eq(0)
            with m.If(held):
                m.d.sync += [held.eq(0)] + load(hold, hold_row_corr, hold_col_corr)
            with m.Elif(done):
                m.d.sync += load(new_rows, new_row_corr, new_col_corr)
            with m.Else():
                m.d.sync += busy.eq(0)
        with m.Elif(done):
            with m.If(busy):
                m.d.sync += [held.eq(1)] + [hold[r].eq(new_rows[r]) for r in range(rows)]
                m.d.sync += [hold_row_corr[r].eq(new_row_corr[r]) for r in range(rows)]
                m.d.sync += [hold_col_corr[c].eq(new_col_corr[c]) for c in range(cols)]
            with m.Else():
                m.d.sync += [busy.eq(1), row_count.eq(0)] + load(new_rows, new_row_corr, new_col_corr)
        return m
