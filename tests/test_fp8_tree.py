import random
from dataclasses import replace

import ml_dtypes
import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from golden import fp8
from hw.config import apply_overrides, preset
from hw.fp32 import F32_NAN
from hw.fp8_tree import STAGE_DELAYS_NS, BF16MacTree, ElemFormat, FP8MacTree, Int8DotTree
from hw.fp8_tree import (_carry_save, _increment, _leading_zeros_tree, _pack, _prefix_add, _unpack, _unpacked,
                         _unpacked_add)
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


DEPTHS = range(len(STAGE_DELAYS_NS))


def _items(dots):
    items = []
    for a, fa, sa, b, fb, sb in dots:
        for i in range(len(sa)):
            items.append({"a": a[i].tolist(), "b": b[i].tolist(), "a_scale": int(sa[i]), "b_scale": int(sb[i]),
                          "a_fmt": ElemFormat[fa.upper()], "b_fmt": ElemFormat[fb.upper()],
                          "first": int(i == 0), "last": int(i == len(sa) - 1)})
    return items


def rtl_dots(k, dots, stages=0, **kwargs):
    """Run dot products [(a (n, k), fa, sa (n,), b, fb, sb)] through an FP8MacTree; binary32 bits each."""
    return _stream(FP8MacTree(k=k, stages=stages), _items(dots), len(dots), **kwargs)


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


@pytest.mark.parametrize("k, stages", [(2, 0), (8, 0), (16, 0), (2, DEPTHS[-1]), (16, DEPTHS[-1])])
def test_sim_random_codes(k, stages):
    dots = _random_dots(np.random.default_rng(k), k, 150)
    assert rtl_dots(k, dots, stages) == ref_dots(dots)


@pytest.mark.parametrize("stages", DEPTHS)
def test_sim_random_codes_depth(stages):
    # Every depth, random stalls on both sides.
    dots = _random_dots(np.random.default_rng(100 + stages), 8, 60)
    assert rtl_dots(8, dots, stages, seed=stages) == ref_dots(dots)


@pytest.mark.parametrize("stages", DEPTHS)
def test_sim_finite_wide_scales(stages):
    # Finite codes at any scale: normal, subnormal, overflowing and vanishing results.
    dots = _random_dots(np.random.default_rng(9), 8, 150, finite=True, wide_scales=True)
    results = ref_dots(dots)
    exps = {(r >> 23) & 0xFF for r in results}
    assert 0 in exps and 0xFF in exps                       # the corners are really reached
    assert rtl_dots(8, dots, stages, stall=0.0) == results


@pytest.mark.parametrize("stages", DEPTHS)
def test_sim_latency_throughput(stages):
    # Cycle-exact: with ``o`` always ready, one block pair is taken every cycle and each result appears
    # ``latency`` edges after the edge that took its last block pair.
    dut = FP8MacTree(k=4, stages=stages)
    counts = [1, 2, 1, 3, 1, 1, 4, 2]
    dots = []
    rng = np.random.default_rng(8)
    for n in counts:
        a = rng.integers(0, 256, (n, 4)).astype(np.uint8)
        b = rng.integers(0, 256, (n, 4)).astype(np.uint8)
        dots.append((a, "e4m3", np.full(n, 127, np.uint8), b, "e5m2", np.full(n, 120, np.uint8)))
    items = _items(dots)
    taken, results = [], []

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        cycle, sent = 0, 0
        while len(results) < len(dots):
            if sent < len(items):
                ctx.set(dut.i.payload, items[sent])
            ctx.set(dut.i.valid, sent < len(items))
            _, _, i_valid, i_ready, o_valid, o_payload = await ctx.tick().sample(
                dut.i.valid, dut.i.ready, dut.o.valid, dut.o.payload)
            if i_valid and i_ready:
                taken.append((cycle, items[sent]["last"]))
                sent += 1
            if o_valid:
                results.append((cycle, o_payload))
            cycle += 1
            assert cycle < 200

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert [c for c, _ in taken] == list(range(len(items)))           # one block pair per cycle
    # A sample at edge c sees what edge c - 1 loaded: ``o.valid`` set by the edge `latency` after the one that
    # took the last block pair.
    last_edges = [c for c, last in taken if last]
    assert [c for c, _ in results] == [c + dut.latency + 1 for c in last_edges]
    assert [v for _, v in results] == ref_dots(dots)


def rtl_add(pairs):
    """binary32 sums of (a, b) bit pairs by the accumulator's unpacked adder (fields unpacked and packed
    around it)."""
    m = Module()
    a, b, s = Signal(32), Signal(32), Signal(32)
    ua, ub, us = Signal(_unpacked), Signal(_unpacked), Signal(_unpacked)
    m.d.comb += [ua.eq(_unpack(a)), ub.eq(_unpack(b)), us.eq(_unpacked_add(m, ua, ub)), s.eq(_pack(us))]
    got = []

    async def testbench(ctx):
        for x, y in pairs:
            ctx.set(a, x)
            ctx.set(b, y)
            got.append(ctx.get(s))

    sim = Simulator(m)
    sim.add_testbench(testbench)
    sim.run()
    return got


def ref_add(pairs):
    x = np.array([p[0] for p in pairs], dtype=np.uint32).view(np.float32)
    y = np.array([p[1] for p in pairs], dtype=np.uint32).view(np.float32)
    with np.errstate(all="ignore"):
        s = x + y
    bits = s.view(np.uint32).copy()
    bits[np.isnan(s)] = F32_NAN
    return bits.tolist()


def _hard_pairs(rng, n):
    """``n`` binary32 bit pairs biased to the adder's hard cases: equal and near exponents (its close path),
    opposite signs, cancellations to zero and to subnormals, subnormals, both ends of the exponent range,
    significands with long runs of ones or zeros (carries into the exponent), exact rounding ties, and the
    special values."""
    bits = rng.integers(0, 2**32, (2, n), dtype=np.uint64).astype(np.int64)
    exp_a = np.select([rng.random(n) < 0.25, rng.random(n) < 0.2], [rng.integers(0, 4, n), rng.integers(250, 256, n)],
                      rng.integers(0, 256, n))
    step = rng.integers(0, 5, n)
    delta = np.select([step == 0, step == 1, step == 2, step == 3],
                      [0, rng.choice([-1, 1], n), rng.integers(-3, 4, n), rng.integers(-30, 31, n)],
                      rng.integers(-255, 256, n))
    exp_b = np.clip(exp_a + delta, 0, 255)
    a = (bits[0] & 0x807FFFFF) | (exp_a << 23)
    b = (bits[1] & 0x807FFFFF) | (exp_b << 23)
    # Significands of all ones or with cleared low bits: carries, and ties of the rounding.
    ones = rng.random(n) < 0.15
    a = np.where(ones, a | 0x7FFFFF, a)
    cleared = rng.random(n) < 0.2
    b = np.where(cleared, b & ~((1 << rng.integers(0, 24, n)) - 1), b)
    # Half a unit in the last place of a (and more, and less): exact ties in both directions.
    tie = rng.random(n) < 0.15
    half = (np.clip(exp_a - 24, 0, 255) << 23) | rng.choice([0, 0, 1, 0x7FFFFF], n)
    b = np.where(tie & (exp_a >= 25) & (exp_a < 255), (b & 0x80000000) | half, b)
    # Opposite signs half the time; b = -a give or take a few units: cancellation.
    opposite = rng.random(n) < 0.5
    b = np.where(opposite, (b & 0x7FFFFFFF) | (~a & 0x80000000), b)
    near = rng.random(n) < 0.15
    b = np.where(near, ((a ^ 0x80000000) + rng.integers(-3, 4, n)) & 0xFFFFFFFF, b)
    swap = rng.random(n) < 0.5
    pairs = list(zip(np.where(swap, b, a).tolist(), np.where(swap, a, b).tolist()))
    specials = [0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F7FFFFF, 0xFF7FFFFF, 1,
                0x80000001, 0x007FFFFF, 0x807FFFFF, 0x00800000, 0x80800000, 0x3F800000, 0xBF800000, 0x7F000000,
                0x00FFFFFF]
    return pairs + [(x, y) for x in specials for y in specials]


def _check_hard_coverage(pairs, sums):
    """The hard cases are really reached: cancellations to zero and to a subnormal, overflows of finite
    operands, deep cancellations (the close path), roundings that carry into the exponent, exact ties."""
    def fields(x):
        return (x >> 23) & 0xFF, x & 0x7FFFFF

    counts = dict.fromkeys(["zero", "subnormal", "overflow", "deep", "carry", "tie"], 0)
    for (x, y), s in zip(pairs, sums):
        (ex, fx), (ey, fy), (es, fs) = fields(x), fields(y), fields(s)
        if ex == 0xFF or ey == 0xFF:
            continue
        if es != 0xFF and abs(ex - ey) < 29:
            # Exact in binary64: a tie lies halfway between the sum and its neighbour towards it.
            exact = float(fp8.bits_to_f32(x)) + float(fp8.bits_to_f32(y))
            rounded = float(fp8.bits_to_f32(s))
            toward = float(np.nextafter(np.float32(rounded), np.float32(np.inf if exact > rounded else -np.inf)))
            counts["tie"] += exact != rounded and exact - rounded == toward - exact
        counts["zero"] += (fx | fy | ex | ey) != 0 and s & 0x7FFFFFFF == 0
        counts["subnormal"] += max(ex, ey) > 0 and es == 0 and fs != 0
        counts["overflow"] += es == 0xFF
        counts["deep"] += 0 < es <= max(ex, ey) - 2 and (x ^ y) >> 31
        counts["carry"] += es == max(ex, ey) + 1 and fs == 0 and not (x ^ y) >> 31
    assert min(counts.values()) >= 10, counts


def test_sim_unpacked_add():
    # The accumulator's adder alone, bit-exact with golden.fp8.f32_add on pairs biased to its hard cases.
    pairs = _hard_pairs(np.random.default_rng(11), 3000)
    want = [fp8.f32_add(x, y) for x, y in pairs]
    _check_hard_coverage(pairs, want)
    assert rtl_add(pairs) == want


@pytest.mark.slow
def test_sim_unpacked_add_sweep():
    pairs = _hard_pairs(np.random.default_rng(12), 100_000)
    assert rtl_add(pairs) == ref_add(pairs)


@pytest.mark.parametrize("width", [1, 2, 25, 72])
def test_sim_increment(width):
    m = Module()
    value, carry_in = Signal(width), Signal()
    out = _increment(m, value, carry_in, "inc")
    rng = random.Random(width)
    cases = [(0, 1), ((1 << width) - 1, 1), ((1 << width) - 1, 0)] + \
        [(((1 << rng.randrange(width + 1)) - 1) ^ (rng.getrandbits(width) << rng.randrange(width + 1)) % (1 << width),
          rng.getrandbits(1)) for _ in range(200)]
    got = []

    async def testbench(ctx):
        for x, c in cases:
            ctx.set(value, x)
            ctx.set(carry_in, c)
            got.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(testbench)
    sim.run()
    assert got == [(x + c) % (1 << width) for x, c in cases]


@pytest.mark.parametrize("width, carry", [(1, False), (2, True), (29, True), (70, False)])
def test_sim_prefix_add(width, carry):
    m = Module()
    x, y, c = Signal(width), Signal(width), Signal()
    out = _prefix_add(m, x, y, "add", carry_in=c if carry else None)
    rng = random.Random(width)
    top = (1 << width) - 1
    cases = [(0, 0, 1), (top, 1, 0), (top, 0, 1), (top, top, 1)] + \
        [(rng.getrandbits(width), rng.getrandbits(width), rng.getrandbits(1)) for _ in range(150)] + \
        [(v, (top ^ v) >> rng.randrange(width), 1) for v in (rng.getrandbits(width) for _ in range(50))]
    got = []

    async def testbench(ctx):
        for a, b, cin in cases:
            ctx.set(x, a)
            ctx.set(y, b)
            ctx.set(c, cin)
            got.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(testbench)
    sim.run()
    assert got == [(a + b + (cin if carry else 0)) & top for a, b, cin in cases]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 33])
def test_sim_carry_save(count):
    width = 12
    m = Module()
    words = [Signal(width, name=f"w{i}") for i in range(count)]
    pair = _carry_save(m, words, width, "cs")
    total = Signal(width)
    m.d.comb += total.eq(sum(pair[1:], pair[0]))
    rng = random.Random(count)
    cases = [[(1 << width) - 1] * count] + [[rng.getrandbits(width) for _ in range(count)] for _ in range(100)]
    got = []

    async def testbench(ctx):
        for values in cases:
            for word, x in zip(words, values):
                ctx.set(word, x)
            got.append(ctx.get(total))

    sim = Simulator(m)
    sim.add_testbench(testbench)
    sim.run()
    assert len(pair) == min(count, 2) and got == [sum(values) % (1 << width) for values in cases]


@pytest.mark.parametrize("width", [1, 8, 27, 71])
def test_sim_leading_zeros_tree(width):
    m = Module()
    value = Signal(width)
    count = _leading_zeros_tree(m, value, "lz")
    rng = random.Random(width)
    values = [0, (1 << width) - 1] + [1 << i for i in range(width)] + \
        [rng.getrandbits(width) >> rng.randrange(width) for _ in range(100)]
    got = []

    async def testbench(ctx):
        for x in values:
            ctx.set(value, x)
            got.append(ctx.get(count))

    sim = Simulator(m)
    sim.add_testbench(testbench)
    sim.run()
    assert got == [width - x.bit_length() for x in values]


def test_init():
    dut = FP8MacTree(k=16)
    assert dut.k == 16 and dut.sum_width == 66 + 4 + 1 and dut.stages == 0 and dut.latency == 3
    deep = FP8MacTree(k=16, stages=DEPTHS[-1])
    assert deep.stages == DEPTHS[-1] and deep.latency == 3 + DEPTHS[-1]
    assert BF16MacTree(k=4).k == 4 and Int8DotTree(k=4).k == 4


@pytest.mark.parametrize("stages, exc, message", [
    ("1", TypeError, "Stages must be an integer, not '1'"),
    (True, TypeError, "Stages must be an integer, not True"),
    (-1, ValueError, f"Stages must be from 0 to {DEPTHS[-1]}, not -1"),
    (DEPTHS[-1] + 1, ValueError, f"Stages must be from 0 to {DEPTHS[-1]}, not {DEPTHS[-1] + 1}"),
])
def test_init_wrong_stages(stages, exc, message):
    with pytest.raises(exc, match=message):
        FP8MacTree(stages=stages)


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
ICARUS_DEFAULT = ["random_blocks", "special_values", "every_lane", "rounding_carries", "accumulator_paths"]


def test_bench(simulator):
    testcase = None if simulator == "verilator" else ICARUS_DEFAULT
    result = run_bench("fp8_tree", preset("small"), simulator, testcase=testcase)
    assert result.passed and (testcase is None or result.tests == len(testcase)), \
        f"{result.failed} of {result.tests} failed (seed {result.seed}, log {result.run_dir})"


def test_bench_deepest(simulator):
    # The deepest pipeline: the same suites (the exhaustive sweep on Verilator only, as at the default depth).
    testcase = None if simulator == "verilator" else ICARUS_DEFAULT
    config = replace(apply_overrides(preset("small"), [f"pipeline.fp8_tree={DEPTHS[-1]}"]), name="small-deep")
    result = run_bench("fp8_tree", config, simulator, testcase=testcase)
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
