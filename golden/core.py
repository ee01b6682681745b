"""The hardware-exact training step of the TrainCore: every tensor an integer array, every operation the
one the hardware performs.

:mod:`golden.training` shows that the number formats can train; this module says what the chip computes,
bit for bit, so that the RTL core (and its conversion, output-error and weight-update units) can be
checked against it after every step. Floating point appears only where data is loaded (the data set and
the initial weights are quantized once) and where results are reported (loss, accuracy).

Network, data, algorithms
-------------------------
A bias-free ReLU MLP ``sizes[0] -> ... -> sizes[-1]`` trained on mini-batches of ``batch`` samples (one
controller "sample" of :mod:`golden.pdfa_schedule` is one mini-batch; the weight-gradient GEMM accumulates
the batch, the forward and error passes run one column per sample). Data, initial weights and sample order
are those of :class:`golden.training.Trainer` for the same seed. Algorithms: ``bp``, ``dfa`` and ``pdfa``
(DFA pipelined with staleness 1: the forward pass of mini-batch ``t`` reads the weights after ``t - 1``
updates, exactly the versions of :mod:`golden.pdfa_schedule`; its update lands on the newest weights). A
*run* is one start of the controller over a sequence of mini-batches (:meth:`CoreTrainer.begin_run`; an
epoch is one run): its pipeline starts empty, so its first forward pass reads the newest weights.

Words and fractional lengths
----------------------------
Every tensor is a DFXP tensor (:mod:`golden.dfxp`): integer codes of ``bits`` bits and one fractional length
``frac``; code ``q`` means ``q * 2**-frac``. Layer ``l`` has a precision ``p_l`` (4, 8, 12 or 16 bits, a
run-time choice per layer): its weights, its input activations ``a_l`` and its error ``d_l`` are
``p_l``-bit words.

* **Master weights**: 16-bit words per layer (:data:`MASTER_BITS`) with a fixed fractional length
  ``frac_w[l]``, chosen when the weights are loaded: the largest one at which the initial weights fit with
  ``weight_headroom`` bits to spare. FF and EP read a ``p_l``-bit copy: the top ``p_l / 4`` slices of the
  master, rounded half up and saturated (:func:`read_weights`, fractional length ``frac_w - (16 - p_l)``), so
  precision is a per-layer run-time choice with one weight store.
* **Input**: the host sends ``p_0``-bit codes, rounded to nearest even at ``frac_in`` (the largest
  fractional length at which the training set fits).
* **Dynamic tensors**, each with a fractional length that moves after every conversion by the overflow
  rule: hidden activations ``a_l`` (l >= 1), logits ``z`` (16-bit, :data:`LOGIT_BITS`), the output error
  ``e``, hidden errors ``d_l``, weight gradients ``G_l`` (``grad_bits`` bits, 16 by default: the gradient
  goes straight from the WG array to the update unit and is never stored).

The conversion unit
-------------------
HNPU's SDFXP conversion (:func:`convert`): an exact accumulator value ``x`` with fractional length
``frac_in`` becomes a ``bits``-bit code at ``frac_out``. With ``s = frac_in - frac_out``:

* ``s <= 0``: ``q = x * 2**-s`` (exact);
* ``s > 0``: ``q = floor(x / 2**s) + up``: round to nearest even (``up`` when the remainder is above half,
  or exactly half and the floor is odd), or stochastic (``up`` when ``r < floor(rem * 2**16 / 2**s)``, ``r``
  the element's 16-bit draw, as :func:`golden.dfxp.quantize`);
* ``q`` saturates to the code range; with ``relu`` the input is ``max(x, 0)`` first;
* optional **stochastic thresholding** (``threshold = k > 0``, errors and gradients only): a code with
  ``0 < |q| < 2**k`` becomes ``sign(q) * 2**k`` (saturated to the code range) when a second draw
  ``r2 < |q| * 2**(16 - k)``, else 0 (unbiased while ``k <= bits - 2``, which :class:`CoreConfig` asks);
* two flags per element: ``ovf0``, the nearest-even rounding at ``frac_out`` lies outside the code range,
  and ``ovf1``, the same at ``frac_out + 1``. Counted per tensor, they give the next fractional length
  (:func:`next_frac`): with ``T = n >> overflow_shift`` (``n`` the tensor's elements; for an error, its
  unmasked elements), ``frac - 1`` when
  more than ``T`` elements overflow at ``frac``, else ``frac + 1`` when at most ``T`` overflow at
  ``frac + 1``, else ``frac``; clamped to :data:`FRAC_RANGE`. Integers only.

Random draws
------------
Stochastic rounding and thresholding draw from :class:`golden.dfxp.Lfsr` generators, one per *lane* of a
unit, seeded by :func:`lane_seed` (unit, lane, run seed) and never reset between steps. A unit that takes a
GEMM's ``M x N`` result from an engine with an output tile of ``R x C`` has ``C`` lanes: the result is cut
into ``R x C`` tiles, visited row-major (tile rows outer), each tile row by row, and lane ``c`` takes the
elements of tile column ``c`` (:func:`tile_order`). Each stochastic element takes one draw (two with
thresholding: rounding first) from its lane, in that order; padding positions and positions whose dReLU
mask is 0 (their result is 0) take none. Units and tiles:

* output-error unit (:data:`Unit.ERROR`): one lane per sample of a group of ``C``, the ``classes x batch``
  error one column group at a time, classes in order (tile ``classes x C``);
* EP conversion (:data:`Unit.EP`): BP ``W^T E`` on the ``R x C`` array; DFA one column group of ``C``
  samples at a time over all rows (tile ``M x C``);
* WG conversion (:data:`Unit.WG`) and weight update (:data:`Unit.UPDATE`): ``G = E X^T`` on the ``R x C``
  array, the update taking the converted gradient in the same order.

Each engine runs its operations in the order of :func:`golden.pdfa_schedule.program`: layers descending
for BP and DFA, ascending for PDFA; the units' draws follow that order.

One training step (mini-batch ``t``)
------------------------------------
1. **FF**, ``l = 0 .. L-1`` on the PE array: ``acc = read_weights(W_l) @ a_l`` exactly (accumulator of
   ``32 + log2(max_k)`` bits, which no reduction of at most ``max_k`` beats can overflow); hidden layers
   keep the dReLU mask ``acc > 0`` and convert ``relu(acc)`` to ``a_{l+1}`` (``p_{l+1}`` bits, nearest even);
   the last layer converts ``acc`` to the logits ``z`` (16 bits, nearest even).
2. **Output error** (:func:`output_error`): per sample, a base-2 softmax made of integer parts, minus the
   one-hot label, converted to ``e`` (``p_{L-1}`` bits, stochastic). Cross-entropy's gradient is
   ``p - y``; the batch mean's ``1 / batch`` is folded into the learning-rate shift.
3. **EP** for hidden layers: BP ``acc = read_weights(W_{l+1})^T @ d_{l+1}`` (the transposed read of the
   same words), DFA ``acc = B_l @ e`` with ``B_l`` of :func:`golden.training.feedback_matrix` (exact, as
   :func:`golden.dfa_ep.dfa_ep`) at fractional length ``frac_e + feedback_shift`` (the shift is a change of
   scale, not an operation); masked by the dReLU mask, converted to ``d_l`` (``p_l`` bits, stochastic).
4. **WG**: ``acc = d_l @ a_l^T`` (the batch is the reduction), converted to ``G_l`` (stochastic), and the
   **weight update** (:func:`weight_update`): ``W <- sat16(W - SR(G * 2**(frac_w - frac_g - lr_shift)))``,
   the shift a stochastic rounding like the conversion's (exact when the shift is not positive).

The output-error unit
---------------------
For each sample (column) of the 16-bit logits ``z`` at ``frac_z``:

* ``d_i = z_i - max(z)`` (<= 0); ``t_i = floor(d_i * LOG2E / 2**(frac_z + 12 - 6))``, the exponent in
  base 2 with 6 fractional bits (:data:`LOG2E` = round(log2(e) * 2**12) = 5909, a constant multiplier);
* ``E_i = EXP2[t_i mod 64] >> (-(t_i >> 6))`` (0 when the shift reaches 16): a 64-entry table of
  16-bit words, ``EXP2[f] = round(2**(15 + f / 64))`` (:data:`EXP2_TABLE`), so ``E_i`` is ``2**t_i`` in
  Q15; the largest logit gives exactly ``2**15``;
* ``S = sum_i E_i`` (at least ``2**15``), one reciprocal per sample ``R = floor(2**35 / S)`` (at most
  ``2**20``), ``p_i = (E_i * R) >> 19`` (the probability in Q16);
* ``g_i = p_i - 2**16 [i = label]`` in Q16 (``frac_in = 16``), converted to ``e``.

Table sizes: one 64 x 16-bit exponent table, one 13-bit constant, one 36 / 20-bit reciprocal.
"""

import dataclasses
import enum
import math

import numpy as np

from . import dfxp
from .dfxp import Lfsr
from .pdfa_schedule import program
from .training import feedback_matrix, load_digits_split


__all__ = [
    "MASTER_BITS", "LOGIT_BITS", "FRAC_RANGE", "LOG2E", "EXP_FRAC_BITS", "EXP2_TABLE", "RECIP_BITS",
    "Unit", "Rounding", "CoreError", "CoreConfig", "ConvertResult", "CoreTrainer",
    "lane_seed", "tile_order", "draw_in_order", "shift_round", "convert", "next_frac", "calibrate_frac",
    "read_weights", "weight_update", "output_error", "softmax_parts", "parse_precision",
]

#: Bits of a master weight.
MASTER_BITS = 16
#: Bits of a logit word.
LOGIT_BITS = 16
#: Range of every dynamic fractional length (a 7-bit signed register).
FRAC_RANGE = (-64, 63)
#: log2(e) with 12 fractional bits.
LOG2E = round(math.log2(math.e) * 2 ** 12)
_LOG2E_FRAC = 12
#: Fractional bits of the base-2 exponent (the table has 2**EXP_FRAC_BITS entries).
EXP_FRAC_BITS = 6
#: 2**(15 + f/64) for f = 0..63: the exponent table (16-bit words).
EXP2_TABLE = tuple(round(2.0 ** (15 + f / 2 ** EXP_FRAC_BITS)) for f in range(2 ** EXP_FRAC_BITS))
#: The reciprocal is floor(2**RECIP_BITS / S).
RECIP_BITS = 35
_PROB_SHIFT = RECIP_BITS - 16
#: Fractional length of the output-error unit's ``p - y`` (Q16).
ERROR_FRAC_IN = 16

Rounding = dfxp.Rounding


class Unit(enum.IntEnum):
    """The units that draw random numbers, in the order of their LFSR seeds."""
    ERROR = 0       #: output-error unit
    EP = 1          #: EP conversion
    WG = 2          #: WG (gradient) conversion
    UPDATE = 3      #: weight-update unit


class CoreError(enum.IntEnum):
    """Why the TrainCore refuses a start (its ``status.error``), checked in this order; 1 to 6 are the codes
    of :class:`golden.pdfa_schedule.Error`."""
    NONE = 0
    EMPTY_TABLE = 1         #: no layer
    TOO_MANY_LAYERS = 2     #: more layers than the core holds
    ZERO_SIZE = 3           #: a layer with no input or no output
    SIZE_MISMATCH = 4       #: n_out of a layer differs from n_in of the next
    BAD_PRECISION = 5       #: a precision the core was not built for
    PIPELINED_BP = 6        #: (the controller's; the core's feedback follows the algorithm)
    TOO_LARGE = 7           #: a layer wider than the core, a batch of 0 or above its maximum, or the
    #:                          network larger than its weight or activation buffers
    BAD_OUTPUT = 8          #: the last layer's width is not the output-error unit's class count
    BAD_ALGORITHM = 9       #: an algorithm code that names none
    BUSY = 10               #: a start while a run is in progress (the run goes on)


_PRECISION_NAMES = {f"dfxp{p}": p for p in dfxp.PRECISIONS}


def parse_precision(value, layers):
    """Per-layer precisions (a tuple of bit widths) from one value or one per layer: 8, "dfxp8", "8",
    or a comma-separated string / sequence of those. Raises ValueError with one line."""
    if isinstance(value, str):
        parts = [v.strip() for v in value.split(",")]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = [value]
    bits = []
    for part in parts:
        if isinstance(part, str):
            name = part.lower()
            p = _PRECISION_NAMES.get(name, int(name) if name.isdigit() else None)
        elif isinstance(part, (int, np.integer)) and not isinstance(part, bool):
            p = int(part)
        else:
            p = None
        if p not in dfxp.PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(_PRECISION_NAMES)} (or 4, 8, 12, 16), "
                             f"not {part!r}")
        bits.append(p)
    if len(bits) == 1:
        bits *= layers
    if len(bits) != layers:
        raise ValueError(f"precision must name one width or one per layer ({layers}), not {len(bits)}")
    return tuple(bits)


def _per_layer(name, value, layers, lo, hi):
    values = list(value) if isinstance(value, (list, tuple)) else [value] * layers
    if len(values) != layers:
        raise ValueError(f"{name} must be one value or one per layer ({layers}), not {len(values)}")
    for v in values:
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not lo <= v <= hi:
            raise ValueError(f"{name} must be an integer in [{lo}, {hi}], not {v!r}")
    return tuple(int(v) for v in values)


@dataclasses.dataclass(frozen=True)
class CoreConfig:
    """One training run of the integer core.

    Attributes
    ----------
    sizes : tuple of int
        Layer widths, input first (at least two, each in 1 .. 65535).
    algorithm : str
        ``"bp"``, ``"dfa"`` or ``"pdfa"``.
    precision : int, str or tuple
        Layer precisions: one for every layer or one per layer (4, 8, 12, 16 or ``"dfxp8"``...).
    batch : int
        Samples per mini-batch (per step).
    epochs : int
        Epochs of :meth:`CoreTrainer.run`.
    lr_shift : int or tuple
        Learning-rate shift per layer (0..31): the update is ``G * 2**-lr_shift`` with ``G`` the batch's
        summed gradient. The default, 9 at batch 32, is a learning rate of 1/16 on the batch mean.
    feedback_shift : int or None
        DFA: ``B e`` is taken at ``2**-feedback_shift`` (0..15). By default
        ``floor(log2(sizes[0]) / 2) + floor(log2(hidden) / 2)`` with ``hidden = len(sizes) - 2`` hidden
        layers: 3 for digits MLPs of 2 to 4 weight layers, 4 for 5 to 16 of them and for 784-pixel images,
        where a smaller shift makes DFA diverge at the default learning rate (each hidden layer's update
        scales with ``2**-feedback_shift``, and every hidden layer moves the output at once).
    seed : int
        Initial weights, sample order (as :class:`golden.training.Trainer`), feedback matrices, LFSR seeds.
    array : tuple of int
        ``(rows, cols)`` of the PE array's output tile; ``cols`` is also the lane count of the units.
    max_k : int
        Beats of the longest reduction the accumulator is sized for (a power of two, 2 .. 4096).
    overflow_shift : int
        Overflow-rule threshold: at most ``n >> overflow_shift`` overflowing elements of ``n`` (0..31).
    threshold : int
        Stochastic thresholding of errors and gradients at ``2**threshold`` codes; 0 = off.
    grad_bits : int
        Bits of a converted weight gradient (4, 8, 12 or 16).
    weight_headroom : int
        Integer bits kept free above the initial weights when ``frac_w`` is chosen (0..8).
    """
    sizes: tuple = (64, 128, 128, 10)
    algorithm: str = "pdfa"
    precision: object = 8
    batch: int = 32
    epochs: int = 30
    lr_shift: object = 9
    feedback_shift: object = None
    seed: int = 0
    array: tuple = (8, 8)
    max_k: int = 4096
    overflow_shift: int = 10
    threshold: int = 0
    grad_bits: int = 16
    weight_headroom: int = 1

    def __post_init__(self):
        sizes = tuple(self.sizes) if isinstance(self.sizes, (list, tuple)) else self.sizes
        if not isinstance(sizes, tuple) or len(sizes) < 2 or any(
                not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 1 <= n <= 65535 for n in sizes):
            raise ValueError(f"sizes must be at least two integers in [1, 65535], not {self.sizes!r}")
        sizes = tuple(int(n) for n in sizes)
        object.__setattr__(self, "sizes", sizes)
        layers = len(sizes) - 1
        if self.feedback_shift is None:
            hidden = max(1, len(sizes) - 2)
            object.__setattr__(self, "feedback_shift",
                               min(15, (sizes[0].bit_length() - 1) // 2 + (hidden.bit_length() - 1) // 2))
        if self.algorithm not in ("bp", "dfa", "pdfa"):
            raise ValueError(f"algorithm must be one of bp, dfa, pdfa, not {self.algorithm!r}")
        object.__setattr__(self, "precision", parse_precision(self.precision, layers))
        object.__setattr__(self, "lr_shift", _per_layer("lr_shift", self.lr_shift, layers, 0, 31))
        for name, lo, hi in (("batch", 1, 65535), ("epochs", 1, 100000), ("feedback_shift", 0, 15),
                             ("overflow_shift", 0, 31), ("threshold", 0, 15), ("weight_headroom", 0, 8),
                             ("seed", 0, 2 ** 31 - 1)):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not lo <= value <= hi:
                raise ValueError(f"{name} must be an integer in [{lo}, {hi}], not {value!r}")
        if self.grad_bits not in dfxp.PRECISIONS or isinstance(self.grad_bits, bool):
            raise ValueError(f"grad_bits must be one of {list(dfxp.PRECISIONS)}, not {self.grad_bits!r}")
        narrowest = min(self.precision + (self.grad_bits,))
        if self.threshold > narrowest - 2:
            raise ValueError(f"threshold must be at most {narrowest - 2} (the narrowest error or gradient word, "
                             f"{narrowest} bits, minus 2), not {self.threshold}")
        array = tuple(self.array) if isinstance(self.array, (list, tuple)) else self.array
        if not isinstance(array, tuple) or len(array) != 2 or any(
                not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 1 <= n <= 64 for n in array):
            raise ValueError(f"array must be (rows, cols) with each in [1, 64], not {self.array!r}")
        object.__setattr__(self, "array", tuple(int(n) for n in array))
        if not isinstance(self.max_k, int) or isinstance(self.max_k, bool) or not 2 <= self.max_k <= 4096 \
                or self.max_k & (self.max_k - 1):
            raise ValueError(f"max_k must be a power of two in [2, 4096], not {self.max_k!r}")
        # Every reduction must fit the accumulator: FF/EP reduce over a layer's width, WG over the batch.
        for l, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
            p = self.precision[l]
            per_beat = (4 // _span(p)) ** 2
            longest = max(n_in, n_out, self.batch)
            if -(-longest // per_beat) > self.max_k:
                raise ValueError(f"layer {l}: a reduction of {longest} at {p} bits needs more than max_k = "
                                 f"{self.max_k} beats")

    @property
    def layers(self):
        return len(self.sizes) - 1

    @property
    def pipelined(self):
        return self.algorithm == "pdfa"

    @property
    def staleness(self):
        return 1 if self.pipelined else 0

    @property
    def acc_width(self):
        """Accumulator bits of the PE array (as :attr:`hw.config.PEArrayConfig.acc_width`)."""
        return 32 + int(math.log2(self.max_k))


def _span(p):
    return {4: 1, 8: 2, 12: 4, 16: 4}[p]


# -- random draws -----------------------------------------------------------------------------------------

def lane_seed(unit, lane, seed=0):
    """LFSR seed of lane ``lane`` of ``unit`` for run seed ``seed``: a non-zero 32-bit value."""
    value = ((seed * 0x9E3779B1) ^ ((int(unit) * 256 + lane + 1) * 0xC2B2AE35)) & 0xFFFFFFFF
    value ^= value >> 15
    return value or 1


def tile_order(valid, tile):
    """Positions of the ``True`` elements of ``valid`` (``M x N``) per lane, in the order of the units.

    ``tile = (R, C)`` (``R = None`` for a whole column); returns a list of ``C`` ``(rows, cols)`` index
    arrays: lane ``c`` takes tile column ``c``; tiles row-major, each tile row by row.
    """
    valid = np.asarray(valid, dtype=bool)
    m, n = valid.shape
    rows, cols = tile
    rows = rows or max(m, 1)
    mp, np_ = -(-m // rows) * rows, -(-n // cols) * cols
    padded = np.zeros((mp, np_), dtype=bool)
    padded[:m, :n] = valid
    # flat index of (i, j) in the padded matrix, as (tile row, row in tile, tile column, lane)
    flat = np.arange(mp * np_, dtype=np.int64).reshape(mp // rows, rows, np_ // cols, cols)
    per_lane = flat.transpose(3, 0, 2, 1).reshape(cols, -1)     # lane, then tile row, tile column, row
    out = []
    for c in range(cols):
        index = per_lane[c][padded.ravel()[per_lane[c]]]
        out.append((index // np_, index % np_))
    return out


def draw_in_order(lfsrs, valid, tile, per_element=1):
    """Draws of the lanes ``lfsrs`` for the valid elements in :func:`tile_order`: ``(M, N, per_element)``
    uint32 (zero where nothing is drawn). Advances the generators."""
    valid = np.asarray(valid, dtype=bool)
    out = np.zeros(valid.shape + (per_element,), dtype=np.int64)
    for lfsr, (ii, jj) in zip(lfsrs, tile_order(valid, (tile[0], len(lfsrs)))):
        if len(ii):
            out[ii, jj] = lfsr.draw(len(ii) * per_element).reshape(len(ii), per_element)
    return out


# -- the conversion unit ----------------------------------------------------------------------------------

def shift_round(x, shift, rounding=Rounding.NEAREST_EVEN, draws=None):
    """``x * 2**-shift`` rounded to an integer, exactly, for int64 ``x`` (``|x| < 2**46``) and any integer
    ``shift``: exact when ``shift <= 0`` (values beyond ``2**20`` are clipped, which does not change any
    saturated result of this module), else nearest even or stochastic with 16-bit ``draws``."""
    x = np.asarray(x, dtype=np.int64)
    shift = int(shift)
    if shift <= 0:
        return np.clip(x, -(1 << 20), 1 << 20) << min(-shift, 40)
    shift = min(shift, 62)
    floor = x >> shift
    rem = x - (floor << shift)
    if Rounding(rounding) is Rounding.NEAREST_EVEN:
        half = np.int64(1) << (shift - 1)
        up = (rem > half) | ((rem == half) & ((floor & 1) == 1))
    else:
        if draws is None:
            raise ValueError("stochastic rounding needs draws")
        f16 = (rem << (16 - shift)) if shift <= 16 else (rem >> (shift - 16))
        up = np.asarray(draws, dtype=np.int64) < f16
    return floor + up


@dataclasses.dataclass
class ConvertResult:
    """Output of :func:`convert`: codes and the per-element overflow flags at ``frac`` and ``frac + 1``."""
    codes: np.ndarray
    ovf0: np.ndarray
    ovf1: np.ndarray

    @property
    def counts(self):
        return int(self.ovf0.sum()), int(self.ovf1.sum())


def convert(x, frac_in, bits, frac_out, *, rounding=Rounding.NEAREST_EVEN, draws=None, relu=False,
            threshold=0, threshold_draws=None):
    """The conversion unit: accumulator values ``x`` (fractional length ``frac_in``) to ``bits``-bit codes
    at ``frac_out`` (see the module docstring). Returns a :class:`ConvertResult`."""
    lo, hi = dfxp.code_range(bits)
    x = np.asarray(x, dtype=np.int64)
    if relu:
        x = np.maximum(x, 0)
    shift = int(frac_in) - int(frac_out)
    q = np.clip(shift_round(x, shift, rounding, draws), lo, hi)
    if threshold:
        tau = 1 << threshold
        small = (q != 0) & (np.abs(q) < tau)
        keep = np.asarray(threshold_draws, dtype=np.int64) < (np.abs(q) << (16 - threshold))
        q = np.where(small, np.clip(np.where(keep, np.sign(q) * tau, 0), lo, hi), q)
    near0 = shift_round(x, shift)
    near1 = shift_round(x, shift - 1)
    return ConvertResult(q.astype(np.int64), (near0 < lo) | (near0 > hi), (near1 < lo) | (near1 > hi))


def next_frac(frac, ovf0, ovf1, count, overflow_shift):
    """The overflow rule: the fractional length after a conversion of ``count`` elements of which ``ovf0``
    overflow at ``frac`` and ``ovf1`` at ``frac + 1``."""
    limit = int(count) >> int(overflow_shift)
    if ovf0 > limit:
        frac -= 1
    elif ovf1 <= limit:
        frac += 1
    return int(min(max(frac, FRAC_RANGE[0]), FRAC_RANGE[1]))


def calibrate_frac(x, frac_in, bits, overflow_shift, relu=False):
    """The largest fractional length in :data:`FRAC_RANGE` at which at most ``n >> overflow_shift`` of the
    values ``x`` (fractional length ``frac_in``) overflow when rounded to nearest (integers only)."""
    x = np.asarray(x, dtype=np.int64)
    if relu:
        x = np.maximum(x, 0)
    limit = x.size >> overflow_shift
    lo, hi = dfxp.code_range(bits)
    for frac in range(FRAC_RANGE[1], FRAC_RANGE[0] - 1, -1):
        q = shift_round(x, int(frac_in) - frac)
        if int(((q < lo) | (q > hi)).sum()) <= limit:
            return frac
    return FRAC_RANGE[0]


# -- weights ----------------------------------------------------------------------------------------------

def read_weights(master, bits):
    """The ``bits``-bit copy of 16-bit master weights that FF and EP read: the top ``bits / 4`` slices,
    rounded half up and saturated. Its fractional length is the master's minus ``16 - bits``."""
    master = np.asarray(master, dtype=np.int64)
    s = MASTER_BITS - bits
    if s == 0:
        return master
    lo, hi = dfxp.code_range(bits)
    return np.clip((master + (1 << (s - 1))) >> s, lo, hi)


def weight_update(master, grad, shift, draws):
    """The weight-update unit: ``sat16(master - SR(grad * 2**-shift))``, ``shift = frac_g + lr_shift -
    frac_w``; stochastic rounding with one 16-bit draw per element (exact when ``shift <= 0``)."""
    delta = shift_round(np.asarray(grad, dtype=np.int64), shift, Rounding.STOCHASTIC, draws)
    lo, hi = dfxp.code_range(MASTER_BITS)
    return np.clip(np.asarray(master, dtype=np.int64) - np.clip(delta, -(1 << 17), 1 << 17), lo, hi)


# -- the output-error unit --------------------------------------------------------------------------------

def softmax_parts(z, frac_z):
    """The integer softmax of logit codes ``z`` (``classes x batch``, fractional length ``frac_z``):
    ``(E, S, R, p)`` - the Q15 exponents, their column sums, the reciprocals and the Q16 probabilities."""
    z = np.asarray(z, dtype=np.int64)
    d = z - z.max(axis=0, keepdims=True)
    scale = int(frac_z) + _LOG2E_FRAC - EXP_FRAC_BITS
    prod = d * LOG2E
    # A left shift (frac_z < -6) is exact; a product below -2**20 gives E = 0 at any shift, so it is clipped
    # there first to stay inside int64.
    t = prod >> scale if scale >= 0 else np.maximum(prod, -(1 << 20)) << min(-scale, 40)
    n = -(t >> EXP_FRAC_BITS)                                   # >= 0
    table = np.array(EXP2_TABLE, dtype=np.int64)
    e = np.where(n >= 16, 0, table[t & ((1 << EXP_FRAC_BITS) - 1)] >> np.minimum(n, 16))
    s = e.sum(axis=0)
    r = (np.int64(1) << RECIP_BITS) // s
    p = (e * r) >> _PROB_SHIFT
    return e, s, r, p


def output_error(z, frac_z, labels, bits, frac_e, draws):
    """The output-error unit: logits ``z`` (``classes x batch`` codes at ``frac_z``) and labels in, the
    error ``p - onehot(label)`` as ``bits``-bit codes at ``frac_e`` out (stochastic rounding with
    ``draws``, one per element). Returns a :class:`ConvertResult`."""
    _, _, _, p = softmax_parts(z, frac_z)
    labels = np.asarray(labels, dtype=np.int64)
    g = p.copy()
    g[labels, np.arange(p.shape[1])] -= 1 << 16
    return convert(g, ERROR_FRAC_IN, bits, frac_e, rounding=Rounding.STOCHASTIC, draws=draws)


# -- the trainer ------------------------------------------------------------------------------------------

def _gemm(a, b):
    """Exact integer product (float64 BLAS is exact here: every partial sum stays below 2**53)."""
    out = np.asarray(a, dtype=np.float64) @ np.asarray(b, dtype=np.float64)
    return out.astype(np.int64)


class CoreTrainer:
    """A training run of :class:`CoreConfig` in the core's integer arithmetic.

    ``data`` is ``(x_train, y_train, x_test, y_test)`` (float features in rows, int labels), digits by
    default; any data set whose width is ``sizes[0]`` trains.

    State (what the hardware holds): ``masters`` (16-bit master weights per layer, int64 arrays ``out x in``)
    with ``frac_w``; ``frac_in``; ``fracs`` (the dynamic fractional lengths by tensor name: ``a1 .. a{L-1}``,
    ``z``, ``e``, ``d0 .. d{L-2}``, ``g0 .. g{L-1}``); ``lfsrs`` (per :class:`Unit`, one generator per lane);
    ``overflow`` (the last conversion's ``(ovf0, ovf1, count)`` per tensor name).
    """

    def __init__(self, config, data=None):
        if not isinstance(config, CoreConfig):
            raise TypeError(f"config must be a CoreConfig, not {config!r}")
        self.config = config
        self.data = data if data is not None else load_digits_split()
        if len(self.data) != 4:
            raise ValueError("data must be (x_train, y_train, x_test, y_test)")
        for x in (self.data[0], self.data[2]):
            if np.ndim(x) != 2 or np.shape(x)[1] != config.sizes[0]:
                raise ValueError(f"data has {np.shape(x)[-1]} features per sample; sizes[0] is {config.sizes[0]}")
        for y in (self.data[1], self.data[3]):
            if np.any((np.asarray(y) < 0) | (np.asarray(y) >= config.sizes[-1])):
                raise ValueError(f"labels must lie in [0, {config.sizes[-1]})")
        cfg = config
        # Data loading: input codes at the precision of layer 0.
        p0 = cfg.precision[0]
        self.frac_in = dfxp.initial_frac(self.data[0], p0, threshold=0.0)
        self.x_train = dfxp.quantize(self.data[0], p0, self.frac_in).astype(np.int64)
        self.x_test = dfxp.quantize(self.data[2], p0, self.frac_in).astype(np.int64)
        self.y_train = np.asarray(self.data[1], dtype=np.int64)
        self.y_test = np.asarray(self.data[3], dtype=np.int64)
        # Weight loading: the float initial weights of golden.training.Trainer, to 16-bit masters.
        rng = np.random.default_rng(cfg.seed)
        floats = [rng.normal(size=(o, i)) * np.sqrt(2.0 / i) for i, o in zip(cfg.sizes, cfg.sizes[1:])]
        floats = [w.astype(np.float32) for w in floats]
        self.frac_w = [dfxp.initial_frac(w, MASTER_BITS, threshold=0.0) - cfg.weight_headroom for w in floats]
        self.masters = [dfxp.quantize(w, MASTER_BITS, f).astype(np.int64) for w, f in zip(floats, self.frac_w)]
        self.history = [list(self.masters)]
        self.order_rng = np.random.default_rng(cfg.seed + 1)
        self.feedback = [feedback_matrix(l, n, cfg.sizes[-1], cfg.seed).astype(np.int64)
                         for l, n in enumerate(cfg.sizes[1:-1])]
        lanes = cfg.array[1]
        self.lfsrs = {unit: [Lfsr(lane_seed(unit, lane, cfg.seed)) for lane in range(lanes)] for unit in Unit}
        self.overflow = {}
        self.step_count = 0
        self.fracs = self.calibrate(self.x_train[:cfg.batch].T, self.y_train[:cfg.batch])

    # -- pieces of a step ----------------------------------------------------------------------------------

    def _layer_frac_w(self, l):
        return self.frac_w[l] - (MASTER_BITS - self.config.precision[l])

    def _convert(self, name, x, frac_in, bits, valid=None, **kwargs):
        """Convert a tensor at its current fractional length, record the counters, move the length. Only
        ``valid`` elements (all by default; the unmasked ones of an error) count."""
        frac = self.fracs[name]
        result = convert(x, frac_in, bits, frac, **kwargs)
        ovf0, ovf1 = result.counts
        count = result.codes.size if valid is None else int(np.count_nonzero(valid))
        self.overflow[name] = (ovf0, ovf1, count)
        self.fracs[name] = next_frac(frac, ovf0, ovf1, count, self.config.overflow_shift)
        return result.codes, frac

    def _sr(self, unit, valid, tile):
        """Rounding (and thresholding) draws of ``unit`` for the valid elements, in the unit's order."""
        per = 2 if self.config.threshold and unit in (Unit.EP, Unit.WG) else 1
        draws = draw_in_order(self.lfsrs[unit], valid, tile, per)
        kwargs = {"rounding": Rounding.STOCHASTIC, "draws": draws[..., 0]}
        if per == 2:
            kwargs.update(threshold=self.config.threshold, threshold_draws=draws[..., 1])
        return kwargs

    def forward(self, weights, x, fracs, *, train):
        """FF of every layer: ``(acts, act_fracs, masks, logits, frac_z)``. ``train`` updates the fractional
        lengths and counters (else they are read from ``fracs`` and left alone)."""
        cfg = self.config
        acts, act_fracs, masks = [x], [self.frac_in], []
        for l in range(cfg.layers):
            acc = _gemm(read_weights(weights[l], cfg.precision[l]), acts[-1])
            frac_acc = self._layer_frac_w(l) + act_fracs[-1]
            last = l == cfg.layers - 1
            name = "z" if last else f"a{l + 1}"
            bits = LOGIT_BITS if last else cfg.precision[l + 1]
            if train:
                codes, frac = self._convert(name, acc, frac_acc, bits, relu=not last)
            else:
                frac = fracs[name]
                codes = convert(acc, frac_acc, bits, frac, relu=not last).codes
            if last:
                return acts, act_fracs, masks, codes, frac
            masks.append(acc > 0)
            acts.append(codes)
            act_fracs.append(frac)

    def step_codes(self, x, labels):
        """One mini-batch of input codes ``x`` (``features x batch``) and labels; returns the loss."""
        cfg = self.config
        L = cfg.layers
        rows, cols = cfg.array
        fwd = self.history[max(0, len(self.history) - 1 - cfg.staleness)]
        acts, act_fracs, masks, z, frac_z = self.forward(fwd, x, self.fracs, train=True)
        labels = np.asarray(labels, dtype=np.int64)
        loss = _xent(z, frac_z, labels)

        # Output error (a lane per sample of a column group).
        draws = draw_in_order(self.lfsrs[Unit.ERROR], np.ones(z.shape, dtype=bool), (None, cols))[..., 0]
        frac_e = self.fracs["e"]
        res = output_error(z, frac_z, labels, cfg.precision[L - 1], frac_e, draws)
        ovf0, ovf1 = res.counts
        self.overflow["e"] = (ovf0, ovf1, res.codes.size)
        self.fracs["e"] = next_frac(frac_e, ovf0, ovf1, res.codes.size, cfg.overflow_shift)
        deltas, delta_fracs = [None] * L, [None] * L
        deltas[L - 1], delta_fracs[L - 1] = res.codes, frac_e

        # EP, in the EP engine's order.
        for l, _ in program("EP", L, 1, pipelined=cfg.pipelined):
            mask = masks[l]
            if cfg.algorithm == "bp":
                w = read_weights(fwd[l + 1], cfg.precision[l + 1])
                acc = _gemm(w.T, deltas[l + 1])
                frac_acc = self._layer_frac_w(l + 1) + delta_fracs[l + 1]
                tile = (rows, cols)
            else:
                acc = _gemm(self.feedback[l], deltas[L - 1])
                frac_acc = delta_fracs[L - 1] + cfg.feedback_shift
                tile = (None, cols)
            acc = np.where(mask, acc, 0)
            deltas[l], delta_fracs[l] = self._convert(f"d{l}", acc, frac_acc, cfg.precision[l], valid=mask,
                                                      **self._sr(Unit.EP, mask, tile))

        # WG and the update, in the WG engine's order, on the newest weights.
        newest = list(self.history[-1])
        for l, _ in program("WG", L, 1, pipelined=cfg.pipelined):
            acc = _gemm(deltas[l], acts[l].T)
            frac_acc = delta_fracs[l] + act_fracs[l]
            every = np.ones(acc.shape, dtype=bool)
            grad, frac_g = self._convert(f"g{l}", acc, frac_acc, cfg.grad_bits, **self._sr(Unit.WG, every, (rows, cols)))
            draws = draw_in_order(self.lfsrs[Unit.UPDATE], every, (rows, cols))[..., 0]
            newest[l] = weight_update(newest[l], grad, frac_g + cfg.lr_shift[l] - self.frac_w[l], draws)

        self.history.append(newest)
        del self.history[:-(cfg.staleness + 1)]
        self.masters = newest
        self.step_count += 1
        return loss

    def calibrate(self, x, labels):
        """Initial fractional lengths of the dynamic tensors, from one forward and backward pass over input
        codes ``x`` with the initial weights: each the largest at which the tensor meets the overflow rule
        (:func:`calibrate_frac`; integers only, nearest-even rounding, no draws, no update)."""
        cfg = self.config
        L = cfg.layers
        fracs = {}
        a, fa, masks, acts, act_fracs = x, self.frac_in, [], [x], [self.frac_in]
        for l in range(L):
            acc = _gemm(read_weights(self.masters[l], cfg.precision[l]), a)
            frac_acc = self._layer_frac_w(l) + fa
            last = l == L - 1
            name, bits = ("z", LOGIT_BITS) if last else (f"a{l + 1}", cfg.precision[l + 1])
            fracs[name] = calibrate_frac(acc, frac_acc, bits, cfg.overflow_shift, relu=not last)
            codes = convert(acc, frac_acc, bits, fracs[name], relu=not last).codes
            if not last:
                masks.append(acc > 0)
                a, fa = codes, fracs[name]
                acts.append(a)
                act_fracs.append(fa)
        _, _, _, p = softmax_parts(codes, fracs["z"])
        g = p.copy()
        g[np.asarray(labels), np.arange(p.shape[1])] -= 1 << 16
        fracs["e"] = calibrate_frac(g, ERROR_FRAC_IN, cfg.precision[L - 1], cfg.overflow_shift)
        deltas = {L - 1: (convert(g, ERROR_FRAC_IN, cfg.precision[L - 1], fracs["e"]).codes, fracs["e"])}
        for l in range(L - 2, -1, -1):
            if cfg.algorithm == "bp":
                d, fd = deltas[l + 1]
                acc = _gemm(read_weights(self.masters[l + 1], cfg.precision[l + 1]).T, d)
                frac_acc = self._layer_frac_w(l + 1) + fd
            else:
                e, fe = deltas[L - 1]
                acc = _gemm(self.feedback[l], e)
                frac_acc = fe + cfg.feedback_shift
            acc = np.where(masks[l], acc, 0)
            fracs[f"d{l}"] = calibrate_frac(acc, frac_acc, cfg.precision[l], cfg.overflow_shift)
            deltas[l] = (convert(acc, frac_acc, cfg.precision[l], fracs[f"d{l}"]).codes, fracs[f"d{l}"])
        for l in range(L):
            d, fd = deltas[l]
            acc = _gemm(d, acts[l].T)
            fracs[f"g{l}"] = calibrate_frac(acc, fd + act_fracs[l], cfg.grad_bits, cfg.overflow_shift)
        return fracs

    # -- the Trainer interface ------------------------------------------------------------------------------

    def step(self, x, y):
        """One mini-batch: ``x`` is batch x features (float data, quantized as loaded), ``y`` labels."""
        codes = dfxp.quantize(x, self.config.precision[0], self.frac_in).astype(np.int64)
        return self.step_codes(codes.T, y)

    def batches(self):
        """The mini-batches of the next epoch: index arrays (advances the sample-order generator)."""
        order = self.order_rng.permutation(len(self.y_train))
        b = self.config.batch
        return [order[s:s + b] for s in range(0, len(order) - b + 1, b)]

    def begin_run(self):
        """Start a new run of the controller: its pipeline is empty, so the first forward pass of the run reads
        the newest weights (a run is one ``start`` of the hardware; :meth:`epoch` is one run)."""
        self.history = [self.history[-1]]

    def epoch(self):
        """One run over the training set in the order of :meth:`batches`; returns the mean loss."""
        self.begin_run()
        losses = [self.step_codes(self.x_train[idx].T, self.y_train[idx]) for idx in self.batches()]
        return float(np.mean(losses))

    def predict(self, codes):
        """Class predictions of the newest weights for input codes (samples x features); no state changes."""
        out = []
        for s in range(0, len(codes), 512):
            *_, z, _ = self.forward(self.masters, codes[s:s + 512].T, self.fracs, train=False)
            out.append(np.argmax(z, axis=0))
        return np.concatenate(out) if out else np.empty(0, dtype=np.int64)

    def accuracy(self, x, y):
        """Accuracy of the newest weights on float data ``x`` (quantized as the training data)."""
        codes = dfxp.quantize(x, self.config.precision[0], self.frac_in).astype(np.int64)
        return float(np.mean(self.predict(codes) == np.asarray(y)))

    def run(self, progress=None):
        """Train for ``config.epochs``; returns per-epoch ``loss``, ``train_accuracy``, ``test_accuracy``."""
        curve = {"loss": [], "train_accuracy": [], "test_accuracy": []}
        for epoch in range(self.config.epochs):
            curve["loss"].append(self.epoch())
            curve["train_accuracy"].append(float(np.mean(self.predict(self.x_train) == self.y_train)))
            curve["test_accuracy"].append(float(np.mean(self.predict(self.x_test) == self.y_test)))
            if progress:
                progress(epoch, curve)
        return curve


def _xent(z, frac_z, labels):
    """Mean cross-entropy of the logits, in float, for reports only."""
    logits = np.asarray(z, dtype=np.float64) * 2.0 ** -frac_z
    logits -= logits.max(axis=0, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=0, keepdims=True))
    return float(-np.mean(logp[labels, np.arange(len(labels))]))
