"""Canonical, length-limited Huffman coding of value codes and index gaps.

Deep Compression (Han, Mao & Dally, ICLR 2016, arXiv:1510.00149, Section 4) Huffman-codes
the quantised weight indices and the sparse-index gaps offline, saving 20-30% of storage.

Only the code *length* of each symbol is stored (canonical Huffman, as in DEFLATE,
RFC 1951 Section 3.2.2): codes are assigned in order of (length, symbol), so the decoder
rebuilds the exact codes from the lengths. Lengths are capped at :data:`MAX_CODE_LEN`
by halving the frequencies (rounding up, never to zero) until the tree fits.
"""
from __future__ import annotations

import heapq
import logging

import numpy as np
from bitarray import bitarray
from bitarray.util import canonical_decode

from edgecv.codec.base import CodecError
from edgecv.codec.bitpack import Reader, pack_bits, unpack_fixed, varint

log = logging.getLogger(__name__)

MAX_CODE_LEN = 24


def code_lengths(freq: np.ndarray, max_len: int = MAX_CODE_LEN) -> np.ndarray:
    """Huffman code length per symbol (0 = symbol absent), each <= ``max_len``.

    Deterministic: among equal weights the node created first (leaves in symbol order, then
    internal nodes in creation order) is merged first. A single used symbol gets length 1.
    """
    freq = np.asarray(freq, dtype=np.int64)
    lengths = np.zeros(freq.size, dtype=np.int64)
    used = np.flatnonzero(freq > 0)
    if used.size == 0:
        return lengths
    if used.size == 1:
        lengths[used[0]] = 1
        return lengths
    if (used.size - 1).bit_length() > max_len:
        raise ValueError(f"{used.size} symbols cannot be coded in at most {max_len} bits")
    f = freq[used]
    while True:
        ln = _tree_depths(f.tolist())
        if ln.max() <= max_len:
            break
        log.debug("Huffman tree depth %d > %d: halving frequencies", ln.max(), max_len)
        f = (f + 1) // 2
    lengths[used] = ln
    return lengths


def _tree_depths(f: list[int]) -> np.ndarray:
    """Leaf depths of the Huffman tree over weights ``f`` (heap keyed by (weight, node id))."""
    m = len(f)
    heap = [(w, i) for i, w in enumerate(f)]
    heapq.heapify(heap)
    parent = [0] * (2 * m - 1)
    nxt = m
    while len(heap) > 1:
        w1, a = heapq.heappop(heap)
        w2, b = heapq.heappop(heap)
        parent[a] = parent[b] = nxt
        heapq.heappush(heap, (w1 + w2, nxt))
        nxt += 1
    depth = [0] * (2 * m - 1)
    for node in range(2 * m - 3, -1, -1):   # parents have larger ids than their children
        depth[node] = depth[parent[node]] + 1
    return np.asarray(depth[:m], dtype=np.int64)


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical code value per symbol (read MSB-first in ``lengths[s]`` bits; 0 where absent).

    Symbols sorted by (length, symbol) get consecutive codes; moving to a longer length
    shifts the running code left (RFC 1951, 3.2.2).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(lengths.size, dtype=np.int64)
    order = np.lexsort((np.arange(lengths.size), lengths))
    order = order[lengths[order] > 0]
    code = prev = 0
    for s in order.tolist():   # one step per alphabet symbol, not per weight
        ln = int(lengths[s])
        code <<= ln - prev
        codes[s] = code
        code += 1
        prev = ln
    return codes


def _check_lengths(lengths: np.ndarray) -> None:
    if lengths.size and (lengths.min() < 0 or lengths.max() > MAX_CODE_LEN):
        raise CodecError(f"corrupt file: Huffman code length outside 0..{MAX_CODE_LEN}")
    used = lengths[lengths > 0]
    if used.size == 0:
        raise CodecError("corrupt file: Huffman table has no symbols")
    kraft = int(np.sum(np.left_shift(1, MAX_CODE_LEN - used)))
    if kraft > 1 << MAX_CODE_LEN:
        raise CodecError("corrupt file: Huffman code lengths are over-subscribed (not a prefix code)")


def stream_bits(freq: np.ndarray, lengths: np.ndarray) -> int:
    """Bits that symbols with histogram ``freq`` take under code ``lengths``."""
    return int(np.dot(np.asarray(freq, dtype=np.int64), np.asarray(lengths, dtype=np.int64)))


def encode(symbols: np.ndarray, lengths: np.ndarray) -> bytes:
    """Huffman-code ``symbols`` with the canonical code of ``lengths`` (MSB first, zero-padded)."""
    symbols = np.asarray(symbols, dtype=np.int64)
    codes = canonical_codes(lengths)
    return pack_bits(codes[symbols], np.asarray(lengths, dtype=np.int64)[symbols])


def decode(buf: bytes | memoryview, lengths: np.ndarray, n: int) -> np.ndarray:
    """Decode exactly ``n`` symbols from ``buf``; the stream must end with < 8 zero padding bits."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if n == 0:
        if len(buf):
            raise CodecError("corrupt file: non-empty Huffman stream for zero symbols")
        return np.zeros(0, dtype=np.int64)
    _check_lengths(lengths)
    if n > 8 * len(buf):
        raise CodecError(f"corrupt file: {n} Huffman symbols cannot fit in {len(buf)} bytes")
    maxlen = int(lengths.max())
    count = np.bincount(lengths, minlength=maxlen + 1)
    count[0] = 0
    order = np.lexsort((np.arange(lengths.size), lengths))
    symbol = order[lengths[order] > 0].tolist()
    bits = bitarray(endian="big")
    bits.frombytes(bytes(buf))
    try:
        out = np.fromiter(canonical_decode(bits, count.tolist(), symbol), dtype=np.int64, count=n)
    except (ValueError, StopIteration) as e:
        raise CodecError(f"corrupt file: Huffman stream does not decode to {n} symbols ({e})") from None
    used = stream_bits(np.bincount(out, minlength=lengths.size), lengths)
    if (used + 7) // 8 != len(buf) or bits[used:].any():
        raise CodecError("corrupt file: Huffman stream length or padding does not match its symbol count")
    return out


# --- table serialisation: code lengths only --------------------------------------------

def table_bytes(lengths: np.ndarray) -> bytes:
    """``varint n`` (symbols listed, trailing zero lengths trimmed), then if n > 0 one byte
    ``w`` = bits per length, then the n lengths packed MSB-first in ``w`` bits each."""
    lengths = np.asarray(lengths, dtype=np.int64)
    nz = np.flatnonzero(lengths)
    n = int(nz[-1]) + 1 if nz.size else 0
    if n == 0:
        return varint(0)
    w = int(lengths.max()).bit_length()
    return varint(n) + bytes([w]) + pack_bits(lengths[:n], w)


def read_table(r: Reader, alphabet: int, what: str) -> np.ndarray:
    """Parse a table written by :func:`table_bytes` into ``alphabet`` code lengths."""
    n = r.varint(f"{what} table size", limit=alphabet)
    lengths = np.zeros(alphabet, dtype=np.int64)
    if n == 0:
        return lengths
    w = r.u8(f"{what} table width")
    if not 1 <= w <= MAX_CODE_LEN.bit_length():
        raise CodecError(f"corrupt file: {what} table width {w} outside 1..{MAX_CODE_LEN.bit_length()}")
    lengths[:n] = unpack_fixed(r.take((n * w + 7) // 8, f"{what} table"), n, w)
    return lengths
