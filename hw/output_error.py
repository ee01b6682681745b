"""Output-error unit: logits and labels in, the error ``p - onehot(label)`` of an integer base-2 softmax out,
as stochastically rounded DFXP codes (:func:`golden.core.output_error`)."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden.core import ERROR_FRAC_IN, EXP2_TABLE, EXP_FRAC_BITS, LOG2E, RECIP_BITS
from . import requant
from .lfsr import STATE_BITS, seed_layout
from .pipeline import check_stages
from .requant import ConversionUnit, wire


__all__ = [
    "STAGE_DELAYS_NS", "LOGIT_WIDTH", "ERROR_WIDTH", "RECIP_WIDTH", "RECIP_STEPS_PER_CYCLE", "RECIP_CYCLES",
    "command_layout", "input_layout", "softmax_command_layout", "error_layout", "max_beats",
    "exp2_product", "exp2_product_first", "exp2_product_second", "exp2_shift", "exp2_exponent", "exp2_parts",
    "exp2_shifted", "exp2_value", "Reciprocal", "SoftmaxUnit", "OutputErrorUnit",
]

#: Estimated critical path (ns, sky130_fd_sc_hd typical with flip-flop overhead, default configuration) at
#: each ``stages`` depth, shallowest first (:mod:`hw.pipeline`), as
#: ``python -m hw.build --target synth --block output_error --set pipeline.output_error=D`` reports it.
STAGE_DELAYS_NS = (5.43, 4.92)

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
# Bits of d * LOG2E for a 17-bit d (|d| < 2**16: |d * LOG2E| < 2**29).
_PROD_WIDTH = 30
# LOG2E = 19 * 311: the pipelined exponent multiplies by each in its own stage (19 * d fits 22 bits).
_LOG2E_A, _LOG2E_B, _PROD_A_WIDTH = 19, 311, 22
assert _LOG2E_A * _LOG2E_B == LOG2E


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


def _signed_digits(n):
    """The canonical signed-digit form of ``n > 0``: ``(sign, shift)`` pairs with ``n = sum(sign << shift)``,
    no two shifts adjacent (LOG2E = 5909 = 2**13 - 2**11 - 2**8 + 2**4 + 2**2 + 1: six terms, not seven)."""
    digits, shift = [], 0
    while n:
        if n & 1:
            sign = 2 - (n & 3)
            digits.append((sign, shift))
            n -= sign
        n >>= 1
        shift += 1
    return digits


def _digit_sum(pairs, width):
    """``sum(value * factor)`` over the ``(value, factor)`` pairs (integer factors, either sign), as one sum of
    the shifted values the factors' signed digits name (:func:`_signed_digits`), which synthesis makes one
    carry-save tree; a ``signed(width)`` value (the sum must fit)."""
    total = None
    for value, factor in pairs:
        for sign, shift in _signed_digits(abs(factor)):
            term = (value << shift) if sign * factor > 0 else -(value << shift)
            total = term if total is None else total + term
    return total[:width].as_signed()


def exp2_product(d):
    """``d * LOG2E`` for a logit difference ``d <= 0`` (at most 17 bits), as logic: at most 0, above
    ``-2**29``; a ``signed(30)`` value, one carry-save tree of the signed digits of LOG2E rather than a
    multiplier."""
    return _digit_sum([(d, LOG2E)], _PROD_WIDTH)


def exp2_product_first(z, zmax):
    """The pipelined :func:`exp2_product`'s first stage (LOG2E = 19 * 311): ``19 * (z - zmax)`` for a logit
    ``z`` and its column's maximum, from six terms (no subtraction before them); a ``signed(22)`` value."""
    return _digit_sum([(z, _LOG2E_A), (zmax, -_LOG2E_A)], _PROD_A_WIDTH)


def exp2_product_second(x):
    """The pipelined :func:`exp2_product`'s second stage: ``311 * x`` for ``x`` of
    :func:`exp2_product_first`, from four terms; a ``signed(30)`` value."""
    return _digit_sum([(x, _LOG2E_B)], _PROD_WIDTH)


def exp2_shift(prod, scale):
    """``t = floor(prod / 2**scale)`` for ``prod = d * LOG2E`` (:func:`exp2_product`) with ``scale = frac_z +
    12 - 6``, as logic, clamped to ``[-1024, 0]`` (every ``t <= -1024`` gives ``E = 0``). For ``scale <= 0`` the
    left shift is not built: ``prod`` is 0 or at most ``-LOG2E``, below the clamp already, and shifting it left
    keeps it there. Returns an 11-bit signed value."""
    amount = Mux(scale > 31, 31, scale.as_unsigned()[:5])
    t = Mux(scale > 0, prod >> amount, prod)            # arithmetic shift: the floor
    return Mux(t < _T_MIN, _T_MIN, t)[:_T_WIDTH].as_signed()


def exp2_exponent(d, scale):
    """The base-2 exponent ``t = floor(d * LOG2E / 2**scale)`` of a logit difference ``d <= 0`` (at most 17
    bits) with ``scale = frac_z + 12 - 6``, as logic, clamped to ``[-1024, 0]``: ``d * LOG2E`` then
    :func:`exp2_shift`. Returns an 11-bit signed value."""
    return exp2_shift(d * LOG2E, scale)


def _rom(index, values, bits):
    """``values[index]`` (a power-of-two table of 16-bit words) as a tree of multiplexers on ``index``."""
    if bits == 0:
        return Const(values[0], 16)
    half = len(values) // 2
    return Mux(index[bits - 1], _rom(index, values[half:], bits - 1), _rom(index, values[:half], bits - 1))


def exp2_parts(t):
    """The two halves of :func:`exp2_value`: the table word ``EXP2_TABLE[t mod 64]`` (16 bits) and the right
    shift ``-(t >> 6)`` (5 bits, 0 .. 16)."""
    return _rom(t[:EXP_FRAC_BITS], EXP2_TABLE, EXP_FRAC_BITS), (-(t >> EXP_FRAC_BITS)).as_unsigned()[:5]


def exp2_shifted(word, shift):
    """:func:`exp2_value` from its two halves (:func:`exp2_parts`): ``word >> shift``, 16 bits."""
    return (word >> shift)[:16]


def exp2_value(t):
    """``E = EXP2_TABLE[t mod 64] >> -(t >> 6)`` for an 11-bit signed ``t`` in ``[-1024, 0]``: ``2**t`` in
    Q15 (0 when the shift reaches 16). Returns a 16-bit unsigned value."""
    return exp2_shifted(*exp2_parts(t))


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
    and each step doubles it and subtracts ``S`` when it fits. At ``stages=0`` a cycle runs the two steps one
    after the other. At ``stages=1`` it finds the cycle's digit ``k`` (0 to 3) at once, the largest with
    ``4r - kS >= 0``, from three subtractions side by side; ``3S`` is a register, computed in a division's
    first cycle and all ones during it, which is exact because that digit is at most 1 (``4 * 2**13 <
    3S``). The same cycles at every depth: the stage is the ``3S`` register and a shorter path, not a cycle.

    Latency: the result is on ``o`` :data:`RECIP_CYCLES` (11) cycles after ``i`` is taken, at every depth.
    ``i`` is taken only while the divider is idle and its last result has been taken (one division at a
    time); the result is held on ``o`` until taken.

    Parameters
    ----------
    lanes : int
        Sums per transfer, 1 to 64.
    sum_width : int
        Bits of a sum, 16 to 32 (``S`` must be at least ``2**15``).
    stages : int
        0 (two restoring steps in a row per cycle) or 1 (one radix-4 digit from parallel subtractions).

    Members
    -------
    i : In(stream.Signature(data.ArrayLayout(unsigned(sum_width), lanes)))
    o : Out(stream.Signature(data.ArrayLayout(unsigned(RECIP_WIDTH), lanes)))
    """

    def __init__(self, *, lanes, sum_width, stages=0):
        _check_int("Lane count", lanes, 1, 64)
        _check_int("Sum width", sum_width, 16, 32)
        check_stages(stages, len(STAGE_DELAYS_NS) - 1)
        self._lanes, self._sum_width, self._stages = lanes, sum_width, stages
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
        # stages=1: three times the divisor, from the first cycle of a division on (all ones before).
        triple = Signal(data.ArrayLayout(unsigned(width + 2), lanes))

        m.d.comb += self.i.ready.eq(~busy & ~self.o.valid)
        for lane in range(lanes):
            r, q, d = rem[lane], quot[lane], divisor[lane]
            if self._stages == 0:
                # Two restoring steps in a row.
                for _ in range(RECIP_STEPS_PER_CYCLE):
                    doubled = r << 1
                    fits = doubled >= d
                    r = Mux(fits, doubled - d, doubled)[:width]
                    q = (q << 1 | fits)[:_RECIP_STEPS]
            else:
                # Both steps at once: the quotient digit k is the largest of 0..3 with 4r - kD >= 0, from three
                # subtractions side by side. In the first cycle ``triple`` is still all ones, which excludes
                # k = 3 - right there, as 4 * 2**13 < 3S.
                x = r << 2
                diffs = [wire(m, x - d, f"sub1_{lane}"), wire(m, x - (d << 1), f"sub2_{lane}"),
                         wire(m, x - triple[lane], f"sub3_{lane}")]
                fit = [~t[-1] for t in diffs]
                # fit[2] implies fit[1], which implies fit[0]: a balanced tree of two multiplexer levels.
                r = Mux(fit[1], Mux(fit[2], diffs[2], diffs[1]), Mux(fit[0], diffs[0], x))[:width]
                q = (q << 2 | Cat(fit[2] | (fit[0] & ~fit[1]), fit[1]))[:_RECIP_STEPS]
                with m.If(busy):
                    m.d.sync += triple[lane].eq(d + (d << 1))
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
                m.d.sync += [rem[lane].eq(1 << (RECIP_BITS - _RECIP_STEPS)), quot[lane].eq(0),
                             triple[lane].eq(-1)]
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

    ``stages=1`` (``pipeline.output_error``) cuts the long paths: the divider finds a radix-4 digit from
    parallel subtractions (:class:`Reciprocal`, same cycles); the exponent pass gets two more registers,
    ``19 * d`` and ``311 * (19 * d) = d * LOG2E`` (:func:`exp2_product_first`, :func:`exp2_product_second`:
    carry-save trees of signed digits), before the shift (:func:`exp2_shift`), and ``E``'s table word is
    looked up before the register after ``t`` (:func:`exp2_parts`), so that only the word's shift, the sum
    ``S`` and the reciprocal's operand follow it; the output stage gets one register, the products of ``E``
    with the two halves of ``R``. The exponent pass and the reciprocal form a loop (a group's rows go into
    the exponent buffer as the output stage reads the previous group's, which needs that group's ``R``), so
    the two cycles it gains are won back in it: the output stage reads a group's first row in the cycle it
    takes its ``R``, and the exponent pass issues a row in the cycle the output stage frees one of the full
    buffer (and so starts as soon as the previous group has left it, not once the reciprocal is free).

    Latency: a group's first ``g`` can be taken :attr:`latency` = ``classes + 18 + 2 * stages`` cycles after
    its last logit beat (no stalls and no earlier group in the way). Throughput: a group every
    :attr:`group_cycles` = ``classes + 15`` cycles in steady state at every depth (the exponent pass of a
    group runs beside the output pass of the one before, then waits for its reciprocal); the input stage
    takes a group's beats while the other two work on the previous groups. A new job's command is taken the
    cycle after the previous job's last beat. Back-pressure on ``o`` stalls the output stage and, through the
    buffers, the others; ``i`` is taken only while a job is open and the logit buffer has room.

    Parameters
    ----------
    lanes : int
        Samples per group, 1 to 64.
    classes : int
        Logits per sample, 2 to 256.
    max_groups : int
        Most groups per job (sets the width of ``groups_m1``).
    stages : int
        Register stages added for the clock, 0 to ``len(STAGE_DELAYS_NS) - 1`` (see above).

    Members
    -------
    cmd : In(stream.Signature(softmax_command_layout(max_groups)))
    i : In(stream.Signature(input_layout(lanes, classes)))
    o : Out(stream.Signature(error_layout(lanes)))
    """

    def __init__(self, *, lanes, classes, max_groups=1024, stages=0):
        _check_int("Lane count", lanes, 1, 64)
        _check_int("Class count", classes, 2, 256)
        _check_int("Group limit", max_groups, 1)
        check_stages(stages, len(STAGE_DELAYS_NS) - 1)
        self._lanes, self._classes, self._max_groups, self._stages = lanes, classes, max_groups, stages
        super().__init__({
            "cmd": In(stream.Signature(softmax_command_layout(max_groups))),
            "i": In(stream.Signature(input_layout(lanes, classes))),
            "o": Out(stream.Signature(error_layout(lanes))),
        })

    lanes = property(lambda self: self._lanes)
    classes = property(lambda self: self._classes)
    max_groups = property(lambda self: self._max_groups)
    stages = property(lambda self: self._stages)
    #: Cycles per group in steady state without stalls.
    group_cycles = property(lambda self: self._classes + RECIP_CYCLES + 4)
    #: Cycles from a group's last logit beat to its first ``g`` beat, without stalls or earlier groups.
    latency = property(lambda self: self._classes + RECIP_CYCLES + 7 + 2 * self._stages)

    def elaborate(self, platform):
        m = Module()
        lanes, classes = self._lanes, self._classes
        ptr_shape = range(classes)
        logits = data.ArrayLayout(signed(LOGIT_WIDTH), lanes)
        labels = self.i.payload.label.shape()
        sum_width = (classes << 15).bit_length()

        m.submodules.zbuf = zbuf = Memory(shape=logits, depth=classes, init=[])
        m.submodules.ebuf = ebuf = Memory(shape=data.ArrayLayout(unsigned(16), lanes), depth=classes, init=[])
        m.submodules.recip = recip = Reciprocal(lanes=lanes, sum_width=sum_width, stages=self._stages)
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
        # S goes to the reciprocal with the group's last E, which must find it idle and empty. At stages=0 a
        # group starts only while the reciprocal is idle and empty (which costs nothing: the group's E rows
        # wait for buffer room, which the output stage frees once it has taken the previous R). With stages,
        # E has two more registers; to keep the group rate, a group starts as soon as the previous one has
        # left this stage and a row issues in the cycle the output stage reads a row of the full buffer
        # (c_issue; the row is written cycles after that read). The buffer keeps the reciprocal free all the
        # same: a group's first row issues only once the output stage reads the previous group's rows, that
        # is once it has taken that group's R.
        b_start = ab_valid & ~b_busy & (recip.i.ready if self._stages == 0 else 1)
        with m.If(b_start):
            m.d.sync += [ab_valid.eq(0), b_busy.eq(1), b_issuing.eq(1), b_ptr.eq(0), b_max.eq(ab_max),
                         b_scale.eq(ab_scale), b_label.eq(ab_label), b_en.eq(ab_en)]
        b_issue = Signal()
        b_last = b_ptr == classes - 1
        c_issue = Signal()
        room = (e_rows != classes) if self._stages == 0 else ((e_rows != classes) | c_issue)
        m.d.comb += [b_issue.eq(b_issuing & room), zr.addr.eq(b_ptr), zr.en.eq(b_issue)]
        with m.If(b_issue):
            m.d.sync += b_ptr.eq(b_ptr + 1)
            with m.If(b_last):
                m.d.sync += b_issuing.eq(0)

        # Pipeline: read (v1: zr.data holds row k1) -> t (v2) -> E written, S accumulated. With stages, 19 * d
        # and d * LOG2E have registers of their own between the read and t.
        v1, k1, last1 = Signal(), Signal(ptr_shape), Signal()
        m.d.sync += [v1.eq(b_issue), k1.eq(b_ptr), last1.eq(b_last)]
        if self._stages >= 1:
            # Two more registers: 19 * d, then d * LOG2E = 311 * (19 * d).
            d = Signal(data.ArrayLayout(signed(_PROD_A_WIDTH), lanes))
            prod = Signal(data.ArrayLayout(signed(_PROD_WIDTH), lanes))
            va, ka, lasta = Signal(), Signal(ptr_shape), Signal()
            vb, kb, lastb = Signal(), Signal(ptr_shape), Signal()
            m.d.sync += [va.eq(v1), ka.eq(k1), lasta.eq(last1), vb.eq(va), kb.eq(ka), lastb.eq(lasta)]
            for lane in range(lanes):
                m.d.sync += [d[lane].eq(exp2_product_first(zr.data[lane], b_max[lane])),
                             prod[lane].eq(exp2_product_second(d[lane]))]
            v1, k1, last1 = vb, kb, lastb
            t_of = [exp2_shift(prod[lane], b_scale) for lane in range(lanes)]
        else:
            t_of = [exp2_exponent(zr.data[lane] - b_max[lane], b_scale) for lane in range(lanes)]
        v2, k2, last2 = Signal(), Signal(ptr_shape), Signal()
        m.d.sync += [v2.eq(v1), k2.eq(k1), last2.eq(last1)]
        if self._stages >= 1:
            # E's table word and shift registered in place of t: the lookup goes before the register, so that
            # the shift, the sum S and the reciprocal's operand fit the cycle after it.
            word2 = Signal(data.ArrayLayout(unsigned(16), lanes))
            shift2 = Signal(data.ArrayLayout(unsigned(5), lanes))
            for lane in range(lanes):
                word, shift = exp2_parts(t_of[lane])
                m.d.sync += [word2[lane].eq(word), shift2[lane].eq(shift)]
            e_of = [exp2_shifted(word2[lane], shift2[lane]) for lane in range(lanes)]
        else:
            t2 = Signal(data.ArrayLayout(signed(_T_WIDTH), lanes))
            m.d.sync += [t2[lane].eq(t_of[lane]) for lane in range(lanes)]
            e_of = [exp2_value(t2[lane]) for lane in range(lanes)]
        e = Signal(data.ArrayLayout(unsigned(16), lanes))
        s_acc = Signal(data.ArrayLayout(unsigned(sum_width), lanes))
        for lane in range(lanes):
            m.d.comb += [e[lane].eq(e_of[lane]), recip.i.payload[lane].eq(s_acc[lane] + e[lane])]
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
        out_advance = ~self.o.valid | self.o.ready
        if self._stages >= 1:
            # The product E * R in two halves of R, each in a register, then their sum into the output.
            cv2, hit2, en2 = Signal(), Signal(lanes), Signal(lanes)
            lo_bits = RECIP_WIDTH // 2
            prod_lo = Signal(data.ArrayLayout(unsigned(16 + lo_bits), lanes))
            prod_hi = Signal(data.ArrayLayout(unsigned(16 + RECIP_WIDTH - lo_bits), lanes))
            advance2 = ~cv2 | out_advance
        else:
            advance2 = out_advance
        advance1 = ~cv1 | advance2
        # A new group starts once the last row of the previous one has left the stage that reads R.
        c_take = recip.o.valid & recip.o.ready
        m.d.comb += recip.o.ready.eq(~c_issuing & ~cv1)
        with m.If(c_take):
            m.d.sync += [c_issuing.eq(1), c_ptr.eq(0), c_r.eq(recip.o.payload), c_label.eq(d_label),
                         c_en.eq(d_en)]
        if self._stages == 0:
            ptr = c_ptr
            m.d.comb += c_issue.eq(c_issuing & advance1)
        else:
            # With stages, the group's first row is read in the cycle its R is taken (R reaches c_r with it).
            ptr = Mux(c_take, 0, c_ptr)
            m.d.comb += c_issue.eq((c_issuing | c_take) & advance1)
        m.d.comb += [er.addr.eq(ptr), er.en.eq(advance1)]
        with m.If(c_issue):
            m.d.sync += c_ptr.eq(ptr + 1)
            with m.If(ptr == classes - 1):
                m.d.sync += c_issuing.eq(0)
        with m.If(advance1):
            m.d.sync += [cv1.eq(c_issue), ck1.eq(ptr)]
        if self._stages == 0:
            with m.If(advance2):
                m.d.sync += [self.o.valid.eq(cv1), self.o.payload.en.eq(c_en)]
                for lane in range(lanes):
                    p = (er.data[lane] * c_r[lane]) >> _PROB_SHIFT
                    hit = ck1 == c_label[lane]
                    m.d.sync += self.o.payload.acc[lane].eq(p - Mux(hit, _ONE_Q16, 0))
        else:
            with m.If(advance2):
                m.d.sync += [cv2.eq(cv1), en2.eq(c_en)]
                for lane in range(lanes):
                    m.d.sync += [prod_lo[lane].eq(er.data[lane] * c_r[lane][:lo_bits]),
                                 prod_hi[lane].eq(er.data[lane] * c_r[lane][lo_bits:]),
                                 hit2[lane].eq(ck1 == c_label[lane])]
            with m.If(out_advance):
                m.d.sync += [self.o.valid.eq(cv2), self.o.payload.en.eq(en2)]
                for lane in range(lanes):
                    p = ((prod_hi[lane] << lo_bits) + prod_lo[lane]) >> _PROB_SHIFT
                    m.d.sync += self.o.payload.acc[lane].eq(p - Mux(hit2[lane], _ONE_Q16, 0))

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

    Latency: a group's first error code can be taken :attr:`latency` = ``classes + 21 + 2 * stages`` cycles
    after its last logit beat (no stalls, no earlier group in the way). Throughput: a group of ``lanes``
    samples every :attr:`group_cycles` = ``classes + 15`` cycles in steady state at every depth (see
    :class:`SoftmaxUnit`; the divider is :class:`Reciprocal`, :data:`RECIP_CYCLES` = 11 cycles). Every
    other timing is that of ``stages=0`` with the fixed offset: a group's first code comes at the later of
    ``latency`` after its last logit beat and ``group_cycles`` after the previous group's first code, with
    one exception measured at ``stages=1``: the first group of a job that follows another job back to back
    may come one cycle later (jobs of one group each: gaps of ``group_cycles`` and ``group_cycles + 1``;
    within a job the rate holds). Back-pressure on ``o`` or ``stats`` stalls the
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
    stages : int
        Register stages added for the clock (:mod:`hw.pipeline`, ``pipeline.output_error``), 0 to
        ``len(STAGE_DELAYS_NS) - 1``: :class:`SoftmaxUnit`'s.

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

    def __init__(self, *, lanes, classes, max_groups=1024, stages=0):
        _check_int("Lane count", lanes, 1, 64)
        _check_int("Class count", classes, 2, 256)
        _check_int("Group limit", max_groups, 1)
        check_stages(stages, len(STAGE_DELAYS_NS) - 1)
        self._lanes, self._classes, self._max_groups, self._stages = lanes, classes, max_groups, stages
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
    stages = property(lambda self: self._stages)
    #: Cycles per group in steady state without stalls.
    group_cycles = property(lambda self: self._classes + RECIP_CYCLES + 4)
    #: Cycles from a group's last logit beat to its first code, without stalls or earlier groups: the
    #: softmax's latency, then the conversion's (a beat taken at an edge is taken from ``o`` at the
    #: ``LATENCY + 1``-th edge after it).
    latency = property(lambda self: self._classes + RECIP_CYCLES + 7 + 2 * self._stages + ConversionUnit.LATENCY + 1)

    def elaborate(self, platform):
        m = Module()
        lanes, classes = self._lanes, self._classes
        m.submodules.softmax = softmax = SoftmaxUnit(lanes=lanes, classes=classes, max_groups=self._max_groups,
                                                    stages=self._stages)
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
