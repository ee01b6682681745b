"""Zero-value compression on streams: :class:`ZVCEncoder` and :class:`ZVCDecoder`, in the record format of
:func:`golden.sparsity.zvc_encode` (mask words, then the non-zero words)."""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .muxes import lowest_set_bit


__all__ = ["word_layout", "ZVCEncoder", "ZVCDecoder"]


def word_layout(width):
    """One word of a record; ``last`` on the record's final word."""
    return data.StructLayout({"word": unsigned(width), "last": unsigned(1)})


def _check(n, width):
    for name, value in (("Vector length", n), ("Word width", width)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an integer, not {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be at least 1, not {value!r}")


class ZVCEncoder(wiring.Component):
    """Vectors of ``n`` ``width``-bit words in (one per beat on ``i``), ZVC records out (one word per beat
    on ``o``): ``ceil(n / width)`` mask words, then the non-zero words in order. One word per cycle; the next
    vector is taken with the last word of a record.
    """

    def __init__(self, *, n=16, width=16):
        _check(n, width)
        self._n, self._width = n, width
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(unsigned(width), n))),
            "o": Out(stream.Signature(word_layout(width))),
        })

    def elaborate(self, platform):
        m = Module()
        n, w = self._n, self._width
        heads = -(-n // w)
        vector = Signal(data.ArrayLayout(unsigned(w), n))
        remaining = Signal(n)                  # non-zero elements still to send
        mask = Signal(heads * w)
        head = Signal(range(heads + 1))        # mask words sent
        active = Signal()

        element = lowest_set_bit(remaining, n)
        word = Signal(w)
        is_last = Signal()
        in_head = head < heads
        m.d.comb += [word.eq(Mux(in_head, mask.word_select(head, w), vector[element])),
                     is_last.eq(Mux(in_head, (head == heads - 1) & (remaining == 0),
                                    (remaining & (remaining - 1)) == 0))]
        m.d.comb += [self.o.valid.eq(active), self.o.payload.word.eq(word), self.o.payload.last.eq(is_last)]
        sent = self.o.valid & self.o.ready
        with m.If(sent):
            with m.If(head < heads):
                m.d.sync += head.eq(head + 1)
            with m.Else():
                m.d.sync += remaining.eq(remaining & (remaining - 1))
            with m.If(is_last):
                m.d.sync += active.eq(0)

        m.d.comb += self.i.ready.eq(~active | (sent & is_last))
        with m.If(self.i.valid & self.i.ready):
            nonzero = Cat(self.i.payload[j] != 0 for j in range(n))
            m.d.sync += [vector.eq(self.i.payload), remaining.eq(nonzero), mask.eq(nonzero), head.eq(0),
                         active.eq(1)]
        return m


class ZVCDecoder(wiring.Component):
    """ZVC records in (one word per beat on ``i``), vectors out (one per beat on ``o``). Takes one word per
    cycle. ``error`` (sticky) is set when a record's ``last`` flag disagrees with its mask, or a mask has bits
    beyond element ``n - 1``.
    """

    def __init__(self, *, n=16, width=16):
        _check(n, width)
        self._n, self._width = n, width
        super().__init__({
            "i": In(stream.Signature(word_layout(width))),
            "o": Out(stream.Signature(data.ArrayLayout(unsigned(width), n))),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        n, w = self._n, self._width
        heads = -(-n // w)
        mask = Signal(heads * w)
        head = Signal(range(heads + 1))
        remaining = Signal(n)
        vector = Signal(data.ArrayLayout(unsigned(w), n))
        full = Signal()                        # a decoded vector waits on `o`

        m.d.comb += [self.o.valid.eq(full), self.o.payload.eq(vector)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += full.eq(0)
        m.d.comb += self.i.ready.eq(~full | self.o.ready)
        word, last = self.i.payload.word, self.i.payload.last
        with m.If(self.i.valid & self.i.ready):
            with m.If(head < heads):
                new_mask = Signal(heads * w)
                m.d.comb += new_mask.eq(Mux(head == 0, word, mask | (word << (head * w))))
                m.d.sync += [mask.eq(new_mask), head.eq(head + 1)]
                with m.If(head == 0):
                    m.d.sync += vector.eq(0)
                with m.If(head == heads - 1):
                    m.d.sync += remaining.eq(new_mask[:n])
                    complete = new_mask[:n] == 0
                    with m.If(complete):
                        m.d.sync += [full.eq(1), head.eq(0)]
                    with m.If((last != complete) | (new_mask[n:] != 0 if heads * w > n else 0)):
                        m.d.sync += self.error.eq(1)
            with m.Else():
                element = lowest_set_bit(remaining, n)
                rest = remaining & (remaining - 1)
                m.d.sync += [vector[element].eq(word), remaining.eq(rest)]
                with m.If(rest == 0):
                    m.d.sync += [full.eq(1), head.eq(0)]
                with m.If(last != (rest == 0)):
                    m.d.sync += self.error.eq(1)
        return m
