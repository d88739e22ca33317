"""Benchmark the Deep-Compression codec on VGG-16's shapes (138M weights).

Synthesises what the pruning + weight-sharing stages would hand the codec for VGG-16 in
Deep Compression (Han, Mao & Dally, ICLR 2016, arXiv:1510.00149, Table 5): per-layer kept
rates from the paper, 8-bit codes for conv / 5-bit for fc layers, 5-bit relative index,
Huffman on. Kept positions follow a Bernoulli process at the layer's rate; codes come from
Laplace-distributed weights with the pruned (small) ones removed, quantised by a linear
codebook between min and max -- the paper's best initialisation -- so the code histogram is
peaked and bimodal like a real pruned layer. k-means itself is not timed.

Usage: .venv/bin/python benchmarks/bench_codec.py [--seed 0] [--repeat 1] [--out FILE]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from edgecv.codec import LayerCode, decode_model, encode_model, inspect, write_file
from edgecv.models import create_model

# Deep Compression Table 5 (VGG-16): weights kept per layer, in torchvision order.
KEPT = [0.58, 0.22, 0.34, 0.36, 0.53, 0.24, 0.42, 0.32, 0.27, 0.34, 0.35, 0.29, 0.36, 0.04, 0.04, 0.23]


def synth_layer(shape: tuple[int, ...], kept: float, bits: int, rng: np.random.Generator) -> LayerCode:
    numel = int(np.prod(shape))
    gaps = rng.geometric(kept, size=int(numel * kept * 1.05) + 64)
    pos = np.cumsum(gaps) - 1
    pos = pos[pos < numel]
    w = rng.laplace(scale=1.0, size=pos.size).astype(np.float32)
    thr = np.quantile(np.abs(rng.laplace(size=100_000)), 1 - kept)   # magnitude pruning threshold
    w = np.where(np.abs(w) < thr, np.sign(w) * thr + w * 0.1, w)       # survivors are the large ones
    k = 1 << bits
    lo, hi = float(w.min()), float(w.max())
    edges = np.linspace(lo, hi, k)                                       # centroids 1..k-1 linear, 0 = filler
    codes = np.clip(np.rint((w - lo) / (hi - lo) * (k - 2)).astype(np.int64) + 1, 1, k - 1)
    cb = np.concatenate([[0.0], edges[: k - 1]]).astype(np.float32)
    return LayerCode(shape, cb, bits, codes, pos, index_bits=5, huffman=True)


def build(seed: int) -> dict[str, LayerCode | torch.Tensor]:
    with torch.device("meta"):
        model = create_model("vgg16")
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, LayerCode | torch.Tensor] = {}
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) == len(KEPT), len(layers)
    for (name, mod), kept in zip(layers, KEPT):
        bits = 8 if isinstance(mod, torch.nn.Conv2d) else 5
        out[f"{name}.weight"] = synth_layer(tuple(mod.weight.shape), kept, bits, rng)
        out[f"{name}.bias"] = torch.randn(mod.bias.shape, generator=gen) * 0.01
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--out", default=None, help="also write the file here")
    args = ap.parse_args()
    torch.set_num_threads(2)

    t0 = time.perf_counter()
    tensors = build(args.seed)
    t_build = time.perf_counter() - t0
    meta = {"model": "vgg16", "recipe": "synthetic-deep-compression", "seed": args.seed}

    enc, dec = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        data = encode_model(tensors, meta)
        enc.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        out, _ = decode_model(data)
        dec.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    info = inspect(data)
    t_inspect = time.perf_counter() - t0
    if args.out:
        write_file(args.out, tensors, meta)

    for name, lc in tensors.items():   # spot-check bit-identity on every layer
        if isinstance(lc, LayerCode):
            assert out[name].numpy().tobytes() == lc.to_numpy().tobytes(), name

    tot = info["totals"]
    print(f"{'tensor':<22}{'shape':>22}{'kept%':>7}{'fill%':>7}{'b':>3}{'bytes':>12}{'fixed':>12}{'H gain%':>8}")
    for r in info["rows"]:
        if r["kind"] == "raw":
            continue
        fill = 100.0 * r["fillers"] / max(1, r["entries"])
        print(f"{r['name']:<22}{str(tuple(r['shape'])):>22}{r['kept_pct']:7.2f}{fill:7.2f}{r['bits']:3d}"
              f"{r['total_bytes']:12,}{r['fixed_width_bytes']:12,}{r['huffman_gain_pct']:8.1f}")
    mb = tot["original_bytes"] / 1e6
    cats = ", ".join(f"{k} {v:,}" for k, v in tot["bytes"].items())
    print(f"\nweights kept {tot['coded_kept']:,} / {tot['coded_numel']:,} = {tot['coded_kept_pct']:.2f}% "
          f"(paper: 7.5%)")
    print(f"file {tot['file_bytes']:,} B = {tot['file_bytes'] / 2**20:.2f} MiB ({cats}; file header "
          f"{tot['header_bytes']})")
    print(f"fixed-width (no Huffman) {tot['fixed_width_bytes']:,} B -> ratio "
          f"{tot['original_bytes'] / tot['fixed_width_bytes']:.1f}x (paper P+Q 31x)")
    print(f"original float32 {tot['original_bytes']:,} B -> ratio {tot['ratio']:.1f}x (paper P+Q+H 49x)")
    print(f"build {t_build:.2f} s | encode {min(enc):.2f} s ({mb / min(enc):.0f} MB/s of float32, "
          f"{tot['file_bytes'] / 1e6 / min(enc):.1f} MB/s out) | decode {min(dec):.2f} s "
          f"({mb / min(dec):.0f} MB/s of float32) | inspect {t_inspect:.2f} s")


if __name__ == "__main__":
    main()
