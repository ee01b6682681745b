import random

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from golden.core import read_weights
from hw.pe_array import PRECISION_CODES, Mode
from hw.tile_gemm import ELEMENT_BITS, Order, TileGemm, command_layout, core_precisions, row_layout

from .sim_streams import stream_get, stream_put


def tiles_of(matrix, tile):
    """Tile words (ints) of a stored matrix, row-major over tiles, and its stride in tiles."""
    rows, cols = matrix.shape
    rt, ct = -(-rows // tile), -(-cols // tile)
    padded = np.zeros((rt * tile, ct * tile), dtype=np.int64)
    padded[:rows, :cols] = matrix
    words = []
    for i in range(rt):
        for j in range(ct):
            word = 0
            for r in range(tile):
                for c in range(tile):
                    word |= (int(padded[i * tile + r, j * tile + c]) & 0xFFFF) << (ELEMENT_BITS * (r * tile + c))
            words.append(word)
    return words, ct


class Harness(wiring.Component):
    """A TileGemm with its A and B memories (pre-loaded)."""

    def __init__(self, gemm, a_words, b_words):
        self.gemm = gemm
        self.a_words, self.b_words = a_words, b_words
        super().__init__({"cmd": wiring.In(stream.Signature(command_layout(10, 10))),
                          "o": wiring.Out(stream.Signature(row_layout(gemm.tile, gemm.acc_width, 10)))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.gemm = gemm = self.gemm
        t = gemm.tile
        for side, words in (("a", self.a_words), ("b", self.b_words)):
            mem = Memory(shape=t * t * ELEMENT_BITS, depth=max(len(words), 1) + 3, init=words)
            m.submodules[f"{side}_mem"] = mem
            port = mem.read_port(transparent_for=())
            rd = getattr(gemm, f"{side}_rd")
            m.d.comb += [port.addr.eq(rd.addr), port.en.eq(rd.en), rd.data.eq(port.data)]
        wiring.connect(m, wiring.flipped(self.cmd), gemm.cmd)
        wiring.connect(m, gemm.o, wiring.flipped(self.o))
        return m


def ref_gemm(mode, a_mem, b_mem, bits, a_masters):
    """The product the engine computes from the stored matrices, and its (rows, cols)."""
    a = read_weights(a_mem, bits) if a_masters else np.asarray(a_mem, dtype=np.int64)
    b = np.asarray(b_mem, dtype=np.int64)
    if mode == Mode.FF:
        return a @ b.T
    if mode == Mode.EP:
        return a.T @ b.T
    return a.T @ b


def rtl_gemm(mode, a_mem, b_mem, bits, *, tile, order, a_masters, jobs=1, stall=0.3, seed=0, dims=None,
             masters=True):
    """Run ``jobs`` identical GEMMs on the stored matrices (``dims = (m, n, k)`` when they hold more than the
    operands); return the output row records."""
    rng = random.Random(seed)
    a_words, a_stride = tiles_of(np.asarray(a_mem), tile)
    b_words, b_stride = tiles_of(np.asarray(b_mem), tile)
    if dims is not None:
        mdim, ndim, kdim = dims
    elif mode == Mode.FF:
        mdim, kdim, ndim = a_mem.shape[0], a_mem.shape[1], b_mem.shape[0]
    elif mode == Mode.EP:
        mdim, kdim, ndim = a_mem.shape[1], a_mem.shape[0], b_mem.shape[0]
    else:
        mdim, kdim, ndim = a_mem.shape[1], a_mem.shape[0], b_mem.shape[1]
    precs = core_precisions(tile, (4, 8, 12, 16))
    dut = Harness(TileGemm(tile=tile, max_k=256, precisions=precs, dim_width=10, addr_width=10, masters=masters),
                  a_words, b_words)
    records = []
    expected_rows = jobs * mdim * -(-ndim // tile)

    async def driver(ctx):
        for _ in range(jobs):
            await stream_put(ctx, dut.cmd, {
                "mode": mode, "prec": PRECISION_CODES[bits], "m": mdim, "n": ndim, "k": kdim,
                "a_base": 0, "a_stride": a_stride, "b_base": 0, "b_stride": b_stride, "order": order,
                "a_masters": int(a_masters)}, rng=rng, stall=stall)

    async def sink(ctx):
        while len(records) < expected_rows:
            row = await stream_get(ctx, dut.o, rng=rng, stall=stall)
            records.append(row)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(driver, background=True)
    sim.add_testbench(sink)
    sim.run()
    return records, (mdim, ndim)


def check(records, expected, tile, order, jobs=1):
    mdim, ndim = expected.shape
    nt = -(-ndim // tile)
    mt = -(-mdim // tile)
    if order == Order.N_OUTER:
        want_order = [(m, g) for g in range(nt) for m in range(mdim)]
    else:
        want_order = [(i * tile + r, g) for i in range(mt) for g in range(nt) for r in range(tile)
                      if i * tile + r < mdim]
    got_order = [(int(r.m), int(r.group)) for r in records]
    assert got_order == want_order * jobs
    for index, r in enumerate(records):
        m, g = int(r.m), int(r.group)
        for c in range(tile):
            col = g * tile + c
            assert int(r.en) >> c & 1 == (col < ndim)
            if col < ndim:
                assert int(r.acc[c]) == expected[m, col], (m, col)
        assert int(r.last) == ((index + 1) % len(want_order) == 0)


@pytest.mark.parametrize("tile, bits", [(4, 8), (4, 16), (4, 12), (2, 16)])
@pytest.mark.parametrize("mode", [Mode.FF, Mode.EP, Mode.WG])
def test_sim_modes(tile, bits, mode):
    rng = np.random.default_rng(tile * 100 + bits + int(mode.value))
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    # ragged sizes: out 7, in 9, batch 5
    out, inp, batch = 7, 9, 5
    if mode == Mode.FF:
        a = rng.integers(-32768, 32768, (out, inp))            # masters
        b = rng.integers(lo, hi + 1, (batch, inp))             # Xs
        masters = True
    elif mode == Mode.EP:
        a = rng.integers(-32768, 32768, (inp, out))            # W (k x m)
        b = rng.integers(lo, hi + 1, (batch, inp))             # Es
        masters = True
    else:
        a = rng.integers(lo, hi + 1, (batch, out))             # Es
        b = rng.integers(lo, hi + 1, (batch, inp))             # Xs
        masters = False
    a[0, 0] = 32767 if masters else hi                         # saturating top-slice read
    expected = ref_gemm(mode, a, b, bits, masters)
    order = Order.N_OUTER if mode == Mode.FF else Order.M_OUTER
    records, _ = rtl_gemm(mode, a, b, bits, tile=tile, order=order, a_masters=masters, jobs=2)
    check(records, expected, tile, order, jobs=2)


def test_sim_full_rate():
    # No stalls, 8-bit operands on 4x4 tiles: one beat per cycle, output as the PE array drains.
    rng = np.random.default_rng(3)
    a = rng.integers(-128, 128, (8, 64))
    b = rng.integers(-128, 128, (8, 64))
    records, _ = rtl_gemm(Mode.FF, a, b, 8, tile=4, order=Order.M_OUTER, a_masters=False, stall=0.0)
    check(records, ref_gemm(Mode.FF, a, b, 8, False), 4, Order.M_OUTER)


def test_sim_without_masters():
    # A GEMM built without the masters' reading (the WG engine's) reads A's words as codes, a_masters or not.
    rng = np.random.default_rng(5)
    a = rng.integers(-128, 128, (5, 7))
    b = rng.integers(-128, 128, (5, 9))
    records, _ = rtl_gemm(Mode.WG, a, b, 8, tile=4, order=Order.M_OUTER, a_masters=True, masters=False)
    check(records, ref_gemm(Mode.WG, a, b, 8, False), 4, Order.M_OUTER)


@pytest.mark.parametrize("mode", [Mode.FF, Mode.WG])
def test_stale_padding_is_ignored(mode):
    # The stored matrices hold junk beyond the operands (a bigger tensor written there before): the beats
    # zero every reduction position beyond k, and rows/columns beyond m/n are dropped or disabled.
    rng = np.random.default_rng(4)
    a_mem = rng.integers(-128, 128, (8, 8))
    b_mem = rng.integers(-128, 128, (8, 8))
    if mode == Mode.FF:          # m = 5 rows of W, k = 6 inputs, n = 3 samples
        dims = (5, 3, 6)
        expected = ref_gemm(mode, a_mem[:5, :6], b_mem[:3, :6], 8, False)
    else:                        # k = 3 samples, m = 5 error features, n = 6 input features
        dims = (5, 6, 3)
        expected = ref_gemm(mode, a_mem[:3, :5], b_mem[:3, :6], 8, False)
    records, _ = rtl_gemm(mode, a_mem, b_mem, 8, tile=4, order=Order.M_OUTER, a_masters=False, dims=dims)
    check(records, expected, 4, Order.M_OUTER)


def test_init_wrong():
    with pytest.raises(ValueError, match="Tile size must be a power of two from 2 to 64, not 3"):
        TileGemm(tile=3, max_k=64, precisions=(16,), dim_width=8, addr_width=8)
    with pytest.raises(ValueError, match="Precisions must be a non-empty subset"):
        TileGemm(tile=4, max_k=64, precisions=(4,), dim_width=8, addr_width=8)
    with pytest.raises(TypeError, match="Tile size must be an integer, not '4'"):
        TileGemm(tile="4", max_k=64, precisions=(16,), dim_width=8, addr_width=8)
    with pytest.raises(TypeError, match="Masters must be a bool, not 1"):
        TileGemm(tile=4, max_k=64, precisions=(16,), dim_width=8, addr_width=8, masters=1)
