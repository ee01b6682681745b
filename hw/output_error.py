"""Output-error unit: logits and labels in, the error ``p - onehot(label)`` of an integer base-2 softmax out,
as stochastically rounded DFXP codes (:func:`golden.core.output_error`)."""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden.core import ERROR_FRAC_IN, EXP2_TABLE, EXP_FRAC_BITS, LOG2E, RECIP_BITS
from . import requant
from .lfsr import STATE_BITS, seed_layout
from .requant import ConversionUnit


__all__ = ["STAGE_DELAYS_NS", 
    "LOGIT_WIDTH", "ERROR_WIDTH", "RECIP_WIDTH", "RECIP_STEPS_PER_CYCLE", "RECIP_CYCLES",
    "command_layout", "input_layout", "softmax_command_layout", "error_layout", "max_beats",
    "exp2_exponent", "exp2_value", "Reciprocal", "SoftmaxUnit", "OutputErrorUnit",
]

#: Estimated critical path (ns, sky130_fd_sc_hd typical with flip-flop overhead, default configuration) at
#: each ``stages`` depth, shallowest first (:mod:`hw.pipeline`).
STAGE_DELAYS_NS = (5.96,)

#: Bits of a logit code.
LOGIT_WIDTH = 16
#: Bits of ``g = p - 2**16 [class = label]`` (Q16, in ``[-2**16, 2**16]``).
ERROR_WIDTH = 18
#: Bits of the reciprocal ``R = floor(2**35 / S)`` (at most ``2**20``, as ``S >= 2**15``).
RECIP_WIDTH = RECIP_BITS - 15 + 1
#: Restoring division steps per cycle (two: radix 4).
RECIP_STEPS_PER_CYCLE = 2
#: Cycles of one reciprocal: the quotient has ``RECIP_WIDTH`` bits, rounded up to whole cycles.
RECIP_CYCLES = -(-RECIP_WIDTH // RECIP_STEPS_PER_CYCLE)
_RECIP_STEPS = RECIP_CYCLES * RECIP_STEPS_PER_CYCLE
_PROB_SHIFT = RECIP_BITS - 16
_LOG2E_FRAC = 12
_ONE_Q16 = 1 << 16
# The smallest exponent kept apart: every t <= -(16 << EXP_FRAC_BITS) gives E = 0, so t is clamped there.
_T_MIN = -(16 << EXP_FRAC_BITS)
_T_WIDTH = 11


def _group_bits(max_groups):
    return max(1, (max_groups - 1).bit_length())


def command_layout(max_groups):
    """One job of the output-error unit (the errors of one mini-batch): the logits' fractional length, the
    error's fractional length and precision code (4, 8, 12, 16 bits = 0..3), the overflow-rule shift, and
    the number of column groups of ``lanes`` samples minus one."""
    return data.StructLayout({
        "frac_z": signed(7),
        "frac_e": signed(7),
        "bits": unsigned(2),
        "overflow_shift": unsigned(5),
        "groups_m1": unsigned(_group_bits(max_groups)),
    })


def input_layout(lanes, classes):
    """One logit beat: class ``k`` of the ``lanes`` samples of a group, their labels (the same on every beat
    of a group) and which lanes hold a sample (the last group of a job may be partial)."""
    return data.StructLayout({
        "z": data.ArrayLayout(signed(LOGIT_WIDTH), lanes),
        "label": data.ArrayLayout(unsigned(max(1, (classes - 1).bit_length())), lanes),
        "en": unsigned(lanes),
    })


def softmax_command_layout(max_groups):
    """One job of :class:`SoftmaxUnit`: the logits' fractional length and the group count minus one."""
    return data.StructLayout({"frac_z": signed(7), "groups_m1": unsigned(_group_bits(max_groups))})


def error_layout(lanes):
    """One beat of ``g = p - onehot`` in Q16 and the lanes' enables: the conversion unit's input beat
    (:func:`hw.requant.input_layout` with :data:`ERROR_WIDTH`-bit accumulators)."""
    return requant.input_layout(lanes, ERROR_WIDTH)


def max_beats(classes, max_groups):
    """Beat limit of the unit's conversion jobs: the power of two (at least 2) that holds ``classes`` beats
    for each of ``max_groups`` groups."""
    return 1 << max(1, (classes * max_groups - 1).bit_length())


def exp2_exponent(d, scale):
    """The base-2 exponent ``t = floor(d * LOG2E / 2**scale)`` of a logit difference ``d <= 0`` (at most 17
    bits) with ``scale = frac_z + 12 - 6``, as logic, clamped to ``[-1024, 0]`` (every ``t <= -1024`` gives
    ``E = 0``). For ``scale <= 0`` the left shift is not built: ``d * LOG2E`` is 0 or at most ``-LOG2E``,
    below the clamp already, and shifting it left keeps it there. Returns an 11-bit signed value."""
    prod = d * LOG2E                                    # <= 0, above -2**29
    amount = Mux(scale > 31, 31, scale.as_unsigned()[:5])
    t = Mux(scale > 0, prod >> amount, prod)            # arithmetic shift: the floor
    return Mux(t < _T_MIN, _T_MIN, t)[:_T_WIDTH].as_signed()


def _rom(index, values, bits):
    """``values[index]`` (a power-of-two table of 16-bit words) as a tree of multiplexers on ``index``."""
    if bits == 0:
        return Const(values[0], 16)
    half = len(values) // 2
    return Mux(index[bits - 1], _rom(index, values[half:], bits - 1), _rom(index, values[:half], bits - 1))


def exp2_value(t):
    """``E = EXP2_TABLE[t mod 64] >> -(t >> 6)`` for an 11-bit signed ``t`` in ``[-1024, 0]``: ``2**t`` in
    Q15 (0 when the shift reaches 16). Returns a 16-bit unsigned value."""
    frac = t[:EXP_FRAC_BITS]
    shift = (-(t >> EXP_FRAC_BITS)).as_unsigned()[:5]   # 0 .. 16
    return (_rom(frac, EXP2_TABLE, EXP_FRAC_BITS) >> shift)[:16]


def _check_int(name, value, low, high=None):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if high is None and value < low:
        raise ValueError(f"{name} must be at least {low}, not {value!r}")
    if high is not None and not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, not {value!r}")


class Reciprocal(wiring.Component):
    """Per lane, the reciprocal ``R = floor(2**35 / S)`` of a softmax sum ``S >= 2**15``.

    A restoring divider per lane, :data:`RECIP_STEPS_PER_CYCLE` quotient bits per cycle (radix 4): the
    partial remainder starts at ``2**35 >> 22`` (below ``S``, so the quotient has 22 bits, the top one 0)
    and each step doubles it and subtracts ``S`` when it fits.

    Latency: the result is on ``o`` :data:`RECIP_CYCLES` (11) cycles after ``i`` is taken. ``i`` is taken only
    while the divider is idle and its last result has been taken (one division at a time); the result is
    held on ``o`` until taken.

    Parameters
    ----------
    lanes : int
        Sums per transfer, 1 to 64.
    sum_width : int
        Bits of a sum, 16 to 32 (``S`` must be at least ``2**15``).

    Members
    -------
    i : In(stream.Signature(data.ArrayLayout(unsigned(sum_width), lanes)))
    o : Out(stream.Signature(data.ArrayLayout(unsigned(RECIP_WIDTH), lanes)))
    """

    def __init__(self, *, lanes, sum_width):
        _check_int("Lane count", lanes, 1, 64)
        _check_int("Sum width", sum_width, 16, 32)
        self._lanes, self._sum_width = lanes, sum_width
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(unsigned(sum_width), lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(unsigned(RECIP_WIDTH), lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, width = self._lanes, self._sum_width
        busy = Signal()
        count = Signal(range(RECIP_CYCLES))
        divisor = Signal(data.ArrayLayout(unsigned(width), lanes))
        rem = Signal(data.ArrayLayout(unsigned(width), lanes))       # always below the divisor
        quot = Signal(data.ArrayLayout(unsigned(_RECIP_STEPS), lanes))

        m.d.comb += self.i.ready.eq(~busy & ~self.o.valid)
        for lane in range(lanes):
            r, q = rem[lane], quot[lane]
            for _ in range(RECIP_STEPS_PER_CYCLE):
                doubled = r << 1
                fits = doubled >= divisor[lane]
                r = Mux(fits, doubled - divisor[lane], doubled)[:width]
                q = (q << 1 | fits)[:_RECIP_STEPS]
            with m.If(busy):
                m.d.sync += [rem[lane].eq(r), quot[lane].eq(q)]
            m.d.comb += self.o.payload[lane].eq(quot[lane][:RECIP_WIDTH])

        with m.If(busy):
            m.d.sync += count.eq(count - 1)
            with m.If(count == 0):
                m.d.sync += [busy.eq(0), self.o.valid.eq(1)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [busy.eq(1), count.eq(RECIP_CYCLES - 1), divisor.eq(self.i.payload)]
            for lane in range(lanes):
                m.d.sync += [rem[lane].eq(1 << (RECIP_BITS - _RECIP_STEPS)), quot[lane].eq(0)]
        return m


class SoftmaxUnit(wiring.Component):
    """The output-error unit's datapath up to the conversion: per sample, the integer base-2 softmax of
    :func:`golden.core.softmax_parts` minus the one-hot label, ``g = p - 2**16 [class = label]`` in Q16.

    One lane per sample of a column group of ``lanes`` samples. A command on ``cmd`` opens a job of
    ``groups_m1 + 1`` groups; for each group, ``i`` carries ``classes`` beats in class order and ``o``
    gives ``classes`` beats of ``g`` in the same order, with the group's ``en`` (``acc`` of a disabled lane
    is computed from whatever its logits were; the conversion ignores it). A group's labels and ``en`` are
    read from its last beat.

    Three stages work on three groups at once, joined by two buffers of ``classes`` words of ``lanes``
    16-bit values (``amaranth.lib.memory.Memory``, one write and one read port each), each used as a FIFO
    of rows whose address is the class:

    * **input**: a beat per cycle into the logit buffer, keeping the running maximum per lane; the next
      group's row ``k`` is written once row ``k`` of the previous group has been read;
    * **exponent** (after the whole group is in): ``d = z - max``, ``t``, ``E`` per lane
      (:func:`exp2_exponent`, :func:`exp2_value`; two pipeline registers), ``E`` into the exponent buffer
      and into the running sum ``S``; then ``S`` to the :class:`Reciprocal`;
    * **output** (when ``R`` is ready): ``p = (E * R) >> 19`` and ``g`` per lane, one row per cycle.

    Latency: a group's first ``g`` can be taken :attr:`latency` = ``classes + 18`` cycles after its last
    logit beat (no stalls and no earlier group in the way). Throughput: a group every :attr:`group_cycles` =
    ``classes + 15`` cycles in steady state (the exponent pass of a group runs beside the output pass of
    the one before, then waits for its reciprocal); the input stage takes a group's beats while the other
    two work on the previous groups. A new job's command is taken the cycle after the previous job's last
    beat. Back-pressure on ``o`` stalls the output stage and, through the buffers, the others; ``i`` is
    taken only while a job is open and the logit buffer has room.

    Parameters
    ----------
    lanes : int
        Samples per group, 1 to 64.
    classes : int
        Logits per sample, 2 to 256.
    max_groups : int
        Most groups per job (sets the width of ``groups_m1``).

    Members
    -------
    cmd : In(stream.Signature(softmax_command_layout(max_groups)))
    i : In(stream.Signature(input_layout(lanes, classes)))
    o : Out(stream.Signature(error_layout(lanes)))
    """

    def __init__(self, *, lanes, classes, max_groups=1024):
        _check_int("Lane count", lanes, 1, 64)
        _check_int("Class count", classes, 2, 256)
        _check_int("Group limit", max_groups, 1)
        self._lanes, self._classes, self._max_groups = lanes, classes, max_groups
        super().__init__({
            "cmd": In(stream.Signature(softmax_command_layout(max_groups))),
            "i": In(stream.Signature(input_layout(lanes, classes))),
            "o": Out(stream.Signature(error_layout(lanes))),
        })

    lanes = property(lambda self: self._lanes)
    classes = property(lambda self: self._classes)
    max_groups = property(lambda self: self._max_groups)
    #: Cycles per group in steady state without stalls.
    group_cycles = property(lambda self: self._classes + RECIP_CYCLES + 4)
    #: Cycles from a group's last logit beat to its first ``g`` beat, without stalls or earlier groups.
    latency = property(lambda self: self._classes + RECIP_CYCLES + 7)

    def elaborate(self, platform):
        m = Module()
        lanes, classes = self._lanes, self._classes
        ptr_shape = range(classes)
        logits = data.ArrayLayout(signed(LOGIT_WIDTH), lanes)
        labels = self.i.payload.label.shape()
        sum_width = (classes << 15).bit_length()

        m.submodules.zbuf = zbuf = Memory(shape=logits, depth=classes, init=[])
        m.submodules.ebuf = ebuf = Memory(shape=data.ArrayLayout(unsigned(16), lanes), depth=classes, init=[])
        m.submodules.recip = recip = Reciprocal(lanes=lanes, sum_width=sum_width)
        zw, zr = zbuf.write_port(), zbuf.read_port()        # synchronous reads, not transparent
        ew, er = ebuf.write_port(), ebuf.read_port()
        z_rows = Signal(range(classes + 1))     # logit rows written and not yet read
        e_rows = Signal(range(classes + 1))     # exponent rows written or in flight, not yet read

        # -- input stage ---------------------------------------------------------------------------------
        job = Signal()
        groups_left = Signal.like(self.cmd.payload.groups_m1)
        frac_z = Signal(signed(7))
        a_ptr = Signal(ptr_shape)
        a_max = Signal(logits)
        # Handoff of a complete group to the exponent stage.
        ab_valid = Signal()
        ab_max = Signal(logits)
        ab_label = Signal(labels)
        ab_en = Signal(lanes)
        ab_scale = Signal(signed(8))

        m.d.comb += self.cmd.ready.eq(~job)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [job.eq(1), groups_left.eq(self.cmd.payload.groups_m1),
                         frac_z.eq(self.cmd.payload.frac_z), a_ptr.eq(0)]

        take = Signal()
        a_last = a_ptr == classes - 1
        m.d.comb += [
            self.i.ready.eq(job & (z_rows != classes)),
            take.eq(self.i.valid & self.i.ready),
            zw.addr.eq(a_ptr), zw.data.eq(self.i.payload.z), zw.en.eq(take),
        ]
        new_max = Signal(logits)
        for lane in range(lanes):
            z, cur = self.i.payload.z[lane], a_max[lane]
            m.d.comb += new_max[lane].eq(Mux((a_ptr == 0) | (z > cur), z, cur))
        with m.If(take):
            m.d.sync += [a_max.eq(new_max), a_ptr.eq(Mux(a_last, 0, a_ptr + 1))]
            with m.If(a_last):
                # The exponent stage took the previous handoff before this group could be written.
                m.d.sync += [ab_valid.eq(1), ab_max.eq(new_max), ab_label.eq(self.i.payload.label),
                             ab_en.eq(self.i.payload.en), ab_scale.eq(frac_z + _LOG2E_FRAC - EXP_FRAC_BITS),
                             groups_left.eq(groups_left - 1)]
                with m.If(groups_left == 0):
                    m.d.sync += job.eq(0)

        # -- exponent stage ------------------------------------------------------------------------------
        b_busy = Signal()           # from the start of a group until its last E is written
        b_issuing = Signal()
        b_ptr = Signal(ptr_shape)
        b_max = Signal(logits)
        b_scale = Signal(signed(8))
        b_label = Signal(labels)
        b_en = Signal(lanes)
        # S goes to the reciprocal with the group's last E; starting only while the reciprocal is idle and
        # empty keeps it free for that moment (and costs nothing: the group's E rows wait for buffer room,
        # which the output stage frees once it has taken the previous R).
        b_start = ab_valid & ~b_busy & recip.i.ready
        with m.If(b_start):
            m.d.sync += [ab_valid.eq(0), b_busy.eq(1), b_issuing.eq(1), b_ptr.eq(0), b_max.eq(ab_max),
                         b_scale.eq(ab_scale), b_label.eq(ab_label), b_en.eq(ab_en)]
        b_issue = Signal()
        b_last = b_ptr == classes - 1
        m.d.comb += [b_issue.eq(b_issuing & (e_rows != classes)), zr.addr.eq(b_ptr), zr.en.eq(b_issue)]
        with m.If(b_issue):
            m.d.sync += b_ptr.eq(b_ptr + 1)
            with m.If(b_last):
                m.d.sync += b_issuing.eq(0)

        # Pipeline: read (v1: zr.data holds row k1) -> t (v2) -> E written, S accumulated.
        v1, k1, last1 = Signal(), Signal(ptr_shape), Signal()
        v2, k2, last2 = Signal(), Signal(ptr_shape), Signal()
        t2 = Signal(data.ArrayLayout(signed(_T_WIDTH), lanes))
        m.d.sync += [v1.eq(b_issue), k1.eq(b_ptr), last1.eq(b_last), v2.eq(v1), k2.eq(k1), last2.eq(last1)]
        for lane in range(lanes):
            m.d.sync += t2[lane].eq(exp2_exponent(zr.data[lane] - b_max[lane], b_scale))
        e = Signal(data.ArrayLayout(unsigned(16), lanes))
        s_acc = Signal(data.ArrayLayout(unsigned(sum_width), lanes))
        for lane in range(lanes):
            m.d.comb += [e[lane].eq(exp2_value(t2[lane])), recip.i.payload[lane].eq(s_acc[lane] + e[lane])]
            with m.If(v2):
                m.d.sync += s_acc[lane].eq(Mux(k2 == 0, e[lane], s_acc[lane] + e[lane]))
        m.d.comb += [ew.addr.eq(k2), ew.data.eq(e), ew.en.eq(v2), recip.i.valid.eq(v2 & last2)]
        c_label = Signal(labels)
        c_en = Signal(lanes)
        d_label = Signal(labels)    # the group in the reciprocal
        d_en = Signal(lanes)
        with m.If(v2 & last2):
            m.d.sync += [b_busy.eq(0), d_label.eq(b_label), d_en.eq(b_en)]

        # -- output stage --------------------------------------------------------------------------------
        c_issuing = Signal()
        c_ptr = Signal(ptr_shape)
        c_r = Signal(data.ArrayLayout(unsigned(RECIP_WIDTH), lanes))
        cv1, ck1 = Signal(), Signal(ptr_shape)       # er.data holds row ck1
        advance2 = ~self.o.valid | self.o.ready
        advance1 = ~cv1 | advance2
        # A new group starts once the last row of the previous one has left the stage that reads R.
        m.d.comb += recip.o.ready.eq(~c_issuing & ~cv1)
        with m.If(recip.o.valid & recip.o.ready):
            m.d.sync += [c_issuing.eq(1), c_ptr.eq(0), c_r.eq(recip.o.payload), c_label.eq(d_label),
                         c_en.eq(d_en)]
        c_issue = Signal()
        m.d.comb += [c_issue.eq(c_issuing & advance1), er.addr.eq(c_ptr), er.en.eq(advance1)]
        with m.If(c_issue):
            m.d.sync += c_ptr.eq(c_ptr + 1)
            with m.If(c_ptr == classes - 1):
                m.d.sync += c_issuing.eq(0)
        with m.If(advance1):
            m.d.sync += [cv1.eq(c_issue), ck1.eq(c_ptr)]
        with m.If(advance2):
            m.d.sync += [self.o.valid.eq(cv1), self.o.payload.en.eq(c_en)]
            for lane in range(lanes):
                p = (er.data[lane] * c_r[lane]) >> _PROB_SHIFT
                hit = ck1 == c_label[lane]
                m.d.sync += self.o.payload.acc[lane].eq(p - Mux(hit, _ONE_Q16, 0))

        # -- buffer occupancy ----------------------------------------------------------------------------
        m.d.sync += [z_rows.eq(z_rows + take - b_issue), e_rows.eq(e_rows + b_issue - c_issue)]
        return m


class OutputErrorUnit(wiring.Component):
    """The output-error unit: per sample, logits and label in, the error ``p - onehot(label)`` of the integer
    base-2 softmax out as stochastically rounded DFXP codes, bit-exact with :func:`golden.core.output_error`.

    One lane per sample of a column group of ``lanes`` samples. A command on ``cmd`` is one job, the errors
    of one mini-batch: ``groups_m1 + 1`` groups; for each, ``i`` carries ``classes`` logit beats in class
    order (``en``: the lanes that hold a sample, the last group may be partial) and ``o`` gives ``classes``
    error beats in the same order, ``last`` on the job's final beat; a disabled lane gives code 0 and draws
    nothing. ``stats`` gives one record per job: the elements overflowing at ``frac_e`` and at ``frac_e + 1``,
    the enabled elements and the next ``frac_e`` of the overflow rule (:func:`golden.core.next_frac`).

    Two submodules joined by a stream: :class:`SoftmaxUnit` (``g = p - 2**16 [class = label]`` in Q16) and
    :class:`hw.requant.ConversionUnit`, which converts ``g`` (``frac_in = 16``) to ``bits``-bit codes at
    ``frac_e`` (``shift = 16 - frac_e``), stochastic, with lane ``c``'s generator for sample ``c`` of each
    group: the draws of :func:`golden.core.draw_in_order` with the tile ``(None, lanes)``. ``seed`` and
    ``state`` are the conversion unit's generator ports: a seed is loaded between jobs, after the last
    beat of every job whose command was taken before it.

    Latency: a group's first error code can be taken :attr:`latency` = ``classes + 21`` cycles after its
    last logit beat (no stalls, no earlier group in the way). Throughput: a group of ``lanes`` samples every
    :attr:`group_cycles` = ``classes + 15`` cycles in steady state (see :class:`SoftmaxUnit`; the divider is
    :class:`Reciprocal`, :data:`RECIP_CYCLES` = 11 cycles). Back-pressure on ``o`` or ``stats`` stalls the
    conversion and, behind it, the softmax; nothing is lost or repeated. ``cmd`` is held in one register
    per submodule: the next command is taken once both have taken the previous one.

    Parameters
    ----------
    lanes : int
        Samples per group, 1 to 64.
    classes : int
        Logits per sample, 2 to 256.
    max_groups : int
        Most groups per job (``groups_m1`` width; the conversion unit's beat limit is
        :func:`max_beats`).

    Members
    -------
    cmd : In(stream.Signature(command_layout(max_groups)))
    i : In(stream.Signature(input_layout(lanes, classes)))
    o : Out(stream.Signature(hw.requant.output_layout(lanes)))
    stats : Out(stream.Signature(hw.requant.stats_layout(lanes, max_beats(classes, max_groups))))
    seed : In(stream.Signature(hw.lfsr.seed_layout(lanes)))
    state : Out(data.ArrayLayout(unsigned(32), lanes))

    Raises
    ------
    TypeError, ValueError
        On a bad parameter.
    """

    def __init__(self, *, lanes, classes, max_groups=1024):
        _check_int("Lane count", lanes, 1, 64)
        _check_int("Class count", classes, 2, 256)
        _check_int("Group limit", max_groups, 1)
        self._lanes, self._classes, self._max_groups = lanes, classes, max_groups
        self._max_beats = max_beats(classes, max_groups)
        super().__init__({
            "cmd": In(stream.Signature(command_layout(max_groups))),
            "i": In(stream.Signature(input_layout(lanes, classes))),
            "o": Out(stream.Signature(requant.output_layout(lanes))),
            "stats": Out(stream.Signature(requant.stats_layout(lanes, self._max_beats))),
            "seed": In(stream.Signature(seed_layout(lanes))),
            "state": Out(data.ArrayLayout(unsigned(STATE_BITS), lanes)),
        })

    lanes = property(lambda self: self._lanes)
    classes = property(lambda self: self._classes)
    max_groups = property(lambda self: self._max_groups)
    #: Cycles per group in steady state without stalls.
    group_cycles = property(lambda self: self._classes + RECIP_CYCLES + 4)
    #: Cycles from a group's last logit beat to its first code, without stalls or earlier groups: the
    #: softmax's latency, then the conversion's (a beat taken at an edge is taken from ``o`` at the
    #: ``LATENCY + 1``-th edge after it).
    latency = property(lambda self: self._classes + RECIP_CYCLES + 7 + ConversionUnit.LATENCY + 1)

    def elaborate(self, platform):
        m = Module()
        lanes, classes = self._lanes, self._classes
        m.submodules.softmax = softmax = SoftmaxUnit(lanes=lanes, classes=classes, max_groups=self._max_groups)
        m.submodules.conv = conv = ConversionUnit(lanes=lanes, acc_width=ERROR_WIDTH, max_beats=self._max_beats)
        wiring.connect(m, wiring.flipped(self.i), softmax.i)
        wiring.connect(m, softmax.o, conv.i)
        wiring.connect(m, conv.o, wiring.flipped(self.o))
        wiring.connect(m, conv.stats, wiring.flipped(self.stats))
        m.d.comb += self.state.eq(conv.state)

        # The job's command, split into the softmax's and the conversion's, each held until taken.
        sm_valid, cv_valid = Signal(), Signal()
        sm = Signal(softmax.cmd.payload.shape())
        cv = Signal(conv.cmd.payload.shape())
        cmd = self.cmd.payload
        m.d.comb += [
            self.cmd.ready.eq(~sm_valid & ~cv_valid),
            softmax.cmd.valid.eq(sm_valid), softmax.cmd.payload.eq(sm),
            conv.cmd.valid.eq(cv_valid), conv.cmd.payload.eq(cv),
        ]
        # A seed waits while the conversion has not taken a command this unit has: it lands after the jobs
        # whose commands came before it.
        m.d.comb += [
            conv.seed.valid.eq(self.seed.valid & ~cv_valid), conv.seed.payload.eq(self.seed.payload),
            self.seed.ready.eq(conv.seed.ready & ~cv_valid),
        ]
        with m.If(softmax.cmd.valid & softmax.cmd.ready):
            m.d.sync += sm_valid.eq(0)
        with m.If(conv.cmd.valid & conv.cmd.ready):
            m.d.sync += cv_valid.eq(0)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [
                sm_valid.eq(1), cv_valid.eq(1),
                sm.frac_z.eq(cmd.frac_z), sm.groups_m1.eq(cmd.groups_m1),
                cv.shift.eq(ERROR_FRAC_IN - cmd.frac_e), cv.frac.eq(cmd.frac_e), cv.bits.eq(cmd.bits),
                cv.stochastic.eq(1), cv.relu.eq(0), cv.threshold.eq(0), cv.overflow_shift.eq(cmd.overflow_shift),
                cv.beats_m1.eq(cmd.groups_m1 * classes + (classes - 1)),
            ]
        return m
