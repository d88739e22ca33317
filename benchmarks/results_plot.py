"""Size vs top-1 and latency vs top-1 of the compressed real ImageNet models (one PNG, two panels).

    .venv/bin/python benchmarks/results_plot.py --compress weights/mobilenet_v2-imagenet-dc.json \\
        --speed docs/channel_prune_speed.json --out docs/results_imagenet.png

``--compress``: JSON reports of `edgecv compress` (file bytes, top-1 after on the ImageNet samples;
a .edc decodes to a dense model, so it has no latency of its own). ``--speed``: the JSON of
benchmarks/channel_prune_speed.py (unpruned and pruned TFLite fp32/int8 and Google's int8 file, bytes,
top-1 and latency measured in one run). Points are labelled; nothing is measured here.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def points(compress: list[Path], speed: list[Path]) -> list[dict]:
    out = []
    for p in compress:
        r = json.loads(p.read_text())
        acc = r.get("accuracy") or {}
        if "after" not in acc:
            raise SystemExit(f"{p}: no accuracy in the report (made without --data?)")
        out.append({"label": f"{r['model']} {r['recipe']} (.edc)", "bytes": r["compressed_bytes"],
                    "top1": acc["after"], "ms": None})
        out.append({"label": f"{r['model']} float32", "bytes": r["original_bytes"], "top1": acc["before"], "ms": None})
    for p in speed:
        for r in json.loads(p.read_text())["rows"]:
            if r.get("bytes"):
                out.append({"label": f"{r['model']} {r['file']}", "bytes": r["bytes"], "top1": r["top1"],
                            "ms": r.get("ms")})
    seen, uniq = set(), []
    for q in out:  # the same float32 model reported by several runs: one point
        if q["label"] not in seen:
            seen.add(q["label"])
            uniq.append(q)
    return uniq


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compress", type=Path, nargs="*", default=[])
    ap.add_argument("--speed", type=Path, nargs="*", default=[])
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    for p in [*a.compress, *a.speed]:
        if not p.is_file():
            ap.error(f"{p} not found")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = points(a.compress, a.speed)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, key, xlabel in ((axes[0], "bytes", "file size (MB, log)"), (axes[1], "ms", "latency, one pinned core (ms)")):
        for q in pts:
            if q[key] is None:
                continue
            x = q[key] / 1e6 if key == "bytes" else q[key]
            color = "tab:red" if "Google" in q["label"] else "tab:green" if q["label"].startswith("pruned") or ".edc" in q["label"] \
                else "tab:blue"
            ax.scatter([x], [q["top1"]], color=color, s=36)
            ax.annotate(q["label"], (x, q["top1"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
        if key == "bytes":
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("top-1 on the ImageNet samples (%)")
        ax.grid(alpha=0.3)
    axes[0].set_title("size vs top-1")
    axes[1].set_title("latency vs top-1 (TFLite, XNNPACK, 1 thread)")
    fig.suptitle("edgecv on real ImageNet MobileNetV2 (green: edgecv compressed, blue: uncompressed, red: Google int8)")
    fig.tight_layout()
    tmp = a.out.with_name(f".{a.out.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(a.out)
    print(f"wrote {a.out} ({len(pts)} points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
