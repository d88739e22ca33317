"""Which int8 calibration choices raise top-1 agreement with the float model (a benchmark, not a test).

    nice .venv/bin/python benchmarks/int8_calibration.py [--models efficientnet_lite0,resnet20] [--out docs/int8_calibration.md]

For each model with real weights (EfficientNet-Lite0 with its published weights on the shared
ImageNet samples, the pretrained CIFAR ResNet-20 on CIFAR-10), int8 files are made with
`edgecv.export.export` under several calibration settings and all are scored on one common set of
real images that no variant calibrated on (ImageNet samples: the 600 left after the largest
calibration slice; CIFAR-10: 2,000 test images spread over the split):

* TFLite full-int8: per-channel weights with 50 / 100 / 200 / 400 calibration images, and
  per-tensor weights with 200, all without bias correction (the converter calibrates min/max and
  has no bias-correction option); then per-channel and per-tensor with 200 images and edgecv's
  bias correction (edgecv.export.bias_correction, the export default).
* ONNX QDQ (onnxruntime.quantization): per-channel, 200 images, calibration method MinMax /
  Entropy / Percentile; then MinMax with bias correction.

Prints the table and writes it to --out. Peers reach 96.5-97.9% agreement on these models
(shared/stack.md); the export default (per-channel, 200 / 300 images) is what `edgecv export` uses.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODELS = {  # name -> (weights, calibration/eval data, images held out for the common check set)
    "efficientnet_lite0": ("pretrained", "imagenet-samples", 400),
    "resnet20": ("shared:weights/resnet-cifar10/resnet20-12fca82f.th", "cifar10", None),
}
TFLITE = [(True, 50, False), (True, 100, False), (True, 200, False), (True, 400, False), (False, 200, False),
          (True, 200, True), (False, 200, True)]
ONNX_METHODS = ["minmax", "entropy", "percentile"]


def weights_path(w: str) -> str:
    if w.startswith("shared:"):
        from edgecv.data import shared_root

        return str(shared_root() / w[len("shared:"):])
    return w


def agreement(ref: np.ndarray, got: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {"agreement_pct": 100.0 * float((ref.argmax(1) == got.argmax(1)).mean()),
            "top1_float_pct": 100.0 * float((ref.argmax(1) == labels).mean()),
            "top1_int8_pct": 100.0 * float((got.argmax(1) == labels).mean())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--out", default=str(REPO / "docs" / "int8_calibration.md"))
    ap.add_argument("--jsonl", default=None, help="append each row here and skip the variants already in it (resume)")
    a = ap.parse_args()
    import torch

    from edgecv.export import export, runner
    from edgecv.export import onnx as ox
    from edgecv.export.calib import load_real
    from edgecv.export.source import reference, resolve_source

    jsonl = Path(a.jsonl) if a.jsonl else None
    done = {}
    if jsonl is not None and jsonl.exists():  # resume: variants already measured are kept
        for line in jsonl.read_text().splitlines():
            r = json.loads(line)
            done[r["key"]] = r
    rows = []
    for name in a.models.split(","):
        w, data, held = MODELS[name]
        w = weights_path(w)
        n_cal = 200 if data == "imagenet-samples" else 300
        keys = [f"{name}|tflite|{pc}|{n}|{bc}" for pc, n, bc in TFLITE] + \
            [f"{name}|onnx|{m}|{n_cal}|False" for m in ONNX_METHODS] + [f"{name}|onnx|minmax|{n_cal}|True"]
        if all(k in done for k in keys):
            rows += [done[k] for k in keys]
            continue
        src = resolve_source(name, weights=w)
        common = load_real(src, data, n_calib=held, n_eval=2000)  # eval images no variant calibrates on
        x, y = common.eval, common.eval_labels
        ref = reference(src.model, torch.from_numpy(x)).numpy()
        calib = load_real(src, data, n_calib=n_cal, n_eval=1).calib
        with tempfile.TemporaryDirectory(prefix="edgecv-calib-") as tmp:
            fp32 = Path(tmp) / f"{name}.onnx"
            for key in keys:
                if key in done:
                    rows.append(done[key])
                    continue
                _, fmt, how, n, bc = key.split("|")
                n, bc = int(n), bc == "True"
                t0 = time.perf_counter()
                out = Path(tmp) / f"{name}_{how}_{n}_{bc}.{fmt}"
                if fmt == "onnx" and not bc:  # onnxruntime's calibration methods, on the same fp32 file
                    if not fp32.exists():
                        export(name, "onnx", out=fp32, weights=w)
                    ox.quantize_int8(fp32, out, calib, per_channel=True, method=how)
                    weights, label = "per-channel", f"{how}, {len(calib)} images"
                else:
                    per_channel = how != "False"
                    rep = export(name, fmt, out=out, precision="int8", weights=w, calib=data, min_agreement=0.0,
                                 per_channel=per_channel, calib_images=n, bias_correction=bc)
                    weights = "per-channel" if per_channel else "per-tensor"
                    label = f"{'min/max' if fmt == 'tflite' else 'minmax'}, {rep['calibration']['n_images']} images"
                r = {"key": key, "model": name, "format": fmt, "weights": weights,
                     "calibration": label + (" + bias correction" if bc else ""), "bytes": out.stat().st_size,
                     **agreement(ref, runner(out, 2)(x), y), "n_check": int(len(x)),
                     "seconds": round(time.perf_counter() - t0, 1)}
                rows.append(r)
                print(json.dumps(r), flush=True)
                if jsonl is not None:
                    with jsonl.open("a") as f:
                        f.write(json.dumps(r) + "\n")
    lines = ["# int8 calibration: what raises agreement with the float model", "",
             f"Generated by `benchmarks/int8_calibration.py` on {time.strftime('%Y-%m-%d')}. Every variant of a "
             "model is scored on the same real images, none of which any variant calibrated on "
             "(EfficientNet-Lite0: the 600 ImageNet samples left after the largest calibration slice; "
             "ResNet-20: 2,000 CIFAR-10 test images spread over the split). Agreement = top-1 of the int8 "
             "file equals top-1 of the float PyTorch model. Peers reach 96.5-97.9% on these models "
             "(shared/stack.md); the issue's aim is >= 98.5%. Bias correction: edgecv.export.bias_correction "
             "(the export default; `--no-bias-correction` turns it off).", "",
             "| model | format | weights | calibration | agreement | top-1 float -> int8 | bytes |",
             "|---|---|---|---|---:|---|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['format']} | {r['weights']} | {r['calibration']} | "
                     f"{r['agreement_pct']:.2f}% of {r['n_check']} | {r['top1_float_pct']:.2f} -> "
                     f"{r['top1_int8_pct']:.2f}% | {r['bytes']:,} |")
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
