import random

import ml_dtypes
import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import fp8
from hw.config import apply_overrides, preset
from hw.fp32 import F32_NAN
from hw.fp8_tree import BF16MacTree, ElemFormat, FP8MacTree, Int8DotTree
from verif.runner import run_bench, simulator_status

from .sim_streams import stream_get, stream_put


def _stream(dut, items, count, *, stall=0.3, seed=0):
    """Send payload dicts on ``i`` and collect ``count`` results from ``o``, both sides stalling."""
    rng = random.Random(seed)
    got = []

    async def source(ctx):
        for item in items:
            await stream_put(ctx, dut.i, item, rng=rng, stall=stall)

    async def sink(ctx):
        while len(got) < count:
            got.append(await stream_get(ctx, dut.o, rng=rng, stall=stall))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    return got


def rtl_dots(k, dots, **kwargs):
    """Run dot products [(a (n, k), fa, sa (n,), b, fb, sb)] through an FP8MacTree; binary32 bits each."""
    items = []
    for a, fa, sa, b, fb, sb in dots:
        for i in range(len(sa)):
            items.append({"a": a[i].tolist(), "b": b[i].tolist(), "a_scale": int(sa[i]), "b_scale": int(sb[i]),
                          "a_fmt": ElemFormat[fa.upper()], "b_fmt": ElemFormat[fb.upper()],
                          "first": int(i == 0), "last": int(i == len(sa) - 1)})
    return _stream(FP8MacTree(k=k), items, len(dots), **kwargs)


def ref_dots(dots):
    return [fp8.dot(a, fa, sa, b, fb, sb) for a, fa, sa, b, fb, sb in dots]


def _random_dots(rng, k, count, finite=False, wide_scales=False):
    dots = []
    for _ in range(count):
        fa, fb = rng.choice(["e4m3", "e5m2"], 2)
        n = int(rng.integers(1, 4))
        a = rng.integers(0, 256, (n, k)).astype(np.uint8)
        b = rng.integers(0, 256, (n, k)).astype(np.uint8)
        if finite:
            for arr, f in ((a, fa), (b, fb)):
                arr[~np.isfinite(fp8.decode(arr, f))] = 0x11
        lo, hi = (0, 256) if wide_scales else (100, 160)
        dots.append((a, str(fa), rng.integers(lo, hi, n).astype(np.uint8), b, str(fb),
                     rng.integers(lo, hi, n).astype(np.uint8)))
    return dots


@pytest.mark.parametrize("k", [2, 8, 16])
def test_sim_random_codes(k):
    dots = _random_dots(np.random.default_rng(k), k, 150)
    assert rtl_dots(k, dots) == ref_dots(dots)


def test_sim_finite_wide_scales():
    # Finite codes at any scale: normal, subnormal, overflowing and vanishing results.
    dots = _random_dots(np.random.default_rng(9), 8, 300, finite=True, wide_scales=True)
    results = ref_dots(dots)
    exps = {(r >> 23) & 0xFF for r in results}
    assert 0 in exps and 0xFF in exps                       # the corners are really reached
    assert rtl_dots(8, dots, stall=0.0) == results


def test_init():
    dut = FP8MacTree(k=16)
    assert dut.k == 16 and dut.sum_width == 66 + 4 + 1
    assert BF16MacTree(k=4).k == 4 and Int8DotTree(k=4).k == 4


@pytest.mark.parametrize("cls", [FP8MacTree, BF16MacTree, Int8DotTree])
@pytest.mark.parametrize("k, exc, message", [
    (12, ValueError, "Block size K must be a power of two >= 2, not 12"),
    (1, ValueError, "Block size K must be a power of two >= 2, not 1"),
    ("8", TypeError, "Block size K must be an integer, not '8'"),
])
def test_init_wrong_k(cls, k, exc, message):
    with pytest.raises(exc, match=message):
        cls(k=k)


def test_sim_bf16_baseline():
    rng = np.random.default_rng(3)
    k, items, want = 8, [], []
    for n in range(200):
        with np.errstate(over="ignore"):
            x = (rng.normal(size=(2, k)) * 10.0 ** rng.integers(-40, 40, (2, k))).astype(np.float32)
        if n % 10 == 0:
            x[0, n % k] = np.inf
        a, b = x[0].astype(ml_dtypes.bfloat16), x[1].astype(ml_dtypes.bfloat16)
        with np.errstate(all="ignore"):
            level = list((a.astype(np.float64) * b.astype(np.float64)).astype(np.float32))
            while len(level) > 1:
                level = [np.float32(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
        want.append(F32_NAN if np.isnan(level[0]) else int(np.float32(level[0]).view(np.uint32)))
        items.append({"a": a.view(np.uint16).tolist(), "b": b.view(np.uint16).tolist(), "first": 1, "last": 1})
    assert _stream(BF16MacTree(k=k), items, len(items)) == want


def test_sim_int8_baseline():
    rng = np.random.default_rng(4)
    k, items, want = 8, [], []
    for _ in range(40):
        n = int(rng.integers(1, 4))
        a, b = rng.integers(-128, 128, (n, k)), rng.integers(-128, 128, (n, k))
        for i in range(n):
            items.append({"a": (a[i] & 0xFF).tolist(), "b": (b[i] & 0xFF).tolist(),
                          "first": int(i == 0), "last": int(i == n - 1)})
        want.append(int(np.sum(a * b)) & 0xFFFFFFFF)
    assert _stream(Int8DotTree(k=k), items, len(want)) == want


# -- cocotb bench on the generated Verilog --------------------------------------------------------------

#: The bench's tests; Icarus (about 15x slower here) leaves the exhaustive sweep to the slow runs.
ICARUS_DEFAULT = ["random_blocks", "special_values", "every_lane", "rounding_carries"]


def test_bench(simulator):
    testcase = None if simulator == "verilator" else ICARUS_DEFAULT
    result = run_bench("fp8_tree", preset("small"), simulator, testcase=testcase)
    assert result.passed and (testcase is None or result.tests == len(testcase)), \
        f"{result.failed} of {result.tests} failed (seed {result.seed}, log {result.run_dir})"


@pytest.mark.slow
def test_bench_icarus_exhaustive():
    available, reason = simulator_status("icarus")
    if not available:
        pytest.skip(reason)
    result = run_bench("fp8_tree", preset("small"), "icarus", testcase=["exhaustive_lane"])
    assert result.tests == 1 and result.passed, f"seed {result.seed}, log {result.run_dir}"


@pytest.mark.slow
@pytest.mark.parametrize("k", [16, 32])
def test_bench_wider_trees(simulator, k):
    # 16 and the default K (32): random and directed suites (the exhaustive sweep runs at K = 8, in the default
    # run; these wider trees' Verilator builds are the longest of the suite).
    config = apply_overrides(preset("small"), [f"name=small-k{k}", f"fp8.k={k}"])
    result = run_bench("fp8_tree", config, simulator, testcase=ICARUS_DEFAULT)
    assert result.tests == len(ICARUS_DEFAULT) and result.passed, f"seed {result.seed}, log {result.run_dir}"
