"""Latency benchmarks: local runners (torch, onnxruntime, LiteRT), Android phones over adb, boards over ssh.

``bench(source, fmt, ...)`` measures one model in one format on one device and returns a dict with
``init_ms``, ``first_ms``, ``mean_ms``, ``p50_ms``, ``p90_ms``, ``p99_ms``, ``std_ms``, ``peak_mem_mb``,
the runtime, the device and tool versions. Runners are looked up by name in ``RUNNERS``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

from edgecv.errors import UserError
from edgecv.progress import Progress
from edgecv.registry import Registry

if TYPE_CHECKING:
    from edgecv.bench.base import Runner

log = logging.getLogger(__name__)


def _runners() -> Registry[type[Runner]]:
    """The runner registry, built on first use (``edgecv devices`` needs no numpy/runtime import)."""
    from edgecv.bench.executorch_runner import ExecuTorchRunner
    from edgecv.bench.litert_runner import LiteRTRunner
    from edgecv.bench.ort_runner import OrtRunner
    from edgecv.bench.torch_runner import TorchRunner

    reg: Registry[type[Runner]] = Registry("runner")
    reg.add("torch", TorchRunner)
    reg.add("onnxruntime", OrtRunner)
    reg.add("litert", LiteRTRunner)
    reg.add("executorch", ExecuTorchRunner)
    reg.alias("ort", "onnxruntime")
    reg.alias("tflite", "litert")
    return reg


def __getattr__(name: str) -> Any:  # PEP 562: RUNNERS and Runner are imported lazily
    if name == "RUNNERS":
        globals()["RUNNERS"] = _runners()
        return globals()["RUNNERS"]
    if name == "Runner":
        from edgecv.bench.base import Runner

        return Runner
    raise AttributeError(f"module 'edgecv.bench' has no attribute {name!r}")


FORMATS = {"torch": "torch", "onnx": "onnxruntime", "tflite": "litert", "executorch": "executorch"}
_SUFFIX = {".onnx": "onnx", ".tflite": "tflite", ".pte": "executorch", ".safetensors": "torch"}
PRECISIONS = ("fp32", "fp16", "int8", "dynamic")
RESULT_KEYS = ("init_ms", "first_ms", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "std_ms", "peak_mem_mb")

__all__ = ["RUNNERS", "FORMATS", "Runner", "bench", "infer_format"]


def infer_format(source: str, fmt: str | None) -> str:
    suffix_fmt = _SUFFIX.get(Path(source).suffix.lower())
    if fmt is None:
        return suffix_fmt or "torch"
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if suffix_fmt and suffix_fmt != fmt:
        raise UserError(f"{source} is a {suffix_fmt} file but --format {fmt} was given; drop --format")
    return fmt


def _is_file(source: str) -> bool:
    return Path(source).suffix.lower() in _SUFFIX or os.path.sep in source


def _export(name: str, fmt: str, out_dir: Path, *, precision: str | None, input_size, weights, calib,
            progress) -> tuple[Path, dict[str, Any]]:
    try:
        from edgecv.export import export
    except ImportError:
        raise UserError(f"benchmarking {name} as {fmt} needs `edgecv export` (edgecv.export), which this "
                        f"install lacks; pass a .{fmt} file instead") from None
    out = out_dir / f"{name}.{ {'executorch': 'pte'}.get(fmt, fmt)}"
    kw: dict[str, Any] = {"out": out, "precision": precision or "fp32", "weights": weights, "calib": calib,
                          "progress": progress}
    if input_size:
        kw["input_size"] = tuple(input_size)
    report = export(name, fmt, **kw)
    return Path(report.get("file", out)), report


def bench(source: str, fmt: str | None = None, *, precision: str | None = None, device: str = "cpu",
          threads: int | None = None, cores: list[int] | None = None, warmup: int = 10, runs: int = 50,
          input_size: tuple[int, ...] | None = None, weights: str | None = None, calib: str | None = None,
          isolate: bool = True, keep_samples: bool = False, benchmark_binary: str | None = None,
          serial: str | None = None, adb_port: int | None = None, devices_dir: str | None = None,
          timeout: float = 900, progress: Progress | None = None) -> dict[str, Any]:
    """Benchmark ``source`` (a zoo model name or a .onnx/.tflite/.safetensors file) on ``device``.

    ``device`` is ``cpu``, ``cuda`` or a profile name from devices/*.yaml (Android over adb,
    ARM boards over ssh). A model name with ``fmt`` onnx/tflite is exported first (edgecv.export).
    """
    from edgecv.bench.devices import resolve_device
    from edgecv.bench.harness import environment, measure, measure_isolated

    fmt = infer_format(source, fmt)
    if precision is not None and precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    profile = resolve_device(device, devices_dir)
    transport = profile["transport"] if profile else "local"
    if threads is None:
        threads = int(profile.get("threads", 1)) if profile else 1
    if transport != "local" and fmt != "tflite" and not (fmt == "executorch" and transport == "adb"):
        raise UserError(f"device {device} runs TFLite files (benchmark_model / LiteRT)"
                        f"{' and .pte files (executor_runner)' if transport == 'adb' else ''}; use --format tflite")

    if transport == "adb":  # a missing or unauthorised phone fails now, not after minutes of export
        from edgecv.bench.adb import Adb

        serial = Adb(serial=serial or profile.get("serial"), port=adb_port, timeout=60).require_device()

    from edgecv.fsutil import private_tempdir

    with private_tempdir("edgecv-bench-") as tmp:
        export_report = None
        path = source
        if fmt != "torch" and not _is_file(source):
            p, export_report = _export(source, fmt, Path(tmp), precision=precision, input_size=input_size,
                                       weights=weights, calib=calib, progress=progress)
            path = str(p)
        elif fmt != "torch" and not Path(source).is_file():
            raise UserError(f"{source} not found")
        common: dict[str, Any] = {"model": Path(source).stem if _is_file(source) else source, "source": source,
                                  "format": fmt, "precision": precision or ("fp32" if not _is_file(source) else None),
                                  "file_bytes": Path(path).stat().st_size if fmt != "torch" else None}
        if export_report is not None:
            common["export"] = {k: v for k, v in export_report.items() if k in ("bytes", "parity", "precision")}
        if transport == "adb" and fmt == "executorch":
            from edgecv.bench.android_executorch import run_android_pte

            res = run_android_pte(path, profile, warmup=warmup, runs=runs, threads=threads,
                                  runner_binary=benchmark_binary, serial=serial, adb_port=adb_port, timeout=timeout)
        elif transport == "adb":
            from edgecv.bench.android import run_android

            res = run_android(path, profile, warmup=warmup, runs=runs, threads=threads,
                              benchmark_binary=benchmark_binary, serial=serial, adb_port=adb_port, timeout=timeout)
        elif transport == "ssh":
            from edgecv.bench.ssh import run_ssh

            res = run_ssh(path, profile, warmup=warmup, runs=runs, threads=threads, timeout=timeout)
        else:
            local_device = profile.get("device", "cpu") if profile else device
            kw = dict(device=local_device, threads=threads, cores=cores, warmup=warmup, runs=runs,
                      input_size=list(input_size) if input_size else None, precision=precision,
                      weights=weights if fmt == "torch" else None)
            runner = FORMATS[fmt]
            res = measure_isolated(runner, path, timeout=timeout, **kw) if isolate else measure(runner, path, **kw)
            res["environment"] = environment()
            if profile:
                res["profile"] = profile["name"]
    if not keep_samples:
        res.pop("samples_ms", None)
    if "overall_mem_mb" in res:  # benchmark_model's own (approximate) memory figure
        res.setdefault("peak_mem_mb", res["overall_mem_mb"])
    for k in RESULT_KEYS:  # same keys everywhere; None where a tool does not report it (p90/p99 on Android)
        res.setdefault(k, None)
    return {**common, **res}


from edgecv._callable import make_callable  # noqa: E402  edgecv.bench(...) is the API function

make_callable(__name__)
