"""Size vs top-1 and latency vs top-1 of the compressed real ImageNet models (one PNG, two panels;
a third with ``--tiny``).

    .venv/bin/python benchmarks/results_plot.py --compress weights/mobilenet_v2-imagenet-dc.json \\
        --speed docs/channel_prune_speed.json --tiny docs/squeezenet_tiny/*.json --out docs/results_imagenet.png

``--compress``: JSON reports of `edgecv compress` (file bytes, top-1 after on the ImageNet samples;
a .edc decodes to a dense model, so it has no latency of its own). ``--speed``: the JSON of
benchmarks/channel_prune_speed.py (unpruned and pruned TFLite fp32/int8 and Google's int8 file, bytes,
top-1 and latency measured in one run). ``--tiny``: compress reports measured on another image set
(SqueezeNet on the Tiny ImageNet held-out photos, 200 classes), drawn in their own size panel because
their top-1 is on other images. Points are labelled; nothing is measured here.
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
        bits = f" {r['bits']}-bit" if r.get("bits") else ""
        out.append({"label": f"{r['model']} {r['recipe']}{bits} (.edc)", "bytes": r["compressed_bytes"],
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
    ap.add_argument("--tiny", type=Path, nargs="*", default=[])
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    for p in [*a.compress, *a.speed, *a.tiny]:
        if not p.is_file():
            ap.error(f"{p} not found")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    pts, tiny = points(a.compress, a.speed), points(a.tiny, [])
    fig, axes = plt.subplots(1, 3 if tiny else 2, figsize=(19.5 if tiny else 13, 5.5))
    panels = [(axes[0], "bytes", "file size (MB, log)", pts, "top-1 on the ImageNet samples (%)"),
              (axes[1], "ms", "latency, one pinned core (ms)", pts, "top-1 on the ImageNet samples (%)")]
    if tiny:
        panels.append((axes[2], "bytes", "file size (MB, log)", tiny, "top-1 on 2,000 held-out Tiny ImageNet photos (%)"))
    for ax, key, xlabel, group, ylabel in panels:
        for q in group:
            if q[key] is None:
                continue
            x = q[key] / 1e6 if key == "bytes" else q[key]
            color = "tab:red" if "Google" in q["label"] else "tab:green" if q["label"].startswith("pruned") or ".edc" in q["label"] \
                else "tab:blue"
            ax.scatter([x], [q["top1"]], color=color, s=36)
            ax.annotate(q["label"], (x, q["top1"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
        if key == "bytes":
            ax.set_xscale("log")
            xs = [q["bytes"] / 1e6 for q in group]
            ax.set_xticks([t for t in (0.25, 0.5, 1, 2, 4, 8, 16) if min(xs) / 1.5 <= t <= max(xs) * 1.5])
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.5, 1, 2 rather than 5x10^-1
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].set_title("size vs top-1")
    axes[1].set_title("latency vs top-1 (TFLite, XNNPACK, 1 thread)")
    if tiny:
        axes[2].set_title("SqueezeNet on Tiny ImageNet (200 classes): size vs top-1")
    fig.suptitle("edgecv on real ImageNet models (green: edgecv compressed, blue: uncompressed, red: Google int8)")
    fig.tight_layout()
    tmp = a.out.with_name(f".{a.out.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(a.out)
    print(f"wrote {a.out} ({len(pts) + len(tiny)} points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
