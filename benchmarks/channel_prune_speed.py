"""Does channel pruning make the exported files faster? (a benchmark, not a test)

    nice .venv/bin/python benchmarks/channel_prune_speed.py --model mobilenet_v2 --weights imagenet-tf \\
        --edc mobilenet_v2-imagenet-channel30.edc [--json out.json]

Exports the unpruned model (MODEL with --weights) and the channel-pruned compressed file (--edc, made
by `edgecv compress` with a `structured_prune` recipe) to TFLite fp32 and full-int8, then in one run:
MACs, file bytes, top-1/top-5 and agreement with the unpruned float model on the 800 ImageNet samples
the int8 calibration did not use, and latency on one pinned core (one thread, LiteRT + XNNPACK,
interleaved rounds: the ratios are side by side). ``--google FILE`` adds Google's own int8 file of the
same network (shared/weights/tflite-imagenet) to the same run: the "pruned + int8 for the phone" row.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--weights", default="imagenet")
    ap.add_argument("--edc", type=Path, required=True, help="the channel-pruned compressed file")
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--google", default=None, help="Google's int8 TFLite of the same network, in shared/weights/tflite-imagenet")
    a = ap.parse_args()
    if not a.edc.is_file():
        ap.error(f"{a.edc} not found: make it with `edgecv compress {a.model} --recipe ... -o {a.edc}`")
    import torch
    from rich.console import Console
    from rich.table import Table

    from edgecv.export import export
    from edgecv.export.calib import load_real
    from edgecv.export.source import reference, resolve_source
    from edgecv.export.tflite import Runner
    from edgecv.models import count_macs
    from int8_vs_google import GoogleRunner, latency_ms, scores

    dense, pruned = resolve_source(a.model, weights=a.weights), resolve_source(str(a.edc))
    real = load_real(dense, "imagenet-samples")
    x, y = real.eval, real.eval_labels
    rows, files = [], {}
    with torch.no_grad():
        ref0 = reference(dense.model.eval(), torch.from_numpy(x)).numpy()  # the unpruned float model: agreement
    with tempfile.TemporaryDirectory(prefix="edgecv-channel-") as tmp:
        for label, src, source, weights in (("unpruned", dense, a.model, a.weights), ("pruned", pruned, str(a.edc), None)):
            with torch.no_grad():
                ref = reference(src.model.eval(), torch.from_numpy(x)).numpy()
            macs = count_macs(src.model, tuple(src.input_size))
            rows.append({"model": label, "file": "float PyTorch", "macs": macs, **scores(ref, ref0, y)})
            for prec in ("fp32", "int8"):
                out = Path(tmp) / f"{label}-{prec}.tflite"
                extra = {"calib": "imagenet-samples", "min_agreement": 0.0} if prec == "int8" else {}
                export(source, "tflite", out=out, precision=prec, weights=weights, **extra)
                got = Runner(out, 2)(x)
                key = f"{label} tflite {prec}"
                rows.append({"model": label, "file": f"tflite {prec}", "macs": macs, "bytes": out.stat().st_size,
                             **scores(got, ref0, y), "key": key})
                files[key] = out
        if a.google:
            from edgecv.data import shared_root

            g = Path(a.google) if Path(a.google).is_file() else shared_root() / "weights" / "tflite-imagenet" / a.google
            rows.append({"model": "Google", "file": g.name, "macs": count_macs(dense.model, tuple(dense.input_size)),
                         "bytes": g.stat().st_size, **scores(GoogleRunner(g, dense.mean, dense.std, 2)(x), ref0, y),
                         "key": "google"})
            files["google"] = g
        lat = latency_ms(files, a.core, a.rounds, 10)
    for r in rows:
        if r.get("key") in lat:
            r["ms"] = round(lat[r["key"]], 3)
            base = lat[r["key"].replace("pruned", "unpruned", 1)] if r["model"] == "pruned" else lat[r["key"]]
            r["speedup"] = round(base / lat[r["key"]], 3)
            if "google" in lat:
                r["vs_google"] = round(lat[r["key"]] / lat["google"], 3)
    t = Table(title=f"{a.model}: unpruned vs {a.edc.name} ({len(x)} ImageNet samples, one pinned core)")
    for c in ("model", "file", "MMACs", "bytes", "top-1", "top-5", "agreement", "ms", "speed-up", "vs Google"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["model"], r["file"], f"{r['macs'] / 1e6:.0f}", f"{r['bytes']:,}" if r.get("bytes") else "-",
                  f"{r['top1']:.1f}", f"{r['top5']:.1f}", f"{r['agreement']:.1f}%", f"{r['ms']:.2f}" if r.get("ms") else "-",
                  f"{r['speedup']:.2f}x" if r.get("speedup") else "-", f"{r['vs_google']:.2f}x" if r.get("vs_google") else "-")
    Console(width=160).print(t)
    if a.json:
        a.json.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
