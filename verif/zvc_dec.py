"""cocotb bench of the ZVC decoder: golden records (:func:`golden.sparsity.zvc_encode`) in with random
bubbles, vectors out with random back-pressure; every vector must equal the original, ``error`` stays low.
Same stimulus as ``verif/zvc_enc.py``. Malformed records (``last`` disagreeing with the mask, mask bits
beyond element ``n - 1``, each alone) must raise ``error``, which stays up until reset."""

import cocotb
from cocotb.triggers import ClockCycles

from golden import sparsity
from verif.zvc_enc import ZVCTB, zvc_vectors


async def check_decode(tb, source, sink, vectors):
    """Send the records of ``vectors`` and compare the vectors that follow the ones already received."""
    first = len(sink.items)
    for v in vectors:
        words = sparsity.zvc_encode(v, tb.cfg.zvc_width)
        for k, word in enumerate(words):
            source.send(tb.words.const({"word": word, "last": k == len(words) - 1}).as_bits())
    await tb.wait_until(lambda: len(sink.items) >= first + len(vectors), 100 * len(vectors) * tb.cfg.zvc_n)
    got = [[int(x) for x in tb.vector.from_bits(item)] for item in sink.items[first:]]
    assert got == [[int(x) for x in v] for v in vectors], "decoded vectors differ from the originals"
    assert not int(tb.dut.error.value)


@cocotb.test()
async def decode(dut):
    """Random vectors, then training tensors (a wrong vector ends the test before the training step runs),
    then the malformed records."""
    tb = ZVCTB(dut)
    source, sink = tb.source("i"), tb.sink("o")
    await tb.reset()
    for training in (False, True):
        await check_decode(tb, source, sink, zvc_vectors(tb, training))
    await malformed_records(tb, source)


async def malformed_records(tb, source):
    """Each malformed record alone after a reset raises ``error``; a good record after it leaves it up."""
    dut = tb.dut
    n, w = tb.cfg.zvc_n, tb.cfg.zvc_width
    heads = -(-n // w)

    def record(mask, last):
        """The mask words of ``mask``, ``last`` on the final one, then a word per mask bit below ``n``."""
        words = [(mask >> (w * j)) & ((1 << w) - 1) for j in range(heads)]
        return [(word, last and j == heads - 1) for j, word in enumerate(words)] + \
               [(1, False)] * (bin(mask & ((1 << n) - 1)).count("1") - 1) + \
               ([(1, True)] if mask & ((1 << n) - 1) else [])

    cases = {"last on a non-empty mask": record(1 << (n - 1), True),
             "no last on an empty mask": record(0, False)}
    cases.update({f"mask bit {b}": record(1 << b, True) for b in range(n, heads * w)})
    good = sparsity.zvc_encode([0] * (n - 1) + [3], w)
    for name, words in cases.items():
        await tb.reset()
        assert not int(dut.error.value), f"{name}: error set by reset"
        for word, last in words:
            source.send(tb.words.const({"word": word, "last": last}).as_bits())
        await source.wait_idle()
        await ClockCycles(dut.clk, 3)
        assert int(dut.error.value), f"{name}: error not raised"
        if name.startswith("mask bit"):
            for k, word in enumerate(good):
                source.send(tb.words.const({"word": word, "last": k == len(good) - 1}).as_bits())
            await source.wait_idle()
            await ClockCycles(dut.clk, 3)
            assert int(dut.error.value), f"{name}: error not sticky"
