"""K-way shared-exponent FP8 fused dot-product (MAC) tree: exact block sums, one rounding, binary32 out."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from .fp32 import F32_NAN, FP32Adder, round_fixed_to_f32, shift_right_sticky, signed_width
from .pipeline import check_stages


__all__ = ["STAGE_DELAYS_NS", "ElemFormat", "input_layout", "FP8MacTree", "BF16MacTree", "Int8DotTree", "check_k"]

#: Estimated critical path (ns, sky130_fd_sc_hd typical with flip-flop overhead, default configuration) at
#: each ``stages`` depth, shallowest first (:mod:`hw.pipeline`), as measured by
#: ``python -m hw.build --target synth --block fp8_tree --set pipeline.fp8_tree=D`` (200 MHz). At depth 1 the
#: normalization of the exact sum and the binary32 accumulation loop are both about 7 ns, and no cut shortens
#: the loop (see :class:`FP8MacTree`): no depth meets 5 ns, and ``auto`` takes depth 1.
STAGE_DELAYS_NS = (8.13, 7.16)


class ElemFormat(enum.Enum, shape=1):
    """Element format of one operand block, chosen per block pair at run time."""
    E4M3 = 0
    E5M2 = 1


def check_k(k):
    if not isinstance(k, int) or isinstance(k, bool):
        raise TypeError(f"Block size K must be an integer, not {k!r}")
    if k < 2 or k & (k - 1):
        raise ValueError(f"Block size K must be a power of two >= 2, not {k!r}")


def input_layout(k):
    """One block pair: K codes per operand, their E8M0 scales and formats, and the accumulation flags
    (``first``: start a new sum with this block; ``last``: emit the sum after this block)."""
    return data.StructLayout({
        "a": data.ArrayLayout(unsigned(8), k),
        "b": data.ArrayLayout(unsigned(8), k),
        "a_scale": unsigned(8),
        "b_scale": unsigned(8),
        "a_fmt": ElemFormat,
        "b_fmt": ElemFormat,
        "first": unsigned(1),
        "last": unsigned(1),
    })


# Exact products M_a * M_b * 2**(q_a + q_b) have q_a + q_b >= -32 and fit below bit 66 once shifted by 32.
_Q_OFFSET = 32
_TERM_BITS = 66


def _decode(code, fmt):
    """(sign, M, q, is_nan, is_inf) of one FP8 code: value = (-1)**sign * M * 2**q for finite codes."""
    sign = code[7]
    e4_exp, e4_man = code[3:7], code[:3]
    e5_exp, e5_man = code[2:7], code[:2]
    is_e5 = fmt == ElemFormat.E5M2
    e4_m = Mux(e4_exp != 0, Cat(e4_man, Const(1, 1)), e4_man)
    e5_m = Mux(e5_exp != 0, Cat(e5_man, Const(1, 1)), e5_man)
    e4_q = Mux(e4_exp != 0, e4_exp, 1) - 10                                      # bias 7 + 3 mantissa bits
    e5_q = Mux(e5_exp != 0, e5_exp, 1) - 17                                      # bias 15 + 2 mantissa bits
    m = Mux(is_e5, e5_m, e4_m)
    q = Mux(is_e5, e5_q, e4_q)
    is_nan = Mux(is_e5, (e5_exp == 0x1F) & (e5_man != 0), (e4_exp == 0xF) & (e4_man == 0x7))
    is_inf = is_e5 & (e5_exp == 0x1F) & (e5_man == 0)
    return sign, m, q, is_nan, is_inf


def _comb(m, value, shape, name):
    """``value`` in a named signal (an expression used more than once stays one net)."""
    sig = Signal(shape, name=name)
    m.d.comb += sig.eq(value)
    return sig


def _register(m, advance, prefix, values):
    """A pipeline register for each of ``values`` (name -> (value, shape)), loading when the pipeline
    advances; returns name -> register."""
    out = {}
    for name, (value, shape) in values.items():
        out[name] = Signal(shape, name=f"{prefix}_{name}")
        with m.If(advance):
            m.d.sync += out[name].eq(value)
    return out


def _leading_zeros_tree(m, value, name):
    """Leading zeros of ``value`` (``len(value)`` when it is zero) as a balanced tree of depth log2(width):
    the count of each half is chosen by whether the upper half is all zero."""
    width = len(value)
    pad = (1 << width.bit_length()) - width
    # At least one 1 below the value: a zero value counts exactly ``width``.
    padded = Cat(Const((1 << pad) - 1, pad), value)

    def count(x, path):
        if len(x) == 1:
            return ~x[0], Cat()
        half = len(x) // 2
        zero_lo, count_lo = count(x[:half], path + "l")
        zero_hi, count_hi = count(x[half:], path + "h")
        zero = _comb(m, zero_hi & zero_lo, 1, f"{name}_z{path}")
        return zero, _comb(m, Cat(Mux(zero_hi, count_lo, count_hi), zero_hi), len(count_lo) + 1, f"{name}_c{path}")

    return count(padded, "")[1]


#: A binary32 value unpacked for the accumulator: significand ``m`` with its hidden bit (bit 23 clear for
#: zero and subnormals), effective biased exponent ``e`` (1 for zero and subnormals), sign ``s`` (of the
#: infinity when ``inf``), and the special flags.
_unpacked = data.StructLayout({"m": unsigned(24), "e": unsigned(8), "s": unsigned(1),
                               "nan": unsigned(1), "inf": unsigned(1)})


def _unpack(bits):
    exp, frac = bits[23:31], bits[:23]
    return Cat(Cat(frac, exp != 0), Mux(exp == 0, 1, exp), bits[31], (exp == 0xFF) & (frac != 0),
               (exp == 0xFF) & (frac == 0))


def _pack(x):
    return Mux(x.nan, F32_NAN,
               Mux(x.inf, Cat(Const(0, 23), Const(0xFF, 8), x.s), Cat(x.m[:23], Mux(x.m[23], x.e, 0), x.s)))


def _unpacked_add(m, a, b):
    """``a + b`` in binary32 (nearest even, subnormals, overflow to infinity, IEEE 754 specials with the
    canonical NaN) on unpacked operands, unpacked: the accumulator's loop, with no field packing or
    unpacking in it (:class:`hw.fp32.FP32Adder` computes the same sum on packed bits)."""
    # Order by magnitude, |x| >= |y|; the exponent difference of both orders is formed beside the compare.
    ge = _comb(m, Cat(a.m, a.e) >= Cat(b.m, b.e), 1, "acc_ge")
    x_s = Mux(ge, a.s, b.s)
    x_e = _comb(m, Mux(ge, a.e, b.e), 8, "acc_xe")
    x_m = Mux(ge, a.m, b.m)
    diff = _comb(m, Mux(ge, a.e - b.e, b.e - a.e), 8, "acc_diff")
    y_al = _comb(m, shift_right_sticky(Cat(Const(0, 3), Mux(ge, b.m, a.m)), diff, 27), 27, "acc_yal")
    subtract = a.s ^ b.s
    x_w = Cat(Const(0, 3), x_m)                              # 27 bits: significand + G, R, S
    total = _comb(m, Mux(subtract, x_w - y_al, x_w + y_al), 28, "acc_total")
    # Normalize: a carry shifts right by one, cancellation left, no further than exponent 1.
    carry = total[27]
    lz = _leading_zeros_tree(m, total[:27], "acc_lz")
    max_left = _comb(m, x_e - 1, 8, "acc_max_left")
    left = _comb(m, Mux(lz < max_left, lz, max_left), 5, "acc_left")
    norm = _comb(m, Mux(carry, Cat(total[0] | total[1], total[2:28]), total[:27] << left), 27, "acc_norm")
    exp_n = _comb(m, Mux(carry, x_e + 1, x_e - left), 9, "acc_exp_n")
    rounded = _comb(m, norm[3:27] + (norm[2] & (norm[:2].any() | norm[3])), 25, "acc_rounded")
    exp_r = _comb(m, Mux(rounded[24], exp_n + 1, exp_n), 10, "acc_exp_r")
    mant = _comb(m, Mux(rounded[24], rounded[1:25], rounded[:24]), 24, "acc_mant")
    overflow = mant[23] & (exp_r >= 255)
    # The only exact zero of a sum is x + (-x): +0 (and -0 + -0 = -0 keeps the sign of x).
    cancel = subtract & (a.e == b.e) & (a.m == b.m)
    nan = a.nan | b.nan | (a.inf & b.inf & subtract)
    inf = (a.inf | b.inf | overflow) & ~nan
    sign = Mux(a.inf, a.s, Mux(b.inf, b.s, x_s & ~cancel))
    return Cat(mant, Mux(cancel, 1, exp_r[:8]), sign, nan, inf)


def _fp32_add(m, a, b):
    m.submodules.acc_adder = adder = FP32Adder()
    m.d.comb += [adder.a.eq(a), adder.b.eq(b)]
    return adder.s


def _accumulate_and_emit(m, o, advance, valid, first, last, value, add):
    """The last stage of every tree: a sum starts at a ``first`` block and takes ``add(m, acc, value)``
    otherwise; after a ``last`` block the sum goes to the output register of stream ``o``."""
    acc = Signal(32, name="acc")
    acc_next = Mux(first, value, add(m, acc, value))
    with m.If(advance & valid):
        m.d.sync += acc.eq(acc_next)
        with m.If(last):
            m.d.sync += o.payload.eq(acc_next)
    with m.If(advance):
        m.d.sync += o.valid.eq(valid & last)


class FP8MacTree(wiring.Component):
    """Pipelined K-way fused dot product of two SE-FP8 blocks, exact inside, rounded once to binary32.

    Each transfer on ``i`` is one block pair: K E4M3 or E5M2 codes per operand (the format chosen per
    operand by ``a_fmt``/``b_fmt``) and one E8M0 scale per operand. Every product is formed exactly and
    placed in a 66-bit fixed-point word (products span 2**-32 .. 2**34 before scaling); the K words are
    added exactly in a carry-save tree; the sum, times both scales, is rounded once to binary32 (nearest
    even, subnormals, overflow to infinity). Blocks from one with ``first`` to one with ``last`` are added in
    binary32 in order, and the sum goes out on ``o`` after the ``last`` block (``first`` and ``last`` on one
    block: a single-block dot product). NaN codes or scales, ``inf * 0`` and ``inf - inf`` give the
    canonical NaN ``0x7FC00000``; semantics are :mod:`golden.fp8`'s, bit for bit.

    Latency: ``4 + stages`` register stages (decode and multiply; align and add; round, in two at
    ``stages=1``: normalize, then round; accumulate into the output register): a result is valid on ``o``
    ``3 + stages`` cycles after the clock edge that takes its last block pair. Throughput: one block pair
    per cycle at every depth (the binary32 accumulation closes its loop in one cycle). Back-pressure: the
    pipeline stalls as a whole while a result waits on ``o`` (``i.ready`` follows ``o.ready``); nothing is
    dropped or repeated.

    Timing (default configuration, sky130_fd_sc_hd typical, :data:`STAGE_DELAYS_NS`): ``stages=0`` is bound
    by the rounding of the exact sum; ``stages=1`` cuts it after the normalization and runs the rounding
    and the accumulation on unpacked binary32 fields. Both halves of the cut rounding and the
    accumulator's loop, one sequentially rounded binary32 add per cycle (compare, align, add, normalize,
    round), then take about 7 ns, over a 200 MHz period. Further cuts of the tree or the rounding would not
    shorten the loop, which cannot be split without giving up either the bit-exact sequential rounding of
    :func:`golden.fp8.dot` or one block pair per cycle.

    Parameters
    ----------
    k : int
        Elements per block, a power of two >= 2.
    stages : int
        Register stages added to the shallowest pipeline, 0 or 1 (``len(STAGE_DELAYS_NS) - 1``).

    Members
    -------
    i : In(stream.Signature(input_layout(k)))
    o : Out(stream.Signature(unsigned(32)))
        Binary32 bits of each finished dot product.

    Raises
    ------
    TypeError, ValueError
        On a bad ``stages`` or ``k``.
    """

    def __init__(self, *, k=32, stages=0):
        check_stages(stages, len(STAGE_DELAYS_NS) - 1)
        check_k(k)
        self._k = k
        self._stages = stages
        super().__init__({
            "i": In(stream.Signature(input_layout(k))),
            "o": Out(stream.Signature(unsigned(32))),
        })

    @property
    def k(self):
        return self._k

    @property
    def stages(self):
        return self._stages

    @property
    def latency(self):
        """Cycles from the clock edge that takes a dot product's last block pair to its result on ``o``."""
        return 3 + self._stages

    @property
    def sum_width(self):
        """Width of the exact signed block sum."""
        return _TERM_BITS + (self._k - 1).bit_length() + 1

    def elaborate(self, platform):
        m = Module()
        k = self._k
        width = self.sum_width
        # The whole pipeline advances together unless a result waits on `o`.
        advance = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(advance)
        p = self.i.payload

        # Stage 1: decode, multiply exactly, exponent sums; block-level special flags.
        s1_valid, s1_first, s1_last = Signal(), Signal(), Signal()
        s1_sign = [Signal(name=f"s1_sign{j}") for j in range(k)]
        s1_mag = [Signal(8, name=f"s1_mag{j}") for j in range(k)]
        s1_shift = [Signal(6, name=f"s1_shift{j}") for j in range(k)]
        s1_nan, s1_inf_pos, s1_inf_neg, s1_neg_zero = Signal(), Signal(), Signal(), Signal()
        s1_exp = Signal(signed(10))
        nan_any, inf_pos, inf_neg, all_neg_zero = Const(0, 1), Const(0, 1), Const(0, 1), Const(1, 1)
        lanes = []
        for j in range(k):
            sa, ma, qa, na, ia = _decode(p.a[j], p.a_fmt)
            sb, mb, qb, nb, ib = _decode(p.b[j], p.b_fmt)
            sign = sa ^ sb
            special = na | nb | ia | ib
            mag = Mux(special, 0, ma * mb)
            lane_inf = (ia | ib) & ~na & ~nb
            nan_any = nan_any | na | nb | (ia & (mb == 0) & ~ib) | (ib & (ma == 0) & ~ia)
            inf_pos = inf_pos | (lane_inf & ~sign)
            inf_neg = inf_neg | (lane_inf & sign)
            all_neg_zero = all_neg_zero & sign & (ma * mb == 0) & ~special
            lanes.append((sign, mag, qa + qb + _Q_OFFSET))
        with m.If(advance):
            m.d.sync += [s1_valid.eq(self.i.valid), s1_first.eq(p.first), s1_last.eq(p.last)]
            for j, (sign, mag, shift) in enumerate(lanes):
                m.d.sync += [s1_sign[j].eq(sign), s1_mag[j].eq(mag), s1_shift[j].eq(shift)]
            m.d.sync += [
                s1_nan.eq(nan_any | (p.a_scale == 0xFF) | (p.b_scale == 0xFF)),
                s1_inf_pos.eq(inf_pos), s1_inf_neg.eq(inf_neg), s1_neg_zero.eq(all_neg_zero),
                # The sum's bit i weighs 2**(i - 32 + (Xa - 127) + (Xb - 127)).
                s1_exp.eq(p.a_scale + p.b_scale - (_Q_OFFSET + 254)),
            ]

        # Stage 2: align every product in the fixed-point word and add them all exactly. A negative term
        # enters as its ones' complement plus one, the ones collected into a single small addend.
        s2_valid, s2_first, s2_last = Signal(), Signal(), Signal()
        s2_sum = Signal(signed(width))
        s2_nan, s2_inf_pos, s2_inf_neg, s2_neg_zero = Signal(), Signal(), Signal(), Signal()
        s2_exp = Signal(signed(10))
        terms = []
        for j in range(k):
            aligned = Signal(_TERM_BITS, name=f"aligned{j}")
            m.d.comb += aligned.eq(s1_mag[j] << s1_shift[j])
            terms.append(Cat(aligned, Const(0, width - _TERM_BITS)) ^ s1_sign[j].replicate(width))
        negatives = sum(s1_sign[j] for j in range(k))
        total = sum(terms[1:], terms[0]) + negatives
        with m.If(advance):
            m.d.sync += [
                s2_valid.eq(s1_valid), s2_first.eq(s1_first), s2_last.eq(s1_last), s2_sum.eq(total),
                s2_nan.eq(s1_nan | (s1_inf_pos & s1_inf_neg)), s2_inf_pos.eq(s1_inf_pos),
                s2_inf_neg.eq(s1_inf_neg), s2_neg_zero.eq(s1_neg_zero), s2_exp.eq(s1_exp),
            ]

        if self._stages == 0:
            # Stage 3: one rounding to binary32, then the specials.
            s3_valid, s3_first, s3_last = Signal(), Signal(), Signal()
            s3_bits = Signal(32)
            negative = s2_sum < 0
            magnitude = Signal(width)
            m.d.comb += magnitude.eq(Mux(negative, -s2_sum, s2_sum))
            rounded = round_fixed_to_f32(m, magnitude, negative, s2_exp)
            block = Signal(32)
            with m.If(s2_nan):
                m.d.comb += block.eq(F32_NAN)
            with m.Elif(s2_inf_pos | s2_inf_neg):
                m.d.comb += block.eq(Cat(Const(0, 23), Const(0xFF, 8), s2_inf_neg))
            with m.Elif(s2_sum == 0):
                m.d.comb += block.eq(Cat(Const(0, 31), s2_neg_zero))
            with m.Else():
                m.d.comb += block.eq(rounded)
            with m.If(advance):
                m.d.sync += [s3_valid.eq(s2_valid), s3_first.eq(s2_first), s3_last.eq(s2_last),
                             s3_bits.eq(block)]

            # Stage 4: binary32 accumulation across blocks; the output register.
            _accumulate_and_emit(m, self.o, advance, s3_valid, s3_first, s3_last, s3_bits, _fp32_add)
            return m

        # Stage 3a: the magnitude of the sum and its normalization (leading bit to the top), registered.
        negative = s2_sum[-1]
        magnitude = _comb(m, Mux(negative, -s2_sum, s2_sum), width, "rnd_mag")
        lz = _leading_zeros_tree(m, magnitude, "rnd_lz")
        nm = _register(m, advance, "nm", {
            "valid": (s2_valid, 1), "first": (s2_first, 1), "last": (s2_last, 1), "nan": (s2_nan, 1),
            "inf": (s2_inf_pos | s2_inf_neg, 1), "inf_neg": (s2_inf_neg, 1), "neg_zero": (s2_neg_zero, 1),
            "negative": (negative, 1), "norm": ((magnitude << lz)[:width], width),
            # Exponent of the leading bit.
            "top": (s2_exp + (width - 1) - lz, signed_width(s2_exp, width)),
        })
        # Stage 3b: one rounding to binary32, then the specials; the block sum goes on unpacked.
        norm, top = nm["norm"], nm["top"]
        # 24-bit significand + guard + sticky; subnormals shifted right so the last kept bit weighs 2**-149.
        keep = Cat(norm[:width - 25].any(), norm[width - 25:])
        under = _comb(m, Mux(top < -126, -126 - top, 0), 9, "rnd_under")
        aligned = _comb(m, shift_right_sticky(keep, under, 26), 26, "rnd_aligned")
        rounded = _comb(m, aligned[2:26] + (aligned[1] & (aligned[0] | aligned[2])), 25, "rnd_rounded")
        exp_b = _comb(m, Mux(top < -126, -126, top) + 127 + rounded[24], signed(len(top) + 1), "rnd_exp")
        mant = _comb(m, Mux(rounded[24], rounded[1:25], rounded[:24]), 24, "rnd_mant")
        block = Signal(32)
        with m.If(nm["nan"]):
            m.d.comb += block.eq(F32_NAN)
        with m.Elif(nm["inf"] | (mant[23] & (exp_b >= 255))):
            m.d.comb += block.eq(Cat(Const(0, 23), Const(0xFF, 8), Mux(nm["inf"], nm["inf_neg"], nm["negative"])))
        with m.Elif(~norm[width - 1]):
            # An exact zero sum.
            m.d.comb += block.eq(Cat(Const(0, 31), nm["neg_zero"]))
        with m.Else():
            m.d.comb += block.eq(Cat(mant[:23], Mux(mant[23], exp_b[:8], 0), nm["negative"]))
        s3_valid, s3_first, s3_last = Signal(), Signal(), Signal()
        s3_value = Signal(_unpacked)
        with m.If(advance):
            m.d.sync += [s3_valid.eq(nm["valid"]), s3_first.eq(nm["first"]), s3_last.eq(nm["last"]),
                         s3_value.eq(_unpack(block))]

        # Stage 4: binary32 accumulation across blocks on unpacked fields (one add per cycle in its loop);
        # the output register holds the unpacked sum, packed on its way out.
        acc = Signal(_unpacked, init={"e": 1})
        result = Signal(_unpacked)
        acc_next = Signal(_unpacked)
        m.d.comb += acc_next.eq(Mux(s3_first, s3_value, _unpacked_add(m, acc, s3_value)))
        with m.If(advance & s3_valid):
            m.d.sync += acc.eq(acc_next)
            with m.If(s3_last):
                m.d.sync += result.eq(acc_next)
        with m.If(advance):
            m.d.sync += self.o.valid.eq(s3_valid & s3_last)
        m.d.comb += self.o.payload.eq(_pack(result))
        return m


def _baseline_layout(k, element_bits):
    return data.StructLayout({
        "a": data.ArrayLayout(unsigned(element_bits), k),
        "b": data.ArrayLayout(unsigned(element_bits), k),
        "first": unsigned(1),
        "last": unsigned(1),
    })


class _BaselineTree(wiring.Component):
    """Common shell of the area baselines: products in stage 1, the tree in stage 2, accumulation and the
    output register in stage 3, the whole pipeline stalling on ``o`` as :class:`FP8MacTree` does."""

    element_bits = None
    product_bits = None

    def __init__(self, *, k=32):
        check_k(k)
        self._k = k
        super().__init__({
            "i": In(stream.Signature(_baseline_layout(k, self.element_bits))),
            "o": Out(stream.Signature(unsigned(32))),
        })

    @property
    def k(self):
        return self._k

    def elaborate(self, platform):
        m = Module()
        advance = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(advance)
        p = self.i.payload
        s1_valid, s1_first, s1_last = Signal(), Signal(), Signal()
        s1_products = [Signal(self.product_bits, name=f"s1_product{j}") for j in range(self._k)]
        with m.If(advance):
            m.d.sync += [s1_valid.eq(self.i.valid), s1_first.eq(p.first), s1_last.eq(p.last)]
            for j in range(self._k):
                m.d.sync += s1_products[j].eq(self.product(m, p.a[j], p.b[j], j))
        s2_valid, s2_first, s2_last = Signal(), Signal(), Signal()
        s2_sum = Signal(32)
        with m.If(advance):
            m.d.sync += [s2_valid.eq(s1_valid), s2_first.eq(s1_first), s2_last.eq(s1_last),
                         s2_sum.eq(self.tree(m, s1_products))]
        _accumulate_and_emit(m, self.o, advance, s2_valid, s2_first, s2_last, s2_sum, self.accumulate)
        return m


class BF16MacTree(_BaselineTree):
    """Area baseline: K bfloat16 multipliers (each product rounded to binary32) and a binary tree of
    binary32 adders (pairs of neighbours first), then binary32 accumulation across blocks.

    Same stream protocol as :class:`FP8MacTree` (``first``/``last``), no scales; three register stages.

    Members
    -------
    i : In(stream.Signature(layout with ``a``, ``b``: K x 16-bit bfloat16 codes, ``first``, ``last``))
    o : Out(stream.Signature(unsigned(32)))
    """
    element_bits = 16
    product_bits = 32

    def product(self, m, a, b, j):
        def unpack(x):
            sign, exp, frac = x[15], x[7:15], x[:7]
            sig = Cat(frac, exp != 0)
            q = Mux(exp != 0, exp, 1) - (127 + 7)
            return sign, exp, frac, sig, q
        sa, ea, fa, ma, qa = unpack(a)
        sb, eb, fb, mb, qb = unpack(b)
        nan_a, nan_b = (ea == 0xFF) & (fa != 0), (eb == 0xFF) & (fb != 0)
        inf_a, inf_b = (ea == 0xFF) & (fa == 0), (eb == 0xFF) & (fb == 0)
        zero_a, zero_b = ma == 0, mb == 0
        sign = sa ^ sb
        exp = Signal(signed(10), name=f"bf16_exp{j}")
        m.d.comb += exp.eq(qa + qb)
        rounded = round_fixed_to_f32(m, ma * mb, sign, exp, name=f"bf16_rnd{j}")
        out = Signal(32, name=f"bf16_product{j}")
        with m.If(nan_a | nan_b | (inf_a & zero_b) | (inf_b & zero_a)):
            m.d.comb += out.eq(F32_NAN)
        with m.Elif(inf_a | inf_b):
            m.d.comb += out.eq(Cat(Const(0, 23), Const(0xFF, 8), sign))
        with m.Else():
            m.d.comb += out.eq(rounded)
        return out

    def tree(self, m, values):
        level = list(values)
        depth = 0
        while len(level) > 1:
            nxt = []
            for i in range(0, len(level), 2):
                adder = FP32Adder()
                m.submodules[f"tree_{depth}_{i // 2}"] = adder
                m.d.comb += [adder.a.eq(level[i]), adder.b.eq(level[i + 1])]
                nxt.append(adder.s)
            level = nxt
            depth += 1
        return level[0]

    def accumulate(self, m, acc, value):
        return _fp32_add(m, acc, value)


class Int8DotTree(_BaselineTree):
    """Area baseline: K signed 8x8-bit multipliers, an exact adder tree, 32-bit accumulation across blocks
    (two's complement, wrapping). Same stream protocol as :class:`FP8MacTree`; three register stages.

    Members
    -------
    i : In(stream.Signature(layout with ``a``, ``b``: K x int8, ``first``, ``last``))
    o : Out(stream.Signature(unsigned(32)))
    """
    element_bits = 8
    product_bits = 16

    def product(self, m, a, b, j):
        return a.as_signed() * b.as_signed()

    def tree(self, m, values):
        terms = [v.as_signed() for v in values]
        return sum(terms[1:], terms[0])

    def accumulate(self, m, acc, value):
        return acc + value
