"""PDFA training controller: issues FF, EP and WG commands for BP, DFA and pipelined DFA (DF-LNPU).

The schedule it follows, handshake for handshake, is :mod:`golden.pdfa_schedule`; the comments below name
its rules.
"""

from amaranth.hdl import Array, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.pdfa_schedule import ENGINES as _ENGINE_NAMES, PRECISIONS, Error, Feedback


__all__ = ["DONE", "Error", "Feedback", "entry_layout", "start_layout", "status_layout", "command_layout",
           "PDFAController"]

#: Prefixes of each engine's ports (``ff_cmd``, ``ep_busy``...): :data:`golden.pdfa_schedule.ENGINES` in lower case.
ENGINES = tuple(name.lower() for name in _ENGINE_NAMES)

#: An engine's completion handshake: a stream without payload (one transfer per command).
DONE = wiring.Signature({"valid": Out(1), "ready": In(1)})


def entry_layout(size_width):
    """One row of the layer table; ``last`` ends the table."""
    return data.StructLayout({
        "n_in": unsigned(size_width), "n_out": unsigned(size_width), "precision": unsigned(3),
        "feedback": unsigned(1), "lr_shift": unsigned(4), "last": unsigned(1),
    })


def start_layout(sample_width):
    return data.StructLayout({"samples": unsigned(sample_width), "pipelined": unsigned(1), "serial": unsigned(1)})


def status_layout(counter_width):
    return data.StructLayout({"error": unsigned(3), "cycles": unsigned(counter_width)})


def command_layout(max_layers, size_width, sample_width):
    """An engine command: the operation ``(layer, sample)`` and the matrix it streams (``rows x cols``,
    see :func:`golden.pdfa_schedule.op_matrix`), the layer's precision, feedback and learning-rate shift."""
    return data.StructLayout({
        "layer": unsigned(max(1, (max_layers - 1).bit_length())), "sample": unsigned(sample_width),
        "rows": unsigned(size_width), "cols": unsigned(size_width), "precision": unsigned(3),
        "feedback": unsigned(1), "lr_shift": unsigned(4),
    })


def _past(t, p, sample, position):
    """An engine whose oldest operation not yet done is ``(t, p)`` has done ``(sample, position)``."""
    return (t > sample) | ((t == sample) & (p > position))


class PDFAController(wiring.Component):
    """Layer-table driven scheduler of the FF, EP and WG engines, with per-engine cycle counters.

    Usage: write the layer table on ``table`` (one entry per layer, ``last`` on the final one; a new table
    starts with the entry after a ``last``), then send ``start`` (sample count, ``pipelined``, ``serial``).
    The controller checks the table; a bad one is answered at once on ``status`` with an :class:`Error` and
    no command. A good one runs: commands go out on ``<engine>_cmd`` and each engine answers every command
    with one transfer on ``<engine>_done``; ``wg_done`` is taken only when the update may be written (the
    WG commit rule), the others at once. When every operation is done, ``status`` carries ``NONE`` and the
    run's cycle count. ``table`` and ``start`` are taken only between runs (``running`` low), and
    ``start`` not while a table entry is offered.

    Counters ``<engine>_busy``, ``_stall`` and ``_idle`` count, for each cycle of the last run, whether the
    engine had a command outstanding (or took one), was offered one it did not take, or neither; they sum to
    ``status.cycles`` and are cleared by ``start``. They and ``status.cycles`` count a cycle one cycle after
    it (their enables are registered): during a run they lag by one, and they are final when ``status`` is
    offered.

    Parameters
    ----------
    max_layers : int
        Table capacity, at least 1.
    size_width, sample_width : int
        Bits of a layer size and of the sample count.
    counter_width : int
        Bits of the cycle counters.
    precisions : tuple of str
        Precision names (from :data:`golden.pdfa_schedule.PRECISIONS`) the engines support; a table entry
        with another code is an error.
    """

    def __init__(self, *, max_layers=8, size_width=16, sample_width=16, counter_width=32,
                 precisions=PRECISIONS):
        for name, value, low in (("Layer limit", max_layers, 1), ("Size width", size_width, 1),
                                 ("Sample width", sample_width, 1), ("Counter width", counter_width, 1)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if value < low:
                raise ValueError(f"{name} must be at least {low}, not {value!r}")
        precisions = tuple(precisions)
        if not precisions or any(p not in PRECISIONS for p in precisions):
            raise ValueError(f"Precisions must be a non-empty subset of {list(PRECISIONS)}, not {list(precisions)}")
        self._max_layers, self._size_width, self._sample_width = max_layers, size_width, sample_width
        self._counter_width, self._precisions = counter_width, precisions
        members = {
            "table": In(stream.Signature(entry_layout(size_width))),
            "start": In(stream.Signature(start_layout(sample_width))),
            "status": Out(stream.Signature(status_layout(counter_width))),
            "running": Out(1),
        }
        for engine in ENGINES:
            members[f"{engine}_cmd"] = Out(stream.Signature(command_layout(max_layers, size_width, sample_width)))
            members[f"{engine}_done"] = In(DONE)
            for counter in ("busy", "stall", "idle"):
                members[f"{engine}_{counter}"] = Out(counter_width)
        super().__init__(members)

    max_layers = property(lambda self: self._max_layers)
    precisions = property(lambda self: self._precisions)

    def elaborate(self, platform):
        m = Module()
        n = self._max_layers
        lw = max(1, n.bit_length())                 # holds 0 .. max_layers
        tw = self._sample_width

        # Layer table.
        layout = entry_layout(self._size_width)
        entries = Array(Signal(layout, name=f"entry{i}") for i in range(n))
        count = Signal(range(n + 2))                # entries of the table being written; n+1 = overflow
        fresh = Signal(init=1)                      # the next entry starts a new table
        length = Signal(range(n + 1))
        overflow = Signal()

        # Run state.
        running, reporting = Signal(), Signal()
        samples = Signal(tw)
        pipelined, serial = Signal(), Signal()
        error = Signal(3)
        cycles = Signal(self._counter_width)
        m.d.comb += [self.running.eq(running | reporting),
                     self.table.ready.eq(~running & ~reporting),
                     self.start.ready.eq(~running & ~reporting & ~self.table.valid)]   # the table goes first

        with m.If(self.table.valid & self.table.ready):
            entry = self.table.payload
            index = Mux(fresh, 0, count)
            with m.If(index < n):
                m.d.sync += [entries[index].eq(entry), count.eq(index + 1), length.eq(index + 1), overflow.eq(0)]
            with m.Else():
                m.d.sync += [count.eq(n + 1), overflow.eq(1)]
            m.d.sync += fresh.eq(entry.last)

        # Table check (combinational over the stored entries).
        supported = sum(1 << PRECISIONS.index(p) for p in self._precisions)
        zero = mismatch = bad_precision = bp_hidden = 0
        for i in range(n):
            e = entries[i]
            valid = i < length
            zero = zero | (valid & ((e.n_in == 0) | (e.n_out == 0)))
            bad_precision = bad_precision | (valid & ~Const(supported, 8).bit_select(e.precision, 1))
            if i + 1 < n:
                mismatch = mismatch | ((i + 1 < length) & (e.n_out != entries[i + 1].n_in))
                bp_hidden = bp_hidden | ((i + 1 < length) & (e.feedback == Feedback.BP))
        req = self.start.payload
        check = Signal(3)
        with m.If(length == 0):
            m.d.comb += check.eq(Error.EMPTY_TABLE)
        with m.Elif(overflow):
            m.d.comb += check.eq(Error.TOO_MANY_LAYERS)
        with m.Elif(zero):
            m.d.comb += check.eq(Error.ZERO_SIZE)
        with m.Elif(mismatch):
            m.d.comb += check.eq(Error.SIZE_MISMATCH)
        with m.Elif(bad_precision):
            m.d.comb += check.eq(Error.BAD_PRECISION)
        with m.Elif(req.pipelined & bp_hidden):
            m.d.comb += check.eq(Error.PIPELINED_BP)

        # Engine program counters: (t, p) is the engine's oldest operation not yet done (sample, position in
        # its per-sample layer order); `busy` says whether it has been issued.
        t = {e: Signal(tw + 1, name=f"{e}_t") for e in ENGINES}
        p = {e: Signal(lw, name=f"{e}_p") for e in ENGINES}
        busy = {e: Signal(name=f"{e}_busy_reg") for e in ENGINES}
        positions = {"ff": length, "ep": length - 1, "wg": length}
        finished = {e: t[e] >= samples for e in ENGINES}
        all_finished = finished["ff"] & finished["ep"] & finished["wg"]

        def done_before(engine, sample, position):
            return _past(t[engine], p[engine], sample, position)

        def layer_of(engine, position):
            top = length - (2 if engine == "ep" else 1)
            return Mux(pipelined, position, top - position)

        pos_of = layer_of                       # the mapping is its own inverse
        L = length
        lf, le, lg = p["ff"], layer_of("ep", p["ep"]), layer_of("wg", p["wg"])
        tf, te, tg = t["ff"], t["ep"], t["wg"]

        # FF(l, t): after WG(l, t-1-s); pipelined also after WG(l+1, t-2) (activation ping-pong).
        stale = Mux(pipelined, 2, 1)
        ff_ok = (tf < stale) | done_before("wg", tf - stale, pos_of("wg", lf))
        ff_ok &= ~pipelined | (lf + 1 >= L) | (tf < 2) | done_before("wg", tf - 2, pos_of("wg", lf + 1))
        # EP(l, t): after FF(L-1, t); a BP EP's EP(l+1, t) is the EP engine's previous operation.
        ep_ok = tf > te
        # WG(l, t): after EP(l, t), or FF(L-1, t) for the top layer; serial: after all EP of sample t.
        wg_ok = Mux(lg == L - 1, tf > tg, done_before("ep", tg, pos_of("ep", lg)))
        wg_ok &= ~serial | (L < 2) | (te > tg)
        # WG(l, t) commits after EP(l-1, t) when that EP is BP, and after FF(l, t+1) when pipelined.
        commit = (lg == 0) | (entries[lg - 1].feedback != Feedback.BP) | done_before("ep", tg, pos_of("ep", lg - 1))
        commit &= ~pipelined | (tg + 1 >= samples) | done_before("ff", tg + 1, lg)
        ok = {"ff": ff_ok, "ep": ep_ok, "wg": wg_ok}
        layer = {"ff": lf, "ep": le, "wg": lg}

        counting = running & ~all_finished
        for e in ENGINES:
            cmd, done = getattr(self, f"{e}_cmd"), getattr(self, f"{e}_done")
            entry = entries[layer[e]]
            m.d.comb += [
                cmd.valid.eq(running & ~busy[e] & ~finished[e] & ok[e]),
                cmd.payload.layer.eq(layer[e]), cmd.payload.sample.eq(t[e]),
                cmd.payload.rows.eq(entry.n_out), cmd.payload.cols.eq(entry.n_in),
                cmd.payload.precision.eq(entry.precision), cmd.payload.feedback.eq(entry.feedback),
                cmd.payload.lr_shift.eq(entry.lr_shift),
                done.ready.eq(busy[e] & (commit if e == "wg" else 1)),
            ]
            if e == "ep":
                above = Mux(entry.feedback == Feedback.BP, entries[le + 1].n_out, entries[L - 1].n_out)
                m.d.comb += cmd.payload.cols.eq(above)
            with m.If(cmd.valid & cmd.ready):
                m.d.sync += busy[e].eq(1)
            with m.If(done.valid & done.ready):
                m.d.sync += busy[e].eq(0)
                with m.If(p[e] + 1 >= positions[e]):
                    m.d.sync += [p[e].eq(0), t[e].eq(t[e] + 1)]
                with m.Else():
                    m.d.sync += p[e].eq(p[e] + 1)
            # Each cycle's class is registered and counted the cycle after: the counters lag the run by one
            # cycle (they are final when the status is offered, a cycle after the last counted one), and the
            # engines' progress against the sample count stays off their carry chains.
            busy_n, stall_n, idle_n = (getattr(self, f"{e}_{c}") for c in ("busy", "stall", "idle"))
            was = {c: Signal(name=f"{e}_was_{c}") for c in ("busy", "stall", "idle")}
            is_busy = busy[e] | (cmd.valid & cmd.ready)
            m.d.sync += [was["busy"].eq(counting & is_busy), was["stall"].eq(counting & ~is_busy & cmd.valid),
                         was["idle"].eq(counting & ~is_busy & ~cmd.valid)]
            for c, counter in (("busy", busy_n), ("stall", stall_n), ("idle", idle_n)):
                with m.If(was[c]):
                    m.d.sync += counter.eq(counter + 1)

        was_counting = Signal()
        m.d.sync += was_counting.eq(counting)
        with m.If(was_counting):
            m.d.sync += cycles.eq(cycles + 1)
        with m.If(running & all_finished):
            m.d.sync += [running.eq(0), reporting.eq(1)]

        m.d.comb += [self.status.valid.eq(reporting), self.status.payload.error.eq(error),
                     self.status.payload.cycles.eq(cycles)]
        with m.If(self.status.valid & self.status.ready):
            m.d.sync += reporting.eq(0)

        with m.If(self.start.valid & self.start.ready):
            m.d.sync += [samples.eq(req.samples), pipelined.eq(req.pipelined), serial.eq(req.serial),
                         error.eq(check), cycles.eq(0)]
            for e in ENGINES:
                m.d.sync += [t[e].eq(0), p[e].eq(0), busy[e].eq(0)]
                m.d.sync += [getattr(self, f"{e}_{c}").eq(0) for c in ("busy", "stall", "idle")]
            m.d.sync += t["ep"].eq(Mux(length < 2, req.samples, 0))      # one layer: no EP at all
            with m.If(check == Error.NONE):
                m.d.sync += running.eq(1)
            with m.Else():
                m.d.sync += reporting.eq(1)
        return m
