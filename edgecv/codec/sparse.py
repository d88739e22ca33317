"""Relative sparse indexing with filler entries (Deep Compression, arXiv:1510.00149, Fig. 2).

Each stored entry carries a value code and a gap symbol ``s`` in ``index_bits`` bits. With
``D = 2**index_bits``, an entry sits ``s + 1`` positions after the previous entry (the first
one after position -1), so one entry can advance 1..D positions. A kept weight whose distance
``d`` to the previous kept weight exceeds ``D`` is preceded by ``(d - 1) // D`` FILLER entries,
each advancing exactly ``D`` (``s = D - 1``) and holding value code 0 (``codebook[0] == 0.0``);
the real entry then advances the remainder ``d - D * ((d - 1) // D)`` in 1..D.
Trailing zeros after the last kept weight cost nothing (the decoder knows the shape).

Worked example (docs/format.md): positions [1, 4, 15], index_bits = 3 (D = 8):
distances 2, 3, 11 -> entries (s, code): (1, c0), (2, c1), (7, 0 = filler at 12), (2, c2).
"""
from __future__ import annotations

import numpy as np

from edgecv.codec.base import CodecError


def to_entries(positions: np.ndarray, codes: np.ndarray, index_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Kept weights -> (gap symbols, value codes) incl. fillers; both int64 arrays of equal length.

    Kept weights with code 0 stand for the value 0.0 and are dropped (they decode identically),
    so every stored entry with code 0 is a filler.
    """
    positions = np.asarray(positions, dtype=np.int64)
    codes = np.asarray(codes, dtype=np.int64)
    keep = codes != 0
    if not keep.all():
        positions, codes = positions[keep], codes[keep]
    if positions.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    D = 1 << index_bits
    dist = np.diff(positions, prepend=-1)          # >= 1 (strictly increasing, first vs -1)
    fill = (dist - 1) // D                         # fillers before each kept weight
    at = np.arange(positions.size, dtype=np.int64) + np.cumsum(fill)   # slot of each real entry
    n = int(at[-1]) + 1
    gaps = np.full(n, D - 1, dtype=np.int64)
    gaps[at] = dist - fill * D - 1
    values = np.zeros(n, dtype=np.int64)
    values[at] = codes
    return gaps, values


def from_entries(gaps: np.ndarray, values: np.ndarray, numel: int) -> tuple[np.ndarray, np.ndarray]:
    """(gap symbols, value codes) -> (positions, codes) of the real (non-filler) entries.

    Raises :class:`CodecError` if an entry would land at or beyond ``numel``.
    """
    gaps = np.asarray(gaps, dtype=np.int64)
    values = np.asarray(values, dtype=np.int64)
    if gaps.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    pos = np.cumsum(gaps + 1) - 1
    if pos[-1] >= numel:
        raise CodecError(f"corrupt file: sparse entry at position {int(pos[-1])} beyond the tensor's "
                         f"{numel} elements")
    real = values != 0
    return pos[real], values[real]


def count_entries(positions: np.ndarray, index_bits: int) -> int:
    """Stored entries (kept weights + fillers) for ``positions`` -- without building them."""
    positions = np.asarray(positions, dtype=np.int64)
    if positions.size == 0:
        return 0
    dist = np.diff(positions, prepend=-1)
    return int(positions.size + np.sum((dist - 1) >> index_bits))


# Dead lines (an edgecv addition to the paper's layout): a pruned matrix often has whole rows
# (output units / filters) and columns (inputs: MNIST's border pixels) with no kept weight. A
# record may then store one bit per row and per column (live or not) and the relative indices
# of the live sub-matrix only, which is denser, so its gaps are shorter. The encoder uses this
# only when the record comes out smaller; positions keep their row-major order either way.

def live_lines(positions: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) bool masks of the lines of ``shape`` viewed as (shape[0], rest) holding a position."""
    n_cols = int(np.prod(shape[1:]))
    rows = np.zeros(shape[0], dtype=bool)
    cols = np.zeros(n_cols, dtype=bool)
    rows[positions // n_cols] = True
    cols[positions % n_cols] = True
    return rows, cols


def compact(positions: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Flat positions in the full matrix -> flat positions in the live sub-matrix."""
    r_new = np.cumsum(rows) - 1
    c_new = np.cumsum(cols) - 1
    n_cols = cols.size
    return r_new[positions // n_cols] * int(cols.sum()) + c_new[positions % n_cols]


def expand(sub_positions: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Inverse of :func:`compact` (``sub_positions`` < live rows x live cols, checked by the caller)."""
    live_r, live_c = np.flatnonzero(rows), np.flatnonzero(cols)
    nc = live_c.size
    return live_r[sub_positions // nc] * cols.size + live_c[sub_positions % nc]
