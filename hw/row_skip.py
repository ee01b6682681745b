"""ReLU-derivative mask buffer and error-propagation row skipper: the rows of ``(W^T d or B e) * mask``
whose mask bit is 0 are zero, so error propagation computes only the others
(:func:`golden.sparsity.ep_rows`)."""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .muxes import lowest_set_bit


__all__ = ["mask_layout", "row_layout", "RowSkipper"]


def mask_layout(lanes):
    """``lanes`` mask bits (rows ``k*lanes .. k*lanes + lanes - 1`` of beat ``k``); ``last`` ends a layer."""
    return data.StructLayout({"bits": unsigned(lanes), "last": unsigned(1)})


def row_layout(max_rows):
    """A row to compute, or (``done``) the end of the layer's rows."""
    return data.StructLayout({"index": unsigned(max(1, (max_rows - 1).bit_length())), "done": unsigned(1)})


class RowSkipper(wiring.Component):
    """Stores a layer's 1-bit ReLU derivatives and lists the error-propagation rows that are not zero.

    The forward pass writes the mask on ``mask``, ``lanes`` bits per beat, ``last`` on the layer's final
    beat (a new layer's mask starts after it). Each transfer on ``start`` then lists, on ``o``, the indices
    of the rows whose bit is 1, in increasing order, one per cycle, followed by one ``done`` beat. A mask
    word without any set bit costs one cycle, and a listing one cycle to start and the ``done`` beat.
    ``start`` and ``mask`` are taken only while no listing is in progress.

    Parameters
    ----------
    lanes : int
        Mask bits per beat (and per buffer word).
    max_rows : int
        Largest layer: the buffer holds ``ceil(max_rows / lanes)`` words; bits beyond are dropped and set
        the sticky ``error``.
    """

    def __init__(self, *, lanes=16, max_rows=1024):
        for name, value in (("Lane count", lanes), ("Row limit", max_rows)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value!r}")
        self._lanes, self._max_rows = lanes, max_rows
        super().__init__({
            "mask": In(stream.Signature(mask_layout(lanes))),
            "start": In(stream.Signature(unsigned(1))),
            "o": Out(stream.Signature(row_layout(max_rows))),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self._lanes
        words = -(-self._max_rows // lanes)
        m.submodules.mem = mem = Memory(shape=unsigned(lanes), depth=words, init=[])
        wp = mem.write_port()
        rp = mem.read_port(domain="comb")

        fill = Signal(range(words + 1))        # words written of the layer being written
        length = Signal(range(words + 1))      # words of the stored layer
        fresh = Signal(init=1)
        listing = Signal()
        ptr = Signal(range(words + 1))
        cur = Signal(lanes)                    # bits of word ptr not listed yet
        loaded = Signal()                      # cur holds word ptr
        ending = Signal()                      # the done beat is due

        idle = ~listing
        m.d.comb += [self.mask.ready.eq(idle), self.start.ready.eq(idle & ~self.mask.valid)]
        with m.If(self.mask.valid & self.mask.ready):
            index = Mux(fresh, 0, fill)
            with m.If(index < words):
                m.d.comb += [wp.addr.eq(index), wp.data.eq(self.mask.payload.bits), wp.en.eq(1)]
                m.d.sync += [fill.eq(index + 1), length.eq(index + 1)]
            with m.Else():
                m.d.sync += self.error.eq(1)
            m.d.sync += fresh.eq(self.mask.payload.last)

        # Lowest set bit of the current word, and the word without it.
        lowest = lowest_set_bit(cur, lanes)
        rest = cur & (cur - 1)
        m.d.comb += rp.addr.eq(ptr + loaded)        # the next word, ready when this one runs out
        have = loaded & (cur != 0)
        m.d.comb += [self.o.valid.eq(listing & (have | ending)),
                     self.o.payload.index.eq(ptr * lanes + lowest), self.o.payload.done.eq(ending)]
        sent = self.o.valid & self.o.ready

        with m.If(listing & ~ending):
            with m.If(~loaded):
                with m.If(ptr < length):
                    m.d.sync += [cur.eq(rp.data), loaded.eq(1)]
                with m.Else():
                    m.d.sync += ending.eq(1)
            with m.Else():
                with m.If(have & sent):
                    m.d.sync += cur.eq(rest)
                with m.If((have & sent & (rest == 0)) | ~have):
                    m.d.sync += ptr.eq(ptr + 1)
                    with m.If(ptr + 1 < length):
                        m.d.sync += cur.eq(rp.data)
                    with m.Else():
                        m.d.sync += [loaded.eq(0), cur.eq(0), ending.eq(1)]
        with m.If(ending & sent):
            m.d.sync += [listing.eq(0), ending.eq(0)]
        with m.If(self.start.valid & self.start.ready):
            m.d.sync += [listing.eq(1), ptr.eq(0), loaded.eq(0), ending.eq(0)]
        return m
