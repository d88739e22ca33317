"""Export every zoo model to ONNX and TFLite fp32 (default and small input size); write docs/export_matrix.md.

    nice -n 10 .venv/bin/python scripts/export_matrix.py                 # the whole matrix (hours on 2 cores)
    .venv/bin/python scripts/export_matrix.py --sizes small --models 'resnet*' --out /tmp/m.md

Each row is one `edgecv.export.export` call (which checks fp32 parity against PyTorch itself) plus
a single-thread latency of the file in its runtime (median of 20 after 5 warm-ups). Rows are
appended to a JSON-lines file as they finish, so an interrupted run resumes where it stopped.
Each model runs in its own child process: TensorFlow keeps memory from conversion to conversion,
and one process running the whole zoo grew past 24 GB and was killed at VGG-19-BN.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def latency_ms(path: Path, shape: list[int], layout: str, n: int = 20) -> float:
    import numpy as np

    from edgecv.export import runner

    run = runner(path, num_threads=1)
    c = shape[1] if layout == "NCHW" else shape[3]
    h, w = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    x = np.random.default_rng(0).standard_normal((1, c, h, w)).astype(np.float32)
    for _ in range(5):
        run(x)
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        run(x)
        ts.append(time.perf_counter() - t)
    return 1e3 * statistics.median(ts)


def load_rows(jsonl: Path) -> dict[tuple[str, str, str], dict]:
    """Rows already run, by (model, format, size); the last line of a key wins."""
    rows = {}
    for line in jsonl.read_text().splitlines() if jsonl.exists() else []:
        r = json.loads(line)
        rows[(r["model"], r["format"], r["size"])] = r
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="*", help="comma-separated fnmatch patterns of model names")
    ap.add_argument("--formats", default="onnx,tflite")
    ap.add_argument("--sizes", default="small,default", help="small and/or default")
    ap.add_argument("--jsonl", default=str(REPO / "docs" / "export_matrix.jsonl"))
    ap.add_argument("--out", default=str(REPO / "docs" / "export_matrix.md"))
    ap.add_argument("--in-process", action="store_true", help="run the rows here, not one child process per model")
    args = ap.parse_args()

    from edgecv.export import export
    from edgecv.models import get_spec, list_models

    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core; benchmarks/ pin the last
    jsonl = Path(args.jsonl)
    done = load_rows(jsonl)
    names = sorted({n for pat in args.models.split(",") for n in list_models(pat)})
    # 2 formats x the distinct sizes (CIFAR/MNIST models' small size is their default size)
    planned = sum(2 * len({tuple(get_spec(n).small_input), tuple(get_spec(n).input_size)}) for n in list_models("*"))
    if not args.in_process:
        import subprocess

        for name in names:
            spec = get_spec(name)
            sizes = [spec.small_input if k == "small" else spec.input_size for k in args.sizes.split(",")]
            if all((name, fmt, f"{s[1]}x{s[2]}") in done for s in sizes for fmt in args.formats.split(",")):
                continue
            code = subprocess.call([sys.executable, __file__, "--in-process", "--models", name, "--formats",
                                    args.formats, "--sizes", args.sizes, "--jsonl", args.jsonl, "--out", args.out])
            if code != 0:
                print(f"{name}: worker exited with {code} (negative: killed by signal); its missing rows stay "
                      "to run", file=sys.stderr, flush=True)
        done = load_rows(jsonl)
        write_table(list(done.values()), Path(args.out), planned=planned)
        return 0
    for name in names:
        spec = get_spec(name)
        for size_kind in args.sizes.split(","):
            size = spec.small_input if size_kind == "small" else spec.input_size
            for fmt in args.formats.split(","):
                key = (name, fmt, f"{size[1]}x{size[2]}")
                if key in done:
                    continue
                row = {"model": name, "family": spec.family, "format": fmt, "precision": "fp32", "size": key[2]}
                with tempfile.TemporaryDirectory() as tmp:
                    out = Path(tmp) / f"{name}.{fmt}"
                    try:
                        rep = export(name, fmt, out=out, input_size=(size[1], size[2]))
                        row.update(ok=True, bytes=rep["bytes"], max_abs=rep["parity"]["max_abs"],
                                   rel=rep["parity"]["rel"], seconds=round(rep["seconds"], 1),
                                   latency_ms=round(latency_ms(out, rep["input_shape"], rep["input_layout"]), 3))
                    except BaseException as e:  # noqa: BLE001 - a failed row is a result, the run goes on
                        if isinstance(e, KeyboardInterrupt):
                            raise
                        row.update(ok=False, error=f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}")
                        traceback.print_exc(limit=2)
                print(json.dumps(row), flush=True)
                with jsonl.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                done[key] = row
                write_table(list(done.values()), Path(args.out), planned=planned)  # current after every row
    write_table(list(done.values()), Path(args.out), planned=planned)
    return 0


def write_table(rows: list[dict], out: Path, planned: int) -> None:
    rows = sorted(rows, key=lambda r: (r["model"], r["size"], r["format"]))
    ok = sum(r["ok"] for r in rows)
    missing = planned - len(rows)
    cover = (f"{ok} of {len(rows)} exports passed; {len(rows)} of the {planned} rows of the whole matrix "
             "(every model x onnx/tflite x its small and default sizes, one size where they are the same) have been run"
             + (f": {missing} still to run (re-run the script; it resumes)." if missing > 0 else "."))
    lines = ["# Export matrix (fp32)", "",
             "Written by `scripts/export_matrix.py`: every row is `edgecv.export.export(model, format, "
             "input_size=...)` with random weights (parity is a property of the conversion, not of "
             "training), checked against PyTorch on seeded/real inputs (max |runtime - torch| relative to the "
             "logit range must be <= 1e-4). Latency: batch 1, one thread, one pinned core, median of 20; "
             "the machine is shared, so compare rows measured in the same run only.", "",
             cover, "",
             "| model | family | format | size | bytes | max abs diff | rel | latency ms | result |",
             "|---|---|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        if r["ok"]:
            lines.append(f"| {r['model']} | {r['family']} | {r['format']} | {r['size']} | {r['bytes']:,} | "
                         f"{r['max_abs']:.2e} | {r['rel']:.1e} | {r['latency_ms']:.2f} | ok |")
        else:
            lines.append(f"| {r['model']} | {r['family']} | {r['format']} | {r['size']} | | | | | "
                         f"FAIL: {r['error'].replace('|', '/')} |")
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
