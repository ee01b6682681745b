"""Bit-scalable PE and PE array: exact dot-product semantics, operand beats and the three training GEMMs.

The PE
------
A PE holds a 4 x 4 grid of 4-bit slice multipliers. An operand of ``p`` bits spans ``span(p)`` rows (A side)
or columns (B side) of the grid: 1, 2 or 4 (a 12-bit operand takes 4, its fourth slot is zero). The grid is
tiled by ``span(pa) x span(pb)`` blocks, one operand pair per block, so a PE serves
``lanes(pa, pb) = (4 // span(pa)) * (4 // span(pb))`` pairs per cycle: 16 at 4x4, 4 at 8x8 and 16x4, 1 at
16x16 and 12x12.

The multipliers are unsigned: operands enter in offset binary, ``A = a + 2**(pa-1)`` (the two's-complement
code with its top bit flipped), so no partial product needs sign extension. Within a block, multiplier
``(i, k)`` forms ``slice_i(A) * slice_k(B) * 16**(i + k)`` and all products of all blocks are added, so a
beat adds ``offset_dot = sum_j A_j * B_j`` to the PE's accumulator (:func:`pe_offset_dot`). The signed
dot product follows exactly from

    sum_j a_j b_j = sum_j A_j B_j - 2**(pb-1) sum_j A_j - 2**(pa-1) sum_j B_j + n 2**(pa+pb-2)

where ``sum_j A_j`` depends only on the PE row's operands and ``sum_j B_j`` only on the PE column's: the
array accumulates them once per row and per column and applies the correction to each result as the
tile drains (:func:`pe_dot` computes the signed result this way).

The array
---------
``rows x cols`` PEs compute an output tile ``O[r, c] = sum_k L[r, k] * R[k, c]``. Per beat (cycle) PE row
``r`` receives ``n = lanes(pa, pb)`` consecutive reduction elements of ``L``'s row ``r`` (broadcast along
the row) and PE column ``c`` the same ``n`` elements of ``R``'s column ``c``.

Operands arrive in the layout they have in memory, and the mode configures the data path:

* ``Mode.FF``  ``Y = W X``:    A side ``W`` (rows of W), B side the stored activations ``Xs = X^T``.
* ``Mode.EP``  ``E' = W^T E``: A side ``W`` read *transposed*, B side the stored errors ``Es = E^T``.
* ``Mode.WG``  ``G = E X^T``:  A side ``Es`` read transposed, B side ``Xs`` read transposed.

Activations and errors are stored one sample per memory row (``Xs[b, :]`` is sample ``b``); the weights
``W[m, n]`` row-major. A *beat* for one side holds ``S`` lines of 64 bits (``S`` = rows or cols):

* straight: line ``s`` packs the ``n`` elements ``mem[t0 + s, k0 : k0 + n]`` of memory row ``t0 + s``,
  element ``j`` at bits ``64*s + p*j``;
* transposed: the beat packs ``n`` memory-row segments ``mem[k0 + j, t0 : t0 + S]`` densely, element
  ``(j, s)`` at bits ``p * (j*S + s)``; line ``s`` of the array then takes the column ``mem[k0:k0+n, t0+s]``.

Either way the beat is a contiguous read of the stored tensor: W^T, E and X^T are never re-arranged.
Reductions are zero-padded to whole beats and tiles to whole ``rows x cols`` blocks.
"""

import dataclasses
import enum

import numpy as np

from .dfxp import PRECISIONS, code_range, to_slices


__all__ = [
    "Mode", "LINE_BITS", "GRID", "span", "lanes", "precision_code",
    "offset_code", "pe_offset_dot", "pe_dot", "pack_beat", "unpack_beat", "gemm", "TileJob", "tile_jobs",
]

LINE_BITS = 64      # one PE-row/column operand line: 16 slices of 4 bits
GRID = 4            # the multiplier grid is GRID x GRID slices


class Mode(enum.IntEnum):
    FF = 0      #: forward:            A = W   straight,   B = Xs straight
    EP = 1      #: error propagation:  A = W   transposed, B = Es straight
    WG = 2      #: weight gradient:    A = Es  transposed, B = Xs transposed

    @property
    def transposed(self):
        """(A side transposed, B side transposed)."""
        return {Mode.FF: (False, False), Mode.EP: (True, False), Mode.WG: (True, True)}[self]


def _check_precision(p):
    if p not in PRECISIONS:
        raise ValueError(f"Operand precision must be one of {list(PRECISIONS)}, not {p!r}")


def precision_code(p):
    """2-bit command encoding of a precision: 4 -> 0, 8 -> 1, 12 -> 2, 16 -> 3."""
    _check_precision(p)
    return p // 4 - 1


def span(p):
    """Grid rows (or columns) an operand of ``p`` bits occupies."""
    _check_precision(p)
    return {4: 1, 8: 2, 12: 4, 16: 4}[p]


def lanes(pa, pb):
    """Operand pairs a PE multiplies per cycle at precisions ``pa`` x ``pb``."""
    return (GRID // span(pa)) * (GRID // span(pb))


def offset_code(a, p):
    """Offset-binary code of ``p``-bit two's-complement values: ``a + 2**(p-1)``, in ``0 .. 2**p - 1``."""
    _check_precision(p)
    return np.asarray(a, dtype=np.int64) + (1 << (p - 1))


def _check_beat(a, b, pa, pb):
    n = lanes(pa, pb)
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if a.shape != (n,) or b.shape != (n,):
        raise ValueError(f"a beat takes {n} operand pairs at {pa}x{pb}, not {a.shape} and {b.shape}")
    for v, p in ((a, pa), (b, pb)):
        lo, hi = code_range(p)
        if np.any((v < lo) | (v > hi)):
            raise ValueError(f"operand out of range for {p} bits")
    return a, b


def pe_offset_dot(a, b, pa, pb):
    """What one beat adds to a PE's accumulator, computed from slices the way the grid does it:
    ``sum_j A_j B_j`` over the offset-binary codes, as a sum of shifted unsigned 4x4-bit products."""
    a, b = _check_beat(a, b, pa, pb)
    sa = to_slices(offset_code(a, pa), 16 if pa == 12 else pa).astype(np.int64)
    sb = to_slices(offset_code(b, pb), 16 if pb == 12 else pb).astype(np.int64)
    total = 0
    for j in range(len(a)):
        for i in range(sa.shape[1]):
            for k in range(sb.shape[1]):
                total += int(sa[j, i]) * int(sb[j, k]) << (4 * (i + k))
    return total


def pe_dot(a, b, pa, pb):
    """Signed dot product of one beat, recovered from :func:`pe_offset_dot` with the row and column
    corrections the array applies. Equal to ``sum(a * b)`` exactly."""
    a, b = _check_beat(a, b, pa, pb)
    row = int(offset_code(a, pa).sum())
    col = int(offset_code(b, pb).sum())
    return (pe_offset_dot(a, b, pa, pb) - (row << (pb - 1)) - (col << (pa - 1))
            + (len(a) << (pa + pb - 2)))


def pack_beat(block, p, transposed, size):
    """Pack one side's operand block into a beat of ``size`` lines (an integer of ``64 * size`` bits).

    ``block`` is ``(size, n)`` for a straight beat (row ``s`` = memory row ``t0 + s``) and ``(n, size)`` for a
    transposed beat (row ``j`` = memory row ``k0 + j``), as read from memory.
    """
    block = np.asarray(block, dtype=np.int64)
    mask = (1 << p) - 1
    beat = 0
    if transposed:
        n, s_count = block.shape
        for j in range(n):
            for s in range(s_count):
                beat |= (int(block[j, s]) & mask) << (p * (j * size + s))
    else:
        for s in range(block.shape[0]):
            for j in range(block.shape[1]):
                beat |= (int(block[s, j]) & mask) << (LINE_BITS * s + p * j)
    return beat


def unpack_beat(beat, p, transposed, size, n):
    """Operands of each line of a beat: ``(size, n)`` array, line ``s`` lane ``j`` (inverse of pack)."""
    mask = (1 << p) - 1
    out = np.zeros((size, n), dtype=np.int64)
    for s in range(size):
        for j in range(n):
            pos = p * (j * size + s) if transposed else LINE_BITS * s + p * j
            v = (beat >> pos) & mask
            out[s, j] = v - (1 << p) if v >> (p - 1) else v
    return out


def _logical(mode, a_mem, b_mem):
    ta, tb = Mode(mode).transposed
    left = np.asarray(a_mem, dtype=np.int64)
    right = np.asarray(b_mem, dtype=np.int64)
    return (left.T if ta else left), (right if tb else right.T)


def gemm(mode, a_mem, b_mem):
    """The product the array computes from two stored tensors: FF ``W @ Xs.T`` (= W X, one column per
    sample), EP ``W.T @ Es.T`` (= W^T E), WG ``Es.T @ Xs`` (= E X^T). Exact, int64."""
    left, right = _logical(mode, a_mem, b_mem)
    if left.shape[1] != right.shape[0]:
        raise ValueError(f"reduction lengths differ: {left.shape} x {right.shape}")
    return left @ right


@dataclasses.dataclass
class TileJob:
    """One command of the array: an output tile at ``(m0, n0)``, its beats and the expected tile."""
    m0: int
    n0: int
    beats: list         # [(a_beat, b_beat)] integers, in order
    expected: np.ndarray  # (rows, cols) int64, zero outside the matrix


def tile_jobs(mode, a_mem, b_mem, pa, pb, rows, cols):
    """Split ``gemm(mode, a_mem, b_mem)`` into array commands, tile by tile, row-major over tiles."""
    mode = Mode(mode)
    for mem, p in ((a_mem, pa), (b_mem, pb)):
        lo, hi = code_range(p)
        if np.any((np.asarray(mem) < lo) | (np.asarray(mem) > hi)):
            raise ValueError(f"operand out of range for {p} bits")
    ta, tb = mode.transposed
    left, right = _logical(mode, a_mem, b_mem)
    out_m, red = left.shape
    out_n = right.shape[1]
    n = lanes(pa, pb)
    k_beats = max(1, -(-red // n))
    pad_left = np.zeros((-(-out_m // rows) * rows, k_beats * n), dtype=np.int64)
    pad_left[:out_m, :red] = left
    pad_right = np.zeros((k_beats * n, -(-out_n // cols) * cols), dtype=np.int64)
    pad_right[:red, :out_n] = right
    full = pad_left @ pad_right
    jobs = []
    for m0 in range(0, out_m, rows):
        for n0 in range(0, out_n, cols):
            beats = []
            for kb in range(k_beats):
                ks = slice(kb * n, kb * n + n)
                lblock = pad_left[m0:m0 + rows, ks]          # (rows, n): line r = L[m0 + r, k0:k0+n]
                rblock = pad_right[ks, n0:n0 + cols]         # (n, cols): line c = R[k0:k0+n, n0 + c]
                a_beat = pack_beat(lblock.T if ta else lblock, pa, ta, rows)
                b_beat = pack_beat(rblock if tb else rblock.T, pb, tb, cols)
                beats.append((a_beat, b_beat))
            jobs.append(TileJob(m0, n0, beats, full[m0:m0 + rows, n0:n0 + cols].copy()))
    return jobs
