"""One source for a register map: the RTL decode, the reference page, the C header and the Python driver.

A map is a table of :class:`Register` rows (each a list of :class:`Field` rows) and :class:`Window` rows,
gathered in a :class:`RegisterMap`, which checks it and places the rows without an offset::

    DEMO = RegisterMap(name="demo", registers=[
        Register("ctrl", [Field("start", 0, access="w1p", description="Start a run"),
                          Field("mode", 4, 2, reset=1, enum={"bp": 0, "dfa": 1})]),
        Register("status", [Field("busy", 0, access="ro")]),
        Register("layer_size", [Field("rows", 0, 12), Field("cols", 16, 12)], count=8,
                 locked_while_busy=True),
    ], windows=[Window("weights", size=4096)])

Everything else is generated from that object:

* :class:`CSRBlock`: the decode, an ``amaranth`` component behind :class:`hw.axil.AXILiteSlave`;
* :func:`markdown`: the register reference;
* :func:`c_header`: ``#define`` s for offsets, fields and enum values;
* :func:`python_driver`: the source of a standalone Python driver module; :class:`RegisterDriver` is the
  same driver, used in-package straight from the map (``regmap.driver(read, write)``).

Registers are 32 bits wide at byte offsets that are multiples of 4. Access kinds of a field:

==========  ====================================================================================
``rw``      read/write; held in the block, seen by the core on an ``Out`` port; byte strobes honoured
``ro``      read-only; the value of an ``In`` port when the read is taken; writes ignored
``w1p``     write-1-pulse: each bit written 1 is high on an ``Out`` port for one cycle; reads 0
``w1c``     write-1-to-clear: bits set by hardware (``In`` port ``<reg>_<field>_set``), held until a
            write of 1 clears them (a set in the same cycle wins); the bits are on an ``Out`` port
==========  ====================================================================================

A register with ``count`` is an array of ``count`` registers ``stride`` bytes apart (one per layer, per
lane, ...). A window is an aligned, power-of-two address range forwarded to a target that answers on the
request/response bus of :mod:`hw.axil` with its own latency (a memory, a FIFO port).

In a top (flat ``s_axil_*`` ports, as an SoC integrator expects)::

    class Top(wiring.Component):
        def __init__(self):
            super().__init__({**axil_members(addr_width=DEMO.addr_width), "irq": Out(1)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.axil = axil = AXILiteSlave(addr_width=DEMO.addr_width)
            m.submodules.csr = csr = CSRBlock(regmap=DEMO)
            m.d.comb += axil_connect(self, axil.axil)
            wiring.connect(m, axil.bus, csr.bus)
            wiring.connect(m, csr.weights, store.bus)          # the window's target: In(bus_signature(...))
            m.d.comb += [engine.start.eq(csr.ctrl_start), engine.mode.eq(csr.ctrl_mode),
                         engine.rows.eq(csr.layer_size_rows[layer]),  # an array port: ArrayLayout
                         csr.status_busy.eq(engine.busy), csr.lock.eq(engine.busy)]
"""

import dataclasses
import inspect
import pprint
import re

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .axil import bus_signature
from .muxes import any_of


__all__ = ["ACCESS_KINDS", "REGISTER_WIDTH", "Field", "Register", "Window", "RegisterMap", "CSRBlock",
           "RegisterDriver", "markdown", "c_header", "python_driver"]

#: Field access kinds (see the module docstring).
ACCESS_KINDS = ("rw", "ro", "w1p", "w1c", "rwh")
#: Bits of every register.
REGISTER_WIDTH = 32

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
# Member names a CSRBlock uses itself or inherits: no field port may take them.
_RESERVED_PORTS = frozenset({"bus", "lock", "signature", "metadata", "elaborate", "regmap", "addr_width"})


def _check_name(what, name):
    if not isinstance(name, str):
        raise TypeError(f"{what} name must be a string, not {name!r}")
    if not _NAME.match(name) or "__" in name or name.endswith("_"):
        raise ValueError(f"{what} name must be a lower-case identifier (a-z, 0-9, single '_' inside, "
                         f"starting with a letter), not {name!r}")


def _check_int(what, value, low=None):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, not {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{what} must be at least {low}, not {value!r}")


def _check_text(what, text):
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a string, not {text!r}")


def _bits(lsb, width):
    return f"{lsb + width - 1}:{lsb}" if width > 1 else f"{lsb}"


@dataclasses.dataclass(frozen=True)
class Field:
    """A bit field of a register.

    Parameters
    ----------
    name : str
        Lower-case identifier, unique in its register.
    lsb : int
        Lowest bit.
    width : int
        Bits (``lsb + width <= 32``).
    access : str
        ``"rw"``, ``"ro"``, ``"w1p"``, ``"w1c"`` or ``"rwh"``.
    reset : int
        Value after reset (``rw`` and ``w1c`` only; must be 0 for ``ro`` and ``w1p``).
    description : str
    enum : dict of str to int, optional
        Named values of the field (names are identifiers, values distinct and within ``width`` bits).
    """
    name: str
    lsb: int
    width: int = 1
    access: str = "rw"
    reset: int = 0
    description: str = ""
    enum: dict = None

    def __post_init__(self):
        _check_name("Field", self.name)
        _check_int(f"Field {self.name!r} lsb", self.lsb, 0)
        _check_int(f"Field {self.name!r} width", self.width, 1)
        if self.lsb + self.width > REGISTER_WIDTH:
            raise ValueError(f"Field {self.name!r} must lie within bits {REGISTER_WIDTH - 1}..0 of the "
                             f"{REGISTER_WIDTH}-bit register, not bits {self.lsb + self.width - 1}..{self.lsb}")
        if self.access not in ACCESS_KINDS:
            raise ValueError(f"Field {self.name!r} access must be one of {', '.join(map(repr, ACCESS_KINDS))}, "
                             f"not {self.access!r}")
        _check_int(f"Field {self.name!r} reset", self.reset)
        if not 0 <= self.reset < (1 << self.width):
            raise ValueError(f"Field {self.name!r} reset must fit in {self.width} unsigned bits, not {self.reset!r}")
        if self.reset and self.access in ("ro", "w1p"):
            raise ValueError(f"Field {self.name!r} reset must be 0 for access {self.access!r} "
                             f"(the value comes from the core or is a pulse), not {self.reset!r}")
        _check_text(f"Field {self.name!r} description", self.description)
        if self.enum is not None:
            if not isinstance(self.enum, dict):
                raise TypeError(f"Field {self.name!r} enum must be a dict of names to values, not {self.enum!r}")
            seen = {}
            for key, value in self.enum.items():
                _check_name(f"Field {self.name!r} enum value", key)
                _check_int(f"Field {self.name!r} enum value {key!r}", value)
                if not 0 <= value < (1 << self.width):
                    raise ValueError(f"Field {self.name!r} enum value {key!r} must fit in {self.width} unsigned "
                                     f"bits, not {value!r}")
                if value in seen:
                    raise ValueError(f"Field {self.name!r} enum values must be distinct, not {value!r} for both "
                                     f"{seen[value]!r} and {key!r}")
                seen[value] = key
            object.__setattr__(self, "enum", dict(self.enum))

    @property
    def mask(self):
        """The field's bits in the register."""
        return ((1 << self.width) - 1) << self.lsb

    @property
    def bits(self):
        """Bit range as text: ``"7:4"`` or ``"3"``."""
        return _bits(self.lsb, self.width)


@dataclasses.dataclass(frozen=True)
class Register:
    """A 32-bit register, or an array of ``count`` of them ``stride`` bytes apart.

    Parameters
    ----------
    name : str
        Lower-case identifier, unique in the map.
    fields : sequence of Field
        At least one; they must not overlap. Bits outside every field read 0 and ignore writes.
    offset : int, optional
        Byte offset (a multiple of 4) of the register, or of element 0 of an array; ``None`` places it
        right after the highest item listed before it.
    description : str
    count : int, optional
        ``None``: a single register. An integer >= 1: an array, addressed by an index; its ports are
        arrays too (even for ``count = 1``, so the interface does not change shape with a parameter).
    stride : int
        Bytes between array elements: a multiple of 4, 4 by default (contiguous).
    locked_while_busy : bool
        Writes are refused (SLVERR, no field changes, no pulse, no clear) while the block's ``lock`` input
        is high: configuration that must not change while the core runs. Reads are always allowed.
    """
    name: str
    fields: tuple
    offset: int = None
    description: str = ""
    count: int = None
    stride: int = 4
    locked_while_busy: bool = False

    def __post_init__(self):
        _check_name("Register", self.name)
        if isinstance(self.fields, (str, bytes)) or not hasattr(self.fields, "__iter__"):
            raise TypeError(f"Register {self.name!r} fields must be a sequence of Field, not {self.fields!r}")
        fields = tuple(self.fields)
        for field in fields:
            if not isinstance(field, Field):
                raise TypeError(f"Register {self.name!r} fields must be Field objects, not {field!r}")
        if not fields:
            raise ValueError(f"Register {self.name!r} must have at least one field, not none")
        names = [f.name for f in fields]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"Field names of register {self.name!r} must be unique, not {name!r} twice")
        ordered = sorted(fields, key=lambda f: f.lsb)
        for low, high in zip(ordered, ordered[1:]):
            if low.lsb + low.width > high.lsb:
                raise ValueError(f"Fields of register {self.name!r} must not overlap, not {low.name!r} "
                                 f"[{low.bits}] and {high.name!r} [{high.bits}]")
        object.__setattr__(self, "fields", fields)
        if self.offset is not None:
            _check_int(f"Register {self.name!r} offset", self.offset, 0)
            if self.offset % 4:
                raise ValueError(f"Register {self.name!r} offset must be a multiple of 4, not {self.offset:#x}")
        _check_text(f"Register {self.name!r} description", self.description)
        if self.count is not None:
            _check_int(f"Register {self.name!r} count", self.count, 1)
        _check_int(f"Register {self.name!r} stride", self.stride, 4)
        if self.stride % 4:
            raise ValueError(f"Register {self.name!r} stride must be a multiple of 4, not {self.stride!r}")
        if not isinstance(self.locked_while_busy, bool):
            raise TypeError(f"Register {self.name!r} locked_while_busy must be a bool, "
                            f"not {self.locked_while_busy!r}")

    @property
    def is_array(self):
        return self.count is not None

    @property
    def elements(self):
        """Number of registers: ``count``, or 1."""
        return 1 if self.count is None else self.count

    @property
    def addresses(self):
        """Byte offsets of the elements (requires a placed register)."""
        return tuple(self.offset + i * self.stride for i in range(self.elements))

    @property
    def reset(self):
        """Value read after reset, with ``ro`` fields taken as 0."""
        return sum(f.reset << f.lsb for f in self.fields)

    def mask(self, *access):
        """Bits of the fields of the given access kinds (all fields when none is given)."""
        return sum(f.mask for f in self.fields if not access or f.access in access)

    def field(self, name):
        for field in self.fields:
            if field.name == name:
                return field
        raise KeyError(f"Register {self.name!r} has no field {name!r}")


@dataclasses.dataclass(frozen=True)
class Window:
    """An address range forwarded to a target on the request/response bus (a memory, a FIFO port).

    Parameters
    ----------
    name : str
        Lower-case identifier, unique in the map.
    size : int
        Bytes, a power of two >= 4; the window is aligned to its size.
    offset : int, optional
        Byte offset, a multiple of ``size``; ``None`` places it at the first multiple of ``size`` after
        the highest item listed before it.
    description : str
    locked_while_busy : bool
        Writes are refused with SLVERR (not forwarded) while ``lock`` is high.
    """
    name: str
    size: int
    offset: int = None
    description: str = ""
    locked_while_busy: bool = False

    def __post_init__(self):
        _check_name("Window", self.name)
        _check_int(f"Window {self.name!r} size", self.size, 4)
        if self.size & (self.size - 1):
            raise ValueError(f"Window {self.name!r} size must be a power of two, not {self.size!r}")
        if self.offset is not None:
            _check_int(f"Window {self.name!r} offset", self.offset, 0)
            if self.offset % self.size:
                raise ValueError(f"Window {self.name!r} offset must be a multiple of its size {self.size:#x}, "
                                 f"not {self.offset:#x}")
        _check_text(f"Window {self.name!r} description", self.description)
        if not isinstance(self.locked_while_busy, bool):
            raise TypeError(f"Window {self.name!r} locked_while_busy must be a bool, "
                            f"not {self.locked_while_busy!r}")

    @property
    def addr_width(self):
        """Bits of the word offset within the window (what its target receives as ``addr``)."""
        return (self.size // 4).bit_length() - 1


class RegisterMap:
    """A checked, placed register map: the one source of everything generated from it.

    Items without an offset are placed in table order, registers first, then windows, each after the
    highest item placed before it (a window rounded up to a multiple of its size).

    Parameters
    ----------
    name : str
        Lower-case identifier (the C prefix and the driver class name derive from it).
    registers : sequence of Register
    windows : sequence of Window
    description : str
    addr_width : int, optional
        Bits of the byte address the map decodes; by default the fewest that hold every item (at least
        3). Addresses below ``2**addr_width`` that hit no item answer SLVERR.

    Raises
    ------
    TypeError, ValueError
        A malformed row (see :class:`Field`, :class:`Register`, :class:`Window`); duplicate names;
        overlapping items; two ports of :class:`CSRBlock` with the same name; an ``addr_width`` too small.
    """

    def __init__(self, *, name, registers, windows=(), description="", addr_width=None):
        _check_name("Register map", name)
        _check_text("Register map description", description)
        registers, windows = tuple(registers), tuple(windows)
        for item in registers:
            if not isinstance(item, Register):
                raise TypeError(f"Registers must be Register objects, not {item!r}")
        for item in windows:
            if not isinstance(item, Window):
                raise TypeError(f"Windows must be Window objects, not {item!r}")
        names = [item.name for item in registers + windows]
        for item_name in names:
            if names.count(item_name) > 1:
                raise ValueError(f"Register and window names must be unique, not {item_name!r} twice")

        cursor, placed_regs, placed_wins = 0, [], []
        for reg in registers:
            if reg.offset is None:
                reg = dataclasses.replace(reg, offset=cursor)
            placed_regs.append(reg)
            cursor = max(cursor, reg.addresses[-1] + 4)
        for win in windows:
            if win.offset is None:
                win = dataclasses.replace(win, offset=-(-cursor // win.size) * win.size)
            placed_wins.append(win)
            cursor = max(cursor, win.offset + win.size)
        self._name, self._description = name, description
        self._registers, self._windows = tuple(placed_regs), tuple(placed_wins)

        spans = [(a, a + 4, f"register {r.name!r}" + (f"[{i}]" if r.is_array else ""))
                 for r in self._registers for i, a in enumerate(r.addresses)]
        spans += [(w.offset, w.offset + w.size, f"window {w.name!r}") for w in self._windows]
        spans.sort()
        for (lo0, hi0, what0), (lo1, hi1, what1) in zip(spans, spans[1:]):
            if lo1 < hi0:
                raise ValueError(f"Items must not overlap, not {what0} at {lo0:#x}..{hi0 - 1:#x} and {what1} "
                                 f"at {lo1:#x}..{hi1 - 1:#x}")
        end = max([hi for _, hi, _ in spans], default=4)
        needed = max(3, (end - 1).bit_length())
        if addr_width is None:
            addr_width = needed
        else:
            _check_int("Address width", addr_width)
            if not needed <= addr_width <= 64:
                raise ValueError(f"Address width must be from {needed} (to hold every item, up to {end - 1:#x}) "
                                 f"to 64, not {addr_width!r}")
        self._addr_width = addr_width

        ports = {}
        for reg in self._registers:
            for f in reg.fields:
                for port, what in self._field_ports(reg, f):
                    if port in ports:
                        raise ValueError(f"Port names must be unique, not {port!r} for both {ports[port]} and "
                                         f"{what}")
                    if port in _RESERVED_PORTS:
                        raise ValueError(f"Port names must not be one of {sorted(_RESERVED_PORTS)}, not {port!r} "
                                         f"(for {what})")
                    ports[port] = what
        for win in self._windows:
            if win.name in ports or win.name in _RESERVED_PORTS:
                raise ValueError(f"Port names must be unique, not {win.name!r} for window {win.name!r} and "
                                 f"{ports.get(win.name, 'the block itself')}")
            ports[win.name] = f"window {win.name!r}"

    @staticmethod
    def _field_ports(reg, field):
        what = f"field {field.name!r} of register {reg.name!r}"
        yield f"{reg.name}_{field.name}", what
        if field.access == "w1c":
            yield f"{reg.name}_{field.name}_set", f"the set strobe of {what}"

    name = property(lambda self: self._name)
    description = property(lambda self: self._description)
    registers = property(lambda self: self._registers)
    windows = property(lambda self: self._windows)
    addr_width = property(lambda self: self._addr_width)

    def __repr__(self):
        return (f"RegisterMap(name={self._name!r}, {len(self._registers)} registers, "
                f"{len(self._windows)} windows, addr_width={self._addr_width})")

    def register(self, name):
        for reg in self._registers:
            if reg.name == name:
                return reg
        raise KeyError(f"Register map {self._name!r} has no register {name!r}")

    def window(self, name):
        for win in self._windows:
            if win.name == name:
                return win
        raise KeyError(f"Register map {self._name!r} has no window {name!r}")

    def address(self, name, index=None):
        """Byte offset of register ``name`` (element ``index`` of an array)."""
        reg = self.register(name)
        if not reg.is_array:
            if index is not None:
                raise ValueError(f"Index of register {name!r} must be None (not an array), not {index!r}")
            return reg.offset
        if not isinstance(index, int) or not 0 <= index < reg.count:
            raise ValueError(f"Index of register {name!r} must be an integer from 0 to {reg.count - 1}, "
                             f"not {index!r}")
        return reg.offset + index * reg.stride

    def locate(self, address):
        """What a byte address hits: ``(Register, index or None)``, ``(Window, byte offset within it)``, or
        ``None`` (unmapped)."""
        word = address & ~3
        for reg in self._registers:
            for i, a in enumerate(reg.addresses):
                if a == word:
                    return reg, (i if reg.is_array else None)
        for win in self._windows:
            if win.offset <= word < win.offset + win.size:
                return win, word - win.offset
        return None

    def to_dict(self):
        """The map as plain data (what the generated Python driver embeds)."""
        return {
            "name": self._name,
            "description": self._description,
            "addr_width": self._addr_width,
            "registers": [{
                "name": r.name, "offset": r.offset, "count": r.count, "stride": r.stride,
                "description": r.description, "locked_while_busy": r.locked_while_busy,
                "fields": [{"name": f.name, "lsb": f.lsb, "width": f.width, "access": f.access, "reset": f.reset,
                            "description": f.description, "enum": dict(f.enum or {})} for f in r.fields],
            } for r in self._registers],
            "windows": [{"name": w.name, "offset": w.offset, "size": w.size, "description": w.description,
                         "locked_while_busy": w.locked_while_busy} for w in self._windows],
        }

    def driver(self, read, write, *, base=0):
        """A :class:`RegisterDriver` for this map on the given bus callables."""
        return RegisterDriver(self, read, write, base=base)


def _port_shape(reg, field):
    shape = unsigned(field.width)
    return shape if not reg.is_array else data.ArrayLayout(shape, reg.count)


class CSRBlock(wiring.Component):
    """The register map's decode: registers, pulses, sticky bits and windows behind the request/response bus.

    Takes requests from :class:`hw.axil.AXILiteSlave` (``wiring.connect(m, slave.bus, csr.bus)``; the slave's
    ``addr_width`` must be ``regmap.addr_width``), one at a time (``bus.req.ready`` is low from a request
    until its response has been taken):

    * a register: answered in the next cycle. A read returns the fields' values (``rw``: the register;
      ``ro``: the ``In`` port, sampled in the cycle the request is taken; ``w1c``: the sticky bits;
      ``w1p`` and bits outside the fields: 0). A write updates ``rw`` fields (only the bytes whose
      ``wstrb`` bit is set; the new value is on the port from the next cycle), pulses ``w1p`` bits written
      1 (high for exactly the next cycle, strobes honoured) and clears ``w1c`` bits written 1; ``ro``
      fields ignore writes. A write to a ``locked_while_busy`` register while ``lock`` is high changes
      nothing and answers SLVERR.
    * a window: the request (word offset within the window, write flag, data, strobes) is forwarded on
      the window's interface in the next cycle and held until taken; the window's response, whenever it
      comes, is passed back (its ``error`` becomes SLVERR). A write to a ``locked_while_busy`` window while
      ``lock`` is high is not forwarded and answers SLVERR in the next cycle.
    * anything else (a hole in the map): SLVERR in the next cycle, read data 0, no effect.

    ``w1c`` bits: a 1 on ``<reg>_<field>_set`` sets the bit at the next clock edge; a clear by write and a
    set of the same bit in the same cycle leave it set (no event is lost).

    Latency: a register's (or a refused or unmapped access's) response is on ``bus.resp`` in the cycle
    after the request's transfer; a window's request is on the window's port in the cycle after the
    transfer, and its response on ``bus.resp`` in the cycle after the window's response transfer.
    Throughput: one register access per 2 cycles. Back-pressure on ``bus.resp`` or on a window's ``req``
    holds the access; nothing is lost or repeated. Every output is a register or a function of registers
    only (no combinational path from any input to any output).

    Parameters
    ----------
    regmap : RegisterMap

    Members
    -------
    bus : In(bus_signature(addr_width=regmap.addr_width - 2))
        Requests from the AXI4-Lite slave and their responses.
    lock : In(1)
        High while the core runs: refuses writes to ``locked_while_busy`` registers and windows (ignored
        when there are none).
    <reg>_<field> : Out(shape) for ``rw`` (the register, reset value from the map), ``w1p`` (the
        pulses) and ``w1c`` (the sticky bits); In(shape) for ``ro`` (the value to read). ``shape`` is
        ``unsigned(width)`` for a single register and ``ArrayLayout(unsigned(width), count)`` for an
        array (element ``i`` is register ``i``).
    <reg>_<field>_set : In(shape)
        ``w1c`` fields only: bits to set.
    <window> : Out(bus_signature(addr_width=log2(size / 4)))
        One per window: its requests (``addr`` is the word offset within the window) and responses.
    """

    def __init__(self, *, regmap):
        if not isinstance(regmap, RegisterMap):
            raise TypeError(f"Register map must be a RegisterMap, not {regmap!r}")
        self._regmap = regmap
        members = {"bus": In(bus_signature(addr_width=regmap.addr_width - 2)), "lock": In(1)}
        for reg in regmap.registers:
            for f in reg.fields:
                shape = _port_shape(reg, f)
                port = f"{reg.name}_{f.name}"
                if f.access == "ro":
                    members[port] = In(shape)
                elif f.access == "w1p":
                    members[port] = Out(shape)
                else:
                    init = f.reset if not reg.is_array else [f.reset] * reg.count
                    members[port] = Out(shape, init=init)
                if f.access == "w1c":
                    members[f"{port}_set"] = In(shape)
                if f.access == "rwh":
                    members[f"{port}_we"] = In(reg.elements)
                    members[f"{port}_wdata"] = In(shape)
                    members[f"{port}_written"] = Out(reg.elements)
        for win in regmap.windows:
            members[win.name] = Out(bus_signature(addr_width=win.addr_width))
        super().__init__(members)

    regmap = property(lambda self: self._regmap)
    addr_width = property(lambda self: self._regmap.addr_width)

    def elaborate(self, platform):
        m = Module()
        req, resp = self.bus.req, self.bus.resp
        addr, wdata = req.payload.addr, req.payload.wdata
        busy = Signal()                               # a request is being served
        m.d.comb += req.ready.eq(~busy)
        take = req.valid & ~busy
        writing = take & req.payload.write
        strobe_bits = Signal(32)                      # wstrb widened to one bit per data bit
        m.d.comb += strobe_bits.eq(Cat(req.payload.wstrb[b].replicate(8) for b in range(4)))
        lock = self.lock

        hits, reads, errors = [], [], []
        for reg in self._regmap.registers:
            refused = lock if reg.locked_while_busy else Const(0)
            for i, address in enumerate(reg.addresses):
                hit = Signal(name=f"hit_{reg.name}" + (f"_{i}" if reg.is_array else ""))
                m.d.comb += hit.eq(addr == address // 4)
                hits.append(hit)
                errors.append(hit & req.payload.write & refused)
                update = Signal(name=f"wr_{reg.name}" + (f"_{i}" if reg.is_array else ""))
                m.d.comb += update.eq(writing & hit & ~refused)
                value = Const(0, 32)
                for f in reg.fields:
                    port = getattr(self, f"{reg.name}_{f.name}")
                    port = port[i] if reg.is_array else port
                    bits = wdata[f.lsb:f.lsb + f.width]
                    keep = strobe_bits[f.lsb:f.lsb + f.width]
                    ones = Mux(update, bits & keep, 0)       # bits written 1 (w1p, w1c)
                    if f.access in ("rw", "rwh"):
                        if f.access == "rwh":
                            we = getattr(self, f"{reg.name}_{f.name}_we")[i]
                            hw_data = getattr(self, f"{reg.name}_{f.name}_wdata")
                            hw_data = hw_data[i] if reg.is_array else hw_data
                            with m.If(we):
                                m.d.sync += port.eq(hw_data)
                            m.d.sync += getattr(self, f"{reg.name}_{f.name}_written")[i].eq(update)
                        with m.If(update):
                            m.d.sync += port.eq((port & ~keep) | (bits & keep))
                        value = value | (Value.cast(port) << f.lsb)
                    elif f.access == "ro":
                        value = value | (Value.cast(port) << f.lsb)
                    elif f.access == "w1p":
                        m.d.sync += port.eq(ones)
                    else:
                        setter = getattr(self, f"{reg.name}_{f.name}_set")
                        setter = setter[i] if reg.is_array else setter
                        m.d.sync += port.eq((port & ~ones) | setter)
                        value = value | (Value.cast(port) << f.lsb)
                reads.append(Mux(hit, value, 0))

        forwarded = []
        for win in self._regmap.windows:
            port = getattr(self, win.name)
            shift = win.addr_width
            base = win.offset // 4 >> shift
            hit = Signal(name=f"hit_{win.name}")
            m.d.comb += hit.eq(addr[shift:] == base if shift < len(addr) else 1)
            hits.append(hit)
            refused = (lock & req.payload.write) if win.locked_while_busy else Const(0)
            errors.append(hit & refused)
            forward = Signal(name=f"fwd_{win.name}")
            m.d.comb += forward.eq(hit & ~refused)
            forwarded.append(forward)
            waiting = Signal(name=f"wait_{win.name}")
            m.d.comb += port.resp.ready.eq(waiting)
            with m.If(take & forward):
                m.d.sync += [port.req.valid.eq(1), port.req.payload.addr.eq(addr[:shift]),
                             port.req.payload.write.eq(req.payload.write), port.req.payload.wdata.eq(wdata),
                             port.req.payload.wstrb.eq(req.payload.wstrb)]
            with m.If(port.req.valid & port.req.ready):
                m.d.sync += [port.req.valid.eq(0), waiting.eq(1)]
            with m.If(waiting & port.resp.valid):
                m.d.sync += [waiting.eq(0), resp.valid.eq(1), resp.payload.eq(port.resp.payload)]

        unmapped = ~any_of(hits)
        with m.If(take):
            m.d.sync += busy.eq(1)
            with m.If(~any_of(forwarded)):
                m.d.sync += [resp.valid.eq(1),
                             resp.payload.rdata.eq(Mux(req.payload.write | unmapped, 0, any_of(reads))),
                             resp.payload.error.eq(unmapped | any_of(errors))]
        with m.If(resp.valid & resp.ready):
            m.d.sync += [resp.valid.eq(0), busy.eq(0)]
        return m


class RegisterDriver:
    """Register access by name for a register map, over any bus with ``read(addr)`` and ``write(addr, value)``.

    Standalone (standard library only): :func:`python_driver` copies this class into the driver module it
    generates. ``read(addr)`` returns the 32-bit word at byte address ``addr``; ``write(addr, value)``
    writes one. Both may be plain functions or coroutine functions (an AXI-Lite master in a cocotb bench):
    when the bus returns awaitables, every access method below returns a coroutine to ``await``. A bus
    error (SLVERR) is whatever the callables do with it (raise, log).

    Parameters
    ----------
    regmap : RegisterMap or dict
        The map, or its :meth:`RegisterMap.to_dict` data.
    read, write : callable
        The bus.
    base : int
        Byte address of the map's offset 0 on that bus.
    """

    def __init__(self, regmap, read, write, *, base=0):
        spec = regmap.to_dict() if hasattr(regmap, "to_dict") else regmap
        self.spec = spec
        self.base = base
        self._registers = {r["name"]: r for r in spec["registers"]}
        self._windows = {w["name"]: w for w in spec["windows"]}
        self._bus_read, self._bus_write = read, write

    # -- addresses ---------------------------------------------------------------------------------------
    def _register(self, name):
        if name not in self._registers:
            raise ValueError(f"Register must be one of {sorted(self._registers)}, not {name!r}")
        return self._registers[name]

    def _field(self, reg, name):
        for field in self._register(reg)["fields"]:
            if field["name"] == name:
                return field
        names = [f["name"] for f in self._register(reg)["fields"]]
        raise ValueError(f"Field of register {reg!r} must be one of {names}, not {name!r}")

    def address(self, reg, index=None):
        """Bus address of register ``reg`` (element ``index`` of an array)."""
        r = self._register(reg)
        if r["count"] is None:
            if index is not None:
                raise ValueError(f"Index of register {reg!r} must be None (not an array), not {index!r}")
            return self.base + r["offset"]
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < r["count"]:
            raise ValueError(f"Index of register {reg!r} must be an integer from 0 to {r['count'] - 1}, "
                             f"not {index!r}")
        return self.base + r["offset"] + index * r["stride"]

    def window_address(self, win, offset):
        """Bus address of byte ``offset`` (a multiple of 4) in window ``win``."""
        if win not in self._windows:
            raise ValueError(f"Window must be one of {sorted(self._windows)}, not {win!r}")
        w = self._windows[win]
        if not isinstance(offset, int) or not 0 <= offset < w["size"] or offset % 4:
            raise ValueError(f"Offset in window {win!r} must be a multiple of 4 from 0 to {w['size'] - 4}, "
                             f"not {offset!r}")
        return self.base + w["offset"] + offset

    def encode(self, reg, field, value):
        """A field's value (an integer or a name of its enum) placed at its bits."""
        f = self._field(reg, field)
        if isinstance(value, str):
            if value not in f["enum"]:
                raise ValueError(f"Value of field {field!r} of register {reg!r} must be one of "
                                 f"{sorted(f['enum'])} or an integer, not {value!r}")
            value = f["enum"][value]
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < (1 << f["width"]):
            raise ValueError(f"Value of field {field!r} of register {reg!r} must fit in {f['width']} unsigned "
                             f"bits, not {value!r}")
        return value << f["lsb"]

    def decode(self, reg, value):
        """A register value as ``{field: value}`` (integers)."""
        return {f["name"]: (value >> f["lsb"]) & ((1 << f["width"]) - 1) for f in self._register(reg)["fields"]}

    # -- accesses ----------------------------------------------------------------------------------------
    def read(self, reg, index=None):
        """Read the whole register."""
        return self._run(self._plan_read(self.address(reg, index)))

    def write(self, reg, value, index=None):
        """Write the whole register (every field: w1p/w1c bits written 1 act)."""
        if not isinstance(value, int) or not 0 <= value < (1 << 32):
            raise ValueError(f"Value of register {reg!r} must be a 32-bit unsigned integer, not {value!r}")
        return self._run(self._plan_write(self.address(reg, index), value))

    def read_field(self, reg, field, index=None):
        """Read one field (an integer)."""
        f = self._field(reg, field)
        return self._run(self._plan_read(self.address(reg, index), lambda v: (v >> f["lsb"]) & ((1 << f["width"]) - 1)))

    def read_fields(self, reg, index=None):
        """Read the register as ``{field: value}``."""
        return self._run(self._plan_read(self.address(reg, index), lambda v: self.decode(reg, v)))

    def write_fields(self, reg, index=None, /, **values):
        """Write the named fields (integers or enum names); the register's other ``rw`` fields keep their
        value (read first, only when there are such fields); other ``w1p``/``w1c`` fields are written 0,
        so they do not act. ``ro`` fields cannot be written."""
        address = self.address(reg, index)
        word = 0
        for name, value in values.items():
            if self._field(reg, name)["access"] == "ro":
                raise ValueError(f"Field {name!r} of register {reg!r} must be writable, not read-only")
            word |= self.encode(reg, name, value)
        keep = sum(((1 << f["width"]) - 1) << f["lsb"] for f in self._register(reg)["fields"]
                   if f["access"] in ("rw", "rwh") and f["name"] not in values)
        return self._run(self._plan_modify(address, keep, word))

    def read_window(self, win, offset):
        """Read the word at byte ``offset`` of window ``win``."""
        return self._run(self._plan_read(self.window_address(win, offset)))

    def write_window(self, win, offset, value):
        """Write the word at byte ``offset`` of window ``win``."""
        if not isinstance(value, int) or not 0 <= value < (1 << 32):
            raise ValueError(f"Value written to window {win!r} must be a 32-bit unsigned integer, not {value!r}")
        return self._run(self._plan_write(self.window_address(win, offset), value))

    # -- access plans: generators of bus operations, run on a sync or an async bus ------------------------
    @staticmethod
    def _plan_read(address, convert=int):
        value = yield ("read", address)
        return convert(int(value))

    @staticmethod
    def _plan_write(address, value):
        yield ("write", address, value)

    @staticmethod
    def _plan_modify(address, keep, word):
        if keep:
            word |= int((yield ("read", address))) & keep
        yield ("write", address, word)

    def _call(self, op):
        return self._bus_read(op[1]) if op[0] == "read" else self._bus_write(op[1], op[2])

    def _run(self, plan):
        result = None
        try:
            while True:
                result = self._call(plan.send(result))
                if inspect.isawaitable(result):
                    return self._run_async(plan, result)
        except StopIteration as stop:
            return stop.value

    async def _run_async(self, plan, pending):
        result = await pending
        try:
            while True:
                result = self._call(plan.send(result))
                if inspect.isawaitable(result):
                    result = await result
        except StopIteration as stop:
            return stop.value


# -- documents ---------------------------------------------------------------------------------------------

_ACCESS_TEXT = {
    "rw": "read/write",
    "ro": "read-only: the core's value when read; writes ignored",
    "w1p": "write 1 to pulse (one cycle); reads 0",
    "w1c": "set by the core; write 1 to clear; a set in the same cycle wins",
    "rwh": "read/write; the core updates it too (a write by the host in the same cycle wins)",
}


def _cell(text):
    return " ".join(str(text).split()).replace("|", "\\|") or "-"


def _offset_text(reg):
    if not reg.is_array:
        return f"`{reg.offset:#05x}`"
    return f"`{reg.offset:#05x} + {reg.stride:#x}*i`"


def markdown(regmap):
    """The register reference of ``regmap`` as Markdown: a summary table, then each register's fields
    (bits, access, reset, description, enum values), the windows and the access kinds."""
    if not isinstance(regmap, RegisterMap):
        raise TypeError(f"Register map must be a RegisterMap, not {regmap!r}")
    lines = [f"# Register map `{regmap.name}`", ""]
    if regmap.description:
        lines += [regmap.description, ""]
    lines += [
        f"32-bit registers at byte offsets (multiples of 4) from the base address; {regmap.addr_width} address "
        f"bits ({1 << regmap.addr_width} bytes) decoded. Byte strobes are honoured by `rw` fields. An address "
        "that hits no register or window answers SLVERR. *Locked* registers and windows refuse writes "
        "(SLVERR, no effect) while the core is busy. Bits outside every field read 0.",
        "",
        "## Summary",
        "",
        "| Offset | Name | Count | Reset | Locked | Description |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    items = sorted([(r.offset, 0, r) for r in regmap.registers] + [(w.offset, 1, w) for w in regmap.windows],
                   key=lambda t: t[:2])
    for _, kind, item in items:
        locked = "yes" if item.locked_while_busy else ""
        if kind == 0:
            count = str(item.count) if item.is_array else ""
            lines.append(f"| {_offset_text(item)} | [`{item.name}`](#{item.name}) | {count} | `{item.reset:#010x}` "
                         f"| {locked} | {_cell(item.description)} |")
        else:
            lines.append(f"| `{item.offset:#05x}..{item.offset + item.size - 1:#05x}` | [`{item.name}`](#{item.name}) "
                         f"| window, {item.size} bytes | - | {locked} | {_cell(item.description)} |")
    lines += ["", "## Registers", ""]
    for reg in sorted(regmap.registers, key=lambda r: r.offset):
        lines += [f"### {reg.name}", ""]
        where = f"Offset `{reg.offset:#05x}`"
        if reg.is_array:
            where = (f"Array of {reg.count}: element `i` (0..{reg.count - 1}) at offset "
                     f"`{reg.offset:#05x} + {reg.stride:#x}*i`")
        lines.append(f"{where}, reset `{reg.reset:#010x}`." + (" Locked while busy." if reg.locked_while_busy else ""))
        lines.append("")
        if reg.description:
            lines += [reg.description, ""]
        lines += ["| Bits | Field | Access | Reset | Description |", "| --- | --- | --- | --- | --- |"]
        for f in sorted(reg.fields, key=lambda f: -f.lsb):
            text = " ".join(f.description.split())
            if f.enum:
                values = ", ".join(f"`{k}` = {v}" for k, v in f.enum.items())
                text = f"{text} Values: {values}." if text else f"Values: {values}."
            reset = "-" if f.access == "ro" else f"`{f.reset:#x}`"
            lines.append(f"| `[{f.bits}]` | `{f.name}` | {f.access} | {reset} | {_cell(text)} |")
        lines.append("")
    if regmap.windows:
        lines += ["## Windows", "", "| Offset | Size (bytes) | Name | Locked | Description |",
                  "| --- | --- | --- | --- | --- |"]
        for w in sorted(regmap.windows, key=lambda w: w.offset):
            lines.append(f"| `{w.offset:#05x}..{w.offset + w.size - 1:#05x}` | {w.size} "
                         f"| <a id=\"{w.name}\"></a>`{w.name}` | {'yes' if w.locked_while_busy else ''} "
                         f"| {_cell(w.description)} |")
        lines += ["", "A window forwards each word access to its target, which may take any number of cycles "
                  "and may answer SLVERR.", ""]
    lines += ["## Access kinds", "", "| Access | Meaning |", "| --- | --- |"]
    lines += [f"| {kind} | {_ACCESS_TEXT[kind]} |" for kind in ACCESS_KINDS]
    return "\n".join(lines) + "\n"


_C_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _c_comment(text):
    return " ".join(text.split()).replace("*/", "* /")


def c_header(regmap, prefix=None):
    """A C header for ``regmap``: for each register ``<P>_<REG>_OFFSET`` (a macro of the index for an
    array, with ``_COUNT`` and ``_STRIDE``) and ``_RESET``; for each field ``_SHIFT``, ``_WIDTH``,
    ``_MASK``, ``_RESET``, ``_GET(reg)``, ``_SET(val)`` and one ``<P>_<REG>_<FIELD>_<VALUE>`` per enum value;
    for each window ``_OFFSET`` and ``_SIZE``. ``prefix`` (default: the map's name) is upper-cased.

    Raises
    ------
    ValueError
        Two macros of the same name (e.g. an enum value called ``mask``).
    """
    if not isinstance(regmap, RegisterMap):
        raise TypeError(f"Register map must be a RegisterMap, not {regmap!r}")
    prefix = regmap.name if prefix is None else prefix
    if not isinstance(prefix, str) or not _C_PREFIX.match(prefix):
        raise ValueError(f"C prefix must be a C identifier, not {prefix!r}")
    prefix = prefix.upper()
    guard = f"{prefix}_REGS_H"
    out = [f"/* Register map '{regmap.name}': generated from its single source (hw/regmap.py); do not edit. */",
           f"#ifndef {guard}", f"#define {guard}", "", "#include <stdint.h>", ""]
    defined = {}

    def define(name, value, what):
        if name in defined:
            raise ValueError(f"C macro names must be unique, not {name!r} for both {defined[name]} and {what}")
        defined[name] = what
        out.append(f"#define {name} {value}")

    define(f"{prefix}_ADDR_WIDTH", f"{regmap.addr_width}u", "the address width")
    out.append("")
    for reg in sorted(regmap.registers, key=lambda r: r.offset):
        r = f"{prefix}_{reg.name.upper()}"
        what = f"register {reg.name!r}"
        out.append(f"/* {reg.name}: {_c_comment(reg.description) or 'register'}"
                   + (" (locked while busy)" if reg.locked_while_busy else "") + " */")
        if reg.is_array:
            define(f"{r}_OFFSET(i)", f"({reg.offset:#x}u + (uint32_t)(i) * {reg.stride:#x}u)", what)
            define(f"{r}_COUNT", f"{reg.count}u", what)
            define(f"{r}_STRIDE", f"{reg.stride:#x}u", what)
        else:
            define(f"{r}_OFFSET", f"{reg.offset:#x}u", what)
        define(f"{r}_RESET", f"{reg.reset:#010x}u", what)
        for f in reg.fields:
            n = f"{r}_{f.name.upper()}"
            what = f"field {f.name!r} of register {reg.name!r}"
            out.append(f"/*   [{f.bits}] {f.name} ({f.access}): {_c_comment(f.description) or 'field'} */")
            define(f"{n}_SHIFT", f"{f.lsb}u", what)
            define(f"{n}_WIDTH", f"{f.width}u", what)
            define(f"{n}_MASK", f"{f.mask:#010x}u", what)
            define(f"{n}_RESET", f"{f.reset:#x}u", what)
            define(f"{n}_GET(reg)", f"(((uint32_t)(reg) & {n}_MASK) >> {n}_SHIFT)", what)
            define(f"{n}_SET(val)", f"(((uint32_t)(val) << {n}_SHIFT) & {n}_MASK)", what)
            for key, value in (f.enum or {}).items():
                define(f"{n}_{key.upper()}", f"{value:#x}u", f"enum value {key!r} of {what}")
        out.append("")
    for win in sorted(regmap.windows, key=lambda w: w.offset):
        w = f"{prefix}_{win.name.upper()}"
        what = f"window {win.name!r}"
        out.append(f"/* {win.name}: window, {_c_comment(win.description) or 'forwarded range'}"
                   + (" (locked while busy)" if win.locked_while_busy else "") + " */")
        define(f"{w}_OFFSET", f"{win.offset:#x}u", what)
        define(f"{w}_SIZE", f"{win.size:#x}u", what)
        out.append("")
    out.append(f"#endif /* {guard} */")
    return "\n".join(out) + "\n"


def _class_name(name):
    return "".join(part.capitalize() for part in name.split("_")) + "Driver"


def python_driver(regmap):
    """Source of a standalone Python module (standard library only) with the map as data, ``MAP``, and a
    driver class ``<Name>Driver(read, write, *, base=0)``: :class:`RegisterDriver` bound to that map."""
    if not isinstance(regmap, RegisterMap):
        raise TypeError(f"Register map must be a RegisterMap, not {regmap!r}")
    cls = _class_name(regmap.name)
    return "\n".join([
        f'"""Driver of the register map {regmap.name!r}: generated from its single source (hw/regmap.py); '
        'do not edit.',
        "",
        f"Usage: ``dev = {cls}(read, write)`` with ``read(addr) -> int`` and ``write(addr, value)`` on byte",
        "addresses (plain or coroutine functions; with coroutines, await every access), then",
        "``dev.read(reg, index)``, ``dev.write(reg, value, index)``, ``dev.read_field(reg, field, index)``,",
        "``dev.write_fields(reg, index, **fields)``, ``dev.read_window(win, offset)``, ...",
        '"""',
        "",
        "import inspect",
        "",
        f'__all__ = ["MAP", "RegisterDriver", "{cls}"]',
        "",
        "MAP = " + pprint.pformat(regmap.to_dict(), width=110, sort_dicts=False),
        "",
        "",
        inspect.getsource(RegisterDriver).rstrip(),
        "",
        "",
        f"class {cls}(RegisterDriver):",
        f'    """:class:`RegisterDriver` of the map {regmap.name!r}."""',
        "",
        "    def __init__(self, read, write, *, base=0):",
        "        super().__init__(MAP, read, write, base=base)",
        "",
    ])
