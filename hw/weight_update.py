"""The weight-update unit: ``W <- sat16(W - SR(G * 2**-shift))`` on 16-bit master weights, with the
stochastic rounding drawn from per-lane LFSRs (:func:`golden.core.weight_update`)."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.core import MASTER_BITS
from .lfsr import DRAW_BITS, STATE_BITS, LfsrBank, seed_layout
from .pipeline import check_stages
from .requant import _check_lanes, _check_max_beats, beat_control, clamp, wire


__all__ = ["STAGE_DELAYS_NS", "GRAD_BITS", "command_layout", "input_layout", "output_layout", "WeightUpdateUnit"]

#: Estimated critical path (ns, sky130_fd_sc_hd typical with flip-flop overhead, default configuration) at
#: each ``stages`` depth, shallowest first (:mod:`hw.pipeline`), as
#: ``python -m hw.build --target synth --block weight_update --set pipeline.weight_update=D`` reports it.
STAGE_DELAYS_NS = (4.98, 3.45)

#: Bits of a gradient code (the widest DFXP word).
GRAD_BITS = 16
# The rounded step is limited to +-2**17 before the subtraction, as the golden model does; any larger step
# saturates the master anyway.
_STEP_LIMIT = 1 << 17


def command_layout(max_beats):
    """One update job: ``shift = frac_g + lr_shift - frac_w`` (negative: left) and the beat count minus one."""
    return data.StructLayout({
        "shift": signed(9),
        "beats_m1": unsigned((max_beats - 1).bit_length()),
    })


def input_layout(lanes):
    """One input beat: a master weight and a gradient code per lane, and the lanes' enables."""
    return data.StructLayout({
        "master": data.ArrayLayout(signed(MASTER_BITS), lanes),
        "grad": data.ArrayLayout(signed(GRAD_BITS), lanes),
        "en": unsigned(lanes),
    })


def output_layout(lanes):
    """One output beat: the new master weights and the job's last-beat flag."""
    return data.StructLayout({
        "master": data.ArrayLayout(signed(MASTER_BITS), lanes),
        "last": unsigned(1),
    })


class WeightUpdateUnit(wiring.Component):
    """``lanes`` master weights per cycle updated by their gradients, bit-exact with
    :func:`golden.core.weight_update`.

    A job (``cmd``) gives the shift ``frac_g + lr_shift - frac_w`` (any value of the 9-bit field, exactly)
    and then takes ``beats_m1 + 1`` beats on ``i``; lane ``j`` of beat ``k`` is element ``k`` of lane ``j``.
    An enabled element becomes ``sat16(master - clip(SR(grad * 2**-shift), -2**17, 2**17))``, ``SR`` the
    stochastic rounding of :func:`golden.core.shift_round` with one draw from lane ``j``'s generator (taken
    also when the shift is not positive and the step is exact), in beat order; a disabled element passes
    its master through and draws nothing.

    Generators (:class:`hw.lfsr.LfsrBank`): a ``seed`` transfer loads one lane's state, between jobs only
    (as :class:`hw.requant.ConversionUnit`); ``state`` shows the current states.

    Throughput: one beat per cycle with back-to-back jobs, at every depth. Latency: :attr:`latency` =
    :attr:`LATENCY` + ``stages`` = 1 + ``stages`` cycles; a beat taken at a clock edge is offered on ``o``
    from the ``latency``-th edge after it (registers at ``stages=0``: shifter, output; ``stages=1`` adds one
    between the step's subtraction and the saturation, and the shift amount gets a register of its own,
    loaded with the command, which costs no cycle). The pipeline moves as a whole: back-pressure on ``o``
    holds every stage, and the unit takes a beat only when it moves; nothing is lost or repeated.

    Parameters
    ----------
    lanes : int
        Weights per beat, 1 to 64.
    max_beats : int
        Most beats of one job, a power of two >= 2.
    stages : int
        Register stages added for the clock (:mod:`hw.pipeline`, ``pipeline.weight_update``), 0 to
        ``len(STAGE_DELAYS_NS) - 1``.

    Members
    -------
    cmd : In(stream.Signature(command_layout(max_beats)))
    i : In(stream.Signature(input_layout(lanes)))
    o : Out(stream.Signature(output_layout(lanes)))
    seed : In(stream.Signature(hw.lfsr.seed_layout(lanes)))
    state : Out(data.ArrayLayout(unsigned(32), lanes))

    Raises
    ------
    TypeError, ValueError
        On a bad parameter.
    """

    #: Clock edges from the one that takes a beat to the one after which its weights are offered, at
    #: ``stages=0`` (:attr:`latency` adds the stages).
    LATENCY = 1

    def __init__(self, *, lanes, max_beats=2 ** 16, stages=0):
        _check_lanes(lanes)
        _check_max_beats(max_beats)
        check_stages(stages, len(STAGE_DELAYS_NS) - 1)
        self._lanes, self._max_beats, self._stages = lanes, max_beats, stages
        super().__init__({
            "cmd": In(stream.Signature(command_layout(max_beats))),
            "i": In(stream.Signature(input_layout(lanes))),
            "o": Out(stream.Signature(output_layout(lanes))),
            "seed": In(stream.Signature(seed_layout(lanes))),
            "state": Out(data.ArrayLayout(unsigned(STATE_BITS), lanes)),
        })

    lanes = property(lambda self: self._lanes)
    max_beats = property(lambda self: self._max_beats)
    stages = property(lambda self: self._stages)
    latency = property(lambda self: self.LATENCY + self._stages)

    def elaborate(self, platform):
        m = Module()
        lanes, limit = self._lanes, _STEP_LIMIT
        lo, hi = -(1 << (MASTER_BITS - 1)), (1 << (MASTER_BITS - 1)) - 1
        m.submodules.lfsr = bank = LfsrBank(lanes=lanes, draws=1)
        wiring.connect(m, wiring.flipped(self.seed), bank.seed)
        m.d.comb += self.state.eq(bank.state)

        # One enable for the whole pipeline: every register moves only when the output register can take a
        # beat, so a stall holds every stage and a bubble travels as a cleared valid.
        advance = wire(m, ~self.o.valid | self.o.ready, "advance")
        active, take, last, job = beat_control(m, self.cmd, self.i, advance=advance, hold=self.seed.valid)
        m.d.comb += bank.busy.eq(active)

        v1, last1, en1 = Signal(), Signal(), Signal(lanes)
        frac1 = [Signal(DRAW_BITS, name=f"frac1_{j}") for j in range(lanes)]
        r1 = [Signal(DRAW_BITS, name=f"r1_{j}") for j in range(lanes)]
        master1 = [Signal(signed(MASTER_BITS), name=f"master1_{j}") for j in range(lanes)]
        # stages=0: the integer part clamped to +-2L; stages=1: a = clip(n, -L, L) and ok = -L <= n < L.
        int1 = [Signal(signed(20), name=f"int1_{j}") for j in range(lanes)]
        ok1 = Signal(lanes)

        # Stage 0: one draw per enabled element; the shifter. grad * 2**(16 - s) is (grad << 34) >> (s + 18):
        # a left shift of 18 takes every non-zero gradient past the step limit, and a right shift of 32
        # leaves only the sign in the integer part and in the 16 fraction bits.
        beat = self.i.payload
        if self._stages == 0:
            amount = wire(m, (clamp(job.shift, -18, 32) + 18).as_unsigned()[:6], "amount")
        else:
            # The shift amount in a register of its own, loaded with the command.
            amount = Signal(6)
            with m.If(self.cmd.valid & self.cmd.ready):
                m.d.sync += amount.eq((clamp(self.cmd.payload.shift, -18, 32) + 18).as_unsigned()[:6])
        for j in range(lanes):
            m.d.comb += bank.take[j].eq(take & beat.en[j])
        with m.If(advance):
            m.d.sync += [v1.eq(take), last1.eq(last), en1.eq(beat.en)]
            for j in range(lanes):
                y = wire(m, (beat.grad[j].as_signed() << 34) >> amount, f"shifted{j}")
                n = wire(m, y[16:].as_signed(), f"integer{j}")
                m.d.sync += [frac1[j].eq(y[:16]), r1[j].eq(bank.draw[j][0]), master1[j].eq(beat.master[j])]
                if self._stages == 0:
                    m.d.sync += int1[j].eq(clamp(n, -2 * limit, 2 * limit))
                else:
                    m.d.sync += [int1[j].eq(clamp(n, -limit, limit)), ok1[j].eq((n >= -limit) & (n < limit))]

        if self._stages == 0:
            # Stage 1: the rounded step, the saturating subtraction, into the output register.
            with m.If(advance):
                m.d.sync += [self.o.valid.eq(v1), self.o.payload.last.eq(last1)]
                for j in range(lanes):
                    step = wire(m, clamp(int1[j] + (r1[j] < frac1[j]), -limit, limit), f"step{j}")
                    new = wire(m, master1[j] - step, f"new{j}")
                    m.d.sync += self.o.payload.master[j].eq(Mux(en1[j], clamp(new, lo, hi), master1[j]))
            return m

        # stages=1. The step clip(n + up, -L, L) is a + (up & ok): stage 1 subtracts a from the master beside
        # the draw's comparison with the fraction (up), stage 2 takes the one off and saturates.
        v2, last2, en2, inc2 = Signal(), Signal(), Signal(lanes), Signal(lanes)
        d2 = [Signal(signed(MASTER_BITS + 3), name=f"d2_{j}") for j in range(lanes)]
        master2 = [Signal(signed(MASTER_BITS), name=f"master2_{j}") for j in range(lanes)]
        with m.If(advance):
            m.d.sync += [v2.eq(v1), last2.eq(last1), en2.eq(en1)]
            for j in range(lanes):
                m.d.sync += [inc2[j].eq(ok1[j] & (r1[j] < frac1[j])), d2[j].eq(master1[j] - int1[j]),
                             master2[j].eq(master1[j])]
            m.d.sync += [self.o.valid.eq(v2), self.o.payload.last.eq(last2)]
            for j in range(lanes):
                new = wire(m, d2[j] - inc2[j], f"new{j}")
                m.d.sync += self.o.payload.master[j].eq(Mux(en2[j], clamp(new, lo, hi), master2[j]))
        return m
