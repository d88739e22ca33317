"""Bit-level primitives of the file format: LEB128 varints, a bounds-checked byte reader,
and vectorised MSB-first packing of variable-width codes (docs/format.md, "Bit streams").

All packing is numpy-vectorised: no Python loop runs over the weights.
"""
from __future__ import annotations

import numpy as np

from edgecv.codec.base import CodecError

MAX_VARINT_BYTES = 9  # 63-bit values


def varint(n: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, low group first, high bit = "more bytes follow"."""
    if n < 0 or n >= 1 << 63:
        raise CodecError(f"value {n} does not fit the format's 63-bit varint")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


class Reader:
    """Sequential reader over ``data`` that raises :class:`CodecError` instead of over-reading."""

    def __init__(self, data: bytes | memoryview, pos: int = 0) -> None:
        self.data = memoryview(data)
        self.pos = pos

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or n > self.remaining:
            raise CodecError(f"file is truncated or corrupt: {what} needs {n} bytes at offset {self.pos}, "
                             f"only {self.remaining} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def varint(self, what: str, limit: int | None = None) -> int:
        n = shift = 0
        for i in range(MAX_VARINT_BYTES):
            b = self.u8(what)
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if i and b == 0:
                    raise CodecError(f"corrupt file: {what} at offset {self.pos - i - 1} is a non-minimal varint")
                if limit is not None and n > limit:
                    raise CodecError(f"corrupt file: {what} = {n} exceeds its limit {limit}")
                return n
        raise CodecError(f"corrupt file: {what} at offset {self.pos - MAX_VARINT_BYTES} is an over-long varint")


def pack_bits(values: np.ndarray, lengths: np.ndarray | int) -> bytes:
    """Concatenate ``values[i]`` written in ``lengths[i]`` bits (1..32, MSB first), zero-padded
    to whole bytes. ``values[i]`` must be < 2**lengths[i].

    Vectorised through 64-bit words: code i starts at bit ``s_i = sum(lengths[:i])``; the part
    inside word ``s_i // 64`` is OR-reduced per word (codes in one word never overlap) and the
    part that spills into the next word (at most one code per word) is added separately.
    """
    v = np.asarray(values).astype(np.uint64, copy=False).ravel()
    n = v.size
    if n == 0:
        return b""
    if np.isscalar(lengths) or np.ndim(lengths) == 0:
        lens = np.full(n, int(lengths), dtype=np.int64)
    else:
        lens = np.asarray(lengths, dtype=np.int64).ravel()
    ends = np.cumsum(lens)
    total = int(ends[-1])
    starts = ends - lens
    del ends
    word = starts >> 6
    off = starts & 63
    del starts
    sh = 64 - off - lens                     # >= 0: code fits in its word; < 0: spills by -sh bits
    fits = sh >= 0
    contrib = np.where(fits, v << np.where(fits, sh, 0).astype(np.uint64),
                       v >> np.where(fits, 0, -sh).astype(np.uint64))
    words = np.zeros((total + 63) // 64 + 1, dtype=np.uint64)
    first = np.flatnonzero(np.diff(word, prepend=-1))
    words[word[first]] = np.bitwise_or.reduceat(contrib, first)
    spill = np.flatnonzero(~fits)
    if spill.size:
        low = v[spill] << (64 + sh[spill]).astype(np.uint64)
        words[word[spill] + 1] |= low
    return words.astype(">u8").tobytes()[: (total + 7) // 8]


def unpack_fixed(buf: bytes | memoryview, n: int, width: int) -> np.ndarray:
    """Inverse of ``pack_bits(values, width)`` for ``width`` in 1..16: ``n`` codes as int64.

    Raises :class:`CodecError` when ``buf`` is not exactly ``ceil(n * width / 8)`` bytes or the
    padding bits are not zero.
    """
    need = (n * width + 7) // 8
    if len(buf) != need:
        raise CodecError(f"corrupt file: fixed-width stream of {n} x {width} bits must be {need} bytes, "
                         f"got {len(buf)}")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    b = np.frombuffer(buf, dtype=np.uint8)
    pad = need * 8 - n * width
    if pad and b[-1] & ((1 << pad) - 1):
        raise CodecError("corrupt file: non-zero padding bits at the end of a fixed-width stream")
    b = np.concatenate([b, np.zeros(3, dtype=np.uint8)]).astype(np.int64)
    off = np.arange(n, dtype=np.int64) * width
    byte = off >> 3
    win = (b[byte] << 16) | (b[byte + 1] << 8) | b[byte + 2]   # 24-bit window covers 7 + 16 bits
    return (win >> (24 - (off & 7) - width)) & ((1 << width) - 1)
