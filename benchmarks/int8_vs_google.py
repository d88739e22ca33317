"""edgecv's int8 against Google's own int8 files for the same networks (a benchmark, not a test).

    nice .venv/bin/python benchmarks/int8_vs_google.py [--models mobilenet_v2,...] [--json out.json] [--md docs/results.md]

For MobileNetV2 1.0 @224 and MobileNet v1 0.75 @192, 0.5 @160, 0.25 @128 (the float weights
dequantized from Google's QAT files, shared/weights/imagenet-float, with TF SAME padding), in one run:
`edgecv.export.export` makes full-int8 TFLite and ONNX QDQ files with edgecv's defaults (200 ImageNet
samples calibrate, per-channel weights, bias correction, weights kept on the 8-bit grid they came on)
and a TFLite file without keeping the grid (`keep_grid=False`, the earlier default), and each is scored beside Google's int8
file(s) in shared/weights/tflite-imagenet on the 800 samples that did not calibrate: top-1, top-5,
top-1 agreement with the float PyTorch model, file bytes, and latency on one pinned core (one thread,
the same LiteRT interpreter with its default XNNPACK delegate; ONNX with onnxruntime, one thread).
Google's files take raw uint8 pixels (mean = std = 128) and have 1001 classes (background first,
dropped here). Latency is the median of interleaved rounds, so the ratios are measured side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# model -> (edgecv weights tag, Google's files for the same network)
MODELS = {
    "mobilenet_v2": ("imagenet-tf", ("mobilenet_v2_1.0_224_quant.tflite", "tf2_mobilenet_v2_1.0_224_ptq.tflite")),
    "mobilenet_v1_075": ("imagenet", ("mobilenet_v1_0.75_192_quant.tflite",)),
    "mobilenet_v1_050": ("imagenet", ("mobilenet_v1_0.5_160_quant.tflite",)),
    "mobilenet_v1_025": ("imagenet", ("mobilenet_v1_0.25_128_quant.tflite",)),
}
START, END = "<!-- int8_vs_google:start -->", "<!-- int8_vs_google:end -->"


class GoogleRunner:
    """Google's uint8/int8 file on NCHW float batches normalised with the model's mean/std: back to
    pixels (what the file was made for), quantised with the file's own input parameters."""

    def __init__(self, path: Path, mean: tuple[float, ...], std: tuple[float, ...], threads: int = 1) -> None:
        from edgecv.export.tflite import interpreter

        self.it = interpreter(path, threads)
        self.inp, self.out = self.it.get_input_details()[0], self.it.get_output_details()[0]
        self.mean = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(1, -1, 1, 1)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        pixels = np.clip(np.round((x * self.std + self.mean) * 255.0), 0, 255).transpose(0, 2, 3, 1)
        scale, zp = self.inp["quantization"]
        # the files' input grids are the pixel grid: uint8 with scale 1/128, zero point 128 on (p - 128) / 128
        q = np.round((pixels - 128.0) / 128.0 / scale + zp)
        info = np.iinfo(self.inp["dtype"])
        return np.clip(q, info.min, info.max).astype(self.inp["dtype"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        q, ys = self.quantize(x), []
        for i in range(len(q)):
            self.it.set_tensor(self.inp["index"], q[i:i + 1])
            self.it.invoke()
            y = self.it.get_tensor(self.out["index"]).astype(np.float32)
            scale, zp = self.out["quantization"]
            ys.append(((y - zp) * scale if scale else y).reshape(1, -1))
        y = np.concatenate(ys)
        return y[:, 1:] if y.shape[1] == 1001 else y  # class 0 is "background"


def scores(logits: np.ndarray, ref: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """top-1/top-5 (%), agreement (%) with the float model, and KL(float || file) per image (nats):
    a 98%-agreement file differs on ~16 of 800 near-ties, so 2-4 images move it by 0.25-0.5 pp; the
    KL divergence of the whole output distribution is the steadier measure of fidelity."""
    import torch
    import torch.nn.functional as F

    top5 = np.argsort(-logits, axis=1)[:, :5]
    lp, lq = (F.log_softmax(torch.from_numpy(z).double(), 1) for z in (ref, logits))
    return {"top1": 100.0 * float((logits.argmax(1) == labels).mean()),
            "top5": 100.0 * float((top5 == labels[:, None]).any(1).mean()),
            "agreement": 100.0 * float((logits.argmax(1) == ref.argmax(1)).mean()),
            "kl": float(F.kl_div(lq, lp, log_target=True, reduction="batchmean"))}


def latency_ms(files: dict[str, Path], core: int, rounds: int, per_round: int) -> dict[str, float]:
    """Median ms per invoke of each file, one thread, pinned to ``core``, files interleaved per round."""
    import onnxruntime as ort

    from edgecv.export.tflite import interpreter

    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        calls = {}
        for key, path in files.items():
            if path.suffix == ".onnx":
                so = ort.SessionOptions()
                so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
                sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
                i = sess.get_inputs()[0]
                feed = {i.name: np.random.default_rng(0).standard_normal([int(d) for d in i.shape]).astype(np.float32)}
                calls[key] = (lambda s=sess, f=feed: s.run(None, f))
            else:
                it = interpreter(path, 1)
                d = it.get_input_details()[0]
                info = np.iinfo(d["dtype"]) if d["dtype"] != np.float32 else None
                x = (np.random.default_rng(0).integers(info.min, info.max, d["shape"]).astype(d["dtype"]) if info
                     else np.random.default_rng(0).standard_normal(d["shape"]).astype(np.float32))
                it.set_tensor(d["index"], x)
                calls[key] = it.invoke
        times: dict[str, list[float]] = {k: [] for k in calls}
        for f in calls.values():  # warm-up
            for _ in range(5):
                f()
        for _ in range(rounds):
            for k, f in calls.items():
                for _ in range(per_round):
                    t = time.perf_counter()
                    f()
                    times[k].append(time.perf_counter() - t)
        return {k: 1000.0 * float(np.median(v)) for k, v in times.items()}
    finally:
        os.sched_setaffinity(0, before)


def run_model(name: str, tmp: Path, args: argparse.Namespace) -> list[dict]:
    import torch

    from edgecv.bench.litert_runner import delegation
    from edgecv.data import shared_root
    from edgecv.export import export
    from edgecv.export.calib import load_real
    from edgecv.export.onnx import Runner as OnnxRunner
    from edgecv.export.source import reference, resolve_source
    from edgecv.export.tflite import Runner as TfliteRunner, interpreter

    tag, google = MODELS[name]
    src = resolve_source(name, weights=tag)
    real = load_real(src, "imagenet-samples")  # the export's own split: 200 calibrate, 800 check
    x, labels = real.eval, real.eval_labels
    with torch.no_grad():
        ref = reference(src.model.eval(), torch.from_numpy(x)).numpy()
    rows = [{"model": name, "file": f"float PyTorch ({tag})", "by": "-", **scores(ref, ref, labels),
             "bytes": None, "ms": None}]
    files: dict[str, Path] = {}
    for fmt, keep in (("tflite", True), ("onnx", True), ("tflite", False)):
        out = tmp / f"{name}-int8{'' if keep else '-nogrid'}.{fmt}"
        t0 = time.perf_counter()
        rep = export(name, fmt, out=out, precision="int8", weights=tag, calib="imagenet-samples", min_agreement=0.0,
                     keep_grid=keep)
        run = (TfliteRunner if fmt == "tflite" else OnnxRunner)(out, 2)
        key = f"edgecv {fmt} int8" + ("" if keep else " (grid not kept)")
        rows.append({"model": name, "file": key, "by": "edgecv", **scores(run(x), ref, labels),
                     "bytes": out.stat().st_size, "export_s": round(time.perf_counter() - t0, 1),
                     "export_agreement": rep["parity"]["agreement_pct"],
                     "weight_grid": rep["calibration"]["weight_grid"]})
        files[key] = out
    root = shared_root() / "weights" / "tflite-imagenet"
    for g in google:
        path = root / g
        # their files end in a uint8 softmax (probabilities in steps of 1/256, mostly 0): no KL against logits
        rows.append({"model": name, "file": g, "by": "Google", **scores(GoogleRunner(path, src.mean, src.std, 2)(x), ref, labels),
                     "kl": None, "bytes": path.stat().st_size})
        files[g] = path
    lat = latency_ms(files, args.core, args.rounds, args.per_round)
    parts = {k: delegation(interpreter(p, 1)) for k, p in files.items() if p.suffix == ".tflite"}
    google_ms = lat[google[0]]
    for r in rows:
        if r["file"] in lat:
            r["ms"] = round(lat[r["file"]], 3)
            r["vs_google_qat"] = round(lat[r["file"]] / google_ms, 3)
        if r["file"] in parts:
            r["xnnpack_partitions"] = parts[r["file"]].get("delegate_partitions")
            r["undelegated_ops"] = parts[r["file"]].get("undelegated_ops")
        r["n_images"] = int(len(x))
    return rows


def _kl_cell(r: dict) -> str:
    """KL x1e-3 for edgecv's files ("-" for the float reference and Google's softmax outputs)."""
    return f"{1e3 * r['kl']:.1f}" if r["by"] == "edgecv" else "-"


def markdown(rows: list[dict], cmd: str) -> str:
    lines = [START, "## edgecv int8 vs Google's int8 files (same networks, same images)", "",
             f"`{cmd}` on {time.strftime('%Y-%m-%d')}: {rows[0]['n_images']} ImageNet samples that did not "
             "calibrate; agreement = top-1 equal to the float PyTorch model's (the float weights are dequantized "
             "from Google's QAT file); latency: median ms per image, one thread on one pinned core, same LiteRT "
             "interpreter (XNNPACK), ONNX with onnxruntime; ratio to Google's QAT file in the same run.", "",
             "| model | file | top-1 | top-5 | agreement | KL (1e-3) | bytes | ms | vs Google QAT |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        b = f"{r['bytes']:,}" if r.get("bytes") else "-"
        ms = f"{r['ms']:.2f}" if r.get("ms") else "-"
        ratio = f"{r['vs_google_qat']:.2f}x" if r.get("vs_google_qat") else "-"
        lines.append(f"| {r['model']} | {r['file']} | {r['top1']:.1f} | {r['top5']:.1f} | {r['agreement']:.1f}% | "
                     f"{_kl_cell(r)} | {b} | {ms} | {ratio} |")
    return "\n".join(lines + ["", END])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--core", type=int, default=0, help="the CPU core latency is measured on")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--per-round", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None, help="put the table into this markdown file (between markers)")
    a = ap.parse_args()
    models = [m for m in a.models.split(",") if m]
    if set(models) - set(MODELS):
        ap.error(f"unknown models {sorted(set(models) - set(MODELS))}; choose from {', '.join(MODELS)}")
    if a.core not in os.sched_getaffinity(0) or a.rounds < 1 or a.per_round < 1:
        ap.error("--core must be a core this process may run on; --rounds and --per-round >= 1")
    from rich.console import Console
    from rich.table import Table

    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="edgecv-vs-google-") as tmp:
        for m in models:
            rows += run_model(m, Path(tmp), a)
    t = Table(title="edgecv int8 vs Google's int8 (ImageNet samples not used for calibration)")
    for c in ("model", "file", "top-1", "top-5", "agree", "KL 1e-3", "bytes", "ms", "vs Google QAT", "partitions"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["model"], r["file"], f"{r['top1']:.1f}", f"{r['top5']:.1f}", f"{r['agreement']:.1f}",
                  _kl_cell(r),
                  f"{r['bytes']:,}" if r.get("bytes") else "-", f"{r['ms']:.2f}" if r.get("ms") else "-",
                  f"{r['vs_google_qat']:.2f}x" if r.get("vs_google_qat") else "-", str(r.get("xnnpack_partitions", "-")))
    Console(width=200).print(t)
    cmd = "python benchmarks/int8_vs_google.py " + " ".join(sys.argv[1:])
    if a.json:
        a.json.write_text(json.dumps({"command": cmd, "rows": rows}, indent=1) + "\n")
    if a.md:
        text = a.md.read_text() if a.md.exists() else ""
        block = markdown(rows, cmd.strip())
        if START in text and END in text:
            text = text[:text.index(START)] + block + text[text.index(END) + len(END):]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        a.md.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
