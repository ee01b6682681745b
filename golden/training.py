"""Golden training models: back-propagation, direct feedback alignment and pipelined DFA for a ReLU MLP,
in the number formats of the hardware, on a real data set.

Network and data
----------------
A bias-free MLP ``sizes[0] -> ... -> sizes[-1]`` (the PE array computes plain GEMMs): ReLU hidden layers,
softmax cross-entropy output, He-normal initial weights, plain SGD with mini-batches. Tensors are laid out
as the hardware sees them: activations and errors are ``features x batch``, weights ``out x in``.

Data: scikit-learn's bundled handwritten digits (1797 images of 8x8 pixels, 10 classes; nothing is
downloaded). Pixels are scaled to [0, 1]. Split: ``numpy.random.default_rng(0).permutation(1797)``; the
first 1437 indices (80 %) train, the other 360 test. Training order: a new permutation of the training set
each epoch from the run's seed.

Algorithms (:class:`Algorithm`)
-------------------------------
* ``BP``: ``d_L = e``, ``d_l = (W_{l+1}^T d_{l+1}) * relu'(z_l)``; FF, then EP with ``W^T``, then WG.
* ``DFA``: ``d_l = ((B_l e) >> feedback_shift) * relu'(z_l)``: the output error reaches every hidden layer
  through a fixed random binary matrix ``B_l`` of +1/-1 (``sizes[l] x sizes[-1]``) made by
  :func:`feedback_matrix`, so no weight is read backwards and B is never stored. ``B_l e`` is an adder
  tree's sum of +-e terms, about ``sqrt(sizes[-1])`` times larger than ``e``; the arithmetic shift by
  ``feedback_shift`` (2 by default: a factor 1/4) brings it back to the scale of a BP error (with the
  unscaled matrix, PDFA oscillated at the same learning rate).
* ``PDFA``: DFA pipelined as in DF-LNPU: the forward pass of mini-batch ``t + 1`` runs while EP and WG of
  ``t`` do. Weight versions: ``v_0`` are the initial weights and ``v_{t+1} = v_t - lr * G_t``; the forward
  pass of mini-batch ``t`` reads version ``v_{max(0, t - s)}`` where ``s`` is the staleness
  (``TrainConfig.staleness``, 1 for the three-stage pipeline); its WG uses its own activations and
  errors, and its update lands on the newest version. ``s = 0`` is DFA.

In every algorithm, ``G_l = d_l a_{l-1}^T`` and ``W_l <- W_l - lr * G_l`` on float32 master weights.

Arithmetic (:class:`Arithmetic`)
--------------------------------
Quantization points, where the hardware quantizes: GEMM operands - the weights read by FF (and by EP in
BP), the activations (network input and every hidden ReLU output), the errors ``d_l`` (and ``e`` before
``B_l e`` in DFA) - and the weight gradient ``G_l`` before the update. Logits, the softmax and the master
weights stay float32.

* ``FP32``: no quantization.
* ``DFXP16``, ``DFXP12``, ``DFXP8``: :mod:`golden.dfxp` words of that width, one fractional length per
  tensor (per layer and kind), chosen at first use by :func:`golden.dfxp.initial_frac` and then moved by
  the overflow-rate rule (threshold 1e-4) at every step. Weights and activations round to nearest even;
  errors and gradients round stochastically from one :class:`golden.dfxp.Lfsr` per run. GEMMs accumulate
  exactly (wide integer accumulation) and round once to float32.
* ``SEFP8``: :mod:`golden.fp8`: weights in E4M3, square 8x8 tiles (so FF's ``W`` and BP's ``W^T`` read the
  same codes); activations E4M3 and errors and gradients E5M2, blocks of ``fp8_block`` elements along
  the GEMM's reduction axis (a whole axis when it is shorter); the round-up scale rule by default
  (``fp8_rule``). The GEMM is the float32 product of the dequantized operands (the block dot products'
  exact-then-round semantics are checked bit for bit in :mod:`golden.fp8` and the RTL; for training
  accuracy the difference is below float32 rounding).
"""

import dataclasses
import enum

import numpy as np

from . import dfxp, fp8
from .dfa_ep import feedback_bits


__all__ = [
    "Algorithm", "Arithmetic", "TrainConfig", "load_digits_split", "feedback_matrix", "Trainer",
    "softmax_xent_grad", "TRACE_FORMAT", "export_trace", "feedback_seed",
]


class Algorithm(enum.Enum):
    BP = "bp"
    DFA = "dfa"
    PDFA = "pdfa"


class Arithmetic(enum.Enum):
    FP32 = "fp32"
    DFXP16 = "dfxp16"
    DFXP12 = "dfxp12"
    DFXP8 = "dfxp8"
    SEFP8 = "sefp8"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    sizes: tuple = (64, 128, 128, 10)
    algorithm: Algorithm = Algorithm.BP
    arithmetic: Arithmetic = Arithmetic.FP32
    batch: int = 32
    lr: float = 0.05
    epochs: int = 30
    staleness: int = 1
    feedback_shift: int = 2
    seed: int = 0
    fp8_block: int = 32
    fp8_rule: fp8.ScaleRule = fp8.ScaleRule.CEIL
    dfxp_threshold: float = 1e-4

    def __post_init__(self):
        object.__setattr__(self, "algorithm", Algorithm(self.algorithm))
        object.__setattr__(self, "arithmetic", Arithmetic(self.arithmetic))
        object.__setattr__(self, "fp8_rule", fp8.ScaleRule(self.fp8_rule))
        object.__setattr__(self, "sizes", tuple(self.sizes))
        if len(self.sizes) < 2 or any(not isinstance(n, int) or n < 1 for n in self.sizes):
            raise ValueError(f"Layer sizes must be at least two positive integers, not {self.sizes!r}")
        for name in ("batch", "epochs"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, not {getattr(self, name)!r}")
        if not isinstance(self.staleness, int) or self.staleness < 0:
            raise ValueError(f"Staleness must be a non-negative integer, not {self.staleness!r}")
        if not isinstance(self.feedback_shift, int) or not 0 <= self.feedback_shift < 16:
            raise ValueError(f"Feedback shift must be an integer in 0..15, not {self.feedback_shift!r}")

    @property
    def effective_staleness(self):
        return self.staleness if self.algorithm is Algorithm.PDFA else 0


def load_digits_split():
    """``(x_train, y_train, x_test, y_test)``: float32 ``samples x 64`` in [0, 1], int labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    x = (digits.data / 16.0).astype(np.float32)
    train, test = order[:1437], order[1437:]
    return x[train], digits.target[train], x[test], digits.target[test]


def feedback_seed(layer, seed=0):
    """LFSR seed of layer ``layer``'s feedback matrix: a non-zero 32-bit value."""
    value = ((seed * 0x9E3779B1) ^ ((layer + 1) * 0x85EBCA77)) & 0xFFFFFFFF
    return value or 1


def feedback_matrix(layer, rows, cols, seed=0):
    """DFA feedback matrix ``B`` of a layer: ``rows x cols`` of +1/-1, never stored by the hardware.

    Generator: :func:`golden.dfa_ep.feedback_bits` - the 32-bit Galois LFSR of :class:`golden.dfxp.Lfsr`
    (x^32 + x^22 + x^2 + x + 1), seeded with :func:`feedback_seed`, stepped once per element in row-major
    order; element = +1 if the state's least significant bit after its step is 1, else -1.
    """
    bits = feedback_bits(feedback_seed(layer, seed), rows, cols)
    return np.where(bits == 1, 1.0, -1.0).astype(np.float32)


def softmax_xent_grad(logits, labels):
    """Mean softmax cross-entropy over the batch (columns) and its gradient with respect to the logits."""
    z = logits - logits.max(axis=0, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=0, keepdims=True)
    batch = logits.shape[1]
    loss = -np.mean(np.log(p[labels, np.arange(batch)] + 1e-30))
    grad = p.copy()
    grad[labels, np.arange(batch)] -= 1.0
    return float(loss), (grad / batch).astype(logits.dtype)


class _Quantizer:
    """The quantization points of one run: per-tensor state (DFXP fractional lengths) and the LFSR."""

    def __init__(self, config):
        self.config = config
        self.fracs = {}
        self.lfsr = dfxp.Lfsr(((config.seed + 1) * 0x2545F491) & 0xFFFFFFFF or 1)
        self.record = None          # a dict to fill with codes when exporting a trace

    def _dfxp(self, x, slot, bits, stochastic):
        threshold = self.config.dfxp_threshold
        if slot not in self.fracs:
            self.fracs[slot] = dfxp.initial_frac(x, bits, threshold)
        frac = self.fracs[slot]
        rounding = dfxp.Rounding.STOCHASTIC if stochastic else dfxp.Rounding.NEAREST_EVEN
        codes = dfxp.quantize(x, bits, frac, rounding, self.lfsr if stochastic else None)
        self.fracs[slot] = dfxp.update_frac(x, bits, frac, threshold)
        if self.record is not None:
            self.record[f"{slot}.codes"] = codes
            self.record[f"{slot}.frac"] = np.array(frac)
        return dfxp.dequantize(codes, frac)

    def _fp8(self, x, slot, fmt, axis):
        cfg = self.config
        if axis == "tiles":
            rows, cols = x.shape
            padded = np.zeros((-(-rows // 8) * 8, -(-cols // 8) * 8), dtype=np.float64)
            padded[:rows, :cols] = x
            codes, scales = fp8.quantize_tiles(padded, fmt, tile=8, rule=cfg.fp8_rule)
            values = fp8.dequantize_tiles(codes, scales, fmt, tile=8)[:rows, :cols]
            codes = codes[:rows, :cols]
        else:
            length = x.shape[axis]
            block = cfg.fp8_block if length % cfg.fp8_block == 0 else None
            codes, scales = fp8.quantize_blocks(x, fmt, block=block, axis=axis, rule=cfg.fp8_rule)
            values = fp8.dequantize_blocks(codes, scales, fmt, block=block, axis=axis)
        if self.record is not None:
            self.record[f"{slot}.codes"] = codes
            self.record[f"{slot}.scales"] = scales
        return values

    def __call__(self, x, kind, layer, axis=0):
        """Quantize tensor ``x`` of ``kind`` (``w``, ``a``, ``e``, ``g``) for ``layer``; the GEMM reduces
        along ``axis`` (FP8 blocks run along it). Returns float64 values."""
        arith = self.config.arithmetic
        slot = f"{kind}{layer}"
        x = np.asarray(x, dtype=np.float64)
        if arith is Arithmetic.FP32:
            return x
        if arith is Arithmetic.SEFP8:
            fmt = fp8.E4M3 if kind in ("w", "a") else fp8.E5M2
            return self._fp8(x, slot, fmt, "tiles" if kind == "w" else axis)
        bits = {Arithmetic.DFXP16: 16, Arithmetic.DFXP12: 12, Arithmetic.DFXP8: 8}[arith]
        return self._dfxp(x, slot, bits, stochastic=kind in ("e", "g"))


def _gemm(a, b):
    # Float64 products of quantized operands: exact for DFXP (wide accumulation), then one float32 rounding.
    return (np.asarray(a, dtype=np.float64) @ np.asarray(b, dtype=np.float64)).astype(np.float32)


class Trainer:
    """One training run of :class:`TrainConfig` on the digits split (or given data)."""

    def __init__(self, config, data=None):
        self.config = config
        self.data = data if data is not None else load_digits_split()
        rng = np.random.default_rng(config.seed)
        self.weights = [(rng.normal(size=(o, i)) * np.sqrt(2.0 / i)).astype(np.float32)
                        for i, o in zip(config.sizes, config.sizes[1:])]
        self.history = [[w.copy() for w in self.weights]]     # versions for the pipelined forward pass
        self.order_rng = np.random.default_rng(config.seed + 1)
        self.q = _Quantizer(config)
        self.feedback = [feedback_matrix(l, n, config.sizes[-1], config.seed)
                         for l, n in enumerate(config.sizes[1:-1])]
        self.step_count = 0

    # -- one step ---------------------------------------------------------------------------------------

    def forward(self, weights, x, record=None):
        """Activations (quantized GEMM inputs), ReLU masks and logits for ``x`` (features x batch)."""
        q = self.q
        acts = [q(x, "a", 0, axis=0)]
        masks = []
        for l, w in enumerate(weights):
            z = _gemm(q(w, "w", l, axis=1), acts[-1])
            if l == len(weights) - 1:
                return acts, masks, z
            mask = z > 0
            masks.append(mask)
            acts.append(q(np.where(mask, z, 0), "a", l + 1, axis=0))

    def step(self, x, y, record=None):
        """One mini-batch: ``x`` is batch x features, ``y`` labels. Returns the loss."""
        cfg, q = self.config, self.q
        q.record = record
        s = cfg.effective_staleness
        fwd_weights = self.history[max(0, len(self.history) - 1 - s)]
        acts, masks, logits = self.forward(fwd_weights, x.T)
        loss, e = softmax_xent_grad(logits, y)
        n_layers = len(self.weights)
        deltas = [None] * n_layers
        deltas[-1] = q(e, "e", n_layers - 1, axis=1)
        if cfg.algorithm is Algorithm.BP:
            for l in range(n_layers - 2, -1, -1):
                back = _gemm(q(fwd_weights[l + 1], "w", l + 1, axis=0).T, deltas[l + 1])
                deltas[l] = q(back * masks[l], "e", l, axis=1)
        else:
            e_fb = q(e, "e", "fb", axis=0)                   # the error as the feedback path reads it
            for l in range(n_layers - 2, -1, -1):
                back = _gemm(self.feedback[l], e_fb) * np.float32(2.0 ** -cfg.feedback_shift)
                deltas[l] = q(back * masks[l], "e", l, axis=1)
        newest = [w.copy() for w in self.history[-1]]
        grads = []
        for l in range(n_layers):
            grads.append(q(_gemm(deltas[l], acts[l].T), "g", l, axis=1))
            newest[l] = (newest[l] - np.float32(cfg.lr) * grads[l]).astype(np.float32)
        if record is not None:
            record.update({"x": x.T.astype(np.float32), "labels": np.asarray(y), "logits": logits, "e": e})
            for l, w in enumerate(fwd_weights):
                record[f"W{l}"] = w
            for l, a in enumerate(acts):
                record[f"a{l}"] = a.astype(np.float32)
            for l, m in enumerate(masks):
                record[f"drelu{l}"] = m
            for l, d in enumerate(deltas):
                record[f"d{l}"] = d.astype(np.float32)
            for l, g in enumerate(grads):
                record[f"g{l}"] = g.astype(np.float32)
        self.history.append(newest)
        del self.history[:-(s + 1)]
        self.weights = newest
        self.step_count += 1
        q.record = None
        return loss

    # -- epochs -----------------------------------------------------------------------------------------

    def epoch(self):
        x_train, y_train = self.data[0], self.data[1]
        order = self.order_rng.permutation(len(y_train))
        losses = []
        for start in range(0, len(order) - self.config.batch + 1, self.config.batch):
            idx = order[start:start + self.config.batch]
            losses.append(self.step(x_train[idx], y_train[idx]))
        return float(np.mean(losses))

    def accuracy(self, x, y):
        """Accuracy of the newest weights, inference in the run's arithmetic (no state changes)."""
        saved, self.q.fracs = self.q.fracs, dict(self.q.fracs)
        try:
            _, _, logits = self.forward(self.weights, x.T)
        finally:
            self.q.fracs = saved
        return float(np.mean(np.argmax(logits, axis=0) == y))

    def run(self, progress=None):
        """Train for ``config.epochs``; returns per-epoch ``loss``, ``train_accuracy``, ``test_accuracy``."""
        curve = {"loss": [], "train_accuracy": [], "test_accuracy": []}
        for epoch in range(self.config.epochs):
            curve["loss"].append(self.epoch())
            curve["train_accuracy"].append(self.accuracy(self.data[0], self.data[1]))
            curve["test_accuracy"].append(self.accuracy(self.data[2], self.data[3]))
            if progress:
                progress(epoch, curve)
        return curve


TRACE_FORMAT = """Trace of one training step (``export_trace``): ``<name>.npz`` with the arrays, ``<name>.json``
with the run's configuration, the step number and one entry per array: name, shape, dtype, meaning.

Arrays (features x batch unless said otherwise; layer l = 0 is the first weight layer):
  x            network input as float32, before quantization
  labels       class labels of the mini-batch (batch,)
  W<l>         float32 weights read by this step's forward pass (out x in; stale in PDFA)
  a<l>         GEMM input activations after quantization (a0 = quantized input)
  drelu<l>     ReLU derivative mask of hidden layer l (bool), from the forward pass
  logits       output of the last GEMM, float32
  e            softmax cross-entropy gradient at the logits (float32, divided by the batch)
  d<l>         error of layer l after quantization (the EP result, masked)
  g<l>         weight gradient of layer l after quantization (out x in), the update is -lr * g<l>
  <kind><l>.codes / .frac     DFXP codes (int32) and fractional length of a quantized tensor
  <kind><l>.codes / .scales   SE-FP8 codes (uint8) and E8M0 scales (uint8) of a quantized tensor
    kinds: w (weights), a (activations), e (errors; 'efb' = the error as DFA's feedback reads it),
           g (weight gradients)
"""


def export_trace(path, config, step=0, data=None):
    """Train ``config`` up to mini-batch ``step`` and record that step: ``path.npz`` and ``path.json``
    (see :data:`TRACE_FORMAT`). Returns the two paths."""
    import json
    from pathlib import Path

    trainer = Trainer(config, data)
    x_train, y_train = trainer.data[0], trainer.data[1]
    record = {}
    done = 0
    while True:
        order = trainer.order_rng.permutation(len(y_train))
        for start in range(0, len(order) - config.batch + 1, config.batch):
            idx = order[start:start + config.batch]
            if done == step:
                trainer.step(x_train[idx], y_train[idx], record=record)
                break
            trainer.step(x_train[idx], y_train[idx])
            done += 1
        else:
            continue
        break
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: np.asarray(value) for name, value in record.items()}
    np.savez_compressed(path.with_suffix(".npz"), **arrays)
    config_dict = {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in dataclasses.asdict(config).items()}
    manifest = {
        "format": TRACE_FORMAT,
        "config": config_dict,
        "step": step,
        "arrays": {name: {"shape": list(a.shape), "dtype": str(a.dtype)} for name, a in sorted(arrays.items())},
    }
    path.with_suffix(".json").write_text(json.dumps(manifest, indent=2) + "\n")
    return path.with_suffix(".npz"), path.with_suffix(".json")
