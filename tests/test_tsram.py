import random

import pytest
from amaranth.sim import Simulator

import hw.tsram
from golden.tsram import Access, Axis as GAxis, TransposableStore, address_of, bank_of
from hw.config import preset
from hw.tsram import Axis, RegisterFileTranspose, TransposableSRAM
from verif.runner import run_bench
from verif.formal import formal_status
from verif.tsram_formal import run_sby


# -- golden ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [2, 4, 8, 16])
def test_ref_skewed_layout_is_conflict_free(n):
    for i in range(n):
        row = [(bank_of(i, c, n), address_of(0, i, c, n)) for c in range(n)]
        col = [(bank_of(r, i, n), address_of(0, r, i, n)) for r in range(n)]
        assert sorted(b for b, _ in row) == list(range(n))      # a row: every bank once, one address
        assert len({a for _, a in row}) == 1
        assert sorted(b for b, _ in col) == list(range(n))      # a column: every bank once
    cells = {(bank_of(r, c, n), address_of(1, r, c, n)) for r in range(n) for c in range(n)}
    assert len(cells) == n * n                                  # no two words share a cell


def test_ref_store():
    store = TransposableStore(4, 8, 2)
    store.write(Access(GAxis.ROW, 1, 2), [1, 2, 3, 4])
    assert store.read(Access(GAxis.COL, 1, 3)) == [0, 0, 4, 0]
    assert store.cycle(write=(Access(GAxis.COL, 1, 3), [9, 9, 9, 9]), read=Access(GAxis.ROW, 1, 2)) == [1, 2, 3, 4]
    assert store.read(Access(GAxis.ROW, 1, 2)) == [1, 2, 3, 9]
    store.write(Access(GAxis.ROW, 0, 0), [256, 257, 1, 2])      # words keep their low `width` bits
    assert store.read(Access(GAxis.ROW, 0, 0)) == [0, 1, 1, 2]


# -- amaranth.sim ---------------------------------------------------------------------------------------

def rtl_vs_ref(cls, n, width, tiles, *, cycles=2000, stall=0.3, seed=0, tile_range=None):
    """Random writes and reads each cycle, random back-pressure; returns (responses, golden responses)."""
    dut = cls(n=n, width=width, tiles=tiles)
    store = TransposableStore(n, width, tiles)
    rng = random.Random(seed)
    tile_range = tile_range or tiles
    got, want = [], []

    async def testbench(ctx):
        for _ in range(cycles):
            wr = rd = None
            if rng.random() < 0.6:
                acc = Access(GAxis(rng.randrange(2)), rng.randrange(tile_range), rng.randrange(n))
                words = [rng.randrange(1 << width) for _ in range(n)]
                ctx.set(dut.w.payload, {"axis": Axis(acc.axis), "tile": acc.tile, "index": acc.index, "data": words})
                wr = (acc, words)
            ctx.set(dut.w.valid, wr is not None)
            if rng.random() < 0.7:
                rd = Access(GAxis(rng.randrange(2)), rng.randrange(tile_range), rng.randrange(n))
                ctx.set(dut.rreq.payload, {"axis": Axis(rd.axis), "tile": rd.tile, "index": rd.index})
            ctx.set(dut.rreq.valid, rd is not None)
            ctx.set(dut.rresp.ready, rng.random() >= stall)
            if ctx.get(dut.rresp.valid) and ctx.get(dut.rresp.ready):
                got.append([int(x) for x in ctx.get(dut.rresp.payload)])
            w_fire = wr is not None and ctx.get(dut.w.ready) and wr[0].tile < tiles
            r_fire = rd is not None and ctx.get(dut.rreq.ready)
            if r_fire and rd.tile >= tiles:
                want.append([0] * n)                            # out of range: zeros
                r_fire = False
            out = store.cycle(write=wr if w_fire else None, read=rd if r_fire else None)
            if out is not None:
                want.append(out)
            await ctx.tick()
        ctx.set(dut.w.valid, 0)
        ctx.set(dut.rreq.valid, 0)
        ctx.set(dut.rresp.ready, 1)
        for _ in range(3):
            if ctx.get(dut.rresp.valid):
                got.append([int(x) for x in ctx.get(dut.rresp.payload)])
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return got, want


@pytest.mark.parametrize("cls", [TransposableSRAM, RegisterFileTranspose])
@pytest.mark.parametrize("n, width, tiles", [(2, 1, 4), (4, 3, 3), (8, 5, 2)])
def test_sim_random(cls, n, width, tiles):
    got, want = rtl_vs_ref(cls, n, width, tiles, seed=n)
    assert len(want) > 500 and got == want


def test_sim_tile_out_of_range():
    # Three tiles in a 2-bit tile field: tile 3 is ignored by writes and reads as zeros.
    got, want = rtl_vs_ref(TransposableSRAM, 4, 4, 3, seed=7, tile_range=4)
    assert got == want


def test_init():
    dut = TransposableSRAM(n=8, width=16, tiles=4)
    assert (dut.n, dut.width, dut.tiles) == (8, 16, 4)
    assert dut.signature.members["rresp"].signature.members["payload"].shape.size == 128
    assert "peek_data" in TransposableSRAM(n=4, width=2, observe=True).signature.members


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(n=6, width=8), ValueError, r"Tile size N must be a power of two >= 2, not 6"),
    (dict(n=1, width=8), ValueError, r"Tile size N must be a power of two >= 2, not 1"),
    (dict(n=4, width=0), ValueError, r"Word width must be a positive integer, not 0"),
    (dict(n=4, width=8, tiles=0), ValueError, r"Tile count must be a positive integer, not 0"),
    (dict(n=4.0, width=8), TypeError, r"Tile size N must be an integer, not 4.0"),
])
def test_init_wrong(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        TransposableSRAM(**kwargs)


# -- formal ---------------------------------------------------------------------------------------------

@pytest.fixture
def formal():
    available, reason = formal_status()
    if not available:
        pytest.skip(reason)


def test_formal_prove(formal, tmp_path):
    # Unbounded: k-induction closes for N = 4, 2-bit words, 2 tiles.
    passed, log = run_sby(tmp_path, mode="prove", depth=4, n=4, width=2, tiles=2)
    assert passed and "successful proof by k-induction" in log, log[-2000:]


def test_formal_catches_a_wrong_rotation(formal, tmp_path, monkeypatch):
    # The proof is not vacuous: rotating the wrong way round must fail it.
    rotate = hw.tsram._rotate
    monkeypatch.setattr(hw.tsram, "_rotate", lambda words, amount, left: rotate(words, amount, not left))
    passed, log = run_sby(tmp_path, mode="prove", depth=4, n=4, width=2, tiles=2)
    assert not passed and "Assert failed" in log


# -- cocotb bench on the generated Verilog --------------------------------------------------------------

def test_bench(simulator):
    result = run_bench("tsram", preset("small"), simulator)
    assert result.passed, f"{result.failed} of {result.tests} failed (seed {result.seed}, log {result.run_dir})"
