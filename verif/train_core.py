"""cocotb bench of the TrainCore (work in progress: a first end-to-end test)."""

import cocotb

from golden.core import CoreConfig, CoreTrainer
from verif.core_host import golden_state, state_differences
from verif.train_core_tb import CoreTB


@cocotb.test()
async def smoke(dut):
    tb = CoreTB(dut)
    await tb.reset()
    cfg = tb.config
    t = cfg.core.tile
    trainer = CoreTrainer(CoreConfig(sizes=(64, 8, 10), algorithm="pdfa", precision=8, batch=cfg.core.max_batch,
                                     array=(t, t), max_k=cfg.pe.max_k, lr_shift=6))
    batches = trainer.batches()[:2]
    await tb.host.load(trainer, len(batches))
    cycles = await tb.run(trainer, batches)
    got = await tb.host.read_state(trainer)
    diffs = state_differences(got, golden_state(trainer))
    dut._log.info(f"run took {cycles} cycles; {await tb.host.counters()}")
    assert not diffs, "\n".join(diffs)
