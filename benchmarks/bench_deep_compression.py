"""Deep Compression end to end on ImageNet-shaped AlexNet / VGG-16: time and size, side by side.

Prune (the paper's per-layer kept rates) + k-means sharing (8-bit conv / 5-bit fc) + Huffman,
then encode to the file format and decode it again, timing each step; prints the sizes
without Huffman (P+Q) and with it (P+Q+H) against the paper's ratios, each with the paper's
fixed index width and with edgecv's per-tensor ``index_bits: auto``. The weights are
edgecv's random initialisation (Kaiming normal): no ImageNet weights exist offline, and the
Huffman gains of trained weights (heavier-tailed, structured masks) are larger.

    .venv/bin/python benchmarks/bench_deep_compression.py [alexnet vgg16] [--json out.json]
Targets (issue): VGG-16 encode (prune + share + Huffman, k-means included) <= 60 s, decode <= 20 s on 2 cores.
"""
from __future__ import annotations

import json
import sys
import time

import torch

from edgecv.codec import decode_model, encode_model
from edgecv.compress import Context, load_recipe, to_layer_codes
from edgecv.compress.huffman_stage import AUTO
from edgecv.models import create_model
from edgecv.pipeline import float32_bytes

PAPER = {"alexnet": (27, 35), "vgg16": (31, 49)}


def run(name: str) -> dict:
    torch.manual_seed(0)
    model = create_model(name).eval()
    original = float32_bytes(model.state_dict())
    recipe = load_recipe(f"deep_compression_{name}")
    ctx = Context(model_name=name)
    t0 = time.perf_counter()
    model = recipe.run(model, ctx)
    blob = encode_model(to_layer_codes(model, ctx), {"model": name})
    t_encode = time.perf_counter() - t0
    t0 = time.perf_counter()
    decoded, _ = decode_model(blob)
    t_decode = time.perf_counter() - t0
    assert all(torch.equal(decoded[k], v) for k, v in model.state_dict().items())
    paper_width = dict(ctx.encoding)
    sizes = {}
    for width in ("paper", "auto"):  # the same pruned + shared weights, four encodings
        for huff in (False, True):
            ctx.encoding = {k: (w if width == "paper" else AUTO, huff) for k, (w, _) in paper_width.items()}
            sizes[("P+Q+H" if huff else "P+Q") + f" {width}"] = len(encode_model(to_layer_codes(model, ctx),
                                                                                {"model": name}))
    assert sizes["P+Q+H paper"] == len(blob)
    return {"model": name, "original_bytes": original, "bytes": sizes,
            "ratio": {k: original / v for k, v in sizes.items()}, "paper_pq": PAPER[name][0],
            "paper_pqh": PAPER[name][1], "stage_s": dict(ctx.timings), "encode_s": t_encode, "decode_s": t_decode}


def main() -> None:
    names = [a for a in sys.argv[1:] if not a.startswith("--") and not a.endswith(".json")] or ["alexnet", "vgg16"]
    rows = [run(n) for n in names]
    kinds = ["P+Q paper", "P+Q auto", "P+Q+H paper", "P+Q+H auto"]
    print(f"{'model':8s} {'float32 MB':>10s} " + " ".join(f"{k:>17s}" for k in kinds)
          + f" {'paper P+Q / P+Q+H':>18s} {'encode s':>9s} {'decode s':>9s}")
    for r in rows:
        cells = (f"{r['ratio'][k]:.1f}x ({r['bytes'][k] / 2**20:.2f} MB)" for k in kinds)
        print(f"{r['model']:8s} {r['original_bytes'] / 2**20:10.1f} " + " ".join(f"{c:>17s}" for c in cells)
              + f" {str(r['paper_pq']) + 'x / ' + str(r['paper_pqh']) + 'x':>18s} {r['encode_s']:9.1f}"
              f" {r['decode_s']:9.1f}")
        print("   stages: " + ", ".join(f"{k} {v:.1f}s" for k, v in r["stage_s"].items()))
    if "--json" in sys.argv:
        out = sys.argv[sys.argv.index("--json") + 1]
        with open(out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
