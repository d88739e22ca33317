"""Byte-for-byte size accounting of a compressed-model file (docs/format.md, "Size table").

Deep Compression (Han, Mao & Dally, ICLR 2016, arXiv:1510.00149) reports compression rates
that include the codebook and the sparse-index overhead; :func:`inspect` attributes every byte
of the file to the file header or to one tensor row, split into value codes, index gaps,
codebook, Huffman tables, per-tensor header and raw data, so the rows plus the header sum to
exactly ``len(data)``.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgecv.codec.base import AffineCode, LayerCode
from edgecv.codec.bitpack import varint
from edgecv.codec.container import (
    AFFINE,
    DTYPES,
    KINDS,
    MAX_TOTAL_NUMEL,
    RAW,
    SPARSE,
    VERSION,
    Record,
    parse,
)


_ITEMSIZE = {name: np.dtype(le).itemsize for name, le in DTYPES.values()}


def _row(rec: Record) -> dict[str, Any]:
    b = dict(rec.sizes)
    total = sum(b.values())
    numel = math.prod(rec.shape)
    row: dict[str, Any] = {"name": rec.name, "kind": KINDS[rec.kind], "shape": list(rec.shape), "numel": numel}
    if rec.kind == RAW:
        bits = 8 * b["raw"] / numel if numel else None  # below the dtype's width for a fill record
        row.update(dtype=rec.dtype, kept=numel, kept_pct=100.0, fillers=0, entries=numel,
                   bits=int(bits) if bits is not None and bits.is_integer() else round(bits, 4) if bits else None,
                   fill=bool(numel) and b["raw"] < numel * _ITEMSIZE[rec.dtype], index_bits=None, codebook_size=None,
                   huffman=False, values_huffman=False, index_huffman=False, fixed_width_bytes=total)
    elif rec.kind == AFFINE:
        aff: AffineCode = rec.value  # type: ignore[assignment]
        fixed = total - b["tables"] - b["values"] + (numel * aff.bits + 7) // 8 - _len_fields(rec)
        row.update(dtype="float32", kept=numel, kept_pct=100.0, fillers=0, entries=numel, bits=aff.bits,
                   index_bits=None, codebook_size=None, scales=int(aff.scales.size),
                   huffman=rec.values_huffman, values_huffman=rec.values_huffman, index_huffman=False,
                   fixed_width_bytes=fixed)
    else:
        code: LayerCode = rec.value  # type: ignore[assignment]
        kept = int(code.codes.size) if rec.kind == SPARSE else numel
        fixed = total - b["tables"] - b["values"] - b["index"] + (rec.entries * code.bits + 7) // 8
        if rec.kind == SPARSE:
            fixed += (rec.entries * code.index_bits + 7) // 8 + rec.lines_bytes
            row["lines_bytes"] = rec.lines_bytes  # live-row/column bitmaps (0: the paper's plain layout)
        fixed -= _len_fields(rec)
        row.update(dtype="float32", kept=kept, kept_pct=100.0 * kept / numel if numel else 0.0,
                   fillers=rec.entries - kept if rec.kind == SPARSE else 0, entries=rec.entries,
                   bits=code.bits, index_bits=code.index_bits if rec.kind == SPARSE else None,
                   codebook_size=int(code.codebook.size),
                   huffman=rec.values_huffman or rec.index_huffman,
                   values_huffman=rec.values_huffman, index_huffman=rec.index_huffman,
                   fixed_width_bytes=fixed)
    row["bytes"] = b
    row["total_bytes"] = total
    row["huffman_gain_pct"] = 100.0 * (1 - total / row["fixed_width_bytes"]) if row["fixed_width_bytes"] else 0.0
    return row


def _len_fields(rec: Record) -> int:
    """Bytes of the Huffman stream-length varints (part of ``header``; absent when fixed-width)."""
    n = 0
    if rec.values_huffman:
        n += len(varint(rec.sizes["values"]))
    if rec.index_huffman:
        n += len(varint(rec.sizes["index"]))
    return n


def inspect(data: bytes, *, max_numel: int = MAX_TOTAL_NUMEL) -> dict[str, Any]:
    """Per-tensor size table of a file: ``{"format_version", "meta", "rows", "totals"}``.

    Each row: name, kind ("sparse"/"dense"/"affine"/"raw"), shape, numel, kept (real kept weights),
    kept_pct, fillers, entries, bits, index_bits, codebook_size, huffman (any stream
    Huffman-coded), bytes {values, index, codebook, tables, header, raw}, total_bytes,
    fixed_width_bytes (same tensor without Huffman) and huffman_gain_pct.
    ``totals``: file_bytes (== len(data)), header_bytes (file header + meta + tensor count),
    original_bytes (4 bytes x every element, the paper's float32 baseline), ratio, the
    per-category byte sums, and kept/numel over the coded (sparse + dense) tensors.
    """
    meta, records, header = parse(data, max_numel=max_numel)
    rows = [_row(rec) for rec in records]
    cats = dict.fromkeys(("values", "index", "codebook", "tables", "header", "raw"), 0)
    for row in rows:
        for k, v in row["bytes"].items():
            cats[k] += v
    coded = [row for row in rows if row["kind"] != "raw"]
    original = 4 * sum(row["numel"] for row in rows)
    file_bytes = len(data)
    assert header + sum(row["total_bytes"] for row in rows) == file_bytes
    totals = {
        "tensors": len(rows), "file_bytes": file_bytes, "header_bytes": header,
        "original_bytes": original, "ratio": original / file_bytes if file_bytes else 0.0,
        "pct_of_original": 100.0 * file_bytes / original if original else 0.0,
        "bytes": cats,
        "fixed_width_bytes": header + sum(row["fixed_width_bytes"] for row in rows),
        "coded_numel": sum(row["numel"] for row in coded), "coded_kept": sum(row["kept"] for row in coded),
    }
    totals["coded_kept_pct"] = 100.0 * totals["coded_kept"] / totals["coded_numel"] if totals["coded_numel"] else 0.0
    return {"format_version": VERSION, "meta": meta, "rows": rows, "totals": totals}

