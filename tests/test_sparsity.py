import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import sparsity
from hw.row_skip import RowSkipper
from hw.slice_skip import SliceSkipPE
from hw.zero_skip import ZeroSkip
from hw.config import preset
from hw.zvc import ZVCDecoder, ZVCEncoder
from verif.runner import run_bench

from .sim_streams import stream_get, stream_put


# -- golden ---------------------------------------------------------------------------------------------

def test_zvc_round_trip_and_format():
    rng = np.random.default_rng(0)
    for n, width in ((16, 16), (37, 8), (5, 16), (64, 4)):
        for s in (0.0, 0.5, 0.9, 1.0):
            v = rng.integers(1, 1 << width, n) * (rng.random(n) >= s)
            words = sparsity.zvc_encode(v, width)
            assert len(words) == sparsity.zvc_words(v, width) == -(-n // width) + np.count_nonzero(v)
            assert sparsity.zvc_decode(words, n, width) == list(v)
    assert sparsity.zvc_encode([0, 7, 0, 0, 9], 8) == [0b10010, 7, 9]
    assert sparsity.zvc_encode([5] * 10, 8) == [0xFF, 0x03] + [5] * 10


@pytest.mark.parametrize("words, message", [
    ([0b100], "ZVC mask has bits set beyond element 1"),
    ([0b01, 3, 4], "does not match its mask"),
])
def test_zvc_decode_wrong(words, message):
    with pytest.raises(ValueError, match=message):
        sparsity.zvc_decode(words, 2, 8)


def test_zero_skip_beats():
    beats = sparsity.zero_skip_beats([[0, 3, 0, 5, 6, 0, 0, 7, 1], [0, 0], [2]], 2)
    assert beats == [([(3, 1), (5, 3)], False), ([(6, 4), (7, 7)], False), ([(1, 8)], True),
                     ([], True), ([(2, 0)], True)]
    assert sparsity.dense_cycles([[0] * 9, [0] * 2], 2) == 5 + 1
    # 1 non-zero in 64 elements read 16 per cycle: input-bound, 4 cycles.
    assert sparsity.zero_skip_ideal_cycles([[1] + [0] * 63], 4, 16) == 4


def test_beats_and_mask_words():
    assert sparsity.beats([1, 2, 3], 2) == [[1, 2], [3, 0]] and sparsity.beats([], 3) == [[0, 0, 0]]
    assert sparsity.mask_words([1, 0, 1, 1, 0], 2) == [0b01, 0b11, 0b00] and sparsity.mask_words([], 4) == [0]


def test_drelu_rows():
    pre = np.array([[-1.0, 0.0, 2.5, 1e-9]])
    assert sparsity.drelu_mask(pre).tolist() == [[0, 0, 1, 1]]
    assert sparsity.ep_rows([0, 1, 1, 0, 1]) == [1, 2, 4]


def brute_needed(v, bits):
    """Slices needed, by trying every (low, top) window on the exact value."""
    total = bits // 4
    if v == 0:
        return 0
    best = total
    for low in range(total):
        for top in range(low + 1, total + 1):
            # Slices low..top-1 of the pattern, top one signed: exact when it reproduces v.
            pattern = v & ((1 << bits) - 1)
            value = 0
            for k in range(low, top):
                sl = (pattern >> (4 * k)) & 0xF
                if k == top - 1 and sl >= 8:
                    sl -= 16
                value += sl << (4 * k)
            if value == v:
                best = min(best, top - low)
    return best


@pytest.mark.parametrize("bits", [4, 8, 12, 16])
def test_needed_slices_exhaustive_or_random(bits):
    rng = random.Random(bits)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    values = list(range(lo, hi + 1)) if bits <= 8 else [rng.randint(lo, hi) for _ in range(3000)] + [lo, hi, 0, -1]
    got = sparsity.needed_slices(values, bits)
    assert [int(g) for g in got] == [brute_needed(v, bits) for v in values]


def test_slice_products():
    dense, skipped = sparsity.slice_products([1, -1, 0, 256], [3, 0, 7, -300], 16, 16)
    assert dense == 4 * 16
    assert skipped == 1 * 1 + 0 + 0 + 1 * 3


# -- zero-skip unit in amaranth.sim -----------------------------------------------------------------------

def rtl_zero_skip(dut, vectors, weights, *, window, stall=0.3, seed=0):
    rng = random.Random(seed)
    beats = []
    total = len(sparsity.zero_skip_beats(vectors, dut._slots))

    async def writer(ctx):
        for addr, w in enumerate(weights):
            await stream_put(ctx, dut.w, {"addr": addr, "data": int(w)})
        for vector in vectors:
            chunks = sparsity.beats(vector, window)
            for k, chunk in enumerate(chunks):
                await stream_put(ctx, dut.i, {"values": chunk, "last": k == len(chunks) - 1},
                                 rng=rng, stall=stall)

    async def reader(ctx):
        await ctx.tick().repeat(len(weights) + 2)
        while len(beats) < total:
            beat = await stream_get(ctx, dut.o, rng=rng, stall=stall)
            beats.append(([(int(s.value), int(s.index), int(s.weight)) for s in beat.slots if s.valid],
                          bool(beat.last)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(writer, background=True)
    sim.add_testbench(reader)
    sim.run()
    return beats


@pytest.mark.parametrize("window, slots", [(8, 4), (4, 4), (6, 1), (16, 3)])
def test_sim_zero_skip(window, slots):
    rng = np.random.default_rng(window * 10 + slots)
    depth = 40
    weights = rng.integers(-(1 << 11), 1 << 11, depth)
    vectors = []
    for s in (0.0, 0.3, 0.6, 0.9, 1.0):
        for _ in range(3):
            length = int(rng.integers(1, depth + 1))
            v = rng.integers(-(1 << 11), 1 << 11, length) * (rng.random(length) >= s)
            vectors.append(v)
    dut = ZeroSkip(window=window, slots=slots, width=12, weight_width=12, depth=depth)
    got = rtl_zero_skip(dut, vectors, weights, window=window)
    want = sparsity.zero_skip_beats(vectors, slots)
    assert [([(v, i) for v, i, _ in pairs], last) for pairs, last in got] == want
    assert all(w == weights[i] for pairs, _ in got for _, i, w in pairs)
    # The dot products from the slots equal the dense ones.
    dots, acc = [], 0
    for pairs, last in got:
        acc += sum(v * w for v, _, w in pairs)
        if last:
            dots.append(acc)
            acc = 0
    assert dots == [int(np.dot(v, weights[:len(v)])) for v in vectors]


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(window=2, slots=4), ValueError, "Window must be at least the slot count \\(4\\), not 2"),
    (dict(slots=0), ValueError, "Slot count must be at least 1, not 0"),
    (dict(depth="8"), TypeError, "Depth must be an integer, not '8'"),
])
def test_init_wrong(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        ZeroSkip(**kwargs)


# -- ZVC encoder and decoder in amaranth.sim ----------------------------------------------------------------

def rtl_zvc(n, width, vectors, *, stall=0.3, seed=0):
    """Encode ``vectors``, then decode the records; returns (records, decoded vectors, decoder error)."""
    rng = random.Random(seed)
    enc, dec = ZVCEncoder(n=n, width=width), ZVCDecoder(n=n, width=width)
    records, current = [], []

    async def source(ctx):
        for v in vectors:
            await stream_put(ctx, enc.i, [int(x) for x in v], rng=rng, stall=stall)

    async def encoded(ctx):
        while len(records) < len(vectors):
            item = await stream_get(ctx, enc.o, rng=rng, stall=stall)
            current.append(int(item.word))
            if item.last:
                records.append(list(current))
                current.clear()

    sim = Simulator(enc)
    sim.add_clock(1e-6)
    sim.add_testbench(source, background=True)
    sim.add_testbench(encoded)
    sim.run()

    decoded = []
    error = []

    async def words(ctx):
        for record in records:
            for k, word in enumerate(record):
                await stream_put(ctx, dec.i, {"word": word, "last": k == len(record) - 1}, rng=rng, stall=stall)

    async def sink(ctx):
        while len(decoded) < len(records):
            decoded.append([int(x) for x in await stream_get(ctx, dec.o, rng=rng, stall=stall)])
        error.append(ctx.get(dec.error))

    sim = Simulator(dec)
    sim.add_clock(1e-6)
    sim.add_testbench(words, background=True)
    sim.add_testbench(sink)
    sim.run()
    return records, decoded, error[0]


@pytest.mark.parametrize("n, width", [(16, 16), (12, 8), (5, 4), (1, 8)])
def test_sim_zvc_round_trip(n, width):
    rng = np.random.default_rng(n + width)
    vectors = [rng.integers(1, 1 << width, n) * (rng.random(n) >= s)
               for s in (0.0, 0.25, 0.5, 0.75, 0.9, 1.0) for _ in range(4)]
    records, decoded, error = rtl_zvc(n, width, vectors)
    assert records == [sparsity.zvc_encode(v, width) for v in vectors]
    assert decoded == [list(map(int, v)) for v in vectors]
    assert not error


def test_sim_zvc_decoder_flags_a_bad_record():
    dec = ZVCDecoder(n=4, width=8)
    seen = []

    async def bench(ctx):
        await stream_put(ctx, dec.i, {"word": 0b0011, "last": 0})
        await stream_put(ctx, dec.i, {"word": 5, "last": 1})        # the mask promised two words
        await ctx.tick()
        seen.append(ctx.get(dec.error))

    sim = Simulator(dec)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [1]


# -- cocotb benches on the generated Verilog --------------------------------------------------------------

def test_bench_zero_skip(simulator):
    result = run_bench("zero_skip", preset("small"), simulator)
    assert result.tests >= 2 and result.passed, f"seed {result.seed}, log {result.run_dir}"


@pytest.mark.parametrize("block", ["zvc_enc", "zvc_dec"])
def test_bench_zvc(simulator, block):
    result = run_bench(block, preset("small"), simulator)
    assert result.tests == 1 and result.passed, f"seed {result.seed}, log {result.run_dir}"


# -- dReLU mask buffer and EP row skipper in amaranth.sim ---------------------------------------------------

def rtl_row_skip(dut, masks, lanes, *, stall=0.3, seed=0):
    """Write each mask, list its rows; returns (rows per mask, cycles per listing from start to done)."""
    rng = random.Random(seed)
    lists, cycles = [], []

    async def bench(ctx):
        for mask in masks:
            words = sparsity.mask_words(mask, lanes)
            for k, word in enumerate(words):
                await stream_put(ctx, dut.mask, {"bits": word, "last": k == len(words) - 1}, rng=rng, stall=stall)
            await stream_put(ctx, dut.start, 0)
            rows, n = [], 0
            while True:
                ctx.set(dut.o.ready, rng.random() >= stall)
                *_, valid, ready, payload = await ctx.tick().sample(dut.o.valid, dut.o.ready, dut.o.payload)
                n += 1
                if valid and ready:
                    if payload.done:
                        break
                    rows.append(int(payload.index))
            ctx.set(dut.o.ready, 0)
            lists.append(rows)
            cycles.append(n)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return lists, cycles


@pytest.mark.parametrize("lanes", [1, 4, 16])
def test_sim_row_skip(lanes):
    rng = np.random.default_rng(lanes)
    masks = [rng.random(int(rng.integers(1, 60))) >= s for s in (0.0, 0.5, 0.9, 1.0) for _ in range(3)]
    masks.append(np.zeros(0, dtype=bool))
    dut = RowSkipper(lanes=lanes, max_rows=64)
    lists, _ = rtl_row_skip(dut, masks, lanes)
    assert lists == [sparsity.ep_rows(mask) for mask in masks]


def test_sim_row_skip_cycles():
    # No stalls: one row per cycle, plus one cycle per word without a set bit, start and done.
    rng = np.random.default_rng(9)
    masks = [rng.random(256) >= 0.5, np.ones(256, dtype=bool), np.zeros(256, dtype=bool)]
    dut = RowSkipper(lanes=16, max_rows=256)
    lists, cycles = rtl_row_skip(dut, masks, 16, stall=0.0)
    for mask, n in zip(masks, cycles):
        empty_words = sum(not mask[k:k + 16].any() for k in range(0, 256, 16))
        assert n == len(sparsity.ep_rows(mask)) + empty_words + 2


def test_bench_row_skip(simulator):
    result = run_bench("row_skip", preset("small"), simulator)
    assert result.tests >= 2 and result.passed, f"seed {result.seed}, log {result.run_dir}"


# -- slice-skipping PE in amaranth.sim ----------------------------------------------------------------------

def rtl_slice_skip(dut, dots, pairs, *, stall=0.3, seed=0):
    """Dot products of ``dots`` [(a, b)] through the PE; returns (results, cycles from the first input
    transfer to the last output transfer, both counted)."""
    rng = random.Random(seed)
    got, first, last = [], [], []

    async def source(ctx):
        for a, b in dots:
            a_beats, b_beats = sparsity.beats(a, pairs), sparsity.beats(b, pairs)
            for k, (a_beat, b_beat) in enumerate(zip(a_beats, b_beats)):
                await stream_put(ctx, dut.i, {"a": a_beat, "b": b_beat, "last": k == len(a_beats) - 1},
                                 rng=rng, stall=stall)

    async def sink(ctx):
        cycle = 0
        while len(got) < len(dots):
            ctx.set(dut.o.ready, rng.random() >= stall)
            *_, iv, ir, valid, ready, payload = await ctx.tick().sample(dut.i.valid, dut.i.ready, dut.o.valid,
                                                                         dut.o.ready, dut.o.payload)
            if iv and ir and not first:
                first.append(cycle)
            if valid and ready:
                got.append(int(payload))
                last.append(cycle)
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source, background=True)
    sim.add_testbench(sink)
    sim.run()
    return got, last[-1] - first[0] + 1


def _slice_dots(rng, bits, pairs, count):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    dots = []
    for k in range(count):
        length = pairs * int(rng.integers(1, 4))
        scale = (hi, 1000, 100, 7, 0)[k % 5]
        a = rng.integers(-min(scale, hi), min(scale, hi) + 1, length)
        b = rng.integers(lo, hi + 1, length)
        a[rng.random(length) < 0.2] = lo
        b[rng.random(length) < 0.3] = 0
        dots.append((a, b))
    return dots


@pytest.mark.parametrize("bits, pairs, slots", [(16, 8, 16), (8, 4, 4), (12, 5, 10), (4, 3, 1)])
def test_sim_slice_skip_exact(bits, pairs, slots):
    dots = _slice_dots(np.random.default_rng(bits + pairs), bits, pairs, 20)
    got, _ = rtl_slice_skip(SliceSkipPE(bits=bits, pairs=pairs, slots=slots), dots, pairs)
    assert got == [int(np.dot(a.astype(object), b.astype(object))) for a, b in dots]


def test_sim_slice_skip_schedule():
    # No stalls: one cycle per group of golden.sparsity.slice_skip_groups, beats and dot products back to
    # back; plus the cycle that takes the first beat and the one that offers the last result.
    bits, pairs = 16, 8
    dots = _slice_dots(np.random.default_rng(3), bits, pairs, 15)
    _, cycles = rtl_slice_skip(SliceSkipPE(bits=bits, pairs=pairs, slots=16), dots, pairs, stall=0.0)
    a_beats = [beat for a, _ in dots for beat in sparsity.beats(a, pairs)]
    b_beats = [beat for _, b in dots for beat in sparsity.beats(b, pairs)]
    groups = sparsity.slice_skip_groups(a_beats, b_beats, bits, 16)
    assert cycles == sum(len(g) for g in groups) + 2


def test_bench_slice_skip(simulator):
    result = run_bench("slice_skip", preset("small"), simulator)
    assert result.tests >= 2 and result.passed, f"seed {result.seed}, log {result.run_dir}"
