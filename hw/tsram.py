"""Transposable SRAM wrapper: a whole row or column of an N x N tile per cycle, from N ordinary SRAMs."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden.tsram import Axis as _GoldenAxis, check_params


__all__ = ["Axis", "request_layout", "write_layout", "TransposableSRAM", "RegisterFileTranspose"]


class Axis(enum.Enum, shape=1):
    """Which line of a tile an access reads or writes; the values are :class:`golden.tsram.Axis`'s."""
    ROW = _GoldenAxis.ROW.value
    COL = _GoldenAxis.COL.value


def _tile_bits(tiles):
    return max(1, (tiles - 1).bit_length())


def request_layout(n, tiles):
    """A row or column of one tile."""
    return data.StructLayout({
        "axis": Axis,
        "tile": unsigned(_tile_bits(tiles)),
        "index": unsigned((n - 1).bit_length()),
    })


def write_layout(n, width, tiles):
    """A row or column of one tile and its N words (left to right, or top to bottom)."""
    return data.StructLayout({
        "axis": Axis,
        "tile": unsigned(_tile_bits(tiles)),
        "index": unsigned((n - 1).bit_length()),
        "data": data.ArrayLayout(unsigned(width), n),
    })


def _rotate(words, amount, left):
    """Barrel rotation of a list of equal-width values by a run-time ``amount`` (log2(N) mux levels):
    element ``e`` of the result is ``words[(e + amount) % N]`` (left) or ``words[(e - amount) % N]``."""
    n = len(words)
    out = list(words)
    for level in range((n - 1).bit_length()):
        step = 1 << level
        shifted = [out[(e + step) % n] if left else out[(e - step) % n] for e in range(n)]
        out = [Mux(amount[level], s, o) for s, o in zip(shifted, out)]
    return out


class TransposableSRAM(wiring.Component):
    """T tiles of N x N words in N single-read, single-write memories, by a skewed storage pattern.

    Word ``(r, c)`` of tile ``t`` is kept in bank ``(r + c) mod N`` at address ``t*N + r``, so a row and a
    column both touch each bank once: each cycle takes one row or column write on ``w`` and one row or
    column read request on ``rreq``. A rotator before the banks and one after them map between element
    order and bank order (both rotate by the row or column index); a column additionally gives each bank
    its own address. The memories are plain ``amaranth.lib.memory.Memory`` instances with one write port
    and one synchronous read port: in an ASIC each is an off-the-shelf two-port SRAM macro.

    Read-during-write is read-first: a read sees the words before the write of the same cycle. The
    response to a read (``rresp``) follows one cycle after the request is taken; while ``rresp`` waits,
    the banks' read ports hold their data and ``rreq`` is not taken (``rreq.ready`` follows
    ``rresp.ready``), so a response is never lost, repeated or changed by later writes. ``w`` is always
    ready. Throughput: one write and one read per cycle. Requests for a tile >= T are ignored (writes)
    or answered with zeros (reads).

    Parameters
    ----------
    n : int
        Tile size and bank count, a power of two >= 2.
    width : int
        Bits per word.
    tiles : int
        Tiles stored (each bank is ``tiles * n`` words deep).
    observe : bool
        Add an asynchronous read port per bank (``peek_addr``/``peek_data``) for formal verification, where
        a proof needs to state what the banks hold. Not for implementation: no SRAM macro has that port.

    Members
    -------
    w : In(stream.Signature(write_layout(n, width, tiles)))
    rreq : In(stream.Signature(request_layout(n, tiles)))
    rresp : Out(stream.Signature(ArrayLayout(unsigned(width), n)))
    peek_addr : In(ArrayLayout(unsigned(address bits), n))
        Only with ``observe``: an address per bank.
    peek_data : Out(ArrayLayout(unsigned(width), n))
        Only with ``observe``: each bank's word at ``peek_addr``, now.

    Raises
    ------
    TypeError, ValueError
        On a bad parameter.
    """

    def __init__(self, *, n, width, tiles=1, observe=False):
        check_params(n, width, tiles)
        self._n, self._width, self._tiles, self._observe = n, width, tiles, bool(observe)
        members = {
            "w": In(stream.Signature(write_layout(n, width, tiles))),
            "rreq": In(stream.Signature(request_layout(n, tiles))),
            "rresp": Out(stream.Signature(data.ArrayLayout(unsigned(width), n))),
        }
        if observe:
            members["peek_addr"] = In(data.ArrayLayout(unsigned((tiles * n - 1).bit_length()), n))
            members["peek_data"] = Out(data.ArrayLayout(unsigned(width), n))
        super().__init__(members)

    n = property(lambda self: self._n)
    width = property(lambda self: self._width)
    tiles = property(lambda self: self._tiles)

    def elaborate(self, platform):
        m = Module()
        n, tiles = self._n, self._tiles
        index_bits = (n - 1).bit_length()

        def bank_addresses(req):
            # Row: every bank at row `index`; column: bank b holds row (b - index) mod N of that column.
            addrs = []
            for b in range(n):
                row = Mux(req.axis == Axis.COL, (b - req.index)[:index_bits], req.index)
                addrs.append(Cat(row, req.tile) if tiles > 1 else row)
            return addrs

        # Writes: element e goes to bank (e + index) mod N for rows and columns alike.
        w = self.w.payload
        m.d.comb += self.w.ready.eq(1)
        w_in_range = (w.tile < tiles) if tiles & (tiles - 1) or tiles == 1 else Const(1, 1)
        w_words = _rotate([w.data[e] for e in range(n)], w.index, left=False)
        w_addrs = bank_addresses(w)

        # Reads: taken when the response register is free or being emptied.
        advance = ~self.rresp.valid | self.rresp.ready
        m.d.comb += self.rreq.ready.eq(advance)
        q = self.rreq.payload
        q_addrs = bank_addresses(q)
        r_index = Signal(index_bits)
        r_in_range = Signal()
        with m.If(advance):
            m.d.sync += [self.rresp.valid.eq(self.rreq.valid), r_index.eq(q.index),
                         r_in_range.eq((q.tile < tiles) if tiles & (tiles - 1) or tiles == 1 else 1)]

        bank_data = []
        for b in range(n):
            mem = Memory(shape=unsigned(self._width), depth=tiles * n, init=[])
            m.submodules[f"bank{b}"] = mem
            wp = mem.write_port()
            rp = mem.read_port()            # synchronous, not transparent: read-first
            m.d.comb += [
                wp.en.eq(self.w.valid & w_in_range), wp.addr.eq(w_addrs[b]), wp.data.eq(w_words[b]),
                rp.en.eq(advance), rp.addr.eq(q_addrs[b]),
            ]
            bank_data.append(rp.data)
            if self._observe:
                peek = mem.read_port(domain="comb")
                m.d.comb += [peek.addr.eq(self.peek_addr[b]), self.peek_data[b].eq(peek.data)]
        # Element e of the response is in bank (e + index) mod N.
        r_words = _rotate(bank_data, r_index, left=True)
        for e in range(n):
            m.d.comb += self.rresp.payload[e].eq(Mux(r_in_range, r_words[e], 0))
        return m


class RegisterFileTranspose(wiring.Component):
    """Area baseline: the same store and interface as :class:`TransposableSRAM`, in flip-flops.

    Every word is a register; a row or column write enables the N registers it covers, a read selects its
    N words through multiplexers into the response register. Same latency and back-pressure behaviour.
    """

    def __init__(self, *, n, width, tiles=1):
        check_params(n, width, tiles)
        self._n, self._width, self._tiles = n, width, tiles
        super().__init__({
            "w": In(stream.Signature(write_layout(n, width, tiles))),
            "rreq": In(stream.Signature(request_layout(n, tiles))),
            "rresp": Out(stream.Signature(data.ArrayLayout(unsigned(width), n))),
        })

    def elaborate(self, platform):
        m = Module()
        n, tiles, width = self._n, self._tiles, self._width
        regs = [[[Signal(width, name=f"word_{t}_{r}_{c}") for c in range(n)] for r in range(n)]
                for t in range(tiles)]
        w = self.w.payload
        m.d.comb += self.w.ready.eq(1)
        for t in range(tiles):
            for r in range(n):
                for c in range(n):
                    row_hit = (w.axis == Axis.ROW) & (w.index == r)
                    col_hit = (w.axis == Axis.COL) & (w.index == c)
                    with m.If(self.w.valid & (w.tile == t) & (row_hit | col_hit)):
                        m.d.sync += regs[t][r][c].eq(Mux(w.axis == Axis.ROW, w.data[c], w.data[r]))
        advance = ~self.rresp.valid | self.rresp.ready
        m.d.comb += self.rreq.ready.eq(advance)
        q = self.rreq.payload
        with m.If(advance):
            m.d.sync += self.rresp.valid.eq(self.rreq.valid)
            for e in range(n):
                word = Const(0, width)
                for t in range(tiles):
                    for i in range(n):
                        hit_row = (q.tile == t) & (q.axis == Axis.ROW) & (q.index == i)
                        hit_col = (q.tile == t) & (q.axis == Axis.COL) & (q.index == i)
                        word = Mux(hit_row, regs[t][i][e], Mux(hit_col, regs[t][e][i], word))
                m.d.sync += self.rresp.payload[e].eq(word)
        return m
