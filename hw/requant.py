"""The conversion unit (HNPU's SDFXP conversion): exact accumulators to DFXP codes of the next tensor, with
nearest-even or LFSR stochastic rounding, saturation, stochastic thresholding and the overflow counters
that move the tensor's fractional length (:func:`golden.core.convert`, :func:`golden.core.next_frac`)."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.core import FRAC_RANGE
from .lfsr import DRAW_BITS, STATE_BITS, LfsrBank, seed_layout
from .muxes import select


__all__ = ["MAX_ACC_WIDTH", "CODE_BITS", "command_layout", "input_layout", "output_layout", "stats_layout",
           "clamp", "wire", "popcount", "beat_control", "ConversionUnit"]

#: Widest accumulator the unit takes (the shift semantics are exact up to it, as the golden model's).
MAX_ACC_WIDTH = 46
#: Bits of an output code word (a narrower code is sign-extended).
CODE_BITS = 16
# Integer part kept after the shifter: every value of magnitude 2**17 or more saturates every code width,
# at frac_out and at frac_out + 1, so it is clamped to that.
_INT_LIMIT = 1 << 17


def _beats_width(max_beats):
    return (max_beats - 1).bit_length()


def command_layout(max_beats):
    """One conversion job: the shift ``frac_in - frac_out`` (negative: left), ``frac_out`` for the overflow
    rule, the precision code (4, 8, 12, 16 bits -> 0 .. 3), rounding, ReLU, thresholding (0 = off), the
    rule's threshold shift and the beat count minus one."""
    return data.StructLayout({
        "shift": signed(9),
        "frac": signed(7),
        "bits": unsigned(2),
        "stochastic": unsigned(1),
        "relu": unsigned(1),
        "threshold": unsigned(4),
        "overflow_shift": unsigned(5),
        "beats_m1": unsigned(_beats_width(max_beats)),
    })


def input_layout(lanes, acc_width):
    """One input beat: an accumulator per lane and the lanes' enables."""
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(acc_width), lanes),
        "en": unsigned(lanes),
    })


def output_layout(lanes):
    """One output beat: a sign-extended code per lane (0 for a disabled lane) and the job's last-beat flag."""
    return data.StructLayout({
        "code": data.ArrayLayout(signed(CODE_BITS), lanes),
        "last": unsigned(1),
    })


def _count_width(lanes, max_beats):
    return (lanes * max_beats).bit_length()


def stats_layout(lanes, max_beats):
    """One job's record: elements overflowing at ``frac`` and at ``frac + 1``, enabled elements, and the
    fractional length the overflow rule gives."""
    width = _count_width(lanes, max_beats)
    return data.StructLayout({
        "ovf0": unsigned(width),
        "ovf1": unsigned(width),
        "elements": unsigned(width),
        "next_frac": signed(7),
    })


def clamp(value, lo, hi):
    """``value`` limited to ``lo .. hi`` (constants or values), as a multiplexer expression."""
    return Mux(value < lo, lo, Mux(value > hi, hi, value))


def wire(m, value, name):
    """A named signal driven by ``value`` (one continuous assignment): an expression used more than once is
    then built once in the Verilog."""
    sig = Signal(value.shape(), name=name)
    m.d.comb += sig.eq(value)
    return sig


def popcount(bits):
    """Number of set bits among the 1-bit values ``bits``, as a balanced adder tree."""
    terms = list(bits)
    if not terms:
        return Const(0, 1)
    while len(terms) > 1:
        terms = [terms[k] + terms[k + 1] if k + 1 < len(terms) else terms[k] for k in range(0, len(terms), 2)]
    return terms[0]


def beat_control(m, cmd, i, *, advance, hold):
    """Job sequencing of a unit that takes a command on ``cmd`` and then ``beats_m1 + 1`` beats on ``i``.

    A beat is taken while a job is active and ``advance`` is high; the next command is taken when no job is
    active or with the current job's last beat (back-to-back jobs, no bubble), but not while ``hold`` is high.
    Returns ``(active, take, last, job)``: a job is active, a beat is taken this cycle, it is the job's
    last, and the active job's command.
    """
    active = Signal()
    remaining = Signal(len(cmd.payload.beats_m1))
    job = Signal(cmd.payload.shape())
    last = remaining == 0
    take = active & advance & i.valid
    m.d.comb += [i.ready.eq(active & advance), cmd.ready.eq(~hold & (~active | (take & last)))]
    with m.If(take):
        m.d.sync += remaining.eq(remaining - 1)
        with m.If(last):
            m.d.sync += active.eq(0)
    with m.If(cmd.valid & cmd.ready):
        m.d.sync += [active.eq(1), remaining.eq(cmd.payload.beats_m1), job.eq(cmd.payload)]
    return active, take, last, job


def _check_lanes(lanes):
    if not isinstance(lanes, int) or isinstance(lanes, bool):
        raise TypeError(f"Lane count must be an integer, not {lanes!r}")
    if not 1 <= lanes <= 64:
        raise ValueError(f"Lane count must be an integer in 1..64, not {lanes!r}")


def _check_max_beats(max_beats):
    if not isinstance(max_beats, int) or isinstance(max_beats, bool):
        raise TypeError(f"Maximum beat count must be an integer, not {max_beats!r}")
    if max_beats < 2 or max_beats & (max_beats - 1):
        raise ValueError(f"Maximum beat count must be a power of two >= 2, not {max_beats!r}")


class ConversionUnit(wiring.Component):
    """``lanes`` accumulators per cycle to DFXP codes, bit-exact with :func:`golden.core.convert`.

    A job (``cmd``) names the conversion: ``shift = frac_in - frac_out`` (any value of the 9-bit field,
    exactly), the code width, the rounding (nearest-even, or stochastic with the lane's LFSR), ReLU,
    stochastic thresholding at ``2**threshold`` (stochastic jobs only; ignored with nearest-even) and
    ``frac`` (= ``frac_out``) with ``overflow_shift`` for the overflow rule. It then takes ``beats_m1 + 1``
    beats on ``i``; element ``k`` of lane ``j`` is lane ``j`` of beat ``k``. An enabled element becomes
    ``convert(x, frac_in, bits, frac_out, ...)`` and takes its draws from lane ``j``'s generator in beat
    order - one for stochastic rounding, two with thresholding (rounding first), none for nearest-even - and
    counts in the job's ``ovf0``, ``ovf1`` and ``elements``; a disabled element gives code 0, draws nothing
    and counts nothing. After the last beat the job's record goes out on ``stats`` with the fractional
    length :func:`golden.core.next_frac` gives; ``counters`` shows the last completed job's record until
    the next one completes.

    Thresholding follows the golden model: a kept code becomes ``+-2**threshold``, saturated to the code
    range when ``threshold >= bits - 1``.

    Generators (:class:`hw.lfsr.LfsrBank`): a ``seed`` transfer loads one lane's state. It is taken only
    between jobs: while a job takes beats it waits, and a waiting seed is loaded before the next command is
    taken. ``state`` shows the current states.

    Throughput: one beat (``lanes`` elements) per cycle, with back-to-back jobs (the next command is taken
    with the last beat). Latency: :attr:`LATENCY` = 2 cycles; a beat taken at a clock edge is offered on
    ``o`` from the second edge after it (registers: shifter, rounding, output), and a job's ``stats``
    record from the same edge as its last beat.
    Back-pressure: the pipeline moves only when ``o`` can take a beat, and a job's last beat waits while
    the previous job's record is still on ``stats``; no beat, draw or count is lost or repeated.

    Parameters
    ----------
    lanes : int
        Elements per beat, 1 to 64.
    acc_width : int
        Bits of an input accumulator, 2 to :data:`MAX_ACC_WIDTH`.
    max_beats : int
        Most beats of one job, a power of two >= 2.

    Members
    -------
    cmd : In(stream.Signature(command_layout(max_beats)))
    i : In(stream.Signature(input_layout(lanes, acc_width)))
    o : Out(stream.Signature(output_layout(lanes)))
    stats : Out(stream.Signature(stats_layout(lanes, max_beats)))
        One record per job.
    counters : Out(stats_layout(lanes, max_beats))
        The last completed job's record.
    seed : In(stream.Signature(hw.lfsr.seed_layout(lanes)))
    state : Out(data.ArrayLayout(unsigned(32), lanes))

    Raises
    ------
    TypeError, ValueError
        On a bad parameter.
    """

    #: Clock edges from the one that takes a beat to the one after which its codes are offered.
    LATENCY = 2

    def __init__(self, *, lanes, acc_width, max_beats=2 ** 16):
        _check_lanes(lanes)
        if not isinstance(acc_width, int) or isinstance(acc_width, bool):
            raise TypeError(f"Accumulator width must be an integer, not {acc_width!r}")
        if not 2 <= acc_width <= MAX_ACC_WIDTH:
            raise ValueError(f"Accumulator width must be an integer in 2..{MAX_ACC_WIDTH}, not {acc_width!r}")
        _check_max_beats(max_beats)
        self._lanes, self._acc_width, self._max_beats = lanes, acc_width, max_beats
        super().__init__({
            "cmd": In(stream.Signature(command_layout(max_beats))),
            "i": In(stream.Signature(input_layout(lanes, acc_width))),
            "o": Out(stream.Signature(output_layout(lanes))),
            "stats": Out(stream.Signature(stats_layout(lanes, max_beats))),
            "counters": Out(stats_layout(lanes, max_beats)),
            "seed": In(stream.Signature(seed_layout(lanes))),
            "state": Out(data.ArrayLayout(unsigned(STATE_BITS), lanes)),
        })

    lanes = property(lambda self: self._lanes)
    acc_width = property(lambda self: self._acc_width)
    max_beats = property(lambda self: self._max_beats)
    latency = property(lambda self: self.LATENCY)

    def _shifter(self, m, shift):
        """What the lanes' shifters share: the shift amount and the mask of the accumulator bits that fall
        below the 16 fraction bits a lane keeps."""
        w = self._acc_width
        # Beyond these shifts nothing changes: a left shift of 16 saturates every non-zero value, and a
        # right shift of w + 16 leaves only the sign in the integer part and in all 16 fraction bits.
        amount = wire(m, (clamp(shift, -16, w + 16) + 16).as_unsigned()[:(w + 32).bit_length()], "amount")
        below = wire(m, Cat(*(shift > b + 16 for b in range(w))), "below")
        return amount, below

    def _shift(self, m, x, amount, below, j):
        """Stage 0 of one element: the integer part of ``x * 2**-shift`` (clamped where it saturates
        anyway), the top 16 bits of the fraction, and whether any fraction bit below them is set."""
        y = wire(m, (x.as_signed() << 32) >> amount, f"shifted{j}")      # x * 2**(16 - shift)
        integer = wire(m, y[16:].as_signed(), f"integer{j}")
        return clamp(integer, -_INT_LIMIT, _INT_LIMIT - 1), y[:16], (x & below).any()

    def elaborate(self, platform):
        m = Module()
        lanes = self._lanes
        m.submodules.lfsr = bank = LfsrBank(lanes=lanes, draws=2)
        wiring.connect(m, wiring.flipped(self.seed), bank.seed)
        m.d.comb += self.state.eq(bank.state)

        params = data.StructLayout({"bits": unsigned(2), "stochastic": unsigned(1), "threshold": unsigned(4),
                                    "frac": signed(7), "overflow_shift": unsigned(5)})
        count_width = _count_width(lanes, self._max_beats)

        # Pipeline registers: stage 1 (shifted), stage 2 (rounded and saturated), then the output.
        v1, last1, p1 = Signal(), Signal(), Signal(params)
        en1, sticky1 = Signal(lanes), Signal(lanes)
        int1 = [Signal(signed(18), name=f"int1_{j}") for j in range(lanes)]
        frac1 = [Signal(DRAW_BITS, name=f"frac1_{j}") for j in range(lanes)]
        r1 = [Signal(DRAW_BITS, name=f"r1_{j}") for j in range(lanes)]
        t1 = [Signal(DRAW_BITS, name=f"t1_{j}") for j in range(lanes)]
        v2, last2, p2 = Signal(), Signal(), Signal(params)
        q2 = [Signal(signed(CODE_BITS), name=f"q2_{j}") for j in range(lanes)]
        en2, ovf0_2, ovf1_2 = Signal(lanes), Signal(lanes), Signal(lanes)
        t2 = [Signal(DRAW_BITS, name=f"t2_{j}") for j in range(lanes)]
        acc_ovf0, acc_ovf1, acc_n = (Signal(count_width, name=n) for n in ("acc_ovf0", "acc_ovf1", "acc_n"))
        rec_ovf0, rec_ovf1, rec_n = (Signal(count_width, name=n) for n in ("rec_ovf0", "rec_ovf1", "rec_n"))
        rec_frac, rec_shift = Signal(signed(7)), Signal(5)

        stats_free = ~self.stats.valid | self.stats.ready
        advance = wire(m, (~self.o.valid | self.o.ready) & (~(v2 & last2) | stats_free), "advance")
        active, take, last, job = beat_control(m, self.cmd, self.i, advance=advance, hold=self.seed.valid)
        m.d.comb += bank.busy.eq(active)

        # Stage 0: draws and the shifter.
        thresholding = job.stochastic & (job.threshold != 0)
        beat = self.i.payload
        for j in range(lanes):
            m.d.comb += bank.take[j].eq(Mux(take & beat.en[j] & job.stochastic, Mux(thresholding, 2, 1), 0))
        amount, below = self._shifter(m, job.shift)
        with m.If(advance):
            m.d.sync += [v1.eq(take), last1.eq(last), en1.eq(beat.en),
                         p1.bits.eq(job.bits), p1.stochastic.eq(job.stochastic),
                         p1.threshold.eq(Mux(job.stochastic, job.threshold, 0)), p1.frac.eq(job.frac),
                         p1.overflow_shift.eq(job.overflow_shift)]
            for j in range(lanes):
                x = wire(m, Mux(job.relu & beat.acc[j][-1], 0, beat.acc[j]), f"x{j}")
                integer, fraction, sticky = self._shift(m, x, amount, below, j)
                m.d.sync += [int1[j].eq(integer), frac1[j].eq(fraction), sticky1[j].eq(sticky),
                             r1[j].eq(bank.draw[j][0]), t1[j].eq(bank.draw[j][1])]

        # Stage 1: rounding, saturation and the overflow flags (nearest even at frac and at frac + 1). One
        # more integer bit is the shift minus one: integer part 2n + f[15], fraction f[14:0] and the sticky bit.
        hi = wire(m, select([Const((1 << (4 * c + 3)) - 1, signed(CODE_BITS + 1)) for c in range(4)], p1.bits), "hi")
        lo = wire(m, -hi - 1, "lo")
        with m.If(advance):
            m.d.sync += [v2.eq(v1), last2.eq(last1), p2.eq(p1), en2.eq(en1)]
            for j in range(lanes):
                n, f, st = int1[j], frac1[j], sticky1[j]
                up0 = f[15] & ((f[:15] != 0) | st | n[0])
                up1 = f[14] & ((f[:14] != 0) | st | f[15])
                near0 = wire(m, n + up0, f"near0_{j}")
                near1 = wire(m, (n << 1) + f[15] + up1, f"near1_{j}")
                q = wire(m, n + Mux(p1.stochastic, r1[j] < f, up0), f"q1_{j}")
                m.d.sync += [q2[j].eq(Mux(en1[j], clamp(q, lo, hi), 0)), t2[j].eq(t1[j]),
                             ovf0_2[j].eq(en1[j] & ((near0 > hi) | (near0 < lo))),
                             ovf1_2[j].eq(en1[j] & ((near1 > hi) | (near1 < lo)))]

        # Stage 2: thresholding into the output register; the counters.
        k = p2.threshold
        tau = wire(m, Const(1, 1) << k, "tau")
        hi2 = wire(m, select([Const((1 << (4 * c + 3)) - 1, signed(CODE_BITS + 1)) for c in range(4)], p2.bits), "hi2")
        codes = []
        for j in range(lanes):
            q = q2[j]
            mag = wire(m, Mux(q[-1], -q, q).as_unsigned(), f"mag{j}")
            small = (k != 0) & (q != 0) & (mag < tau)
            keep = t2[j] < ((mag << 16) >> k)[:DRAW_BITS]      # mag < 2**k: exact
            # A kept code is +-2**k, saturated to the code range (k may reach the top bit).
            kept = Mux(q[-1], Mux(tau > hi2 + 1, -hi2 - 1, -tau), Mux(tau > hi2, hi2, tau))
            codes.append(Mux(small, Mux(keep, kept, 0), q))
        sums = [wire(m, acc + popcount(flags), f"sum_{name}") for acc, flags, name in
                ((acc_ovf0, ovf0_2, "ovf0"), (acc_ovf1, ovf1_2, "ovf1"), (acc_n, en2, "n"))]
        # Either output may be taken while the other holds the pipeline: each drops its valid when taken.
        with m.If(self.stats.ready):
            m.d.sync += self.stats.valid.eq(0)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(v2), self.o.payload.last.eq(last2)]
            m.d.sync += [self.o.payload.code[j].eq(codes[j]) for j in range(lanes)]
            with m.If(v2):
                with m.If(last2):
                    m.d.sync += [rec_ovf0.eq(sums[0]), rec_ovf1.eq(sums[1]), rec_n.eq(sums[2]),
                                 rec_frac.eq(p2.frac), rec_shift.eq(p2.overflow_shift), self.stats.valid.eq(1),
                                 acc_ovf0.eq(0), acc_ovf1.eq(0), acc_n.eq(0)]
                with m.Else():
                    m.d.sync += [acc_ovf0.eq(sums[0]), acc_ovf1.eq(sums[1]), acc_n.eq(sums[2])]

        # The overflow rule on the held record.
        limit = wire(m, rec_n >> rec_shift, "limit")
        frac_lo, frac_hi = FRAC_RANGE
        next_frac = Mux(rec_ovf0 > limit, Mux(rec_frac == frac_lo, frac_lo, rec_frac - 1),
                        Mux(rec_ovf1 <= limit, Mux(rec_frac == frac_hi, frac_hi, rec_frac + 1), rec_frac))
        m.d.comb += [self.stats.payload.ovf0.eq(rec_ovf0), self.stats.payload.ovf1.eq(rec_ovf1),
                     self.stats.payload.elements.eq(rec_n), self.stats.payload.next_frac.eq(next_frac),
                     self.counters.eq(self.stats.payload)]
        return m
