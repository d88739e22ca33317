"""The codec's input contract (:class:`LayerCode`) and its error type.

A :class:`LayerCode` is the compressed form of one weight tensor after the pruning and
weight-sharing stages of Deep Compression (Han, Mao & Dally, ICLR 2016, arXiv:1510.00149,
Sections 2-3): a per-layer codebook of shared float32 values, one code per stored weight,
and -- for pruned (sparse) layers -- the flat positions of the kept weights.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from edgecv.errors import UserError

log = logging.getLogger(__name__)

MAX_BITS = 16          # widest value code / index gap the format stores
MAX_NUMEL = 2 ** 31    # largest tensor (elements) the codec accepts


class CodecError(UserError):
    """A compressed-model file (or the data given to the encoder) is malformed."""


@dataclass
class LayerCode:
    """One compressed weight tensor (Deep Compression, Fig. 2 layout for sparse layers).

    Decodes to ``w = zeros(shape); w.flat[positions] = codebook[codes]`` (dense layers:
    ``w = codebook[codes].reshape(shape)``), bit-identical in float32.

    Fields are normalised on construction: ``shape`` to a tuple of ints, ``codebook`` to
    float32, ``codes`` to uint16 and ``positions`` to int64. Invalid fields raise
    :class:`ValueError` naming the field.
    """

    shape: tuple[int, ...]
    codebook: np.ndarray            # float32 [K], K <= 2**bits
    bits: int                       # width of a value code in the fixed-width layout (1..16)
    codes: np.ndarray               # one code per stored element (sparse: per kept weight)
    positions: np.ndarray | None    # sparse: strictly increasing flat indices; None = dense
    index_bits: int = 5             # width of a relative gap (sparse layers only)
    huffman: bool = True            # Huffman-code the value codes and the gaps

    def __post_init__(self) -> None:
        try:
            self.shape = tuple(int(d) for d in self.shape)
        except (TypeError, ValueError):
            raise ValueError(f"LayerCode.shape must be a sequence of ints, got {self.shape!r}") from None
        if any(d < 0 for d in self.shape) or len(self.shape) > 8:
            raise ValueError(f"LayerCode.shape {self.shape} must have <= 8 non-negative dims")
        if self.numel > MAX_NUMEL:
            raise ValueError(f"LayerCode.shape {self.shape} has {self.numel} elements, more than {MAX_NUMEL}")
        for name in ("bits", "index_bits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= MAX_BITS:
                raise ValueError(f"LayerCode.{name} must be an int in 1..{MAX_BITS}, got {v!r}")
            setattr(self, name, int(v))
        self.huffman = bool(self.huffman)

        cb = np.asarray(self.codebook)
        if cb.ndim != 1 or not 1 <= cb.size <= 2 ** self.bits:
            raise ValueError(f"LayerCode.codebook must be 1-D with 1..2**bits={2 ** self.bits} entries, "
                             f"got shape {cb.shape}")
        if not (np.issubdtype(cb.dtype, np.floating) or np.issubdtype(cb.dtype, np.integer)):
            raise ValueError(f"LayerCode.codebook must be float, got dtype {cb.dtype}")
        self.codebook = np.ascontiguousarray(cb, dtype=np.float32)

        self.codes = _int_array(self.codes, "codes")
        if self.codes.size and (self.codes.min() < 0 or self.codes.max() >= cb.size):
            raise ValueError(f"LayerCode.codes must lie in 0..{cb.size - 1} (len(codebook) - 1), "
                             f"got range {self.codes.min()}..{self.codes.max()}")
        self.codes = self.codes.astype(np.uint16)

        if self.positions is None:
            if self.codes.size != self.numel:
                raise ValueError(f"dense LayerCode needs one code per element: {self.numel} for shape "
                                 f"{self.shape}, got {self.codes.size}")
            return
        pos = _int_array(self.positions, "positions").astype(np.int64)
        if pos.size != self.codes.size:
            raise ValueError(f"LayerCode.positions ({pos.size}) and codes ({self.codes.size}) differ in length")
        if pos.size:
            if pos[0] < 0 or pos[-1] >= self.numel:
                raise ValueError(f"LayerCode.positions must lie in 0..{self.numel - 1} (numel - 1), "
                                 f"got {pos[0]}..{pos[-1]}")
            if pos.size > 1 and not bool(np.all(np.diff(pos) > 0)):
                raise ValueError("LayerCode.positions must be strictly increasing (sorted, no duplicates)")
        if self.codebook[0] != 0.0:
            raise ValueError(f"sparse LayerCode needs codebook[0] == 0.0 (reserved for filler entries, "
                             f"Deep Compression Fig. 2), got {self.codebook[0]!r}")
        self.positions = pos

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def sparse(self) -> bool:
        return self.positions is not None

    def to_numpy(self) -> np.ndarray:
        """The float32 weight tensor this code stands for."""
        if self.positions is None:
            return self.codebook[self.codes].reshape(self.shape)
        out = np.zeros(self.numel, dtype=np.float32)
        out[self.positions] = self.codebook[self.codes]
        return out.reshape(self.shape)


def _int_array(a: object, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        arr = arr.reshape(-1) if arr.size == 0 else arr
    if arr.ndim != 1:
        raise ValueError(f"LayerCode.{name} must be 1-D (flatten it in C order), got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"LayerCode.{name} must hold integers, got dtype {arr.dtype}")
    return arr


@dataclass
class AffineCode:
    """One integer-quantized weight tensor (int8 / sub-8-bit affine quantization, per output channel).

    Decodes to ``w[c] = scales[c] * (codes[c] - zero_points[c])`` computed in float32 (one exact
    integer subtraction, one correctly rounded float32 multiply), so encoder and decoder agree bit
    for bit. Channels run along axis 0 (conv / linear output channels); ``scales`` has 1
    (per-tensor) or ``shape[0]`` entries, ``zero_points`` 1 (shared) or as many as ``scales``.
    ``codes`` are unsigned, one per element (C order), each < 2**bits.
    """

    shape: tuple[int, ...]
    bits: int
    scales: np.ndarray              # float32 [C], C in {1, shape[0]}
    zero_points: np.ndarray         # int [1] or [C], each in 0..2**bits - 1
    codes: np.ndarray               # one per element, 0..2**bits - 1
    huffman: bool = True            # Huffman-code the values when that is smaller

    def __post_init__(self) -> None:
        try:
            self.shape = tuple(int(d) for d in self.shape)
        except (TypeError, ValueError):
            raise ValueError(f"AffineCode.shape must be a sequence of ints, got {self.shape!r}") from None
        if any(d < 0 for d in self.shape) or not 1 <= len(self.shape) <= 8:
            raise ValueError(f"AffineCode.shape {self.shape} must have 1..8 non-negative dims")
        if self.numel > MAX_NUMEL:
            raise ValueError(f"AffineCode.shape {self.shape} has {self.numel} elements, more than {MAX_NUMEL}")
        b = self.bits
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not 1 <= b <= MAX_BITS:
            raise ValueError(f"AffineCode.bits must be an int in 1..{MAX_BITS}, got {b!r}")
        self.bits = int(b)
        self.huffman = bool(self.huffman)
        sc = np.asarray(self.scales)
        channels = self.shape[0] if self.shape else 1
        if sc.ndim != 1 or sc.size not in {1, channels} or sc.size == 0:
            raise ValueError(f"AffineCode.scales must be 1-D with 1 or shape[0]={channels} entries, got shape {sc.shape}")
        if not np.issubdtype(sc.dtype, np.floating):
            raise ValueError(f"AffineCode.scales must be float, got dtype {sc.dtype}")
        self.scales = np.ascontiguousarray(sc, dtype=np.float32)
        zp = _int_array(self.zero_points, "zero_points")
        if zp.size not in {1, sc.size}:
            raise ValueError(f"AffineCode.zero_points must have 1 or len(scales)={sc.size} entries, got {zp.size}")
        if zp.min() < 0 or zp.max() >= 1 << self.bits:
            raise ValueError(f"AffineCode.zero_points must lie in 0..{(1 << self.bits) - 1}")
        self.zero_points = zp.astype(np.int64)
        codes = _int_array(self.codes, "codes")
        if codes.size != self.numel:
            raise ValueError(f"AffineCode needs one code per element: {self.numel} for shape {self.shape}, "
                             f"got {codes.size}")
        if codes.size and (codes.min() < 0 or codes.max() >= 1 << self.bits):
            raise ValueError(f"AffineCode.codes must lie in 0..{(1 << self.bits) - 1} (2**bits - 1)")
        self.codes = codes.astype(np.uint16)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def to_numpy(self) -> np.ndarray:
        """The float32 weight tensor this code stands for."""
        c = self.scales.size
        q = self.codes.astype(np.int32).reshape(c, -1) - self.zero_points.astype(np.int32).reshape(-1, 1)
        with np.errstate(over="ignore", invalid="ignore"):  # a file's scales are taken bit for bit (inf/NaN too)
            return (q.astype(np.float32) * self.scales.reshape(c, 1)).astype(np.float32).reshape(self.shape)
