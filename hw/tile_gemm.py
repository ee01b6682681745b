"""One training GEMM on a PE array, with its operands read from tile-wide memories and its output rows
tagged with their position: the shared core of the TrainCore's FF, EP and WG engines."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.core import MASTER_BITS
from golden.pe_array import lanes as pair_lanes

from .pe_array import LINE_BITS, PRECISION_CODES, Mode, PEArray


__all__ = ["Order", "ELEMENT_BITS", "tile_read_signature", "command_layout", "row_layout", "TileGemm",
           "core_precisions"]

#: Bits of one element of a tile word (codes are stored sign-extended, masters as they are).
ELEMENT_BITS = MASTER_BITS


class Order(enum.Enum, shape=1):
    """Order of the output tiles: ``N_OUTER`` visits every row tile of a column tile before the next column
    tile (the forward pass: one sample group at a time); ``M_OUTER`` is row-major over tiles (the order of
    :func:`golden.core.tile_order`, which stochastic rounding follows)."""
    N_OUTER = 0
    M_OUTER = 1


def core_precisions(tile, precisions):
    """The operand precisions (bits) a core with ``tile x tile`` arrays runs at full rate: those whose
    elements per operand line fit a tile row (8, 12 and 16 bits for tiles of 4 or 8; 4 bits needs 16)."""
    return tuple(p for p in precisions if pair_lanes(p, p) <= tile)


def tile_read_signature(addr_width, tile, element_bits=ELEMENT_BITS):
    """A synchronous read port of a tile memory, from the reader's side: ``data`` is the word at the
    ``addr`` of the last cycle with ``en`` high, and holds while ``en`` is low."""
    return wiring.Signature({
        "addr": Out(addr_width),
        "en": Out(1),
        "data": In(tile * tile * element_bits),
    })


def command_layout(dim_width, addr_width):
    """One GEMM ``O (m x n) = A (m x k) B (k x n)``: the mode (which sets how A and B are stored), the
    precision of both operands, the sizes, where A and B start (tile addresses) and how many tiles a stored
    row of each holds, and the order of the output tiles. ``a_masters``: A holds 16-bit master weights, read
    as the top slices of the precision (:func:`golden.core.read_weights`)."""
    return data.StructLayout({
        "mode": Mode,
        "prec": unsigned(2),
        "m": unsigned(dim_width),
        "n": unsigned(dim_width),
        "k": unsigned(dim_width),
        "a_base": unsigned(addr_width),
        "a_stride": unsigned(addr_width),
        "b_base": unsigned(addr_width),
        "b_stride": unsigned(addr_width),
        "order": Order,
        "a_masters": unsigned(1),
    })


def row_layout(tile, acc_width, dim_width):
    """One output row: ``acc[c]`` is ``O[m, group * tile + c]``; ``en`` marks the columns inside ``n``;
    ``last`` is set on the GEMM's final row."""
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(acc_width), tile),
        "m": unsigned(dim_width),
        "group": unsigned(dim_width),
        "en": unsigned(tile),
        "last": unsigned(1),
    })


def _round_master(master, bits):
    """:func:`golden.core.read_weights` of one 16-bit master as logic: the top ``bits / 4`` slices, rounded
    half up and saturated."""
    s = MASTER_BITS - bits
    if s == 0:
        return master[:bits]
    wide = master.as_signed() + (1 << (s - 1))
    top = wide >> s                     # fits bits + 1 signed bits
    hi = (1 << (bits - 1)) - 1
    return Mux(top > hi, Const(hi, bits), top[:bits])


class _Loops:
    """Counters of the tile sequence: output tiles in ``order``, and for each the reduction tiles."""

    def __init__(self, name, dim_width):
        self.i_m = Signal(dim_width, name=f"{name}_im")
        self.i_n = Signal(dim_width, name=f"{name}_in")
        self.i_k = Signal(dim_width, name=f"{name}_ik")

    def last_tile(self, mt, nt):
        return (self.i_m == mt - 1) & (self.i_n == nt - 1)

    def advance_tile(self, order, mt, nt):
        """Statements moving to the next output tile in ``order``."""
        return [
            self.i_m.eq(Mux(order == Order.N_OUTER, Mux(self.i_m == mt - 1, 0, self.i_m + 1),
                            Mux(self.i_n == nt - 1, Mux(self.i_m == mt - 1, 0, self.i_m + 1), self.i_m))),
            self.i_n.eq(Mux(order == Order.N_OUTER, Mux(self.i_m == mt - 1, Mux(self.i_n == nt - 1, 0, self.i_n + 1),
                                                         self.i_n),
                            Mux(self.i_n == nt - 1, 0, self.i_n + 1))),
        ]


class TileGemm(wiring.Component):
    """A GEMM of training on a ``tile x tile`` bit-scalable PE array, operands read from tile memories.

    Operands are stored as tiles of ``tile x tile`` 16-bit elements, one tile per memory word, element
    ``(r, c)`` at bits ``16 * (r * tile + c)``: weights ``W`` (``out x in``, 16-bit masters) and the
    sample-major tensors ``Xs`` / ``Es`` (``samples x features``, codes sign-extended). A tile at row-tile ``i``
    and column-tile ``j`` of a stored matrix starting at ``base`` with ``stride`` tiles per row is at
    ``base + i * stride + j``. The command's mode says how A and B are stored (:class:`hw.pe_array.Mode`):

    * ``FF``: ``A = W`` (straight), ``B = X`` read from ``Xs`` (straight: a line is one sample);
    * ``EP``: ``A = W^T`` read from ``W`` (transposed), ``B = E`` from ``Es`` (straight);
    * ``WG``: ``A = E`` from ``Es`` (transposed), ``B = X^T`` from ``Xs`` (transposed).

    Each output tile is one command of the PE array, ``ceil(k / tile) * tile / n`` beats with ``n`` operand
    pairs per PE line (:func:`golden.pe_array.lanes`); a tile word gives ``tile / n`` beats, so each side
    reads one word every ``tile / n`` beats, one tile ahead (two words of buffer). Reduction positions at or
    beyond ``k`` are zeroed in the beats, so stale memory beyond a tensor never reaches a sum. The drained
    rows leave on ``o`` tagged with their row ``m`` and column group; rows at or beyond ``m`` are dropped;
    ``en`` marks the columns inside ``n``.

    Throughput: one beat per cycle (the PE array's peak) when both memories answer every cycle and ``o`` is
    ready; the array's drain bounds short reductions (see :class:`hw.pe_array.PEArray`). One GEMM at a time:
    ``cmd`` is taken when the previous GEMM's last row has left.

    Latency: the first beat enters the array a few cycles after ``cmd`` (command and size registers, the
    first tile read), a tile's first row leaves :data:`golden.core_timing.PE_DRAIN_DELAY` + ``stages``
    cycles after its last beat; :mod:`golden.core_timing` counts both, cycle for cycle.

    Parameters
    ----------
    tile : int
        Array size and tile size, a power of two from 2 to 64.
    max_k : int
        The PE array's longest reduction in beats (a power of two).
    precisions : tuple of int
        Operand precisions (bits) of the array; each must satisfy ``lanes(p, p) <= tile``.
    dim_width, addr_width : int
        Bits of a size and of a tile address.
    stages : int
        Pipeline stages of the PE array (:class:`hw.pe_array.PEArray`).
    masters : bool
        Whether A can hold 16-bit master weights (the command's ``a_masters``); ``False`` leaves out their
        reading (rounding to the precision, saturating) for a GEMM that never reads weights, and the command's
        ``a_masters`` is ignored.

    Members
    -------
    cmd : In(stream.Signature(command_layout(dim_width, addr_width)))
    a_rd, b_rd : Out(tile_read_signature(addr_width, tile))
        Read ports of the memories holding A and B.
    o : Out(stream.Signature(row_layout(tile, acc_width, dim_width)))
    error : Out(1)
        The PE array's sticky error flag (a precision it was not built for).
    """

    def __init__(self, *, tile, max_k, precisions, dim_width, addr_width, stages=0, masters=True):
        for name, value in (("Tile size", tile), ("Maximum beat count", max_k), ("Size width", dim_width),
                            ("Address width", addr_width)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
        if not 2 <= tile <= 64 or tile & (tile - 1):
            raise ValueError(f"Tile size must be a power of two from 2 to 64, not {tile!r}")
        precisions = tuple(sorted(set(precisions)))
        if not precisions or any(p not in PRECISION_CODES or pair_lanes(p, p) > tile for p in precisions):
            raise ValueError(f"Precisions must be a non-empty subset of {list(core_precisions(tile, tuple(PRECISION_CODES)))} "
                             f"for tiles of {tile}, not {precisions!r}")
        if dim_width < 1 or addr_width < 1:
            raise ValueError(f"Size and address widths must be positive, not {dim_width!r} and {addr_width!r}")
        if not isinstance(masters, bool):
            raise TypeError(f"Masters must be a bool, not {masters!r}")
        self._masters = masters
        self._tile, self._max_k, self._precisions = tile, max_k, precisions
        self._dim_width, self._addr_width = dim_width, addr_width
        self._pe = PEArray(rows=tile, cols=tile, max_k=max_k, precisions=precisions, drain_buffers=2, stages=stages)
        super().__init__({
            "cmd": In(stream.Signature(command_layout(dim_width, addr_width))),
            "a_rd": Out(tile_read_signature(addr_width, tile)),
            "b_rd": Out(tile_read_signature(addr_width, tile)),
            "o": Out(stream.Signature(row_layout(tile, self._pe.acc_width, dim_width))),
            "error": Out(1),
        })

    tile = property(lambda self: self._tile)
    acc_width = property(lambda self: self._pe.acc_width)
    precisions = property(lambda self: self._precisions)

    def _pack(self, m, word, *, transposed, masters, prec, q, kvalid, name):
        """The beat of one side from a tile word: beat ``q`` of the tile at precision ``prec`` (a code),
        straight or transposed (run-time), reduction positions ``>= kvalid`` (relative to the beat) zeroed,
        16-bit masters read as the top slices when ``masters`` (a signal; ``None``: never)."""
        t = self._tile
        elem = [[word[ELEMENT_BITS * (r * t + c):ELEMENT_BITS * (r * t + c + 1)] for c in range(t)] for r in range(t)]
        # The reduction positions inside k, once per position (not per line).
        inside = Signal(t, name=f"{name}_inside")
        m.d.comb += [inside[j].eq(j < kvalid) for j in range(t)]
        options = []
        for p in self._precisions:
            n = pair_lanes(p, p)
            per_tile = t // n
            for flip in (False, True):
                tag = f"{p}{'t' if flip else 's'}"
                packed = Signal(LINE_BITS * t, name=f"{name}_p{tag}")
                for s in range(t):                               # operand line
                    for j in range(n):                           # reduction position within the beat
                        # straight: element (s, q*n + j); transposed: element (q*n + j, s)
                        cands = [(elem[qq * n + j][s] if flip else elem[s][qq * n + j]) for qq in range(per_tile)]
                        chosen = Signal(ELEMENT_BITS, name=f"{name}_e{tag}_{s}_{j}")
                        value = cands[0]
                        for qq in range(1, per_tile):
                            value = Mux(q == qq, cands[qq], value)
                        m.d.comb += chosen.eq(value)
                        code = chosen[:p] if masters is None else Mux(masters, _round_master(chosen, p), chosen[:p])
                        pos = p * (j * t + s) if flip else LINE_BITS * s + p * j
                        m.d.comb += packed[pos:pos + p].eq(Mux(inside[j], code, 0))
                options.append((PRECISION_CODES[p], flip, packed))
        beat = Signal(LINE_BITS * t, name=name)
        result = options[0][2]
        for code, flip, packed in options[1:]:
            result = Mux((prec == code) & (transposed == flip), packed, result)
        m.d.comb += beat.eq(result)
        return beat

    def elaborate(self, platform):
        m = Module()
        t = self._tile
        log_t = t.bit_length() - 1
        dw = self._dim_width
        m.submodules.pe = pe = self._pe

        job = Signal(command_layout(dw, self._addr_width))
        busy = Signal()
        mt = Signal(dw)            # output tiles along m and n, reduction tiles along k
        nt = Signal(dw)
        kt = Signal(dw)
        beats = Signal(range(self._max_k + 1))       # beats per output tile
        per_tile_log = Signal(range(log_t + 1))      # log2(tile / n): beats per reduction tile
        codes = {p: PRECISION_CODES[p] for p in self._precisions}
        lanes_log = {p: (pair_lanes(p, p)).bit_length() - 1 for p in self._precisions}

        m.d.comb += self.cmd.ready.eq(~busy)
        with m.If(self.cmd.valid & self.cmd.ready):
            c = self.cmd.payload
            m.d.sync += [job.eq(c), busy.eq(1),
                         mt.eq((c.m + t - 1) >> log_t), nt.eq((c.n + t - 1) >> log_t), kt.eq((c.k + t - 1) >> log_t)]
            shift = 0
            for p in self._precisions:
                shift = Mux(c.prec == codes[p], log_t - lanes_log[p], shift)
            m.d.sync += [per_tile_log.eq(shift), beats.eq(((c.k + t - 1) >> log_t) << shift)]
        ta = (job.mode == Mode.EP) | (job.mode == Mode.WG)
        tb = job.mode == Mode.WG
        started = Signal()          # one cycle after cmd: the derived sizes are ready
        m.d.sync += started.eq(self.cmd.valid & self.cmd.ready)

        # -- PE array commands: one per output tile.
        cmd_loops = _Loops("cmdseq", dw)
        cmd_left = Signal()
        with m.If(started):
            m.d.sync += [cmd_left.eq(1), cmd_loops.i_m.eq(0), cmd_loops.i_n.eq(0)]
        m.d.comb += [
            pe.cmd.valid.eq(cmd_left),
            pe.cmd.payload.mode.eq(job.mode), pe.cmd.payload.prec_a.eq(job.prec), pe.cmd.payload.prec_b.eq(job.prec),
            pe.cmd.payload.beats_m1.eq(beats - 1),
        ]
        with m.If(pe.cmd.valid & pe.cmd.ready):
            m.d.sync += cmd_loops.advance_tile(job.order, mt, nt)
            with m.If(cmd_loops.last_tile(mt, nt)):
                m.d.sync += cmd_left.eq(0)

        # -- Operand fetchers: tile reads one word ahead, beats from the buffered words.
        for side in ("a", "b"):
            rd = getattr(self, f"{side}_rd")
            beat_port = getattr(pe, side)
            base = job.a_base if side == "a" else job.b_base
            stride = job.a_stride if side == "a" else job.b_stride
            transposed = ta if side == "a" else tb
            loops = _Loops(f"{side}seq", dw)
            reading = Signal(name=f"{side}_reading")      # reads left to issue
            origin = Signal(self._addr_width, name=f"{side}_origin")      # this output tile's first word
            addr = Signal(self._addr_width, name=f"{side}_addr")
            # The tile index a side depends on: A on the row tile, B on the column tile.
            own = loops.i_m if side == "a" else loops.i_n
            own_count = mt if side == "a" else nt
            own_step = Mux(transposed, 1, stride)          # origin step per own tile
            k_step = Mux(transposed, stride, 1)            # word step per reduction tile

            # Two-entry word buffer: `inflight` is a read issued last cycle.
            buf = [Signal(t * t * ELEMENT_BITS, name=f"{side}_buf{i}") for i in range(2)]
            count = Signal(range(3), name=f"{side}_count")
            inflight = Signal(name=f"{side}_inflight")
            pop = Signal(name=f"{side}_pop")              # the head's last beat goes this cycle
            issue = reading & ((count + inflight < 2) | pop)
            m.d.comb += [rd.en.eq(issue), rd.addr.eq(addr)]
            m.d.sync += inflight.eq(issue)

            with m.If(started):
                m.d.sync += [reading.eq(1), loops.i_m.eq(0), loops.i_n.eq(0), loops.i_k.eq(0),
                             origin.eq(base), addr.eq(base)]
            with m.Elif(issue):
                with m.If(loops.i_k == kt - 1):
                    m.d.sync += loops.i_k.eq(0)
                    m.d.sync += loops.advance_tile(job.order, mt, nt)
                    # Next output tile's origin: step when the own index moves on, back to base when it wraps.
                    if side == "a":
                        moves = Mux(job.order == Order.N_OUTER, 1, loops.i_n == nt - 1)
                    else:
                        moves = Mux(job.order == Order.N_OUTER, loops.i_m == mt - 1, 1)
                    nxt = Mux(moves, Mux(own == own_count - 1, base, origin + own_step), origin)
                    m.d.sync += [origin.eq(nxt), addr.eq(nxt)]
                    with m.If(loops.last_tile(mt, nt)):
                        m.d.sync += reading.eq(0)
                with m.Else():
                    m.d.sync += [loops.i_k.eq(loops.i_k + 1), addr.eq(addr + k_step)]

            # Beat generator over the buffered words.
            q = Signal(log_t + 1, name=f"{side}_q")
            kpos = Signal(dw + 1, name=f"{side}_kpos")       # reduction position of this beat
            last_q = q == (1 << per_tile_log) - 1
            head = buf[0]
            # kvalid compares j < k - kpos; clamp so that a negative difference disables every element.
            valid_count = Signal(dw + 1, name=f"{side}_kvalid")
            m.d.comb += valid_count.eq(Mux(kpos >= job.k, 0, job.k - kpos))
            beat = self._pack(m, head, transposed=transposed, masters=job.a_masters if side == "a" and self._masters else None,
                              prec=job.prec, q=q, kvalid=valid_count, name=f"{side}_beatv")
            m.d.comb += [beat_port.valid.eq(count != 0), beat_port.payload.eq(beat)]
            take = beat_port.valid & beat_port.ready
            m.d.comb += pop.eq(take & last_q)
            arrive = inflight
            # Buffer update: push the arriving word, pop the head after its last beat.
            with m.If(pop & arrive):
                with m.If(count == 2):
                    m.d.sync += [buf[0].eq(buf[1]), buf[1].eq(rd.data)]
                with m.Else():
                    m.d.sync += buf[0].eq(rd.data)
            with m.Elif(pop):
                m.d.sync += [buf[0].eq(buf[1]), count.eq(count - 1)]
            with m.Elif(arrive):
                with m.If(count == 0):
                    m.d.sync += buf[0].eq(rd.data)
                with m.Else():
                    m.d.sync += buf[1].eq(rd.data)
                m.d.sync += count.eq(count + 1)
            n_of = 0
            for p in self._precisions:
                n_of = Mux(job.prec == codes[p], pair_lanes(p, p), n_of)
            with m.If(take):
                m.d.sync += [q.eq(Mux(last_q, 0, q + 1))]
                # kpos runs over one output tile's reduction, then restarts.
                end_of_tile = Signal(name=f"{side}_end")
                m.d.comb += end_of_tile.eq(last_q & (kpos + n_of >= kt << log_t))
                m.d.sync += kpos.eq(Mux(end_of_tile, 0, kpos + n_of))
            with m.If(started):
                m.d.sync += [q.eq(0), kpos.eq(0)]

        # -- Drain: tag the output rows, drop rows beyond m.
        drain = _Loops("drain", dw)
        row = Signal(range(t), name="drain_row")
        m_index = Signal(dw + 1)
        m.d.comb += m_index.eq((drain.i_m << log_t) + row)
        keep = m_index < job.m
        last_row = drain.last_tile(mt, nt) & (row == t - 1)
        with m.If(started):
            m.d.sync += [drain.i_m.eq(0), drain.i_n.eq(0), row.eq(0)]
        en = Cat(((drain.i_n << log_t) + c) < job.n for c in range(t))
        m.d.comb += [
            self.o.payload.acc.eq(pe.o.payload.data),
            self.o.payload.m.eq(m_index),
            self.o.payload.group.eq(drain.i_n),
            self.o.payload.en.eq(en),
            # The last kept row is the GEMM's last row: the final tile's last row inside m.
            self.o.payload.last.eq(drain.last_tile(mt, nt) & (m_index + 1 == job.m)),
            self.o.valid.eq(pe.o.valid & keep & busy),
            pe.o.ready.eq(Mux(keep, self.o.ready, 1)),
        ]
        with m.If(pe.o.valid & pe.o.ready):
            m.d.sync += row.eq(row + 1)
            with m.If(row == t - 1):
                m.d.sync += drain.advance_tile(job.order, mt, nt)
            # The job ends with the final tile's last row (rows past m included), so the next job's
            # counters start on its own first row.
            with m.If(last_row):
                m.d.sync += busy.eq(0)
        m.d.comb += self.error.eq(pe.error)
        return m
