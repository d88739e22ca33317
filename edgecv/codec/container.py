"""The ``.dc`` file: a whole compressed model in one checksummed, deterministic byte string.

Byte-level spec: docs/format.md. Layout: file header (magic, version, CRC-32, JSON meta,
tensor count), then one record per tensor in the caller's dict order. Records hold either
a :class:`~edgecv.codec.base.LayerCode` (Deep Compression, Han, Mao & Dally, ICLR 2016,
arXiv:1510.00149: pruned sparse layout of Fig. 2, shared-weight codebook of Section 3,
Huffman coding of Section 4) or a raw tensor (biases, BN parameters/buffers...).

Decoding never trusts the file: the checksum is verified first, and every declared count
or size is checked against the bytes left and against ``max_numel`` before allocating.
"""
from __future__ import annotations

import json
import logging
import math
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

import numpy as np

from edgecv.codec import huffman, sparse
from edgecv.codec.base import AffineCode, CodecError, LayerCode
from edgecv.codec.bitpack import Reader, pack_bits, unpack_fixed, varint

log = logging.getLogger(__name__)

MAGIC = b"EDGECVDC"
VERSION = 1
FIXED_HEADER = len(MAGIC) + 1 + 4          # magic, version u8, crc32 u32 LE
MAX_TOTAL_NUMEL = 2 ** 31                   # default bound on the elements a file may decode to
MAX_NAME_BYTES = 4096
RAW, DENSE, SPARSE, AFFINE = 0, 1, 2, 3
LINES = 0x10  # sparse tag flag: live-row / live-column bitmaps follow the entry count (docs/format.md)
FILL = 0x04  # raw tag flag: every element equals the one element stored (BatchNorm statistics in scale-shift form)
FILL_MAX = 1 << 20  # elements a fill record may declare: a few bytes must not decode to gigabytes
KINDS = {RAW: "raw", DENSE: "dense", SPARSE: "sparse", AFFINE: "affine"}

if TYPE_CHECKING:
    import torch

# raw dtype code -> (name = the torch dtype's name, little-endian numpy dtype of the stored bytes).
# torch is imported only to encode or decode tensors: `edgecv inspect` (parse) runs without it.
DTYPES: dict[int, tuple[str, str]] = {
    0: ("float32", "<f4"), 1: ("float16", "<f2"), 2: ("bfloat16", "<i2"), 3: ("float64", "<f8"),
    4: ("int64", "<i8"), 5: ("int32", "<i4"), 6: ("int16", "<i2"), 7: ("int8", "i1"),
    8: ("uint8", "u1"), 9: ("bool", "u1"),
}


def _torch_code(dtype: Any) -> int | None:
    import torch

    return {getattr(torch, v[0]): k for k, v in DTYPES.items()}.get(dtype)


def _to_torch(arr: np.ndarray, dname: str) -> torch.Tensor:
    """A raw record's array (bool as numpy bool, bfloat16 as its int16 bits) as the torch tensor it stands for."""
    import torch

    t = torch.from_numpy(arr)
    return t.view(torch.bfloat16) if dname == "bfloat16" else t


# --- encoding ---------------------------------------------------------------------------

def _raw_bytes(name: str, t: np.ndarray | torch.Tensor) -> tuple[int, tuple[int, ...], bytes]:
    import torch

    if isinstance(t, np.ndarray):
        try:
            t = torch.from_numpy(np.ascontiguousarray(t, dtype=t.dtype.newbyteorder("=")))
        except (TypeError, ValueError):
            raise CodecError(f"tensor {name!r}: numpy dtype {t.dtype} cannot be stored; "
                             f"use one of {', '.join(v[0] for v in DTYPES.values())}") from None
    code = _torch_code(t.dtype)
    if code is None:
        raise CodecError(f"tensor {name!r}: dtype {t.dtype} cannot be stored; "
                         f"use one of {', '.join(v[0] for v in DTYPES.values())}")
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    arr = t.numpy()
    if arr.dtype != np.bool_:
        arr = arr.astype(DTYPES[code][1], copy=False)
    return code, tuple(t.shape), arr.tobytes()


def _stream(symbols: np.ndarray, alphabet: int, width: int, want_huffman: bool) -> tuple[bool, bytes, bytes, bytes]:
    """(huffman?, table, stream-length varint, stream). Huffman is used only when requested AND
    strictly smaller than the fixed-width stream counting its table and length field."""
    fixed = (symbols.size * width + 7) // 8
    if want_huffman and symbols.size:
        freq = np.bincount(symbols, minlength=alphabet)
        lengths = huffman.code_lengths(freq)
        nbytes = (huffman.stream_bits(freq, lengths) + 7) // 8
        table, length = huffman.table_bytes(lengths), varint(nbytes)
        if len(table) + len(length) + nbytes < fixed:
            return True, table, length, huffman.encode(symbols, lengths)
    return False, b"", b"", pack_bits(symbols, width)


def _encode_record(name: str, obj: LayerCode | np.ndarray | torch.Tensor) -> bytes:
    name_b = name.encode("utf-8") if isinstance(name, str) else b""
    if not 1 <= len(name_b) <= MAX_NAME_BYTES:
        raise CodecError(f"tensor name {name!r} must be a non-empty str of at most {MAX_NAME_BYTES} UTF-8 bytes")
    import torch

    if isinstance(obj, (np.ndarray, torch.Tensor)):
        code, shape, payload = _raw_bytes(name, obj)
        if len(shape) > 8:
            raise CodecError(f"tensor {name!r} has {len(shape)} dims; the format stores at most 8")
        size = np.dtype(DTYPES[code][1]).itemsize
        fill = size < len(payload) <= FILL_MAX * size and payload == payload[:size] * (len(payload) // size)
        head = varint(len(name_b)) + name_b + bytes([RAW | code << 4 | (FILL if fill else 0), len(shape)])
        return head + b"".join(varint(d) for d in shape) + (payload[:size] if fill else payload)
    if isinstance(obj, AffineCode):
        return _encode_affine(name_b, obj)
    if not isinstance(obj, LayerCode):
        raise CodecError(f"tensor {name!r}: expected LayerCode, AffineCode, numpy array or torch.Tensor, "
                         f"got {type(obj).__name__}")
    if obj.sparse:
        plain = _encode_code(name_b, obj, obj.positions, obj.codes, b"", 0)
        nonzero = obj.codes != 0  # code 0 decodes to 0.0: such weights are not stored (sparse.to_entries)
        live, live_codes = obj.positions[nonzero], obj.codes[nonzero]
        if len(obj.shape) >= 2 and live.size:
            rows, cols = sparse.live_lines(live, obj.shape)
            if not (rows.all() and cols.all()):
                lines = (np.packbits(rows, bitorder="little").tobytes()
                         + np.packbits(cols, bitorder="little").tobytes())
                compacted = _encode_code(name_b, obj, sparse.compact(live, rows, cols), live_codes, lines, LINES)
                if len(compacted) < len(plain):
                    return compacted
        return plain
    return _encode_code(name_b, obj, None, obj.codes, b"", 0)


def _encode_code(name_b: bytes, obj: LayerCode, positions: np.ndarray | None, codes: np.ndarray, lines: bytes,
                 flags: int) -> bytes:
    """One LayerCode record; ``positions`` are in the live sub-matrix when ``lines`` are given."""
    k = obj.codebook.size
    if positions is not None:
        gaps, values = sparse.to_entries(positions, codes, obj.index_bits)
        vh, vt, vl, vs = _stream(values, k, obj.bits, obj.huffman)
        ih, it, il, is_ = _stream(gaps, 1 << obj.index_bits, obj.index_bits, obj.huffman)
        kind, widths, cb = SPARSE, (obj.bits - 1) << 4 | (obj.index_bits - 1), obj.codebook[1:]
        count = varint(values.size)
    else:
        vh, vt, vl, vs = _stream(codes.astype(np.int64), k, obj.bits, obj.huffman)
        ih, it, il, is_ = False, b"", b"", b""
        kind, widths, cb, count = DENSE, (obj.bits - 1) << 4, obj.codebook, b""
    tag = kind | vh << 2 | ih << 3 | flags
    head = (varint(len(name_b)) + name_b + bytes([tag, len(obj.shape)])
            + b"".join(varint(d) for d in obj.shape) + bytes([widths]) + varint(k) + count)
    return head + lines + cb.astype("<f4").tobytes() + vt + vl + vs + it + il + is_


def _encode_affine(name_b: bytes, obj: AffineCode) -> bytes:
    """Kind 3: widths, C, C float32 scales, 1 or C zero-point varints, the value stream."""
    per_channel_zp = obj.zero_points.size > 1
    vh, vt, vl, vs = _stream(obj.codes.astype(np.int64), 1 << obj.bits, obj.bits, obj.huffman)
    tag = AFFINE | vh << 2 | per_channel_zp << 3
    head = (varint(len(name_b)) + name_b + bytes([tag, len(obj.shape)])
            + b"".join(varint(d) for d in obj.shape) + bytes([(obj.bits - 1) << 4]) + varint(obj.scales.size))
    zps = b"".join(varint(int(z)) for z in obj.zero_points)
    return head + obj.scales.astype("<f4").tobytes() + zps + vt + vl + vs


def encode_model(tensors: dict[str, LayerCode | AffineCode | np.ndarray | torch.Tensor],
                 meta: dict[str, Any] | None = None) -> bytes:
    """Serialise ``tensors`` (in dict order) and ``meta`` (JSON, keys sorted) to bytes.

    Deterministic: the same input gives byte-identical output (no timestamps).
    """
    try:
        meta_b = json.dumps(meta or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                            allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise CodecError(f"meta must be JSON-serialisable (str keys, finite numbers): {e}") from None
    body = [varint(len(meta_b)), meta_b, varint(len(tensors))]
    body += [_encode_record(name, t) for name, t in tensors.items()]
    payload = b"".join(body)
    out = MAGIC + bytes([VERSION]) + struct.pack("<I", zlib.crc32(payload)) + payload
    log.debug("encoded %d tensors into %d bytes", len(tensors), len(out))
    return out


# --- decoding ---------------------------------------------------------------------------

@dataclass
class Record:
    """One parsed tensor record and the bytes each part of it took (see :func:`inspect`)."""

    name: str
    kind: int
    shape: tuple[int, ...]
    value: LayerCode | AffineCode | np.ndarray  # raw tensors as numpy (see _to_torch)
    dtype: str = "float32"
    entries: int = 0
    values_huffman: bool = False
    index_huffman: bool = False
    sizes: dict[str, int] = field(default_factory=dict)
    lines_bytes: int = 0  # live-row/column bitmaps (counted in sizes["index"])


def _read_stream(r: Reader, n: int, alphabet: int, width: int, huff: bool, what: str,
                 sizes: dict[str, int], key: str) -> np.ndarray:
    if huff:
        start = r.pos
        lengths = huffman.read_table(r, alphabet, what)
        sizes["tables"] += r.pos - start
        start = r.pos
        nbytes = r.varint(f"{what} stream length", limit=r.remaining)
        sizes["header"] += r.pos - start
        buf = r.take(nbytes, f"{what} stream")
        sizes[key] += nbytes
        return huffman.decode(buf, lengths, n)
    nbytes = (n * width + 7) // 8
    out = unpack_fixed(r.take(nbytes, f"{what} stream"), n, width)
    sizes[key] += nbytes
    if out.size and out.max() >= alphabet:
        raise CodecError(f"corrupt file: {what} code {int(out.max())} outside the codebook of {alphabet}")
    return out


def _read_record(r: Reader, budget: list[int]) -> Record:
    start = r.pos
    name_b = bytes(r.take(r.varint("tensor name length", limit=MAX_NAME_BYTES), "tensor name"))
    try:
        name = name_b.decode("utf-8")
    except UnicodeDecodeError:
        raise CodecError(f"corrupt file: tensor name at offset {start} is not UTF-8") from None
    if not name:
        raise CodecError(f"corrupt file: empty tensor name at offset {start}")
    tag, ndim = r.u8(f"{name}: tag"), r.u8(f"{name}: ndim")
    kind, vh, ih, hi = tag & 3, bool(tag & 4), bool(tag & 8), tag >> 4
    lines = kind == SPARSE and hi == LINES >> 4
    if kind not in KINDS or ndim > 8 or (kind == RAW and (hi not in DTYPES or ih)) \
            or (kind != RAW and hi and not lines) or (kind == DENSE and ih) or (kind == AFFINE and ndim == 0) \
            or (lines and ndim < 2):
        raise CodecError(f"corrupt file: tensor {name!r} has an invalid tag byte {tag:#04x} or ndim {ndim}")
    shape = tuple(r.varint(f"{name}: dim") for _ in range(ndim))
    numel = math.prod(shape)
    if math.prod(max(d, 1) for d in shape) >= 2**62:  # an empty tensor whose strides overflow int64 (torch)
        raise CodecError(f"corrupt file: tensor {name!r} has an impossible shape {shape}")
    if numel > budget[0]:
        raise CodecError(f"tensor {name!r} of shape {shape} exceeds the limit of {budget[0]} more elements "
                         f"(max_numel); the file is corrupt or needs a larger max_numel")
    budget[0] -= numel
    sizes = dict.fromkeys(("values", "index", "codebook", "tables", "header", "raw"), 0)
    if kind == RAW:
        dname, le = DTYPES[hi]
        sizes["header"] = r.pos - start
        nbytes = (1 if vh else numel) * np.dtype(le).itemsize  # vh = the FILL flag of a raw record
        if vh and not 2 <= numel <= FILL_MAX:
            raise CodecError(f"corrupt file: raw tensor {name!r} of {numel} element(s) is marked as a fill "
                             f"(allowed for 2..{FILL_MAX})")
        buf = np.frombuffer(r.take(nbytes, f"{name}: raw data"), dtype=le)
        if vh:
            buf = np.full(numel, buf[0], dtype=le)
        sizes["raw"] = nbytes
        if dname == "bool" and buf.size and buf.max() > 1:
            raise CodecError(f"corrupt file: bool tensor {name!r} holds bytes other than 0/1")
        arr = buf.astype(buf.dtype.newbyteorder("="))
        arr = (arr.astype(np.bool_) if dname == "bool" else arr).reshape(shape)
        return Record(name, kind, shape, arr, dtype=dname, sizes=sizes)  # numpy: decode_codes makes it torch
    widths = r.u8(f"{name}: widths")
    bits, index_bits = (widths >> 4) + 1, (widths & 15) + 1
    if kind == AFFINE:
        return _read_affine(r, name, shape, widths, vh, ih, start, sizes)
    if kind == DENSE and widths & 15:
        raise CodecError(f"corrupt file: dense tensor {name!r} has a non-zero index width")
    k = r.varint(f"{name}: codebook size", limit=1 << bits)
    if k == 0:
        raise CodecError(f"corrupt file: tensor {name!r} has an empty codebook")
    n = r.varint(f"{name}: entry count", limit=numel) if kind == SPARSE else numel
    sizes["header"] = r.pos - start
    rows = cols = None
    lines_bytes = 0
    if lines:
        rows = _read_bitmap(r, shape[0], f"{name}: live rows")
        cols = _read_bitmap(r, numel // shape[0] if shape[0] else 0, f"{name}: live columns")
        lines_bytes = (rows.size + 7) // 8 + (cols.size + 7) // 8
        sizes["index"] += lines_bytes
    n_cb = k - 1 if kind == SPARSE else k
    cb = np.frombuffer(r.take(4 * n_cb, f"{name}: codebook"), dtype="<f4").astype(np.float32)
    sizes["codebook"] = 4 * n_cb
    if kind == SPARSE:
        cb = np.concatenate([np.zeros(1, np.float32), cb])
    values = _read_stream(r, n, k, bits, vh, f"{name}: values", sizes, "values")
    try:
        if kind == DENSE:
            code = LayerCode(shape, cb, bits, values, None, huffman=vh)
        else:
            gaps = _read_stream(r, n, 1 << index_bits, index_bits, ih, f"{name}: index", sizes, "index")
            if rows is None:
                pos, codes = sparse.from_entries(gaps, values, numel)
            else:
                pos, codes = sparse.from_entries(gaps, values, int(rows.sum()) * int(cols.sum()))
                pos = sparse.expand(pos, rows, cols)
            code = LayerCode(shape, cb, bits, codes, pos, index_bits=index_bits, huffman=vh or ih)
    except ValueError as e:
        raise CodecError(f"corrupt file: tensor {name!r}: {e}") from None
    return Record(name, kind, shape, code, entries=n, values_huffman=vh, index_huffman=ih, sizes=sizes,
                  lines_bytes=lines_bytes)


def _read_bitmap(r: Reader, n: int, what: str) -> np.ndarray:
    """n bools packed LSB first; the padding bits of the last byte must be 0 (one encoding per file)."""
    buf = np.frombuffer(r.take((n + 7) // 8, what), dtype=np.uint8)
    bits = np.unpackbits(buf, bitorder="little")
    if bits[n:].any():
        raise CodecError(f"corrupt file: {what} bitmap has bits set past its {n} lines")
    return bits[:n].astype(bool)


def _read_affine(r: Reader, name: str, shape: tuple[int, ...], widths: int, vh: bool, per_channel_zp: bool,
                 start: int, sizes: dict[str, int]) -> Record:
    bits = (widths >> 4) + 1
    if widths & 15:
        raise CodecError(f"corrupt file: affine tensor {name!r} has a non-zero index width")
    c = r.varint(f"{name}: scale count", limit=max(1, shape[0]))
    if c not in (1, shape[0]) or c == 0:
        raise CodecError(f"corrupt file: affine tensor {name!r} has {c} scales for shape {shape} (1 or shape[0])")
    scales = np.frombuffer(r.take(4 * c, f"{name}: scales"), dtype="<f4").astype(np.float32)
    zp_start = r.pos
    zps = np.array([r.varint(f"{name}: zero point", limit=(1 << bits) - 1) for _ in range(c if per_channel_zp else 1)],
                   dtype=np.int64)
    sizes["header"] = zp_start - start - 4 * c
    sizes["codebook"] = 4 * c + r.pos - zp_start     # the dequantisation table: scales + zero points
    numel = math.prod(shape)
    values = _read_stream(r, numel, 1 << bits, bits, vh, f"{name}: values", sizes, "values")
    try:
        code = AffineCode(shape, bits, scales, zps, values, huffman=vh)
    except ValueError as e:
        raise CodecError(f"corrupt file: tensor {name!r}: {e}") from None
    return Record(name, AFFINE, shape, code, entries=numel, values_huffman=vh, sizes=sizes)


def parse(data: bytes, *, max_numel: int = MAX_TOTAL_NUMEL) -> tuple[dict[str, Any], list[Record], int]:
    """Parse and fully validate ``data``: (meta, records, header bytes)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < FIXED_HEADER or data[:len(MAGIC)] != MAGIC:
        raise CodecError("not an edgecv Deep Compression file (bad magic bytes); expected a file "
                         "written by edgecv.codec.write_file")
    if data[len(MAGIC)] != VERSION:
        raise CodecError(f"unsupported format version {data[len(MAGIC)]} (this edgecv reads version "
                         f"{VERSION}); upgrade edgecv or re-export the model")
    (crc,) = struct.unpack_from("<I", data, len(MAGIC) + 1)
    if zlib.crc32(data[FIXED_HEADER:]) != crc:
        raise CodecError("file is corrupt: checksum mismatch (truncated or modified); re-export it")
    r = Reader(data, FIXED_HEADER)
    meta_b = bytes(r.take(r.varint("meta length", limit=r.remaining), "meta"))
    try:
        meta = json.loads(meta_b.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CodecError(f"corrupt file: meta section is not UTF-8 JSON ({type(e).__name__})") from None
    if not isinstance(meta, dict):
        raise CodecError("corrupt file: meta section is not a JSON object")
    n = r.varint("tensor count", limit=r.remaining // 4)  # a record takes >= 4 bytes
    header = r.pos
    budget = [max_numel]
    records: list[Record] = []
    seen: set[str] = set()
    for _ in range(n):
        rec = _read_record(r, budget)
        if rec.name in seen:
            raise CodecError(f"corrupt file: tensor name {rec.name!r} appears twice")
        seen.add(rec.name)
        records.append(rec)
    if r.remaining:
        raise CodecError(f"corrupt file: {r.remaining} unexpected bytes after the last tensor")
    return meta, records, header


def decode_codes(data: bytes, *, max_numel: int = MAX_TOTAL_NUMEL
                 ) -> tuple[dict[str, LayerCode | AffineCode | torch.Tensor], dict[str, Any]]:
    """Decode to the codec's input form: LayerCodes (without code-0 kept weights), AffineCodes and raw tensors."""
    meta, records, _ = parse(data, max_numel=max_numel)
    return {rec.name: _to_torch(rec.value, rec.dtype) if rec.kind == RAW else rec.value for rec in records}, meta


def decode_model(data: bytes, *, max_numel: int = MAX_TOTAL_NUMEL) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Decode ``data`` to ``({name: tensor}, meta)``; LayerCodes become float32 tensors.

    ``max_numel`` bounds the total elements decoded (protects against hostile files).
    Raises :class:`CodecError` for any malformed, truncated or modified input.
    """
    import torch

    codes, meta = decode_codes(data, max_numel=max_numel)
    out = {name: torch.from_numpy(v.to_numpy()) if isinstance(v, (LayerCode, AffineCode)) else v
           for name, v in codes.items()}
    return out, meta


def write_file(path: str | os.PathLike, tensors: dict[str, LayerCode | AffineCode | np.ndarray | torch.Tensor],
               meta: dict[str, Any] | None = None) -> Path:
    """Encode and write atomically (temp file + rename); returns the path."""
    from edgecv.checkpoint import atomic_write

    data = encode_model(tensors, meta)
    path = atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), nbytes=len(data))
    log.info("wrote %s (%d bytes, %d tensors)", path, len(data), len(tensors))
    return path


def read_file(path: str | os.PathLike, *, max_numel: int = MAX_TOTAL_NUMEL
              ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and decode a file written by :func:`write_file`."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise CodecError(f"cannot read compressed model {path}: {e.strerror or e}") from None
    try:
        return decode_model(data, max_numel=max_numel)
    except CodecError as e:
        raise CodecError(f"{path}: {e}") from None

