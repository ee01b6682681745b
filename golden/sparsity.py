"""Sparsity in training: zero-value compression, the input zero-skip schedule, the ReLU-derivative row skip
and 4-bit slice skipping. Integer codes throughout (the hardware's words); nothing here changes a result.

Zero-value compression (ZVC)
----------------------------
A vector of ``n`` ``width``-bit words is stored as ``ceil(n / width)`` mask words (bit ``i`` of the mask,
little-endian across the words, is 1 when element ``i`` is non-zero) followed by the non-zero words in
order. :func:`zvc_encode` / :func:`zvc_decode`.

Input zero-skip schedule
------------------------
The zero-skip unit (:mod:`hw.zero_skip`) feeds ``slots`` compute slots per cycle with the non-zero
elements of a vector, each with its index (which selects the matching weight). Beats never mix two
vectors: a vector's non-zeros go out ``slots`` at a time, in index order, and its last beat is marked and
may be partly empty; a vector with no non-zero at all is one empty, marked beat. :func:`zero_skip_beats` is
that schedule (which element goes to which slot of which beat). The unit reads ``window`` elements per
cycle, the lookahead window: its throughput is bounded by ``slots`` non-zeros and ``window`` elements per
cycle (:func:`zero_skip_ideal_cycles`).

ReLU-derivative row skip
------------------------
The forward pass of layer ``l`` leaves one bit per activation, ``a > 0``; the error of that layer,
``(W^T d or B e) * mask``, is zero wherever the bit is 0, so error propagation computes only the rows whose
bit is 1 (:func:`drelu_mask`, :func:`ep_rows`).

Slice skipping
--------------
A DFXP code of ``bits`` bits is ``bits / 4`` 4-bit slices of its two's-complement pattern, the most
significant one signed. A slice multiplier slot is needed only for slices that carry information:
low slices that are zero are skipped, and top slices that are pure sign extension of the slice below are
folded into it (:func:`needed_slices`). :func:`slice_products` counts the slice products of a dot product
with and without skipping.

The slice-skipping PE (:mod:`hw.slice_skip`) takes beats of ``pairs`` operand pairs and, each cycle, the
next pairs of the beat whose slice products fit its ``slots`` slice multipliers together (a pair is never
split; a beat takes at least one cycle). :func:`slice_skip_groups` is that schedule, the same at every
pipeline depth; a dense 16-bit PE takes one pair per cycle. A dot product's result is offered
:func:`slice_skip_latency` cycles after the cycle that takes its last pairs.
"""

import numpy as np

from .dfxp import PRECISIONS


__all__ = ["beats", "mask_words", "zvc_encode", "zvc_decode", "zvc_words", "zero_skip_beats", "zero_skip_ideal_cycles",
           "dense_cycles", "drelu_mask", "ep_rows", "needed_slices", "slice_window", "slice_products",
           "slice_skip_groups", "slice_skip_latency"]


def beats(vector, width):
    """``vector`` as input beats of ``width`` elements (plain ints), the last one padded with zeros; an empty
    vector is one beat of zeros."""
    values = [int(v) for v in vector] or [0]
    values += [0] * (-len(values) % width)
    return [values[k:k + width] for k in range(0, len(values), width)]


def mask_words(mask, lanes):
    """A 1-bit mask as words of ``lanes`` bits, bit ``i`` of word ``k`` being element ``k * lanes + i``."""
    return [sum(bit << i for i, bit in enumerate(beat)) for beat in beats(mask, lanes)]


def _check_width(width):
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(f"Word width must be a positive integer, not {width!r}")


def zvc_encode(vector, width):
    """The ZVC words of ``vector`` (unsigned ``width``-bit codes): mask words, then the non-zero words."""
    _check_width(width)
    vector = [int(v) for v in vector]
    if any(v < 0 or v >> width for v in vector):
        raise ValueError(f"ZVC words must be unsigned {width}-bit codes")
    mask = sum(1 << i for i, v in enumerate(vector) if v)
    header = [(mask >> (width * j)) & ((1 << width) - 1) for j in range(-(-len(vector) // width))]
    return header + [v for v in vector if v]


def zvc_decode(words, n, width):
    """Inverse of :func:`zvc_encode` for a vector of ``n`` elements; raises on a malformed record."""
    _check_width(width)
    heads = -(-n // width)
    words = [int(w) for w in words]
    mask = sum(w << (width * j) for j, w in enumerate(words[:heads]))
    if mask >> n:
        raise ValueError(f"ZVC mask has bits set beyond element {n - 1}")
    data = iter(words[heads:])
    out = [next(data) if (mask >> i) & 1 else 0 for i in range(n)]
    if len(words) != heads + bin(mask).count("1"):
        raise ValueError(f"ZVC record of {len(words)} words does not match its mask")
    return out


def zvc_words(vector, width):
    """Length in words of the ZVC record of ``vector``."""
    return -(-len(vector) // width) + int(np.count_nonzero(vector))


def zero_skip_beats(vectors, slots):
    """The zero-skip schedule: a list of beats ``(pairs, last)``, ``pairs`` being up to ``slots``
    ``(value, index)`` of non-zero elements, ``last`` marking the final beat of each vector."""
    if not isinstance(slots, int) or slots < 1:
        raise ValueError(f"Slot count must be a positive integer, not {slots!r}")
    beats = []
    for vector in vectors:
        pairs = [(int(v), i) for i, v in enumerate(vector) if v]
        groups = [pairs[k:k + slots] for k in range(0, len(pairs), slots)] or [[]]
        beats += [(group, k == len(groups) - 1) for k, group in enumerate(groups)]
    return beats


def dense_cycles(vectors, slots):
    """Cycles of the dense path: every element takes a slot, ``slots`` per cycle, a vector at a time."""
    return sum(-(-len(v) // slots) for v in vectors)


def zero_skip_ideal_cycles(vectors, slots, window):
    """Lower bound of the zero-skip unit's cycles with no back-pressure: per vector, the larger of its
    output beats and its input cycles (``window`` elements per cycle)."""
    return sum(max(len(zero_skip_beats([v], slots)), -(-len(v) // window)) for v in vectors)


def drelu_mask(pre_activation):
    """The 1-bit ReLU derivative the forward pass stores: ``pre_activation > 0``."""
    return (np.asarray(pre_activation) > 0).astype(np.uint8)


def ep_rows(mask):
    """Rows error propagation must compute: those whose ReLU-derivative bit is 1."""
    return [int(i) for i in np.flatnonzero(np.asarray(mask))]


def slice_window(code, bits):
    """``(low, count)``: the slices ``low .. low + count - 1`` a code needs (the top one signed); ``(0, 0)``
    for zero. Their products reproduce the exact value."""
    count = int(needed_slices([code], bits)[0])
    if count == 0:
        return 0, 0
    unsigned = code & ((1 << bits) - 1)
    low = next(k for k in range(bits // 4) if (unsigned >> (4 * k)) & 0xF)
    return low, count


def needed_slices(codes, bits):
    """Per code, the number of 4-bit slices a slice multiplier must take.

    Slices ``0 .. bits/4 - 1`` from the least significant; the top slice is signed. A slice above slice
    ``j`` is redundant when the code fits in ``4 (j + 1)`` bits as a signed number (it is sign extension).
    Low slices that are zero are skipped. Zero takes no slice.
    """
    if bits not in PRECISIONS:
        raise ValueError(f"Code width must be one of {', '.join(map(str, PRECISIONS))}, not {bits!r}")
    codes = np.asarray(codes, dtype=np.int64)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if codes.size and (codes.min() < lo or codes.max() > hi):
        raise ValueError(f"codes must be signed {bits}-bit integers")
    total = bits // 4
    # Slices the signed value needs: the smallest k with -2^(4k-1) <= v < 2^(4k-1).
    top = np.ones(codes.shape, dtype=np.int64)
    for k in range(1, total):
        top = np.where((codes < -(1 << (4 * k - 1))) | (codes >= (1 << (4 * k - 1))), k + 1, top)
    # Zero low slices (of the two's-complement pattern) below the lowest non-zero slice.
    unsigned = codes & ((1 << bits) - 1)
    low = np.zeros(codes.shape, dtype=np.int64)
    for k in range(total - 1, -1, -1):
        low = np.where(((unsigned >> (4 * k)) & 0xF) != 0, k, low)
    needed = top - low
    return np.where(codes == 0, 0, needed)


def slice_products(a_codes, b_codes, bits_a, bits_b):
    """Slice products of ``sum_k a_k b_k``: ``(dense, skipped)``, dense = every pair of slices of every
    element, skipped = only the needed slices of both operands."""
    a, b = np.asarray(a_codes), np.asarray(b_codes)
    if a.shape != b.shape:
        raise ValueError(f"operands must have the same shape, not {a.shape} and {b.shape}")
    dense = a.size * (bits_a // 4) * (bits_b // 4)
    skipped = int(np.sum(needed_slices(a, bits_a) * needed_slices(b, bits_b)))
    return dense, skipped


def slice_skip_groups(a_beats, b_beats, bits, slots=16):
    """The slice-skipping PE's schedule: for each beat (a list of ``(a, b)`` codes, as ``a_beats[k]`` and
    ``b_beats[k]``), the list of cycles, each the pair indices it takes. Pair ``p`` costs
    ``needed(a_p) * needed(b_p)`` slice products; a cycle takes pairs in order while they fit ``slots``."""
    schedule = []
    for a_beat, b_beat in zip(a_beats, b_beats):
        costs = needed_slices(a_beat, bits) * needed_slices(b_beat, bits)
        cycles, current, used = [], [], 0
        for p, cost in enumerate(int(c) for c in costs):
            if used + cost > slots:
                cycles.append(current)
                current, used = [], 0
            current.append(p)
            used += cost
        cycles.append(current)
        schedule.append(cycles)
    return schedule


def slice_skip_latency(stages=0):
    """Cycles from the cycle the slice-skipping PE takes a dot product's last pairs to the first cycle it
    offers the result: 1, and 1 more per pipeline stage (``config.stages("slice_skip")``)."""
    if not isinstance(stages, int) or isinstance(stages, bool) or stages < 0:
        raise ValueError(f"Stages must be a non-negative integer, not {stages!r}")
    return 1 + stages
