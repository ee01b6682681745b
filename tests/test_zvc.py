"""Zero-value compression encoder and decoder (hw.zvc): amaranth.sim round trips against golden.sparsity, and their cocotb benches."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import sparsity
from hw.config import preset
from hw.zvc import ZVCDecoder, ZVCEncoder
from verif.runner import run_bench

from .sim_streams import stream_get, stream_put

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


@pytest.mark.parametrize("block", ["zvc_enc", "zvc_dec"])
def test_bench_zvc(simulator, block):
    result = run_bench(block, preset("small"), simulator)
    assert result.tests == 1 and result.passed, f"seed {result.seed}, log {result.run_dir}"
