"""One source for the definitions the RTL and its reference share: ``golden/`` defines them, ``hw/`` takes them
from there (an Amaranth enum lists its members, with ``golden``'s values)."""

from golden import dfxp, fp8, pdfa_schedule
from golden import pe_array as golden_pe_array
from golden import tsram as golden_tsram
from hw import config, fp32, lfsr, pdfa, pe_array, tsram


def members(enum):
    return [(member.name, member.value) for member in enum]


def test_enums():
    assert members(pe_array.Mode) == members(golden_pe_array.Mode)
    assert members(tsram.Axis) == members(golden_tsram.Axis)


def test_constants():
    assert fp32.F32_NAN == fp8.F32_NAN == 0x7FC00000
    assert lfsr.TAPS == dfxp.Lfsr.TAPS
    assert config.SUPPORTED_PRECISIONS is dfxp.PRECISIONS
    assert pe_array.PRECISION_CODES == {p: golden_pe_array.precision_code(p) for p in dfxp.PRECISIONS}
    assert pdfa.ENGINES == tuple(name.lower() for name in pdfa_schedule.ENGINES)
    assert config.LAYER_PRECISIONS is pdfa_schedule.PRECISIONS
