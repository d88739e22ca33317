"""Run exported files on real ARM64 kernels (aarch64 builds of LiteRT / ExecuTorch under qemu-user).

``edgecv verify-arm m.tflite m.int8.tflite m.pte`` feeds the same real images (bytes as the runtime
sees them: NHWC and quantized for TFLite int8, NCHW float for ``.pte``) to the x86 runtime of this
machine and to the aarch64 wheels of the same versions, run by ``qemu-aarch64-static -L ROOT`` in an
arm64 Debian root (``scripts/build_arm_root.sh``), and compares:

* fp32 files: max |arm - x86| within 1e-4 of the x86 logit range;
* int8 files: top-1 agreement with x86 >= 99.5% on real images (and the largest difference in
  output quantization steps, reported);
* both sides: XNNPACK took the graph (TFLite: the same delegate partitions and no op left on the
  built-in kernels on ARM as on x86; ``.pte``: the file's delegate is XnnpackBackend, and the
  aarch64 runtime has that backend registered and executed the method).

XNNPACK picks its kernels from the CPU it reads: the root carries a fake ARM ``/proc/cpuinfo`` and
``/sys/devices/system/cpu/{possible,present}`` (without them LiteRT silently runs without XNNPACK,
trap 1 of docs/export.md), and qemu runs ``QEMU_CPU=max,sme=off`` (qemu 7.2's default CPU has SME and
gives wrong int8 results, trap 2). Wall times under emulation are reported as such and are never a
device latency. The same module runs as the worker on both sides (``python -m edgecv.verify_arm
--_worker JOB``): it imports only numpy, the runtime and edgecv's delegation reader.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

FP32_REL_TOL = 1e-4
INT8_MIN_AGREEMENT = 99.5
QEMU_CPU = "max,sme=off"
DEFAULT_IMAGES = 200
PTE_SITE = "opt/edgecv/pte-site"  # aarch64 torch + executorch (+ the CUDA libs torch links), beside site/
PTE_READY = ".edgecv-pte-ready"  # written last by scripts/build_arm_root.sh --pte
DATA_BY_CLASSES = {1000: "imagenet-samples", 10: "cifar10"}


# ----------------------------------------------------------------- the worker (x86 and aarch64)
def _run_tflite(path: str, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    from ai_edge_litert.interpreter import Interpreter

    from edgecv.bench.litert_runner import delegation

    it = Interpreter(model_path=path, num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    ys = []
    for i in range(len(x)):
        it.set_tensor(inp["index"], x[i:i + 1])
        it.invoke()
        ys.append(it.get_tensor(out["index"]).reshape(1, -1).copy())
    return np.concatenate(ys), {"delegation": delegation(it), "output_quantization": list(out["quantization"])}


def _run_pte(path: str, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    import torch  # noqa: F401  (the pybindings need torch loaded first)
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    portable_lib._unsafe_reset_threadpool(1)
    rt = Runtime.get()
    method = rt.load_program(Path(path)).load_method("forward")  # fails if a delegate's backend is missing
    ys = [method.execute([torch.from_numpy(np.ascontiguousarray(x[i:i + 1]))])[0].numpy().reshape(1, -1).copy()
          for i in range(len(x))]
    return np.concatenate(ys), {"xnnpack_registered": bool(rt.backend_registry.is_available("XnnpackBackend"))}


def worker(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    results = []
    for item in job["items"]:
        t = time.perf_counter()
        x = np.load(item["input"])
        y, info = (_run_pte if item["file"].endswith(".pte") else _run_tflite)(item["file"], x)
        np.save(item["output"], y)
        results.append({**info, "seconds": time.perf_counter() - t})
    # the result goes to a file beside the job (not stdout: runtimes print their own lines there)
    Path(job_path).with_suffix(".result.json").write_text(json.dumps({"machine": platform.machine(), "results": results}))
    return 0


# ----------------------------------------------------------------- the host side
def arm_root(root: str | os.PathLike | None = None) -> Path:
    """The arm64 root: ``root``, $EDGECV_ARM_ROOT, or $EDGECV_CACHE/arm/root (~/.cache/edgecv/arm/root)."""
    if root is None:
        root = os.environ.get("EDGECV_ARM_ROOT") or Path(os.environ.get("EDGECV_CACHE") or
                                                         Path.home() / ".cache" / "edgecv") / "arm" / "root"
    return Path(root)


def check_root(root: Path, need_executorch: bool = False) -> str:
    """The qemu binary; UserError naming the fix when the emulator or the root is not ready."""
    from edgecv.errors import UserError

    qemu = shutil.which("qemu-aarch64-static")
    if qemu is None:
        raise UserError("qemu-aarch64-static not found: sudo apt-get install qemu-user-static")
    if not (root / "usr/bin/python3.11").exists():
        raise UserError(f"no arm64 root at {root}: run scripts/build_arm_root.sh (root, ~5 min) "
                        "or set EDGECV_ARM_ROOT to one")
    if not (root / "proc/cpuinfo").is_file() or not (root / "sys/devices/system/cpu/possible").is_file():
        raise UserError(f"{root} has no fake ARM proc/cpuinfo and sys/devices/system/cpu/possible (without them "
                        "LiteRT silently skips XNNPACK): rebuild it with scripts/build_arm_root.sh")
    if not (root / "opt/edgecv/site/ai_edge_litert").is_dir():
        raise UserError(f"{root} has no aarch64 ai-edge-litert in opt/edgecv/site: rerun scripts/build_arm_root.sh")
    if need_executorch and not (root / PTE_SITE / PTE_READY).is_file():
        raise UserError(f".pte files need the aarch64 torch + executorch stack in {root / PTE_SITE} "
                        "(~4.7 GB): run scripts/build_arm_root.sh --pte")
    return qemu


def _inputs_for(path: Path, images: int, data: str | None):
    """(metadata, runtime-ready input, kind) for one file: real images prepared as edgecv's runners do."""
    from types import SimpleNamespace

    from edgecv.errors import UserError
    from edgecv.export.calib import load_real

    if path.suffix == ".pte":
        from edgecv.export.executorch import read_metadata
    elif path.suffix == ".tflite":
        from edgecv.export.tflite import read_metadata
    else:
        raise UserError(f"{path}: verify-arm takes .tflite and .pte files")
    if not path.is_file():
        raise UserError(f"{path} not found")
    md = read_metadata(path)
    if not md.get("input_size"):
        raise UserError(f"{path} has no edgecv metadata (input size, mean/std): export it with `edgecv export`")
    name = data or DATA_BY_CLASSES.get(int(md.get("num_classes", 0)))
    if name is None:
        raise UserError(f"{path}: which images? pass --data (a dataset name, folder or archive)")
    src = SimpleNamespace(name=md.get("model", path.stem), input_size=tuple(md["input_size"]), mean=md["mean"],
                          std=md["std"], meta=md, default_data=name)
    real = load_real(src, name, n_eval=images)
    x = real.eval
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        d = Interpreter(model_path=str(path)).get_input_details()[0]
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        if d["dtype"] != np.float32:
            scale, zp = d["quantization"]
            info = np.iinfo(d["dtype"])
            x = np.clip(np.round(x / scale + zp), info.min, info.max).astype(d["dtype"])
    return md, x, real.name


def _run(cmd: list[str], env: dict[str, str], timeout: float, what: str) -> dict[str, Any]:
    from edgecv.errors import UserError

    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UserError(f"the {what} run took more than {timeout:.0f} s: pass --timeout or fewer --images") from None
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
        raise UserError(f"the {what} run failed (exit {p.returncode}): {tail[:300]}")
    result = Path(cmd[-1]).with_suffix(".result.json")  # the worker's JOB is the last argument
    if not result.is_file():
        raise UserError(f"the {what} run exited without a result ({result}); rerun, or check the arm64 root")
    return json.loads(result.read_text())


def _pte_delegates(path: Path) -> dict[str, Any]:
    from edgecv.export.executorch import delegation

    return delegation(path) or {}


def compare(md: dict, x86: np.ndarray, arm: np.ndarray, x86_info: dict, arm_info: dict, kind: str) -> dict[str, Any]:
    """The verdict for one file: numbers and (passed, reasons)."""
    precision = md.get("precision", "fp32")
    rep: dict[str, Any] = {"precision": precision, "n_images": int(len(x86))}
    reasons = []
    if precision in ("int8",):
        a, b = x86.argmax(1), arm.argmax(1)
        rep["agreement_pct"] = 100.0 * float((a == b).mean())
        scale = (x86_info.get("output_quantization") or [0])[0]
        if x86.dtype != np.float32:
            rep["max_output_steps"] = int(np.max(np.abs(x86.astype(np.int64) - arm.astype(np.int64))))
        elif scale:
            rep["max_output_steps"] = float(np.max(np.abs(x86 - arm)) / scale)
        else:  # a .pte's int8 graph returns dequantized floats
            rep["max_abs"] = float(np.max(np.abs(x86.astype(np.float64) - arm)))
        if rep["agreement_pct"] < INT8_MIN_AGREEMENT:
            reasons.append(f"top-1 agreement with x86 {rep['agreement_pct']:.2f}% < {INT8_MIN_AGREEMENT}%")
    else:
        span = float(x86.max() - x86.min()) or 1.0
        rep["max_abs"] = float(np.max(np.abs(x86.astype(np.float64) - arm)))
        rep["rel"] = rep["max_abs"] / span
        if rep["rel"] > FP32_REL_TOL:
            reasons.append(f"max |arm - x86| is {rep['rel']:.2e} of the logit range (> {FP32_REL_TOL:g})")
    if kind == "tflite":
        dx, da = x86_info["delegation"], arm_info["delegation"]
        rep["delegation_x86"], rep["delegation_arm"] = dx, da
        if da.get("delegate_partitions", 0) < 1:
            reasons.append("XNNPACK did not take the graph on ARM (0 delegate partitions: LiteRT read no ARM CPU)")
        elif da != dx:
            reasons.append(f"XNNPACK split the graph differently on ARM ({da}) than on x86 ({dx})")
    else:
        rep["delegation"] = x86_info.get("file_delegation")
        rep["xnnpack_registered_arm"] = bool(arm_info.get("xnnpack_registered"))
        if not arm_info.get("xnnpack_registered"):
            reasons.append("the aarch64 ExecuTorch runtime has no XnnpackBackend registered")
        if (rep["delegation"] or {}).get("delegate_partitions", 0) < 1:
            reasons.append("the .pte has no XNNPACK delegate")
    rep["passed"], rep["problems"] = not reasons, reasons
    return rep


def verify(files: list[str | os.PathLike], *, root: str | os.PathLike | None = None, images: int = DEFAULT_IMAGES,
           data: str | None = None, timeout: float = 3600, qemu_cpu: str = QEMU_CPU) -> dict[str, Any]:
    """Run ``files`` on x86 and on emulated aarch64 and compare; report per file (``passed``).

    ``qemu_cpu`` is the emulated CPU (keep the default: qemu 7.2's plain ``max`` has SME, trap 2)."""
    import tempfile

    from edgecv.errors import UserError

    paths = [Path(f) for f in files]
    if not paths:
        raise UserError("verify-arm needs at least one .tflite or .pte file")
    if images < 1:
        raise UserError("--images must be >= 1")
    root = arm_root(root)
    qemu = check_root(root, need_executorch=any(p.suffix == ".pte" for p in paths))
    repo_parent = str(Path(__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory(prefix="edgecv-arm-") as tmp:
        t = Path(tmp)
        items, mds = {"x86": [], "arm": []}, []
        for i, p in enumerate(paths):
            md, x, data_name = _inputs_for(p, images, data)
            mds.append((md, data_name))
            np.save(t / f"in{i}.npy", x)
            for side in items:
                items[side].append({"file": str(p.resolve()), "input": str(t / f"in{i}.npy"),
                                    "output": str(t / f"{side}{i}.npy")})
        for side, job in items.items():
            (t / f"{side}.json").write_text(json.dumps({"items": job}))
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "QEMU_", "LD_"))}
        t0 = time.perf_counter()
        x86 = _run([sys.executable, "-m", "edgecv.verify_arm", "--_worker", str(t / "x86.json")],
                   {**base_env, "PYTHONPATH": repo_parent}, timeout, "x86")
        x86_s = time.perf_counter() - t0
        pte = f"/{PTE_SITE}:" if any(p.suffix == ".pte" for p in paths) else ""
        env = {**base_env, "QEMU_CPU": qemu_cpu, "PYTHONPATH": f"/opt/edgecv/site:{pte}{repo_parent}",
               "PYTHONDONTWRITEBYTECODE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        t0 = time.perf_counter()
        arm = _run([qemu, "-L", str(root), str(root / "usr/bin/python3.11"), "-m", "edgecv.verify_arm",
                    "--_worker", str(t / "arm.json")], env, timeout, "aarch64 (qemu-user)")
        arm_s = time.perf_counter() - t0
        if arm.get("machine") != "aarch64":
            raise UserError(f"the emulated run reported machine {arm.get('machine')!r}, not aarch64")
        reports = []
        for i, p in enumerate(paths):
            kind = "pte" if p.suffix == ".pte" else "tflite"
            xi, ai = x86["results"][i], arm["results"][i]
            if kind == "pte":
                xi["file_delegation"] = _pte_delegates(p)
            rep = compare(mds[i][0], np.load(t / f"x86{i}.npy"), np.load(t / f"arm{i}.npy"), xi, ai, kind)
            reports.append({"file": str(p), "model": mds[i][0].get("model"), "images": mds[i][1], **rep})
    return {"files": reports, "passed": all(r["passed"] for r in reports), "root": str(root), "qemu_cpu": qemu_cpu,
            "x86_wall_s": round(x86_s, 2), "emulated_wall_s": round(arm_s, 2),
            "note": "emulated_wall_s is wall time under qemu-user emulation on an x86 host, not a device latency"}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--_worker":
        sys.exit(worker(sys.argv[2]))
    sys.exit("usage: edgecv verify-arm FILE... (this module runs as a worker with --_worker JOB)")
