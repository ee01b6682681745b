"""The host side of the TrainCore, as an SoC's driver would be: load a training state into the core over its
registers and weight window, start runs, stream samples, and read the state back - all through the register
driver generated from :func:`hw.train_core.register_map`, so addresses and fields are never written twice.

The state is that of :class:`golden.core.CoreTrainer` (:func:`golden_state`), so a bench compares the core
with the golden model after every run with ``==``.
"""

import numpy as np

from golden.core import CoreError, Unit
from golden.pdfa_schedule import PRECISIONS
from golden.training import feedback_seed
from hw.pdfa import ENGINES
from hw.train_core import geometry, register_map


__all__ = ["CoreHost", "golden_state", "sample_beats", "state_differences", "ALGORITHMS"]

ALGORITHMS = ("bp", "dfa", "pdfa")


def _u7(value):
    return int(value) & 0x7F


def _s7(value):
    value = int(value) & 0x7F
    return value - 0x80 if value & 0x40 else value


def _frac_names(layers):
    """(register, index or field, golden name) of every dynamic fractional length."""
    out = [("frac_a", l, f"a{l}") for l in range(1, layers)]
    out += [("frac_d", l, f"d{l}") for l in range(layers - 1)]
    out += [("frac_g", l, f"g{l}") for l in range(layers)]
    return out


def golden_state(trainer):
    """What the core must hold after the same runs as ``trainer``: masters, fractional lengths, LFSR states
    and the overflow counters of the last conversion of each tensor (saturated to 16 bits)."""
    layers = trainer.config.layers
    fracs = dict(trainer.fracs)
    ovf = {name: (min(v[0], 0xFFFF), min(v[1], 0xFFFF)) for name, v in trainer.overflow.items()}
    return {
        "masters": [np.asarray(w, dtype=np.int64) for w in trainer.masters],
        "fracs": {name: fracs[name] for name in [n for *_, n in _frac_names(layers)] + ["z", "e"]},
        "lfsr": {unit.name.lower(): [lf.state for lf in trainer.lfsrs[unit]] for unit in Unit},
        "overflow": ovf,
    }


def sample_beats(codes, labels):
    """AXI4-Stream beats ``(tdata, tlast)`` of samples: per sample the label, then its input codes two per
    beat (the first in bits 15:0), ``tlast`` on its last beat."""
    beats = []
    for sample, label in zip(np.asarray(codes), np.asarray(labels)):
        words = [int(label)]
        values = [int(v) & 0xFFFF for v in sample]
        values += [0] * (len(values) % 2)
        words += [values[i] | values[i + 1] << 16 for i in range(0, len(values), 2)]
        beats += [(w, i == len(words) - 1) for i, w in enumerate(words)]
    return beats


def state_differences(got, want):
    """Readable differences between two states (empty when equal)."""
    out = []
    for l, (g, w) in enumerate(zip(got["masters"], want["masters"])):
        bad = np.argwhere(g != w)
        if len(bad):
            r, c = bad[0]
            out.append(f"W{l}: {len(bad)} masters differ, first [{r}, {c}]: core {g[r, c]}, golden {w[r, c]}")
    for key in ("fracs", "lfsr", "overflow"):
        for name in want[key]:
            if got[key].get(name) != want[key][name]:
                out.append(f"{key} {name}: core {got[key].get(name)}, golden {want[key][name]}")
    return out


class CoreHost:
    """Drive a TrainCore through its register driver.

    Parameters
    ----------
    regs : hw.regmap.RegisterDriver
        Over the core's AXI4-Lite port (its bus callables may be coroutine functions: then every method
        here is awaited, as in a cocotb bench or an amaranth.sim testbench).
    config : hw.config.Config
        The core's configuration.
    """

    def __init__(self, regs, config):
        self.regs = regs
        self.config = config
        self.geo = geometry(config)
        self.map = register_map(config)

    async def _maybe(self, value):
        if hasattr(value, "__await__"):
            return await value
        return value

    def _window_offset(self, layer, row, col):
        w = self.geo["width_bits"]
        return ((layer << 2 * w) | (row << w) | col) * 4

    async def configure(self, trainer, steps, *, serial=False):
        """Write the run configuration of ``trainer``'s :class:`golden.core.CoreConfig`."""
        cfg = trainer.config
        r = self.regs
        await self._maybe(r.write_fields("config", algorithm=cfg.algorithm, serial=int(serial), layers=cfg.layers,
                                         batch=cfg.batch))
        await self._maybe(r.write_fields("steps", count=steps))
        await self._maybe(r.write_fields("numerics", frac_in=_u7(trainer.frac_in), feedback_shift=cfg.feedback_shift,
                                         overflow_shift=cfg.overflow_shift, threshold=cfg.threshold,
                                         grad_prec=f"dfxp{cfg.grad_bits}"))
        for l in range(cfg.layers):
            await self._maybe(r.write_fields("layer_size", l, n_in=cfg.sizes[l], n_out=cfg.sizes[l + 1]))
            await self._maybe(r.write_fields("layer_cfg", l, precision=PRECISIONS.index(f"dfxp{cfg.precision[l]}"),
                                             lr_shift=cfg.lr_shift[l], frac_w=_u7(trainer.frac_w[l])))
            await self._maybe(r.write_fields("fb_seed", l, seed=feedback_seed(l, cfg.seed)))

    async def load(self, trainer, steps, *, serial=False, weights=True):
        """Configure, and load ``trainer``'s state: fractional lengths, LFSR states, master weights."""
        await self.configure(trainer, steps, serial=serial)
        r = self.regs
        for reg, index, name in _frac_names(trainer.config.layers):
            await self._maybe(r.write_fields(reg, index, frac=_u7(trainer.fracs[name])))
        await self._maybe(r.write_fields("frac_out", z=_u7(trainer.fracs["z"]), e=_u7(trainer.fracs["e"])))
        for unit in Unit:
            for lane, lfsr in enumerate(trainer.lfsrs[unit]):
                await self._maybe(r.write_fields(f"lfsr_{unit.name.lower()}", lane, state=lfsr.state))
        if weights:
            await self.write_weights(trainer.masters)

    async def write_weights(self, masters):
        for l, w in enumerate(masters):
            for (row, col), value in np.ndenumerate(np.asarray(w)):
                await self._maybe(self.regs.write_window("weights", self._window_offset(l, row, col),
                                                         int(value) & 0xFFFF))

    async def read_weights(self, shapes):
        out = []
        for l, (rows, cols) in enumerate(shapes):
            w = np.zeros((rows, cols), dtype=np.int64)
            for row in range(rows):
                for col in range(cols):
                    value = await self._maybe(self.regs.read_window("weights", self._window_offset(l, row, col)))
                    w[row, col] = value - (1 << 32) if value >> 31 else value
            out.append(w)
        return out

    async def start(self):
        await self._maybe(self.regs.write_fields("ctrl", start=1))

    async def status(self):
        return await self._maybe(self.regs.read_fields("status"))

    async def read_state(self, trainer):
        """The core's state in the form of :func:`golden_state` (for ``trainer``'s network)."""
        cfg = trainer.config
        r = self.regs
        shapes = [(o, i) for i, o in zip(cfg.sizes, cfg.sizes[1:])]
        fracs = {}
        for reg, index, name in _frac_names(cfg.layers):
            fracs[name] = _s7(await self._maybe(r.read_field(reg, "frac", index)))
        out = await self._maybe(r.read_fields("frac_out"))
        fracs["z"], fracs["e"] = _s7(out["z"]), _s7(out["e"])
        lfsr = {unit.name.lower(): [await self._maybe(r.read_field(f"lfsr_{unit.name.lower()}", "state", lane))
                                    for lane in range(len(trainer.lfsrs[unit]))] for unit in Unit}
        overflow = {}
        for name in trainer.overflow:
            kind, index = name[0], name[1:]
            if name in ("z", "e"):
                fields = await self._maybe(r.read_fields(f"ovf_{name}"))
            else:
                fields = await self._maybe(r.read_fields(f"ovf_{kind}", int(index)))
            overflow[name] = (fields["ovf0"], fields["ovf1"])
        return {"masters": await self.read_weights(shapes), "fracs": fracs, "lfsr": lfsr, "overflow": overflow}

    async def counters(self):
        """Cycles of the last run and each engine's busy/stall/idle cycles."""
        r = self.regs
        out = {"cycles": await self._maybe(r.read_field("cycles", "count"))}
        for engine in ENGINES:
            for kind in ("busy", "stall", "idle"):
                out[f"{engine}_{kind}"] = await self._maybe(r.read_field(f"{engine}_{kind}", "count"))
        return out


def error_name(code):
    return CoreError(code).name
