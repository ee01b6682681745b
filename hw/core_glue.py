"""Small glue of the TrainCore: a stream stage that reads a tile memory for each item, a writer of tile
rows and columns, and a stream that carries tags beside a unit that does not."""

from amaranth.hdl import Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out


__all__ = ["write_signature", "lookup_layout", "MemLookup", "write_item_layout", "TileWriter", "TagQueue"]


def write_signature(addr_width, tile, element_bits):
    """A write port of a tile memory with one enable per element, from the writer's side."""
    return wiring.Signature({
        "addr": Out(addr_width),
        "data": Out(tile * tile * element_bits),
        "en": Out(tile * tile),
    })


def lookup_layout(payload, addr_width):
    return data.StructLayout({"payload": payload, "addr": unsigned(addr_width)})


class MemLookup(wiring.Component):
    """For each item of ``i``, read the memory word at its ``addr``; ``o`` carries the item with the word.

    A register stage around a synchronous read port: the read is issued as the item is taken, the word is
    on ``o`` the next cycle and held (the port is not enabled) while ``o`` waits. One item per cycle;
    latency 1; back-pressure on ``o`` stops ``i``, nothing is lost or repeated.

    Parameters
    ----------
    payload : shape
        What travels with the address.
    addr_width, data_width : int

    Members
    -------
    i : In(stream.Signature(lookup_layout(payload, addr_width)))
    o : Out(stream.Signature(StructLayout({"payload": payload, "data": unsigned(data_width)})))
    rd : Out(Signature({"addr": Out(addr_width), "en": Out(1), "data": In(data_width)}))
    """

    def __init__(self, *, payload, addr_width, data_width):
        self._payload = payload
        super().__init__({
            "i": In(stream.Signature(lookup_layout(payload, addr_width))),
            "o": Out(stream.Signature(data.StructLayout({"payload": payload, "data": unsigned(data_width)}))),
            "rd": Out(wiring.Signature({"addr": Out(addr_width), "en": Out(1), "data": In(data_width)})),
        })

    def elaborate(self, platform):
        m = Module()
        advance = ~self.o.valid | self.o.ready
        take = self.i.valid & advance
        m.d.comb += [
            self.i.ready.eq(advance),
            self.rd.addr.eq(self.i.payload.addr),
            self.rd.en.eq(take),
            self.o.payload.data.eq(self.rd.data),
        ]
        with m.If(advance):
            m.d.sync += self.o.valid.eq(self.i.valid)
            with m.If(self.i.valid):
                m.d.sync += self.o.payload.payload.eq(self.i.payload.payload)
        return m


def write_item_layout(addr_width, tile, element_bits):
    """One row or column of a tile: ``values[i]`` goes to element ``(index, i)`` (a row) or ``(i, index)``
    (a column, ``column`` set), where ``en`` has bit ``i``."""
    return data.StructLayout({
        "values": data.ArrayLayout(unsigned(element_bits), tile),
        "en": unsigned(tile),
        "addr": unsigned(addr_width),
        "index": unsigned(max(1, (tile - 1).bit_length())),
        "column": unsigned(1),
    })


class TileWriter(wiring.Component):
    """Writes a row or a column of a tile word per item through a write port with one enable per element.

    Always ready; one item per cycle; the write happens in the cycle the item is taken.

    Parameters
    ----------
    addr_width, tile, element_bits : int

    Members
    -------
    i : In(stream.Signature(write_item_layout(addr_width, tile, element_bits)))
    wr : Out(write_signature(addr_width, tile, element_bits))
    """

    def __init__(self, *, addr_width, tile, element_bits):
        self._tile, self._element_bits = tile, element_bits
        super().__init__({
            "i": In(stream.Signature(write_item_layout(addr_width, tile, element_bits))),
            "wr": Out(write_signature(addr_width, tile, element_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        t, e = self._tile, self._element_bits
        item = self.i.payload
        m.d.comb += [self.i.ready.eq(1), self.wr.addr.eq(item.addr)]
        # A row write fills (index, c) from values[c]; a column write fills (r, index) from values[r]. The
        # row (column) named is decoded once; each element then picks its value with one multiplexer.
        row_hit = Signal(t)
        col_hit = Signal(t)
        m.d.comb += [row_hit[k].eq((item.index == k) & ~item.column) for k in range(t)]
        m.d.comb += [col_hit[k].eq((item.index == k) & item.column) for k in range(t)]
        for r in range(t):
            for c in range(t):
                pos = r * t + c
                m.d.comb += self.wr.data[e * pos:e * (pos + 1)].eq(Mux(item.column, item.values[r], item.values[c]))
                m.d.comb += self.wr.en[pos].eq(self.i.valid & (row_hit[r] & item.en[c] | col_hit[c] & item.en[r]))
        return m


class TagQueue(wiring.Component):
    """Tags of the items inside a unit that keeps order but carries no tag: pushed as an item enters the
    unit, popped as its result leaves. ``depth`` must cover the unit's items in flight.

    A synchronous FIFO of ``depth`` entries: one push and one pop per cycle; a pushed tag can be popped the
    cycle after.

    Members
    -------
    push : In(stream.Signature(shape))
    pop : Out(stream.Signature(shape))
    """

    def __init__(self, *, shape, depth=8):
        self._shape, self._depth = shape, depth
        super().__init__({
            "push": In(stream.Signature(shape)),
            "pop": Out(stream.Signature(shape)),
        })

    def elaborate(self, platform):
        m = Module()
        width = Shape.cast(self._shape).width
        m.submodules.fifo = fifo = SyncFIFO(width=width, depth=self._depth)
        m.d.comb += [
            fifo.w_data.eq(self.push.payload), fifo.w_en.eq(self.push.valid), self.push.ready.eq(fifo.w_rdy),
            self.pop.payload.eq(fifo.r_data), self.pop.valid.eq(fifo.r_rdy), fifo.r_en.eq(self.pop.ready),
        ]
        return m
