"""AXI4-Lite slave: the host port of the core, turned into a one-request-at-a-time request/response bus.

Two interfaces live here:

* :func:`axil_signature`: the AXI4-Lite slave port (AMBA AXI4-Lite, ARM IHI 0022), channel signals with
  their standard names, directions from the slave's view. A component that *is* the slave declares it as
  ``Out(axil_signature(...))``; a master or an interconnect declares ``In(...)``. At the top of a design
  the port is usually wanted as flat signals with the conventional prefix (``s_axil_awaddr``, ...):
  :func:`axil_members` makes those members and :func:`axil_connect` joins them to a slave's port.
* :func:`bus_signature`: the simple internal bus that :class:`AXILiteSlave` turns AXI into, from the
  initiator's view: a ``req`` stream of :func:`request_layout` (word address, write flag, data, byte
  strobes) and a ``resp`` stream of :func:`response_layout` (read data, error flag). A target declares it
  as ``In(bus_signature(...))``.

Bus protocol (what a target must do): every request taken on ``req`` is answered by exactly one
response on ``resp``, in order, any number of cycles later (zero or more wait states; the response
may come at the earliest in the cycle after the request's transfer). ``error = 1`` answers SLVERR to
the host (an unmapped address, a refused access); ``rdata`` of a write's response is ignored. The
initiator never issues a second request before the first one's response has been taken, so a target
needs no queue.
"""

from amaranth.hdl import Cat, Const, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["RESP_OKAY", "RESP_SLVERR", "AXIL_CHANNELS", "axil_signature", "axil_members", "axil_connect",
           "request_layout", "response_layout", "bus_signature", "AXILiteSlave"]

#: AXI response codes the slave gives (EXOKAY and DECERR are never produced).
RESP_OKAY = 0b00
RESP_SLVERR = 0b10

#: The AXI4-Lite signals by channel, in the order of the specification.
AXIL_CHANNELS = {
    "aw": ("awaddr", "awprot", "awvalid", "awready"),
    "w": ("wdata", "wstrb", "wvalid", "wready"),
    "b": ("bresp", "bvalid", "bready"),
    "ar": ("araddr", "arprot", "arvalid", "arready"),
    "r": ("rdata", "rresp", "rvalid", "rready"),
}

# Signals the slave drives; every other one is an input of the slave.
_SLAVE_OUTPUTS = frozenset({"awready", "wready", "bresp", "bvalid", "arready", "rdata", "rresp", "rvalid"})


def _check_widths(addr_width, data_width):
    if not isinstance(data_width, int) or isinstance(data_width, bool):
        raise TypeError(f"Data width must be an integer, not {data_width!r}")
    if data_width not in (32, 64):
        raise ValueError(f"Data width must be 32 or 64 (AXI4-Lite), not {data_width!r}")
    low = (data_width // 8).bit_length()       # at least one word address bit
    if not isinstance(addr_width, int) or isinstance(addr_width, bool):
        raise TypeError(f"Address width must be an integer, not {addr_width!r}")
    if not low <= addr_width <= 64:
        raise ValueError(f"Address width must be an integer from {low} to 64 for {data_width}-bit data, "
                         f"not {addr_width!r}")


def _axil_shapes(addr_width, data_width):
    return {
        "awaddr": addr_width, "awprot": 3, "awvalid": 1, "awready": 1,
        "wdata": data_width, "wstrb": data_width // 8, "wvalid": 1, "wready": 1,
        "bresp": 2, "bvalid": 1, "bready": 1,
        "araddr": addr_width, "arprot": 3, "arvalid": 1, "arready": 1,
        "rdata": data_width, "rresp": 2, "rvalid": 1, "rready": 1,
    }


def axil_signature(addr_width, data_width=32):
    """The AXI4-Lite slave port: the 19 channel signals, ``In``/``Out`` from the slave's view.

    Parameters
    ----------
    addr_width : int
        Bits of ``awaddr``/``araddr`` (byte addresses).
    data_width : int
        Bits of ``wdata``/``rdata``: 32 or 64.
    """
    _check_widths(addr_width, data_width)
    return wiring.Signature({name: (Out if name in _SLAVE_OUTPUTS else In)(unsigned(width))
                             for name, width in _axil_shapes(addr_width, data_width).items()})


def axil_members(*, addr_width, data_width=32, prefix="s_axil_"):
    """The AXI4-Lite slave port as flat component members ``<prefix><signal>`` (``s_axil_awaddr``, ...).

    For a top whose ports an SoC integrator connects by the conventional names::

        super().__init__({**axil_members(addr_width=16), "irq": Out(1)})

    and in ``elaborate``: ``m.d.comb += axil_connect(self, slave.axil)``.
    """
    return {f"{prefix}{name}": member for name, member in axil_signature(addr_width, data_width).members.items()}


def axil_connect(flat, port, *, prefix="s_axil_"):
    """Statements (for ``m.d.comb``) joining the flat members ``<prefix><signal>`` of ``flat`` (made by
    :func:`axil_members`) to ``port``, an :class:`AXILiteSlave`'s ``axil`` interface: the slave's inputs
    from the flat ports, the flat outputs from the slave."""
    statements = []
    for name, member in port.signature.members.items():
        outer = getattr(flat, f"{prefix}{name}")
        inner = getattr(port, name)
        statements.append(outer.eq(inner) if member.flow == Out else inner.eq(outer))
    return statements


def request_layout(addr_width, data_width=32):
    """A bus request: ``addr`` (word address), ``write``, ``wdata`` and ``wstrb`` (one bit per byte;
    both zero for a read)."""
    return data.StructLayout({
        "addr": unsigned(addr_width),
        "write": unsigned(1),
        "wdata": unsigned(data_width),
        "wstrb": unsigned(data_width // 8),
    })


def response_layout(data_width=32):
    """A bus response: ``rdata`` (read data; ignored for a write) and ``error`` (1: SLVERR)."""
    return data.StructLayout({"rdata": unsigned(data_width), "error": unsigned(1)})


def bus_signature(*, addr_width, data_width=32):
    """The internal request/response bus, from the initiator's view: ``req`` out, ``resp`` in.

    ``addr_width`` is the width of the *word* address (may be 0 for a one-word target). See the module
    docstring for the protocol.
    """
    if not isinstance(addr_width, int) or isinstance(addr_width, bool):
        raise TypeError(f"Address width must be an integer, not {addr_width!r}")
    if addr_width < 0:
        raise ValueError(f"Address width must be a non-negative integer, not {addr_width!r}")
    if data_width not in (32, 64):
        raise ValueError(f"Data width must be 32 or 64, not {data_width!r}")
    return wiring.Signature({
        "req": Out(stream.Signature(request_layout(addr_width, data_width))),
        "resp": In(stream.Signature(response_layout(data_width))),
    })


class AXILiteSlave(wiring.Component):
    """AXI4-Lite slave that serializes the host's reads and writes onto a request/response bus.

    Protocol side: AW and W are accepted independently, in either order or in the same cycle; one write
    (AW + W until its B is taken) and one read (AR until its R is taken) are held at a time, so
    ``awready``/``wready``/``arready`` stay low from a channel's handshake until that transaction's
    response has been accepted. B and R are held, unchanged, until ``bready``/``rready``; any pattern of
    back-pressure on any channel is tolerated. Every output is a register or a function of registers
    only: there is no combinational path from any input (valid, ready, address, data) to any output.
    ``awprot``/``arprot`` are ignored; ``bresp``/``rresp`` are OKAY (0b00) or SLVERR (0b10).

    Bus side: the byte address is turned into the word address ``addr >> log2(data_width / 8)`` (the low
    bits of an unaligned address are dropped: the access covers the whole word, its bytes chosen by
    ``wstrb``). One request at a time: a request is issued only when the previous one's response has come
    back. When a complete write (AW and W both held) and a read are both waiting for the bus in the same
    cycle, the write goes first: a read whose AR handshake is in the same cycle as, or later than, the
    later of a write's AW and W handshakes is served after that write and returns the written data. (A
    write cannot starve reads: it becomes eligible again only after its B has been taken and a new AW and
    W have arrived, and a waiting read is issued as soon as the bus is free.) The response's ``error``
    becomes SLVERR; a read's ``rdata`` is passed on as the target gave it.

    Latency, with a target that answers in the cycle after it takes a request (as :class:`hw.regmap.CSRBlock`
    does for a register): ``bvalid`` rises 3 cycles after the clock edge of the later of the AW and W
    handshakes (so the B handshake is 4 cycles after it with ``bready`` high), ``rvalid`` likewise 3
    cycles after the AR handshake; each wait state of the target adds a cycle. Throughput: one write per
    5 cycles and one read per 5 cycles with such a target and a master that never stalls (a write and a
    read waiting together share the bus: one is issued while the other's response is out).

    Uses the ``sync`` domain (ACLK; ARESETn is the domain's reset, inverted by the top).

    Parameters
    ----------
    addr_width : int
        Bits of the AXI byte address, at least ``log2(data_width / 8) + 1``.
    data_width : int
        32 or 64.

    Members
    -------
    axil : Out(axil_signature(addr_width, data_width))
        The AXI4-Lite slave port.
    bus : Out(bus_signature(addr_width=addr_width - log2(data_width / 8), data_width=data_width))
        Requests to the target and its responses.
    """

    def __init__(self, *, addr_width, data_width=32):
        _check_widths(addr_width, data_width)
        self._addr_width = addr_width
        self._data_width = data_width
        self._offset_bits = (data_width // 8).bit_length() - 1
        super().__init__({
            "axil": Out(axil_signature(addr_width, data_width)),
            "bus": Out(bus_signature(addr_width=addr_width - self._offset_bits, data_width=data_width)),
        })

    addr_width = property(lambda self: self._addr_width)
    data_width = property(lambda self: self._data_width)
    word_addr_width = property(lambda self: self._addr_width - self._offset_bits)

    def elaborate(self, platform):
        m = Module()
        axi, bus = self.axil, self.bus
        shift, width = self._offset_bits, self._data_width

        # The held halves of the write and the read; `*_full` also blocks a channel's ready.
        aw_full, w_full, ar_full = Signal(), Signal(), Signal()
        aw_addr = Signal(self.word_addr_width)
        ar_addr = Signal(self.word_addr_width)
        w_data = Signal(width)
        w_strb = Signal(width // 8)
        waiting = Signal()          # the target took the request; its response is due
        is_write = Signal()         # kind of the access on the bus

        m.d.comb += [
            axi.awready.eq(~aw_full),
            axi.wready.eq(~w_full),
            axi.arready.eq(~ar_full),
            bus.resp.ready.eq(waiting),
        ]

        with m.If(axi.awvalid & ~aw_full):
            m.d.sync += [aw_full.eq(1), aw_addr.eq(axi.awaddr[shift:])]
        with m.If(axi.wvalid & ~w_full):
            m.d.sync += [w_full.eq(1), w_data.eq(axi.wdata), w_strb.eq(axi.wstrb)]
        with m.If(axi.arvalid & ~ar_full):
            m.d.sync += [ar_full.eq(1), ar_addr.eq(axi.araddr[shift:])]

        # A held transaction is served once: its response (bvalid/rvalid) marks it done until taken.
        write_pending = aw_full & w_full & ~axi.bvalid
        read_pending = ar_full & ~axi.rvalid
        with m.If(~bus.req.valid & ~waiting):
            with m.If(write_pending):
                m.d.sync += [bus.req.valid.eq(1), is_write.eq(1), bus.req.payload.addr.eq(aw_addr),
                             bus.req.payload.write.eq(1), bus.req.payload.wdata.eq(w_data),
                             bus.req.payload.wstrb.eq(w_strb)]
            with m.Elif(read_pending):
                m.d.sync += [bus.req.valid.eq(1), is_write.eq(0), bus.req.payload.addr.eq(ar_addr),
                             bus.req.payload.write.eq(0), bus.req.payload.wdata.eq(0),
                             bus.req.payload.wstrb.eq(0)]
        with m.If(bus.req.valid & bus.req.ready):
            m.d.sync += [bus.req.valid.eq(0), waiting.eq(1)]

        resp = Cat(Const(0, 1), bus.resp.payload.error)       # OKAY 0b00 / SLVERR 0b10
        with m.If(waiting & bus.resp.valid):
            m.d.sync += waiting.eq(0)
            with m.If(is_write):
                m.d.sync += [axi.bvalid.eq(1), axi.bresp.eq(resp)]
            with m.Else():
                m.d.sync += [axi.rvalid.eq(1), axi.rresp.eq(resp), axi.rdata.eq(bus.resp.payload.rdata)]

        with m.If(axi.bvalid & axi.bready):
            m.d.sync += [axi.bvalid.eq(0), aw_full.eq(0), w_full.eq(0)]
        with m.If(axi.rvalid & axi.rready):
            m.d.sync += [axi.rvalid.eq(0), ar_full.eq(0)]
        return m
