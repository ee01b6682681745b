"""cocotb bench of the ZVC decoder: golden records (:func:`golden.sparsity.zvc_encode`) in with random
bubbles, vectors out with random back-pressure; every vector must equal the original, ``error`` stays low.
Same stimulus as ``verif/zvc_enc.py``."""

import cocotb

from golden import sparsity
from verif.zvc_enc import ZVCTB, zvc_vectors


@cocotb.test()
async def decode(dut):
    tb = ZVCTB(dut)
    source, sink = tb.source("i"), tb.sink("o")
    await tb.reset()
    vectors = zvc_vectors(tb)
    for v in vectors:
        words = sparsity.zvc_encode(v, tb.cfg.zvc_width)
        for k, word in enumerate(words):
            source.send(tb.words.const({"word": word, "last": k == len(words) - 1}).as_bits())
    await tb.wait_until(lambda: len(sink.items) >= len(vectors), 100 * len(vectors) * tb.cfg.zvc_n)
    got = [[int(x) for x in tb.vector.from_bits(item)] for item in sink.items]
    assert got == [[int(x) for x in v] for v in vectors], "decoded vectors differ from the originals"
    assert not int(dut.error.value)
