"""Latency anchor of `edgecv export` (a benchmark, not a test): our files vs reference runtimes/files.

    nice -n 10 .venv/bin/python benchmarks/bench_export.py [--runs 50] [--skip-export DIR]

Measured side by side in one run, batch 1, one thread, pinned to one core (os.sched_setaffinity),
median of --runs after 10 warm-ups; ratios are what to compare (the machines are shared):

* int8: our full-integer MobileNetV2 TFLite vs Google's int8 MobileNetV2 files
  (shared/weights/tflite-imagenet) in the same ai-edge-litert interpreter. Goal <= 1.05x.
* fp32: our MobileNetV2 TFLite vs our ONNX file in onnxruntime (intra=1, inter=1, sequential)
  and vs torch eager - stack.md's best fp32 runtime here was ai-edge-litert (3.98 ms vs 4.65).
* onnx int8 (QDQ) vs onnx fp32 in onnxruntime (the QDQ graph must be the faster one).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def median_ms(fn, runs: int) -> float:
    for _ in range(10):
        fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1e3 * statistics.median(ts)


def tflite_fn(path: Path):
    from edgecv.export.tflite import interpreter

    it = interpreter(path, num_threads=1)
    d = it.get_input_details()[0]
    x = np.zeros(d["shape"], dtype=d["dtype"])

    def run():
        it.set_tensor(d["index"], x)
        it.invoke()
    return run


def onnx_fn(path: Path):
    from edgecv.export.onnx import session

    s = session(path, num_threads=1)
    i = s.get_inputs()[0]
    x = {i.name: np.zeros([int(v) for v in i.shape], dtype=np.float32)}
    return lambda: s.run(None, x)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--skip-export", default=None, help="folder with mobilenet_v2.{int8.tflite,tflite,onnx,int8.onnx}")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import torch

    from edgecv.data import shared_root
    from edgecv.export import export
    from edgecv.models import create_model

    core = sorted(os.sched_getaffinity(0))[-1]
    os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)
    google = shared_root() / "weights" / "tflite-imagenet"
    work = Path(args.skip_export or tempfile.mkdtemp(prefix="bench-export-"))
    files = {"int8.tflite": ("tflite", "int8"), "tflite": ("tflite", "fp32"), "onnx": ("onnx", "fp32"),
             "int8.onnx": ("onnx", "int8")}
    for suffix, (fmt, prec) in files.items():
        f = work / f"mobilenet_v2.{suffix}"
        if not f.exists():  # random weights: latency does not depend on the values; agreement not gated
            rep = export("mobilenet_v2", fmt, out=f, precision=prec, min_agreement=0.0)
            print(f"exported {f.name}: {rep['bytes']:,} B in {rep['seconds']:.0f} s", file=sys.stderr)
    model = create_model("mobilenet_v2").eval()
    x = torch.zeros(1, 3, 224, 224)

    def torch_run():
        with torch.no_grad():
            model(x)

    cases = {
        "ours int8 tflite": tflite_fn(work / "mobilenet_v2.int8.tflite"),
        "google int8 tflite (TF2 PTQ)": tflite_fn(google / "tf2_mobilenet_v2_1.0_224_ptq.tflite"),
        "google uint8 tflite (QAT)": tflite_fn(google / "mobilenet_v2_1.0_224_quant.tflite"),
        "ours fp32 tflite": tflite_fn(work / "mobilenet_v2.tflite"),
        "ours fp32 onnx (onnxruntime)": onnx_fn(work / "mobilenet_v2.onnx"),
        "ours int8 onnx QDQ (onnxruntime)": onnx_fn(work / "mobilenet_v2.int8.onnx"),
        "torch eager fp32": torch_run,
    }
    # interleave the measurements (round-robin, 5 rounds) so drift on the shared machine hits all alike
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(5):
        for k, fn in cases.items():
            samples[k].append(median_ms(fn, max(1, args.runs // 5)))
    ms = {k: statistics.median(v) for k, v in samples.items()}
    ratios = {
        "int8: ours / google TF2 PTQ int8": ms["ours int8 tflite"] / ms["google int8 tflite (TF2 PTQ)"],
        "int8: ours / google QAT uint8": ms["ours int8 tflite"] / ms["google uint8 tflite (QAT)"],
        "fp32: ours tflite / onnxruntime": ms["ours fp32 tflite"] / ms["ours fp32 onnx (onnxruntime)"],
        "onnx: int8 QDQ / fp32": ms["ours int8 onnx QDQ (onnxruntime)"] / ms["ours fp32 onnx (onnxruntime)"],
    }
    print(f"MobileNetV2 224x224, batch 1, 1 thread, core {core}, median of {args.runs} (5 interleaved rounds)")
    for k, v in ms.items():
        print(f"  {k:36s} {v:8.3f} ms")
    for k, v in ratios.items():
        print(f"  {k:36s} {v:8.3f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"ms": ms, "ratios": ratios, "core": core}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
