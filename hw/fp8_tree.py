"""K-way shared-exponent FP8 fused dot-product (MAC) tree: exact block sums, one rounding, binary32 out."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from .fp32 import F32_NAN, FP32Adder, round_fixed_to_f32, shift_right_sticky, signed_width
from .pipeline import check_stages


__all__ = ["STAGE_DELAYS_NS", "ElemFormat", "input_layout", "FP8MacTree", "BF16MacTree", "Int8DotTree", "check_k"]

#: Estimated critical path (ns, sky130_fd_sc_hd typical with flip-flop overhead, default configuration) at
#: each ``stages`` depth, shallowest first (:mod:`hw.pipeline`), as measured by
#: ``python -m hw.build --target synth --block fp8_tree --set pipeline.fp8_tree=D`` (200 MHz). Depth 0 is
#: bound by the rounding of the exact sum, depth 1 by its normalization (a leading-zero count and a 72-bit
#: shift after the tree's add; the report names the accumulator's loop, which the mapper relaxes to the
#: same delay). At depth 2 every stage and the loop (a dual-path binary32 adder, about 4.2 ns when mapped
#: for speed alone) map at the period's delay target: 4.996 ns, the loop (``s3_value`` -> ``acc``); none is
#: under the guard band, so ``auto`` takes the deepest, depth 2.
STAGE_DELAYS_NS = (8.37, 5.90, 5.00)


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
    return _leading_zeros_merge(m, _leading_zeros_groups(m, value, 1, name), 1, name)


def _leading_zeros_groups(m, value, group, name):
    """The first log2(``group``) levels of :func:`_leading_zeros_tree`: for each ``group`` bits of ``value``
    (padded to a power of two, least significant group first), their leading-zero count and an all-zero
    flag, as one value (:func:`_leading_zeros_merge` finishes the count, possibly after a register)."""
    width = len(value)
    pad = (1 << width.bit_length()) - width
    # At least one 1 below the value: a zero value counts exactly ``width``.
    padded = _comb(m, Cat(Const((1 << pad) - 1, pad), value), width + pad, f"{name}_in")

    def count(x, path):
        if len(x) == 1:
            return ~x[0], Cat()
        half = len(x) // 2
        zero_lo, count_lo = count(x[:half], path + "l")
        zero_hi, count_hi = count(x[half:], path + "h")
        zero = _comb(m, zero_hi & zero_lo, 1, f"{name}_z{path}")
        return zero, _comb(m, Cat(Mux(zero_hi, count_lo, count_hi), zero_hi), len(count_lo) + 1, f"{name}_c{path}")

    return Cat(*[Cat(*count(padded[i:i + group], f"g{i // group}")[::-1]) for i in range(0, len(padded), group)])


def _leading_zeros_merge(m, groups, group, name):
    """The leading-zero count from the per-group counts and flags of :func:`_leading_zeros_groups`."""
    bits = group.bit_length()                     # log2(group) count bits and the flag
    nodes = [(groups[i + bits - 1], groups[i:i + bits - 1]) for i in range(0, len(groups), bits)]

    def merge(nodes, path):
        if len(nodes) == 1:
            return nodes[0]
        half = len(nodes) // 2
        zero_lo, count_lo = merge(nodes[:half], path + "l")
        zero_hi, count_hi = merge(nodes[half:], path + "h")
        zero = _comb(m, zero_hi & zero_lo, 1, f"{name}_z{path}")
        return zero, _comb(m, Cat(Mux(zero_hi, count_lo, count_hi), zero_hi), len(count_lo) + 1, f"{name}_c{path}")

    return merge(nodes, "")[1]


def _increment(m, value, carry_in, name):
    """``value + carry_in`` (``carry_in`` one bit), ``len(value)`` bits, its carries as a parallel prefix of
    ANDs (log2 depth; the plain sum maps as a ripple chain), each level one word."""
    width = len(value)
    # all_ones bit i: value[0..i] all ones, by doubling spans (Kogge-Stone).
    all_ones = value
    span = 1
    while span < width:
        all_ones = _comb(m, all_ones & Cat(Const((1 << span) - 1, span), all_ones[:width - span]), width,
                         f"{name}_p{span}")
        span *= 2
    carries = Cat(carry_in, all_ones[:width - 1] & carry_in.replicate(width - 1)) if width > 1 else carry_in
    return _comb(m, value ^ carries, width, name)


def _prefix_add(m, x, y, name, carry_in=None):
    """``x + y + carry_in`` modulo ``2**len(x)``, its carries as a parallel prefix of generate/propagate pairs
    (Kogge-Stone, log2 depth: the plain sum of wide words maps as a slower carry chain), each level one
    word."""
    if carry_in is not None:
        # The carry in as a lowest bit of both addends: 2 * carry_in carries it into bit 1.
        return _comb(m, _prefix_add(m, Cat(carry_in, x), Cat(carry_in, y), name)[1:], len(x), f"{name}_ci")
    width = len(x)
    prop = _comb(m, x ^ y, width, f"{name}_p")
    g, p = _comb(m, x & y, width, f"{name}_g"), prop
    span = 1
    while span < width:
        g_in = Cat(Const(0, span), g[:width - span])
        p_in = Cat(Const((1 << span) - 1, span), p[:width - span])
        g = _comb(m, g | (p & g_in), width, f"{name}_g{span}")
        p = _comb(m, p & p_in, width, f"{name}_p{span}")
        span *= 2
    return _comb(m, prop ^ Cat(Const(0, 1), g[:width - 1]), width, name)


def _carry_save(m, words, width, name):
    """Two words whose sum is the sum of ``words`` modulo ``2**width``: a Wallace tree of full adders (3:2
    compressors), every level taking its words three at a time."""
    words = list(words)
    level = 0
    while len(words) > 2:
        reduced = []
        for i in range(0, len(words) - 2, 3):
            x, y, z = words[i:i + 3]
            reduced.append(_comb(m, x ^ y ^ z, width, f"{name}_s{level}_{i // 3}"))
            reduced.append(_comb(m, Cat(Const(0, 1), (x & y) | (x & z) | (y & z)), width, f"{name}_c{level}_{i // 3}"))
        words = reduced + words[len(words) - len(words) % 3:]
        level += 1
    return words

#: A binary32 value unpacked for the accumulator: significand ``m`` with its hidden bit (bit 23 clear for
#: zero and subnormals), effective biased exponent ``e`` (1 for zero and subnormals), sign ``s`` (of the
#: infinity when ``inf``), and the special flags.
_unpacked = data.StructLayout({"m": unsigned(24), "e": unsigned(8), "s": unsigned(1),
                               "nan": unsigned(1), "inf": unsigned(1)})

#: -0 unpacked: the start of every accumulation.
_NEG_ZERO = {"m": 0, "e": 1, "s": 1, "nan": 0, "inf": 0}


def _unpack(bits):
    exp, frac = bits[23:31], bits[:23]
    return Cat(Cat(frac, exp != 0), Mux(exp == 0, 1, exp), bits[31], (exp == 0xFF) & (frac != 0),
               (exp == 0xFF) & (frac == 0))


def _pack(x):
    return Mux(x.nan, F32_NAN,
               Mux(x.inf, Cat(Const(0, 23), Const(0xFF, 8), x.s), Cat(x.m[:23], Mux(x.m[23], x.e, 0), x.s)))


def _exp_mask(e):
    """25 bits with a one at bit ``25 - e`` (none for ``e`` > 25): ORed below a close-path difference, it stops
    the leading-zero count at ``e - 1``, the deepest normalization that keeps the exponent >= 1."""
    return Cat(*[e == 25 - p for p in range(25)])


def _unpacked_add(m, a, b):
    """``a + b`` in binary32 (nearest even, subnormals, overflow to infinity, IEEE 754 specials with the
    canonical NaN) on unpacked operands, unpacked, as a dual-path adder for the accumulator's loop.

    FAR path (an effective addition, or exponents at least 2 apart, or 1 apart with no cancellation of the
    leading bit): the operand of the smaller exponent is aligned (both orders in parallel, chosen by the
    exponent compare), and the rounding is compound: the sum is formed plain and with one unit added at
    each of the three places its last bit can take (after a right shift by one, none, a left shift by one),
    and the plain sum's leading and round bits pick one, so no increment follows the add.

    CLOSE path (an effective subtraction with exponents equal or 1 apart, the leading bit cancelled): the
    differences of both orders and both one-apart alignments in parallel; exact, so no
    rounding; the leading-zero count is clamped at the subnormal boundary by a marker bit below the
    difference."""
    sub = _comb(m, a.s ^ b.s, 1, "acc_sub")
    ge = _comb(m, a.e >= b.e, 1, "acc_ge")                      # the FAR path's larger operand: a
    eq = _comb(m, a.e == b.e, 1, "acc_eq")
    d_ab = _comb(m, a.e - b.e, 8, "acc_dab")
    d_ba = _comb(m, b.e - a.e, 8, "acc_dba")
    x_e = _comb(m, Mux(ge, a.e, b.e), 8, "acc_xe")
    x_s = Mux(ge, a.s, b.s)

    # FAR path, in 27 bits (significand, guard, round, sticky).
    y_al = _comb(m, Mux(ge, shift_right_sticky(Cat(Const(0, 3), b.m), d_ab, 27),
                        shift_right_sticky(Cat(Const(0, 3), a.m), d_ba, 27)), 27, "acc_yal")
    x_m = Mux(ge, a.m, b.m)
    x_m1 = _comb(m, Mux(ge, a.m + 1, b.m + 1), 25, "acc_xm1")
    x_m2 = _comb(m, Mux(ge, a.m + 2, b.m + 2), 26, "acc_xm2")

    y_inv = _comb(m, Cat(y_al, Const(0, 2)) ^ sub.replicate(29), 29, "acc_yinv")

    def add(x_w, name):
        # x_w - y_al as x_w + ~y_al + 1.
        return _prefix_add(m, Cat(x_w, Const(0, 29 - len(x_w))), y_inv, name, carry_in=sub)

    t0 = add(Cat(Const(0, 3), x_m), "acc_t0")
    t4 = add(Cat(Const(4, 3), x_m), "acc_t4")                  # + 1 unit at bit 2 (one left shift)
    t8 = add(Cat(Const(0, 3), x_m1), "acc_t8")                 # + 1 unit at bit 3 (no shift)
    t16 = add(Cat(Const(0, 3), x_m2), "acc_t16")               # + 1 unit at bit 4 (one right shift)
    # The plain sum's leading bit: a carry out (shift right by one), in place, or one below (an effective
    # subtraction with exponents at least 2 apart: shift left by one). Each position has its round bits.
    carry = t0[27]
    left = sub & ~t0[26]
    up_c = t0[3] & (t0[:3].any() | t0[4])
    up_n = t0[2] & (t0[:2].any() | t0[3])
    up_l = t0[1] & (t0[0] | t0[2])
    src_c = Mux(up_c, t16, t0)
    src_n = Mux(up_n, t8, t0)
    src_l = Mux(up_l, t4, t0)
    # A rounding that carries out of the significand (ovf) leaves exactly the next power of two.
    ovf_c, ovf_n, ovf_l = up_c & src_c[28], up_n & src_n[27], up_l & src_l[26]
    far_m = _comb(m, Mux(carry, Cat(src_c[4:27], src_c[27] | src_c[28]),
                         Mux(left, Cat(src_l[2:25], src_l[25] | src_l[26]),
                             Cat(src_n[3:26], src_n[26] | src_n[27]))), 24, "acc_far_m")
    x_e_p1 = _comb(m, x_e + 1, 9, "acc_xe_p1")
    x_e_p2 = _comb(m, x_e + 2, 9, "acc_xe_p2")
    x_e_m1 = _comb(m, x_e - 1, 8, "acc_xe_m1")
    far_e = _comb(m, Mux(carry, Mux(ovf_c, x_e_p2, x_e_p1),
                         Mux(left, Mux(ovf_l, x_e, x_e_m1), Mux(ovf_n, x_e_p1, x_e))), 9, "acc_far_e")
    far_inf = _comb(m, Mux(carry, (x_e >= 254) | ((x_e == 253) & ovf_c), ~left & (x_e == 254) & ovf_n), 1,
                    "acc_far_inf")

    # CLOSE path: 25 bits (significand and one guard bit), exact. With exponents 1 apart and the leading
    # bit kept (c[24]) the difference needs a rounding: the FAR path takes it, with no shift.
    r0 = _comb(m, a.m - b.m, signed(25), "acc_r0")
    r0n = _comb(m, b.m - a.m, signed(25), "acc_r0n")
    a_first = ~r0[24]
    c0 = Cat(Const(0, 1), Mux(a_first, r0[:24], r0n[:24]))
    c1 = _comb(m, Cat(Const(0, 1), a.m) - b.m, 25, "acc_c1")      # a.e == b.e + 1
    c2 = _comb(m, Cat(Const(0, 1), b.m) - a.m, 25, "acc_c2")      # b.e == a.e + 1
    c = _comb(m, Mux(eq, c0, Mux(ge, c1, c2)), 25, "acc_c")
    mask = _comb(m, Mux(ge, _exp_mask(a.e), _exp_mask(b.e)), 25, "acc_mask")
    lz = _leading_zeros_tree(m, c | mask, "acc_lz")
    close_m = _comb(m, (c << lz)[1:25], 24, "acc_close_m")
    close_e = _comb(m, x_e - lz, 8, "acc_close_e")
    near = _comb(m, (d_ab == 1) | (d_ba == 1), 1, "acc_near")
    use_close = _comb(m, sub & (eq | (near & ~c[24])), 1, "acc_close")

    # The only exact zero of a sum is x + (-x): +0 (and -0 + -0 = -0 keeps the sign of x).
    cancel = _comb(m, sub & eq & (a.m == b.m), 1, "acc_cancel")
    nan = a.nan | b.nan | (a.inf & b.inf & sub)
    inf = (a.inf | b.inf | (~use_close & far_inf)) & ~nan
    sign = Mux(a.inf, a.s, Mux(b.inf, b.s, Mux(cancel, 0, Mux(use_close & eq & ~a_first, b.s, x_s))))
    return Cat(Mux(use_close, close_m, far_m), Mux(cancel, 1, Mux(use_close, close_e, far_e[:8])), sign, nan, inf)


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

    Latency: ``4 + stages`` register stages (decode and multiply; align and add; round; accumulate into the
    output register): a result is valid on ``o`` ``3 + stages`` cycles after the clock edge that takes its
    last block pair. ``stages=1`` splits the rounding in two (normalize, then round); ``stages=2`` in three
    (the magnitude of the sum and its leading-zero count, normalize, round), the tree then leaving its sum
    in carry-save form (two words, added in the first of the three). Throughput: one block pair per cycle
    at every depth (the binary32 accumulation closes its loop in one cycle). Back-pressure: the pipeline
    stalls as a whole while a result waits on ``o`` (``i.ready`` follows ``o.ready``); nothing is dropped or
    repeated.

    Timing (default configuration, sky130_fd_sc_hd typical, :data:`STAGE_DELAYS_NS`): ``stages=0`` is bound
    by the rounding of the exact sum; ``stages=1`` by its normalization (a leading-zero count and a 72-bit
    shift after the tree's add). At ``stages=2`` the add, the count, the shift and the rounding each have a
    stage, and every stage and the accumulator's loop map at the 200 MHz delay target. The loop, one
    sequentially rounded binary32 add per cycle, is a dual-path adder on unpacked fields
    (:func:`_unpacked_add`: no compare before the alignment, no normalizing shift before the rounding, no
    increment after the add), and a sum starts from -0, loaded into the accumulator as its first block
    enters the last stage, so no choice of the first block follows the add.

    Parameters
    ----------
    k : int
        Elements per block, a power of two >= 2.
    stages : int
        Register stages added to the shallowest pipeline, 0 to 2 (``len(STAGE_DELAYS_NS) - 1``).

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
        if self._stages >= 2:
            # The exact sum leaves stage 2 in carry-save form: two words, added at the start of stage 3a.
            pair = [Signal(width, name=f"s2_pair{i}") for i in range(2)]
            words = _carry_save(m, terms + [Cat(negatives, Const(0, width - len(negatives)))], width, "tree")
            with m.If(advance):
                m.d.sync += [pair[i].eq(words[i]) for i in range(2)]
            m.d.comb += s2_sum.eq(_prefix_add(m, pair[0], pair[1], "s2_add"))
            # -(p0 + p1) = ~(p0 + p1 - 1): formed beside the sum, not after it.
            s2_negated = _comb(m, ~_prefix_add(m, Cat(Const(0, 1), (pair[0] | pair[1])[:width - 1]),
                                               ~(pair[0] ^ pair[1]), "s2_dec"), width, "s2_negated")
        elif self._stages == 1:
            words = _carry_save(m, terms + [Cat(negatives, Const(0, width - len(negatives)))], width, "tree")
            with m.If(advance):
                m.d.sync += s2_sum.eq(words[0] + words[1])
        else:
            with m.If(advance):
                m.d.sync += s2_sum.eq(sum(terms[1:], terms[0]) + negatives)
        with m.If(advance):
            m.d.sync += [
                s2_valid.eq(s1_valid), s2_first.eq(s1_first), s2_last.eq(s1_last),
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

        # Stage 3a: the magnitude of the sum, its leading-zero count and the normalizing shift (leading bit to
        # the top), registered. The count of a negative sum is its leading ones' (no carry chain before it):
        # one too many when the magnitude is a power of two, whose leading bit the shift then carries out
        # at the top.
        negative = s2_sum[-1]
        exp = s2_exp
        flags = {"valid": s2_valid, "first": s2_first, "last": s2_last, "nan": s2_nan,
                 "inf": s2_inf_pos | s2_inf_neg, "inf_neg": s2_inf_neg, "neg_zero": s2_neg_zero,
                 "negative": negative}
        if self._stages >= 2:
            # Stage 3a1 (stages=2): the sum and its negation, and the counts of both signs in groups of 16
            # bits, registered; the sign chooses after the register (stage 3a2: the count's last levels, the
            # shift).
            lz_pos = _leading_zeros_groups(m, s2_sum, 16, "rnd_lzp")
            lz_neg = _leading_zeros_groups(m, ~s2_sum, 16, "rnd_lzn")
            lzr = _register(m, advance, "lz", {
                **{name: (flag, 1) for name, flag in flags.items()},
                "pos": (s2_sum, width), "neg": (s2_negated, width), "exp": (exp, exp.shape()),
                "lz_pos": (lz_pos, len(lz_pos)), "lz_neg": (lz_neg, len(lz_neg)),
            })
            flags = {name: lzr[name] for name in flags}
            negative, exp = lzr["negative"], lzr["exp"]
            magnitude = _comb(m, Mux(negative, lzr["neg"], lzr["pos"]), width, "rnd_mag")
            lz = _comb(m, _leading_zeros_merge(m, Mux(negative, lzr["lz_neg"], lzr["lz_pos"]), 16, "rnd_lz"),
                       range(width + 1), "rnd_lz")
        else:
            # The ones' complement, counted beside the increment that makes it the magnitude.
            ones = _comb(m, s2_sum ^ negative.replicate(width), width, "rnd_ones")
            magnitude = _increment(m, ones, negative, "rnd_mag")
            lz = _leading_zeros_tree(m, ones, "rnd_lz")
        shifted = _comb(m, magnitude << lz, width + 1, "rnd_shifted")
        over = shifted[width]

        def exponent_fields(top):
            # ``top``: exponent of the leading bit; below -126 the value is subnormal, shifted right (in stage
            # 3b) by ``under`` so that its last kept bit weighs 2**-149 (31: every bit into the sticky bit).
            # ``base``: the biased exponent before the rounding carry, ``base_up`` after it; from 2**128 up the
            # sum overflows whatever the rounding (``big``), at 2**127 when the rounding carries (``edge``).
            tiny = top < -126
            under = -126 - top
            return Cat(Mux(tiny, Mux(under > 31, 31, under), 0)[:5], Mux(tiny, 1, top + 127)[:8],
                       Mux(tiny, 2, top + 128)[:8], top >= 128, top == 127)

        top = _comb(m, exp + (width - 1) - lz, signed_width(exp, width), "rnd_top")
        fields = _comb(m, Mux(over, exponent_fields(top + 1), exponent_fields(top)), 23, "rnd_fields")
        nm = _register(m, advance, "nm", {
            **{name: (flag, 1) for name, flag in flags.items()},
            "norm": (Cat(shifted[:width - 1], shifted[width - 1] | over), width),
            "under": (fields[:5], 5), "base": (fields[5:13], 8), "base_up": (fields[13:21], 8),
            "big": (fields[21], 1), "edge": (fields[22], 1),
        })
        # Stage 3b: one rounding to binary32, then the specials; the block sum goes on unpacked.
        norm = nm["norm"]
        zero = _comb(m, ~norm[width - 1], 1, "rnd_zero")                 # an exact zero sum
        # 24-bit significand + guard + sticky.
        keep = Cat(norm[:width - 25].any(), norm[width - 25:])
        aligned = _comb(m, shift_right_sticky(keep, nm["under"], 26), 26, "rnd_aligned")
        rounded = _increment(m, Cat(aligned[2:26], Const(0, 1)), aligned[1] & (aligned[0] | aligned[2]),
                             "rnd_rounded")
        carry = rounded[24]
        overflow = ~zero & (nm["big"] | (nm["edge"] & carry))
        block = Signal(_unpacked)
        m.d.comb += block.eq(Cat(
            Mux(carry, rounded[1:25], rounded[:24]), Mux(zero, 1, Mux(carry, nm["base_up"], nm["base"])),
            Mux(nm["inf"], nm["inf_neg"], Mux(zero, nm["neg_zero"], nm["negative"])),
            nm["nan"], ~nm["nan"] & (nm["inf"] | overflow)))
        s3_valid, s3_last = Signal(), Signal()
        s3_value = Signal(_unpacked)
        with m.If(advance):
            m.d.sync += [s3_valid.eq(nm["valid"]), s3_last.eq(nm["last"]), s3_value.eq(block)]

        # Stage 4: binary32 accumulation across blocks on unpacked fields, one add per cycle in its loop.
        # A sum starts from -0 (``-0 + x`` is ``x`` for every x, zeros and specials included), loaded as its
        # ``first`` block enters stage 4, so no choice of the first block follows the adder. The output
        # register holds the unpacked sum, packed on its way out.
        acc = Signal(_unpacked, init=_NEG_ZERO)
        result = Signal(_unpacked)
        acc_next = Signal(_unpacked)
        m.d.comb += acc_next.eq(_unpacked_add(m, acc, s3_value))
        with m.If(advance):
            with m.If(nm["valid"] & nm["first"]):
                m.d.sync += acc.eq(_unpacked.const(_NEG_ZERO))
            with m.Elif(s3_valid):
                m.d.sync += acc.eq(acc_next)
            with m.If(s3_valid & s3_last):
                m.d.sync += result.eq(acc_next)
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
