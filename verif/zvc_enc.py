"""cocotb bench of the ZVC encoder against :func:`golden.sparsity.zvc_encode`.

Driver: vectors on ``i`` with random bubbles; monitor: the word sink with random back-pressure. Every
record (mask words, then non-zero words, ``last`` on the final word) must equal golden. Stimulus: random
vectors at sparsity 0 to 1, and the DFXP-16 activation and error codes of a DFA training step (as unsigned
words of the configured width). ``verif/zvc_dec.py`` decodes the same records: together, a lossless round
trip.
"""

import cocotb
import numpy as np
from amaranth.hdl import unsigned
from amaranth.lib import data

from golden import sparsity
from hw.zvc import word_layout
from verif.bench import BenchTB


def zvc_vectors(tb, training=False):
    """Random vectors at sparsity 0 to 1 or (``training``) real training tensors, as unsigned words."""
    n, width = tb.cfg.zvc_n, tb.cfg.zvc_width
    if not training:
        return [tb.np_rng.integers(1, 1 << width, n) * (tb.np_rng.random(n) >= s)
                for s in (0.0, 0.25, 0.5, 0.75, 0.9, 1.0) for _ in range(15)]
    vectors = []
    from golden.training import TrainConfig, Trainer
    trainer = Trainer(TrainConfig(sizes=(64, 32, 10), algorithm="dfa", arithmetic="dfxp16"))
    record = {}
    trainer.step(trainer.data[0][:8], trainer.data[1][:8], record=record)
    for key in ("a0.codes", "a1.codes", "e0.codes"):
        flat = (record[key].T.ravel() >> (16 - min(16, width))) & ((1 << width) - 1)
        flat = np.concatenate([flat, np.zeros(-len(flat) % n, dtype=flat.dtype)])
        vectors += list(flat.reshape(-1, n))
    return vectors


class ZVCTB(BenchTB):
    def __init__(self, dut):
        super().__init__(dut)
        self.cfg = self.config.sparsity
        self.words = word_layout(self.cfg.zvc_width)
        self.vector = data.ArrayLayout(unsigned(self.cfg.zvc_width), self.cfg.zvc_n)


async def check_encode(tb, source, sink, vectors):
    """Send ``vectors`` and compare the records that follow the ones already received with golden."""
    first = len(sink.items)
    want = [sparsity.zvc_encode(v, tb.cfg.zvc_width) for v in vectors]
    for v in vectors:
        source.send(tb.vector.const([int(x) for x in v]).as_bits())
    total = sum(map(len, want))
    await tb.wait_until(lambda: len(sink.items) >= first + total, 100 * total)
    got, record = [], []
    for item in sink.items[first:]:
        word = tb.words.from_bits(item)
        record.append(int(word.word))
        if word.last:
            got.append(record)
            record = []
    assert not record, "words after the last complete record"
    assert got == want, f"{sum(g != w for g, w in zip(got, want))} records differ from golden"


@cocotb.test()
async def encode(dut):
    """Random vectors, then training tensors (a wrong record ends the test before the training step runs)."""
    tb = ZVCTB(dut)
    source, sink = tb.source("i"), tb.sink("o")
    await tb.reset()
    for training in (False, True):
        await check_encode(tb, source, sink, zvc_vectors(tb, training))
