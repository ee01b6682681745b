"""IEEE 754 binary32 building blocks: a combinational adder and a rounding stage for wide exact sums."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.fp8 import F32_NAN


__all__ = ["F32_NAN", "leading_zeros", "shift_right_sticky", "FP32Adder", "round_fixed_to_f32"]

def leading_zeros(m, value, name):
    """A signal holding the count of leading zeros of ``value`` (``len(value)`` when it is zero)."""
    width = len(value)
    count = Signal(range(width + 1), name=name)
    m.d.comb += count.eq(width)
    # Priority from the least significant bit up, so the highest set bit wins.
    for i in range(width):
        with m.If(value[i]):
            m.d.comb += count.eq(width - 1 - i)
    return count


def shift_right_sticky(value, amount, limit):
    """``value >> amount`` with the shifted-out bits ORed into bit 0; ``amount`` saturates at ``limit``."""
    width = len(value)
    result = value
    sticky = Const(0, 1)
    for level in range((limit).bit_length()):
        step = 1 << level
        take = amount[level] if level < len(amount) else Const(0, 1)
        lost = result[:min(step, width)].any() if step < width else result.any()
        shifted = result >> step if step < width else Const(0, width)
        sticky = sticky | (take & lost)
        result = Mux(take, shifted, result)
    big = amount >= limit if len(amount) > (limit).bit_length() else Const(0, 1)
    sticky = sticky | (big & value.any())
    result = Mux(big, 0, result)
    return Cat(result[0] | sticky, result[1:])


class FP32Adder(wiring.Component):
    """Combinational binary32 adder, round to nearest even, bit-exact with IEEE 754 (NumPy float32).

    Subnormals in and out, signed zeros (``x + -x = +0``, ``-0 + -0 = -0``), overflow to infinity,
    ``inf - inf = NaN``; every NaN result is :data:`F32_NAN`.

    Members
    -------
    a : In(32)
    b : In(32)
    s : Out(32)
        ``a + b``.
    """
    a: In(32)
    b: In(32)
    s: Out(32)

    def elaborate(self, platform):
        m = Module()

        def unpack(x):
            sign, exp, frac = x[31], x[23:31], x[:23]
            return sign, exp, frac, exp == 0xFF, frac != 0

        sa, ea, fa, top_a, fa_nz = unpack(self.a)
        sb, eb, fb, top_b, fb_nz = unpack(self.b)
        nan = (top_a & fa_nz) | (top_b & fb_nz) | (top_a & top_b & (sa != sb))
        inf = top_a | top_b

        # Order by magnitude: |x| >= |y|.
        swap = self.b[:31] > self.a[:31]
        sx, ex, fx = Mux(swap, sb, sa), Mux(swap, eb, ea), Mux(swap, fb, fa)
        sy, ey, fy = Mux(swap, sa, sb), Mux(swap, ea, eb), Mux(swap, fa, fb)
        # Subnormals: exponent 1, no hidden bit.
        ex_eff = Mux(ex == 0, 1, ex)
        ey_eff = Mux(ey == 0, 1, ey)
        mx = Cat(Const(0, 3), fx, ex != 0)                       # 27 bits: 24-bit significand + G, R, S
        my = Cat(Const(0, 3), fy, ey != 0)
        diff = Signal(8)
        m.d.comb += diff.eq(ex_eff - ey_eff)
        my_al = shift_right_sticky(my, diff, 27)

        subtract = sx != sy
        total = Signal(28)
        m.d.comb += total.eq(Mux(subtract, mx - my_al, mx + my_al))

        # Normalize: a carry out shifts right by one; cancellation shifts left, no further than the
        # subnormal boundary (exponent 1).
        carry = total[27]
        lz = leading_zeros(m, total[:27], "lz")
        max_left = Signal(9)
        m.d.comb += max_left.eq(ex_eff - 1)
        left = Signal(9)
        m.d.comb += left.eq(Mux(lz < max_left, lz, max_left))
        norm = Signal(27)
        exp_n = Signal(10)
        with m.If(carry):
            m.d.comb += [norm.eq(Cat(total[0] | total[1], total[2:28])), exp_n.eq(ex_eff + 1)]
        with m.Else():
            m.d.comb += [norm.eq(total[:27] << left), exp_n.eq(ex_eff - left)]
        # Round to nearest even on G (bit 2), R|S (bits 1..0).
        guard, rest, lsb = norm[2], norm[:2].any(), norm[3]
        rounded = Signal(25)
        m.d.comb += rounded.eq(norm[3:27] + (guard & (rest | lsb)))
        exp_r = Signal(10)
        mant = Signal(24)
        with m.If(rounded[24]):
            m.d.comb += [exp_r.eq(exp_n + 1), mant.eq(rounded[1:25])]
        with m.Else():
            m.d.comb += [exp_r.eq(exp_n), mant.eq(rounded[:24])]
        # A result without its hidden bit is subnormal (or zero): exponent field 0.
        exp_field = Mux(mant[23], exp_r, 0)
        overflow = mant[23] & (exp_r >= 255)
        zero = ~mant.any()
        zero_sign = Mux(subtract, 0, sx)        # exact zero: +0 unless both addends are -0

        with m.If(nan):
            m.d.comb += self.s.eq(F32_NAN)
        with m.Elif(inf):
            m.d.comb += self.s.eq(Cat(Const(0, 23), Const(0xFF, 8), Mux(top_a, sa, sb)))
        with m.Elif(overflow):
            m.d.comb += self.s.eq(Cat(Const(0, 23), Const(0xFF, 8), sx))
        with m.Elif(zero):
            m.d.comb += self.s.eq(Cat(Const(0, 31), zero_sign))
        with m.Else():
            m.d.comb += self.s.eq(Cat(mant[:23], exp_field[:8], sx))
        return m


def round_fixed_to_f32(m, magnitude, negative, exp_offset, name="rnd"):
    """Binary32 bits (without specials) of ``(-1)**negative * magnitude * 2**exp_offset``.

    ``magnitude`` is an unsigned exact value of any width; ``exp_offset`` a signed value. Rounds to nearest
    even, produces subnormals, and infinity on overflow; a zero magnitude gives ``+0``/``-0`` by
    ``negative``. Returns a 32-bit signal.
    """
    width = len(magnitude)
    lz = leading_zeros(m, magnitude, f"{name}_lz")
    normalized = Signal(width, name=f"{name}_norm")
    m.d.comb += normalized.eq(magnitude << lz)
    # Exponent of the leading bit, and how far below the subnormal boundary it sits.
    top = Signal(signed_width(exp_offset, width), name=f"{name}_top")
    m.d.comb += top.eq(exp_offset + (width - 1) - lz)
    # 24-bit significand + guard + sticky, taken from the normalized value.
    keep = Signal(26, name=f"{name}_keep")
    low_bits = width - 25
    if low_bits > 0:
        m.d.comb += keep.eq(Cat(normalized[:low_bits].any(), normalized[low_bits:]))
    else:
        m.d.comb += keep.eq(Cat(Const(0, 1), normalized << (-low_bits)))
    # Subnormal: shift right so the last kept bit has weight 2**-149.
    under = Signal(range(width + 160), name=f"{name}_under")
    m.d.comb += under.eq(Mux(top < -126, -126 - top, 0))
    aligned = shift_right_sticky(keep, under, 26)
    guard, sticky, lsb = aligned[1], aligned[0], aligned[2]
    rounded = Signal(25, name=f"{name}_rounded")
    m.d.comb += rounded.eq(aligned[2:26] + (guard & (sticky | lsb)))
    exp_b = Signal(signed(len(top) + 1), name=f"{name}_exp")
    mant = Signal(24, name=f"{name}_mant")
    with m.If(rounded[24]):
        m.d.comb += [exp_b.eq(Mux(top < -126, -126, top) + 128), mant.eq(rounded[1:25])]
    with m.Else():
        m.d.comb += [exp_b.eq(Mux(top < -126, -126, top) + 127), mant.eq(rounded[:24])]
    out = Signal(32, name=f"{name}_bits")
    with m.If(~mant.any()):
        m.d.comb += out.eq(Cat(Const(0, 31), negative))
    with m.Elif(mant[23] & (exp_b >= 255)):
        m.d.comb += out.eq(Cat(Const(0, 23), Const(0xFF, 8), negative))
    with m.Else():
        m.d.comb += out.eq(Cat(mant[:23], Mux(mant[23], exp_b[:8], 0), negative))
    return out


def signed_width(value, width):
    """A signed shape wide enough for ``value + width``."""
    return signed(max(len(value), (width + 1).bit_length()) + 2)
