"""The register-map table: validation, placement, and what is generated from it (Markdown, C header, Python
driver). The RTL decode (CSRBlock) is tested in tests/test_axil.py."""

import asyncio
import importlib.util
import re
import shutil
import subprocess
import sys

import pytest

from hw.axil import RESP_OKAY
from hw.regmap import (Field, Register, RegisterDriver, RegisterMap, Window, c_header, markdown,
                       python_driver)
from verif.axil_demo import DEMO_ID, DEMO_MAP, DemoModel


def _map(*registers, windows=(), **kwargs):
    return RegisterMap(name="t", registers=registers, windows=windows, **kwargs)


# -- the table ---------------------------------------------------------------------------------------------

def test_placement():
    m = _map(Register("a", [Field("x", 0)]),
             Register("b", [Field("x", 0)], count=3),
             Register("c", [Field("x", 0)], offset=0x40),
             Register("d", [Field("x", 0)], count=2, stride=12),
             windows=[Window("w", size=64), Window("v", size=16, offset=0x200)])
    assert [r.offset for r in m.registers] == [0x0, 0x4, 0x40, 0x44]
    assert m.register("b").addresses == (0x4, 0x8, 0xC) and m.register("d").addresses == (0x44, 0x50)
    assert m.window("w").offset == 0x80 and m.window("w").addr_width == 4      # after 0x53, aligned to 64
    assert m.addr_width == 10                                                   # up to 0x20f
    assert m.address("b", 2) == 0xC and m.address("a") == 0
    assert m.locate(0xA) == (m.register("b"), 1) and m.locate(0x90) == (m.window("w"), 0x10)
    assert m.locate(0x4C) is None and m.locate(0x100) is None
    assert _map(Register("a", [Field("x", 0)]), addr_width=16).addr_width == 16
    assert m.register("a").reset == 0 and DEMO_MAP.register("ctrl").reset == 0x110
    assert DEMO_MAP.register("irq").mask("w1c") == 0x71


@pytest.mark.parametrize("make, message", [
    (lambda: _map(Register("a", [Field("x", 0)], offset=4), Register("b", [Field("x", 0)], offset=4)),
     r"Items must not overlap, not register 'a' at 0x4..0x7 and register 'b' at 0x4..0x7"),
    (lambda: _map(Register("a", [Field("x", 0)], count=4), Register("b", [Field("x", 0)], offset=8)),
     r"Items must not overlap, not register 'a'\[2\] at 0x8..0xb and register 'b' at 0x8..0xb"),
    (lambda: _map(Register("a", [Field("x", 0)], offset=0x24), windows=[Window("w", size=32, offset=0x20)]),
     r"Items must not overlap, not window 'w' at 0x20..0x3f and register 'a' at 0x24..0x27"),
    (lambda: _map(windows=[Window("w", size=64, offset=0), Window("v", size=16, offset=0x30)]),
     r"Items must not overlap, not window 'w' at 0x0..0x3f and window 'v' at 0x30..0x3f"),
    (lambda: Field("x", 30, 4), r"Field 'x' must lie within bits 31..0 of the 32-bit register, not bits 33..30"),
    (lambda: Field("x", 32), r"Field 'x' must lie within bits 31..0 of the 32-bit register, not bits 32..32"),
    (lambda: _map(Register("a", [Field("x", 0)]), Register("a", [Field("y", 0)])),
     r"Register and window names must be unique, not 'a' twice"),
    (lambda: _map(Register("a", [Field("x", 0)]), windows=[Window("a", size=4)]),
     r"Register and window names must be unique, not 'a' twice"),
    (lambda: Register("a", [Field("x", 0), Field("x", 4)]),
     r"Field names of register 'a' must be unique, not 'x' twice"),
    (lambda: Register("a", [Field("x", 0, 4), Field("y", 3, 2)]),
     r"Fields of register 'a' must not overlap, not 'x' \[3:0\] and 'y' \[4:3\]"),
    (lambda: Field("x", 0, access="wo"), r"Field 'x' access must be one of 'rw', 'ro', 'w1p', 'w1c', 'rwh', not 'wo'"),
    (lambda: Field("x", 0, 2, reset=4), r"Field 'x' reset must fit in 2 unsigned bits, not 4"),
    (lambda: Field("x", 0, access="ro", reset=1), r"Field 'x' reset must be 0 for access 'ro'"),
    (lambda: Field("x", 0, access="w1p", reset=1), r"Field 'x' reset must be 0 for access 'w1p'"),
    (lambda: Field("x", 0, 2, enum={"a": 4}), r"Field 'x' enum value 'a' must fit in 2 unsigned bits, not 4"),
    (lambda: Field("x", 0, 2, enum={"a": 1, "b": 1}),
     r"Field 'x' enum values must be distinct, not 1 for both 'a' and 'b'"),
    (lambda: Field("Ctrl", 0), r"Field name must be a lower-case identifier .* not 'Ctrl'"),
    (lambda: Field("a__b", 0), r"Field name must be a lower-case identifier .* not 'a__b'"),
    (lambda: Field("x", 0, 0), r"Field 'x' width must be at least 1, not 0"),
    (lambda: Field("x", -1), r"Field 'x' lsb must be at least 0, not -1"),
    (lambda: Register("a", []), r"Register 'a' must have at least one field, not none"),
    (lambda: Register("a", [Field("x", 0)], offset=6), r"Register 'a' offset must be a multiple of 4, not 0x6"),
    (lambda: Register("a", [Field("x", 0)], count=0), r"Register 'a' count must be at least 1, not 0"),
    (lambda: Register("a", [Field("x", 0)], count=2, stride=6), r"Register 'a' stride must be a multiple of 4, not 6"),
    (lambda: Window("w", size=48), r"Window 'w' size must be a power of two, not 48"),
    (lambda: Window("w", size=64, offset=0x20), r"Window 'w' offset must be a multiple of its size 0x40, not 0x20"),
    (lambda: _map(Register("a", [Field("x", 0)], offset=0x100), addr_width=8),
     r"Address width must be from 9 \(to hold every item, up to 0x103\) to 64, not 8"),
    (lambda: _map(Register("a_b", [Field("c", 0)]), Register("a", [Field("b_c", 0)])),
     r"Port names must be unique, not 'a_b_c' for both field 'c' of register 'a_b' and field 'b_c' of register 'a'"),
    (lambda: _map(Register("a", [Field("x", 0, access="w1c"), Field("x_set", 4)])),
     r"Port names must be unique, not 'a_x_set' for both the set strobe of field 'x' of register 'a' and field"),
    (lambda: _map(Register("addr", [Field("width", 0)])), r"Port names must not be one of .*, not 'addr_width'"),
    (lambda: _map(Register("a", [Field("x", 0)]), windows=[Window("a_x", size=4)]),
     r"Port names must be unique, not 'a_x' for window 'a_x' and field 'x' of register 'a'"),
])
def test_table_wrong(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("make, message", [
    (lambda: Field(3, 0), "Field name must be a string, not 3"),
    (lambda: Field("x", "0"), "Field 'x' lsb must be an integer, not '0'"),
    (lambda: Field("x", 0, enum=[1]), r"Field 'x' enum must be a dict of names to values, not \[1\]"),
    (lambda: Register("a", "x"), "Register 'a' fields must be a sequence of Field, not 'x'"),
    (lambda: Register("a", [("x", 0)]), r"Register 'a' fields must be Field objects, not \('x', 0\)"),
    (lambda: Register("a", [Field("x", 0)], locked_while_busy=1),
     "Register 'a' locked_while_busy must be a bool, not 1"),
    (lambda: _map("a"), "Registers must be Register objects, not 'a'"),
    (lambda: _map(windows=[4]), "Windows must be Window objects, not 4"),
])
def test_table_wrong_type(make, message):
    with pytest.raises(TypeError, match=message):
        make()


# -- Markdown ----------------------------------------------------------------------------------------------

def test_markdown():
    text = markdown(DEMO_MAP)
    assert text.startswith("# Register map `demo`\n")
    assert "| `0x004` | [`ctrl`](#ctrl) |  | `0x00000110` |  | Control |" in text
    assert "| `0x040 + 0x4*i` | [`layer_size`](#layer_size) | 4 | `0x00010001` | yes | Layer shapes |" in text
    assert "| `0x100..0x1ff` | [`mem`](#mem) | window, 256 bytes | - |  |" in text
    assert "| `[5:4]` | `mode` | rw | `0x1` | Training algorithm Values: `bp` = 0, `dfa` = 1, `pdfa` = 2. |" in text
    assert "| `[0]` | `start` | w1p | `0x0` | Start a run |" in text
    assert "| `[15:8]` | `level` | ro | - | - |" in text
    assert "Array of 3: element `i` (0..2) at offset `0x060 + 0x8*i`, reset `0x00000000`." in text
    assert "Array of 4: element `i` (0..3) at offset `0x040 + 0x4*i`, reset `0x00010001`. Locked while busy." in text
    assert "| `0x200..0x23f` | 64 | <a id=\"ext\"></a>`ext` | yes | Answered by the bench, random latency |" in text
    for kind in ("rw", "ro", "w1p", "w1c"):
        assert f"\n| {kind} | " in text
    # Every register has its section, in offset order.
    sections = re.findall(r"^### (\w+)$", text, re.M)
    assert sections == [r.name for r in sorted(DEMO_MAP.registers, key=lambda r: r.offset)]
    # Descriptions cannot break a table.
    odd = _map(Register("a", [Field("x", 0, description="a | b\nc")]))
    assert "| `[0]` | `x` | rw | `0x0` | a \\| b c |" in markdown(odd)


# -- C header ----------------------------------------------------------------------------------------------

def test_c_header_content():
    text = c_header(DEMO_MAP, "dm")
    for line in ("#ifndef DM_REGS_H", "#define DM_CTRL_OFFSET 0x4u", "#define DM_CTRL_RESET 0x00000110u",
                 "#define DM_CTRL_MODE_MASK 0x00000030u", "#define DM_CTRL_MODE_SHIFT 4u",
                 "#define DM_CTRL_MODE_PDFA 0x2u", "#define DM_LAYER_SIZE_OFFSET(i) (0x40u + (uint32_t)(i) * 0x4u)",
                 "#define DM_LAYER_SIZE_COUNT 4u", "#define DM_LANE_KICK_STRIDE 0x8u", "#define DM_MEM_OFFSET 0x100u",
                 "#define DM_MEM_SIZE 0x100u", "#define DM_ADDR_WIDTH 10u", "#define DM_IRQ_ERROR_RESET 0x4u"):
        assert f"\n{line}\n" in text, line
    assert c_header(DEMO_MAP).count("#define DEMO_") == text.count("#define DM_")


def test_c_header_wrong():
    with pytest.raises(ValueError, match="C prefix must be a C identifier, not '1x'"):
        c_header(DEMO_MAP, "1x")
    clash = _map(Register("a", [Field("x", 0, 2, enum={"mask": 1})]))
    with pytest.raises(ValueError, match="C macro names must be unique, not 'T_A_X_MASK' for both field 'x' of "
                                         "register 'a' and enum value 'mask' of field 'x' of register 'a'"):
        c_header(clash)
    with pytest.raises(TypeError, match="Register map must be a RegisterMap, not 3"):
        c_header(3)


def test_c_header_compiles(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler on PATH (cc, gcc or clang)")
    (tmp_path / "demo_regs.h").write_text(c_header(DEMO_MAP))
    checks = []
    for reg in DEMO_MAP.registers:
        r = f"DEMO_{reg.name.upper()}"
        for i, address in enumerate(reg.addresses):
            where = f"{r}_OFFSET({i})" if reg.is_array else f"{r}_OFFSET"
            checks.append(f"{where} == {address}u")
        checks.append(f"{r}_RESET == {reg.reset}u")
        for f in reg.fields:
            n = f"{r}_{f.name.upper()}"
            checks += [f"{n}_MASK == {f.mask}u", f"{n}_SHIFT == {f.lsb}u", f"{n}_WIDTH == {f.width}u",
                       f"{n}_GET(0xFFFFFFFFu) == {(1 << f.width) - 1}u", f"{n}_SET(1u) == {1 << f.lsb}u"]
            checks += [f"{n}_{k.upper()} == {v}u" for k, v in (f.enum or {}).items()]
    for win in DEMO_MAP.windows:
        checks += [f"DEMO_{win.name.upper()}_OFFSET == {win.offset}u", f"DEMO_{win.name.upper()}_SIZE == {win.size}u"]
    body = "\n".join(f'_Static_assert({c}, "{c}");' for c in checks)
    (tmp_path / "check.c").write_text(f'#include "demo_regs.h"\n#include "demo_regs.h"\n{body}\n'
                                      "int main(void) { return (int)DEMO_CTRL_MODE_GET(DEMO_CTRL_RESET) - 1; }\n")
    result = subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-pedantic", "-Werror", "-fsyntax-only", "check.c"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # A wrong expectation does fail (the check is not vacuous).
    (tmp_path / "bad.c").write_text('#include "demo_regs.h"\n_Static_assert(DEMO_CTRL_OFFSET == 8u, "x");\n')
    result = subprocess.run([cc, "-std=c11", "-fsyntax-only", "bad.c"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0


# -- Python drivers ----------------------------------------------------------------------------------------

class LoggingBus:
    """A fake bus: the demo map's model behind read/write callables, with a log of the accesses."""

    def __init__(self):
        self.model = DemoModel()
        self.log = []

    def read(self, addr):
        value, resp = self.model.read(addr)
        assert resp == RESP_OKAY, f"SLVERR reading {addr:#x}"
        self.log.append(("r", addr))
        return value

    def write(self, addr, value):
        assert self.model.write(addr, value)[1] == RESP_OKAY, f"SLVERR writing {addr:#x}"
        self.log.append(("w", addr, value))


def _exercise(drv, bus):
    """Driver calls on a sync bus and what they must do; the same for every driver class."""
    assert drv.read("id") == DEMO_ID and drv.read_field("id", "value") == DEMO_ID
    assert drv.read_fields("ctrl") == {"start": 0, "abort": 0, "mode": 1, "irq_en": 1}
    bus.log.clear()
    drv.write_fields("ctrl", mode="pdfa", start=1)
    # A read first (irq_en must be kept), then the write: irq_en kept, abort (w1p) written 0.
    assert bus.log == [("r", 0x4), ("w", 0x4, 0x121)]
    assert bus.model.pulses["ctrl", "start", 0, 0] == 1 and bus.model.pulses["ctrl", "abort", 0, 0] == 0
    assert drv.read_field("ctrl", "mode") == 2
    bus.log.clear()
    drv.write_fields("scratch", value=0xDEAD_BEEF)            # no other rw field: no read
    assert bus.log == [("w", 0x14, 0xDEAD_BEEF)]
    bus.model.set_bits("irq", "done", 0, 1)
    bus.log.clear()
    drv.write_fields("irq", done=1)                             # w1c: error bits written 0, so not cleared
    assert bus.log == [("w", 0xC, 0x1)] and drv.read_fields("irq") == {"done": 0, "error": 0b100}
    for i in range(4):
        drv.write_fields("layer_size", i, rows=10 * i, cols=i)
    assert [drv.read_fields("layer_size", i) for i in range(4)] == [{"rows": 10 * i, "cols": i} for i in range(4)]
    assert drv.address("layer_size", 3) == 0x4C and drv.address("lane_kick", 2) == 0x74
    drv.write("lane_flags", 0x5A00_0301, 1)
    assert drv.read("lane_flags", 1) == 0x5A00_0300
    drv.write_window("mem", 0x10, 0x0BAD_F00D)
    assert drv.read_window("mem", 0x10) == 0x0BAD_F00D and bus.model.mem[4] == 0x0BAD_F00D
    assert drv.decode("ctrl", 0x321) == {"start": 1, "abort": 0, "mode": 2, "irq_en": 3}
    assert drv.encode("ctrl", "mode", "dfa") == 0x10


def _exercise_errors(drv):
    with pytest.raises(ValueError, match=r"Register must be one of \[.*\], not 'nope'"):
        drv.read("nope")
    with pytest.raises(ValueError, match=r"Field of register 'ctrl' must be one of \['start', 'abort', 'mode', "
                                         r"'irq_en'\], not 'speed'"):
        drv.read_field("ctrl", "speed")
    with pytest.raises(ValueError, match="Index of register 'layer_size' must be an integer from 0 to 3, not 4"):
        drv.read("layer_size", 4)
    with pytest.raises(ValueError, match=r"Index of register 'ctrl' must be None \(not an array\), not 0"):
        drv.read("ctrl", 0)
    with pytest.raises(ValueError, match="Value of field 'mode' of register 'ctrl' must fit in 2 unsigned bits, not 4"):
        drv.write_fields("ctrl", mode=4)
    with pytest.raises(ValueError, match=r"Value of field 'mode' of register 'ctrl' must be one of \['bp', 'dfa', "
                                         r"'pdfa'\] or an integer, not 'sgd'"):
        drv.write_fields("ctrl", mode="sgd")
    with pytest.raises(ValueError, match="Field 'busy' of register 'status' must be writable, not read-only"):
        drv.write_fields("status", busy=1)
    with pytest.raises(ValueError, match="Offset in window 'ext' must be a multiple of 4 from 0 to 60, not 64"):
        drv.read_window("ext", 64)
    with pytest.raises(ValueError, match="Value of register 'scratch' must be a 32-bit unsigned integer, not -1"):
        drv.write("scratch", -1)


def test_driver_in_package():
    bus = LoggingBus()
    drv = DEMO_MAP.driver(bus.read, bus.write)
    assert isinstance(drv, RegisterDriver)
    _exercise(drv, bus)
    _exercise_errors(drv)
    assert DEMO_MAP.driver(bus.read, bus.write, base=0x1000).address("ctrl") == 0x1004


def test_driver_async_bus():
    bus = LoggingBus()

    async def read(addr):
        await asyncio.sleep(0)
        return bus.read(addr)

    async def write(addr, value):
        await asyncio.sleep(0)
        bus.write(addr, value)

    drv = RegisterDriver(DEMO_MAP, read, write)

    async def main():
        await drv.write_fields("ctrl", mode="bp", irq_en=3)
        assert await drv.read_fields("ctrl") == {"start": 0, "abort": 0, "mode": 0, "irq_en": 3}
        await drv.write_fields("layer_size", 1, cols=5)         # read-modify-write across two awaits
        assert await drv.read("layer_size", 1) == 0x0005_0001
        await drv.write_window("ext", 4, 9)
        return await drv.read_window("ext", 4)

    assert asyncio.run(main()) == 9
    assert bus.log[-5:] == [("r", 0x44), ("w", 0x44, 0x0005_0001), ("r", 0x44), ("w", 0x204, 9), ("r", 0x204)]


def _load_generated(tmp_path, regmap):
    path = tmp_path / f"{regmap.name}_driver.py"
    path.write_text(python_driver(regmap))
    spec = importlib.util.spec_from_file_location(f"{regmap.name}_driver", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path


def test_python_driver_generated(tmp_path):
    module, path = _load_generated(tmp_path, DEMO_MAP)
    assert module.MAP == DEMO_MAP.to_dict()
    bus = LoggingBus()
    drv = module.DemoDriver(bus.read, bus.write)
    _exercise(drv, bus)
    _exercise_errors(drv)
    source = path.read_text()
    assert "import hw" not in source and "from hw" not in source
    assert python_driver(DEMO_MAP) == source                    # deterministic


def test_python_driver_standalone(tmp_path):
    # The generated module runs in a bare interpreter (no project on the path) against a fake bus.
    _, path = _load_generated(tmp_path, DEMO_MAP)
    script = (
        "import demo_driver\n"
        "mem = {}\n"
        "dev = demo_driver.DemoDriver(lambda a: mem.get(a, 0), mem.__setitem__, base=0x8000)\n"
        "dev.write_fields('layer_size', 2, rows=7, cols=9)\n"
        "dev.write_window('ext', 8, 5)\n"
        "print(sorted(mem.items()), dev.read_fields('layer_size', 2))\n"
    )
    result = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
                             + script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[(32840, 589831), (33288, 5)] {'rows': 7, 'cols': 9}"


def test_python_driver_wrong():
    with pytest.raises(TypeError, match="Register map must be a RegisterMap, not None"):
        python_driver(None)
    with pytest.raises(TypeError, match="Register map must be a RegisterMap, not 'x'"):
        markdown("x")
