"""Huffman coding choices (Deep Compression, Section 4) and the hand-off to the codec.

The ``huffman`` stage changes no weight: it records, per compressed weight, the width of the
relative index (the gap to the previous kept weight, Fig. 2; a gap too wide for it costs a
filler entry) and whether the value codes and gaps are Huffman-coded (the paper's offline
Huffman coding saves a further 20-30%). ``to_layer_codes`` then turns the model plus the
context's masks and codebooks into the codec's input.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn as nn

from edgecv.compress import targets as T
from edgecv.compress.base import Context, Stage, register_stage, targets
from edgecv.compress.equalize import set_bn_statistics
from edgecv.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_INDEX_BITS = 5
AUTO = 0  # ctx.encoding's index width for "auto": chosen per tensor by ``choose_index_bits``
AUTO_RANGE = range(2, 13)  # widths tried by "auto" (a 12-bit gap table is already 4,096 entries)
RAW_UNIQUE_LIMIT = 1 << 16  # a masked, unshared weight gets a codebook of its values up to this many


@dataclass
class HuffmanConfig:
    """``index_bits``: width of a relative index (gap), one int for every layer or
    ``{pattern: bits}`` (later patterns override; unlisted compressed layers get 5). ``auto``
    picks, per tensor, the width in 2..12 that makes its entries (fillers included) smallest --
    an edgecv addition: the paper fixes one width per network (5 bits LeNet, 4 AlexNet conv).
    ``enabled``: Huffman-code value codes and gaps (False = fixed-width codes only, "P+Q").
    ``raw_dtype``: how the float tensors without a code are stored (biases, BatchNorm parameters
    and statistics, layers left alone): float32 as the paper counts them, or float16 / bfloat16
    at half the bytes; the model's tensors are rounded to it in place, so the file still decodes
    to exactly the model that is evaluated.
    ``batchnorm``: ``scale_shift`` rewrites every BatchNorm with running statistics exactly (in eval
    mode) as a per-channel scale and shift: weight ``gamma * sqrt(1 + eps) / sqrt(var + eps)``, bias
    ``beta - mean * gamma / sqrt(var + eps)``, mean 0, variance 1; the two statistics are then
    constants, which the codec stores as one value each (docs/format.md, fill records), halving the
    BatchNorm bytes. Fine-tuning the decoded model in train mode needs real statistics again
    (``equalize: {bn_images: N}`` restores them, function unchanged)."""

    index_bits: int | Literal["auto"] | dict[str, int | Literal["auto"]] = field(
        default=DEFAULT_INDEX_BITS, metadata=targets())
    enabled: bool = True
    raw_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    batchnorm: Literal["as_is", "scale_shift"] = "as_is"

    def __post_init__(self) -> None:
        vals = self.index_bits.items() if isinstance(self.index_bits, dict) else [("index_bits", self.index_bits)]
        for name, b in vals:
            if b != "auto" and (isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= 16):
                raise UserError(f"huffman: index_bits for {name!r} must be 1..16 or 'auto', got {b!r}")


@register_stage
class Huffman(Stage):
    """Sets ``ctx.encoding[param] = (index_bits, huffman)`` for every masked or shared weight."""

    name = "huffman"
    Config = HuffmanConfig

    def _apply(self, model: nn.Module, ctx: Context, report: dict[str, Any]) -> nn.Module:
        cfg: HuffmanConfig = self.config
        if isinstance(cfg.index_bits, dict):
            per = T.resolve_values(model, cfg.index_bits)
            default = DEFAULT_INDEX_BITS
        else:
            per, default = {}, cfg.index_bits
        names = dict.fromkeys([*ctx.masks, *ctx.shared])
        if not names:
            log.warning("huffman: no pruned or shared weights; every tensor will be stored raw")
        for pname in names:
            module = pname.rsplit(".", 1)[0] if "." in pname else ""
            width = per.get(module, default)
            ctx.encoding[pname] = (AUTO if width == "auto" else width, cfg.enabled)
        report.update({"layers": {k: {"index_bits": v[0] or "auto", "huffman": v[1]}
                                  for k, v in ctx.encoding.items()}})
        if cfg.batchnorm == "scale_shift":
            report["batchnorm_scale_shift"] = scale_shift_batchnorms(model, skip=names)
        ctx.raw_dtype = cfg.raw_dtype
        if cfg.raw_dtype != "float32":
            dt = getattr(torch, cfg.raw_dtype)
            names.update(dict.fromkeys(getattr(ctx, "quantized", None) or {}))  # integer-coded: leave them
            rounded = 0
            with torch.no_grad():
                for name, t in model.state_dict(keep_vars=True).items():
                    if name not in names and t.is_floating_point():
                        t.copy_(t.to(dt).to(t.dtype))
                        rounded += t.numel()
            report["raw_dtype"] = {"dtype": cfg.raw_dtype, "rounded_values": rounded}
        return model


@torch.no_grad()
def scale_shift_batchnorms(model: nn.Module, skip: dict[str, Any] | None = None) -> int:
    """Rewrite each affine BatchNorm with running statistics (and no coded parameter in ``skip``) as
    scale and shift with mean 0 and variance 1, the same function in eval mode; returns how many."""
    done = 0
    for name, m in model.named_modules():
        if not (isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine and m.running_mean is not None
                and m.running_var is not None):
            continue
        if skip and (f"{name}.weight" in skip or f"{name}.bias" in skip):
            continue
        set_bn_statistics(m, torch.zeros(m.num_features), torch.ones(m.num_features))
        done += 1
    return done


def _stream_bytes(freq: np.ndarray, width: int, huff: bool) -> int:
    """Bytes of one symbol stream as the codec stores it: Huffman (with its table) only when smaller."""
    from edgecv.codec import huffman

    n = int(freq.sum())
    fixed = (n * width + 7) // 8
    if not huff or n == 0:
        return fixed
    lengths = huffman.code_lengths(freq)
    return min(fixed, (huffman.stream_bits(freq, lengths) + 7) // 8 + len(huffman.table_bytes(lengths)))


def choose_index_bits(positions: np.ndarray, codes: np.ndarray, bits: int, huff: bool,
                      shape: tuple[int, ...] | None = None) -> int:
    """The gap width in ``AUTO_RANGE`` that minimises the stored gap + value streams of one tensor.

    Computed from the histogram of distances between kept weights, without building the entries:
    with D = 2**w a distance d costs (d - 1) // D fillers (gap symbol D - 1, value code 0) and one
    real entry with gap symbol d - 1 - D * ((d - 1) // D) (codec/sparse.py). With ``shape`` (ndim
    >= 2) the live-sub-matrix layout the codec may pick (docs/format.md, live lines) is priced too,
    and each width costs the cheaper of the two."""
    from edgecv.codec import sparse

    positions = np.asarray(positions, dtype=np.int64)
    codes = np.asarray(codes, dtype=np.int64)
    keep = codes != 0
    positions, codes = positions[keep], codes[keep]
    if positions.size == 0:
        return DEFAULT_INDEX_BITS
    layouts = [positions]
    if shape is not None and len(shape) >= 2:
        rows, cols = sparse.live_lines(positions, tuple(shape))
        if not (rows.all() and cols.all()):
            layouts.append(sparse.compact(positions, rows, cols))
    costs = [_width_costs(p, codes, bits, huff) for p in layouts]
    return min(AUTO_RANGE, key=lambda w: min(c[w] for c in costs))


def _width_costs(positions: np.ndarray, codes: np.ndarray, bits: int, huff: bool) -> dict[int, int]:
    """Bytes of the gap + value streams of one layout for every width in ``AUTO_RANGE``."""
    d = np.diff(positions, prepend=-1) - 1
    dist, count = np.unique(d, return_counts=True)
    vfreq = np.bincount(codes, minlength=1 << bits)
    costs = {}
    for w in AUTO_RANGE:
        D = 1 << w
        fill = dist // D
        gfreq = np.bincount(dist - fill * D, weights=count, minlength=D).astype(np.int64)
        nfill = int((fill * count).sum())
        gfreq[D - 1] += nfill
        vf = vfreq.copy()
        vf[0] += nfill
        costs[w] = _stream_bytes(gfreq, w, huff) + _stream_bytes(vf, bits, huff)
    return costs


def _bits_for(k: int) -> int:
    return max(1, math.ceil(math.log2(max(k, 2))))


def to_layer_codes(model: nn.Module, ctx: Context) -> dict[str, Any]:
    """The codec's input: state-dict name -> ``LayerCode`` (masked and/or shared weights) or the
    tensor itself (everything else: biases, BN parameters and buffers, untouched layers; float
    ones in ``ctx.raw_dtype``).

    Shared weight: its codebook and per-element (dense) or per-kept-weight (sparse) codes.
    Masked but unshared weight: a codebook of its distinct kept values (0.0 first, reserved) when
    there are at most 2**16 of them, else the tensor is stored raw. Without a ``huffman`` stage,
    sparse layers use 5-bit gaps and no Huffman coding.
    """
    from edgecv.codec import LayerCode

    state = model.state_dict()
    out: dict[str, Any] = {}
    for name, t in state.items():
        t = t.detach().cpu()
        sw, mask = ctx.shared.get(name), ctx.masks.get(name)
        index_bits, huff = ctx.encoding.get(name, (DEFAULT_INDEX_BITS, False))
        if sw is not None:
            _check_shared(name, t, sw)
            assign, codebook = _compact(sw)
            if sw.sparse:
                pos = torch.nonzero(assign).reshape(-1)
                codes = assign[pos]
                positions: np.ndarray | None = pos.numpy().astype(np.int64)
            else:
                codes, positions = assign, None
            if positions is not None and index_bits == AUTO:
                index_bits = choose_index_bits(positions, codes.numpy(), sw.bits, huff, tuple(t.shape))
            out[name] = LayerCode(shape=tuple(t.shape), codebook=codebook, bits=sw.bits,
                                  codes=codes.numpy().astype(np.uint16), positions=positions,
                                  index_bits=index_bits or DEFAULT_INDEX_BITS, huffman=huff)
        elif mask is not None:
            flat = t.reshape(-1).float()
            m = mask.reshape(-1).cpu()
            pos = torch.nonzero(m & (flat != 0)).reshape(-1)  # a kept weight that is exactly 0 decodes to 0
            vals = flat[pos]
            uniq, inv = torch.unique(vals, sorted=True, return_inverse=True)
            if uniq.numel() + 1 > RAW_UNIQUE_LIMIT:
                out[name] = t
                continue
            codebook = torch.cat([torch.zeros(1), uniq]).numpy().astype(np.float32)
            bits, codes, positions = _bits_for(codebook.size), (inv + 1).numpy(), pos.numpy().astype(np.int64)
            if index_bits == AUTO:
                index_bits = choose_index_bits(positions, codes, bits, huff, tuple(t.shape))
            out[name] = LayerCode(shape=tuple(t.shape), codebook=codebook, bits=bits, codes=codes.astype(np.uint16),
                                  positions=positions, index_bits=index_bits, huffman=huff)
        else:
            out[name] = t.to(getattr(torch, ctx.raw_dtype)) if t.is_floating_point() else t
    return out


def _compact(sw: Any) -> tuple[torch.Tensor, np.ndarray]:
    """(flat assignment, codebook) with the centroids no weight uses dropped and the codes renumbered
    in order (a sparse layer keeps its reserved 0.0 at index 0): an unused centroid would cost 4
    bytes in the file and a Huffman table entry for nothing. The decoded weights are unchanged."""
    assign = sw.assign.reshape(-1).cpu()
    book = sw.codebook.detach().cpu().float()
    used = torch.unique(assign)
    if sw.sparse and (used.numel() == 0 or used[0] != 0):
        used = torch.cat([torch.zeros(1, dtype=used.dtype), used])
    if used.numel() < book.numel():
        assign = torch.searchsorted(used, assign)
        book = book[used]
    return assign, book.numpy().astype(np.float32)


def _check_shared(name: str, t: torch.Tensor, sw: Any) -> None:
    if tuple(sw.assign.shape) != tuple(t.shape):
        raise UserError(f"{name}: shared assignment shape {tuple(sw.assign.shape)} != weight {tuple(t.shape)}")
    if not torch.equal(sw.codebook.float()[sw.assign.cpu()], t.float()):
        log.warning("%s: weight differs from codebook[assign]; the codes are exported (weights changed "
                    "after sharing?)", name)
