"""Where the int8 `.pte` loses time against int8 TFLite: one layer type at a time (a benchmark, not a test).

    nice -n 10 .venv/bin/python benchmarks/executorch_kernels.py [--json out/executorch_kernels.json]
        [--md docs/export.md] [--rounds 5] [--per-round 50]

benchmarks/executorch_int8.py measures whole networks (EfficientNet-Lite0, MobileNetV2): edgecv's
int8 `.pte` runs 1.15x (MobileNetV2) and 1.39x (EfficientNet-Lite0) edgecv's int8 TFLite on one core
(1.5x / 1.65x before its zero pads ran in int8), with one XNNPACK partition and no op outside it. This
script splits that gap by layer type. Each probe is a stack of one kind of layer, with the shapes of
MobileNetV2's and Lite0's blocks, exported by the same two paths (`edgecv.export.executorch.convert`
with edgecv's PT2E recipe; `edgecv.export.tflite.convert` through ONNX and the TFLite converter),
fp32 and int8, and timed side by side in one `taskset -c CORE` child at one thread (the latency child
of executorch_int8.py):

* `pointwise`: 6 x (1x1 conv 144 -> 144 + ReLU6) on 28x28 (GEMM kernels);
* `depthwise`: 6 x (3x3 depthwise conv, 144 channels + ReLU6) on 56x56 (dwconv kernels);
* `depthwise 5x5`: 6 x (5x5 depthwise conv, 240 channels + ReLU6) on 28x28 (EfficientNet-Lite0's
  5x5 stages);
* `pointwise x24`, `depthwise x24`, `depthwise 5x5 x24`: the same with 24 layers: the same input and output, so the
  difference to the 6-layer probe over 18 layers is the cost of one layer, without the per-call and
  input/output costs (`per_layer` in the JSON and the second table);
* `stem`: 3x3 stride-2 conv 3 -> 32 + ReLU6 on a 224x224 image (the float -> int8 input of the
  `.pte`, which quantizes its input inside the graph; the TFLite file takes int8);
* `residual`: 4 x (1x1 conv 32 -> 32 + ReLU6, then + the block input) on 56x56 (int8 adds);
* `head`: global average pool of 1280 x 7 x 7 and a 1280 -> 1000 Linear (the classifier);
* `call`: one 1x1 conv on an 8 x 2 x 2 input: what a call costs around almost no compute.

The weights are seeded random (latency does not depend on their values); calibration uses seeded
Gaussian inputs. Only the ratios measured in the same run mean much on a shared machine.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
START, END = "<!-- executorch_kernels:start -->", "<!-- executorch_kernels:end -->"


def probes():
    import torch
    from torch import nn

    class Residual(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.conv, self.act = nn.Conv2d(c, c, 1), nn.ReLU6()

        def forward(self, x):
            return x + self.act(self.conv(x))

    class Head(nn.Module):  # as the zoo's models pool: adaptive_avg_pool2d (x.mean((2, 3)) is not delegated)
        def __init__(self) -> None:
            super().__init__()
            self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(1280, 1000)

        def forward(self, x):
            return self.fc(self.pool(x).flatten(1))

    def stack(make, n):
        return nn.Sequential(*[m for _ in range(n) for m in make()])

    torch.manual_seed(0)
    return {
        "pointwise": (stack(lambda: [nn.Conv2d(144, 144, 1), nn.ReLU6()], 6), (144, 28, 28)),
        "pointwise x24": (stack(lambda: [nn.Conv2d(144, 144, 1), nn.ReLU6()], 24), (144, 28, 28)),
        "depthwise": (stack(lambda: [nn.Conv2d(144, 144, 3, padding=1, groups=144), nn.ReLU6()], 6), (144, 56, 56)),
        "depthwise x24": (stack(lambda: [nn.Conv2d(144, 144, 3, padding=1, groups=144), nn.ReLU6()], 24),
                          (144, 56, 56)),
        "depthwise 5x5": (stack(lambda: [nn.Conv2d(240, 240, 5, padding=2, groups=240), nn.ReLU6()], 6),
                          (240, 28, 28)),  # EfficientNet-Lite0's 5x5 stages
        "depthwise 5x5 x24": (stack(lambda: [nn.Conv2d(240, 240, 5, padding=2, groups=240), nn.ReLU6()], 24),
                              (240, 28, 28)),
        "stem": (nn.Sequential(nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU6()), (3, 224, 224)),
        "residual": (nn.Sequential(*[Residual(32) for _ in range(4)]), (32, 56, 56)),
        "head": (Head(), (1280, 7, 7)),
        "call": (nn.Sequential(nn.Conv2d(8, 8, 1), nn.ReLU()), (8, 2, 2)),
    }


def export_all(work: Path) -> dict[str, dict[str, Path]]:
    from edgecv.export import executorch as et
    from edgecv.export import onnx as O
    from edgecv.export import tflite as TL

    files: dict[str, dict[str, Path]] = {}
    for name, (model, size) in probes().items():
        model.eval()
        calib = np.random.default_rng(0).standard_normal((64, *size)).astype(np.float32)
        onnx = O.export_fp32(model, work / f"{name}.onnx", size)
        files[name] = {}
        for prec in ("fp32", "int8"):
            files[name][f"tflite {prec}"] = TL.convert(onnx, work / f"{name}.{prec}.tflite", prec,
                                                       calib=calib if prec == "int8" else None,
                                                       workdir=work / f"{name}.{prec}.tf")
            files[name][f"pte {prec}"] = et.convert(model, work / f"{name}.{prec}.pte", prec, input_size=size,
                                                    calib=calib if prec == "int8" else None)
    return files


def markdown(rows: list[dict], cmd: str, per_layer: dict | None = None) -> str:
    lines = [f"Generated by `{cmd}` on {time.strftime('%Y-%m-%d')}: median ms per call, one thread, "
             "`taskset -c 0`, all files interleaved in one child; ratio = median over rounds of (.pte / TFLite) "
             "at the same precision.", "",
             "| probe | TFLite fp32 ms | .pte fp32 ms | fp32 ratio | TFLite int8 ms | .pte int8 ms | int8 ratio |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['probe']} | {r['tflite fp32']:.3f} | {r['pte fp32']:.3f} | {r['ratio fp32']:.2f} | "
                     f"{r['tflite int8']:.3f} | {r['pte int8']:.3f} | {r['ratio int8']:.2f} |")
    if per_layer:
        lines += ["", "One layer alone ((24-layer probe - 6-layer probe) / 18, ms):", "",
                  "| layer | TFLite fp32 | .pte fp32 | ratio | TFLite int8 | .pte int8 | ratio |", "|---|---:|---:|---:|---:|---:|---:|"]
        for kind, v in per_layer.items():
            lines.append(f"| {kind} | {v['tflite fp32']:.4f} | {v['pte fp32']:.4f} | {v['pte fp32'] / v['tflite fp32']:.2f} | "
                         f"{v['tflite int8']:.4f} | {v['pte int8']:.4f} | {v['pte int8'] / v['tflite int8']:.2f} |")
    return "\n".join(lines)


def main() -> int:
    # the same options and pinned one-thread child as the whole-network benchmark
    from executorch_int8 import cpu_info, latency, parser, write_outputs

    a = (ap := parser(__doc__, "executorch_kernels", per_round=50)).parse_args()
    if a.rounds < 1 or a.per_round < 1:
        ap.error("--rounds and --per-round must be >= 1")

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    files = export_all(work)
    flat = {f"{p}/{k}": v for p, d in files.items() for k, v in d.items()}
    lat = latency(flat, a.core, a.rounds, a.per_round)["rounds_ms"]
    rows = []
    for probe in files:
        r: dict = {"probe": probe}
        for k in ("tflite fp32", "pte fp32", "tflite int8", "pte int8"):
            r[k] = float(np.median(lat[f"{probe}/{k}"]))
        for prec in ("fp32", "int8"):
            r[f"ratio {prec}"] = float(np.median(np.asarray(lat[f"{probe}/pte {prec}"]) /
                                                 np.asarray(lat[f"{probe}/tflite {prec}"])))
        r["rounds_ms"] = {k: lat[f"{probe}/{k}"] for k in ("tflite fp32", "pte fp32", "tflite int8", "pte int8")}
        rows.append(r)
    cmd = "benchmarks/executorch_kernels.py " + " ".join(sys.argv[1:])
    per_layer = {}
    by = {r["probe"]: r for r in rows}
    for kind in ("pointwise", "depthwise", "depthwise 5x5"):
        if f"{kind} x24" in by:
            per_layer[kind] = {k: (by[f"{kind} x24"][k] - by[kind][k]) / 18 for k in
                               ("tflite fp32", "pte fp32", "tflite int8", "pte int8")}
    data = {"command": cmd, "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpu": cpu_info(), "rows": rows, "per_layer": per_layer}
    write_outputs(Path(a.json or work / "results.json"), data, markdown(rows, cmd, per_layer), a.md, START, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
