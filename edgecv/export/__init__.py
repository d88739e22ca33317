"""``edgecv export``: a zoo model, checkpoint or ``.edc`` file -> an ONNX, TFLite or ExecuTorch file, checked.

>>> rep = export("resnet20", "tflite", out="r20.tflite", precision="int8",      # doctest: +SKIP
...              weights="resnet20-12fca82f.th")
>>> rep["parity"]["agreement_pct"]                                               # doctest: +SKIP

Formats and what each accepts (``FORMATS``; anything else is rejected before any work):

==========  ===========================  ======  =======================================
format      precisions                   layout  backend
==========  ===========================  ======  =======================================
onnx        fp32, int8                   NCHW    torch.onnx (opset 17); onnxruntime QDQ
tflite      fp32, fp16, dynamic, int8    NHWC    onnx2tf + TFLiteConverter; ai-edge-litert
executorch  fp32, int8                   NCHW    torch.export + XNNPACK (.pte); int8 PT2E
==========  ===========================  ======  =======================================

``calib`` (real images for calibration and the agreement check) applies to int8 and dynamic.
Every export is run in its runtime and compared with PyTorch (see :mod:`edgecv.export.parity`);
a failed check raises :class:`ParityError` and leaves no output file.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecv.errors import UserError
from edgecv.export.parity import ParityError
from edgecv.progress import NullProgress, Progress
from edgecv.registry import Registry

log = logging.getLogger(__name__)

__all__ = ["FORMATS", "FormatSpec", "ParityError", "export", "runner", "check_options"]


@dataclass(frozen=True)
class FormatSpec:
    name: str
    suffix: str
    precisions: tuple[str, ...]
    layout: str  # input layout of the file
    calib_precisions: tuple[str, ...]  # precisions that use real images (calibration / agreement)
    backend: str
    install: str


FORMATS: Registry[FormatSpec] = Registry("export format")
FORMATS.add("onnx", FormatSpec("onnx", ".onnx", ("fp32", "int8"), "NCHW", ("int8",),
                               "torch.onnx opset 17; int8: onnxruntime quantize_static QDQ", "pip install 'edgecv[onnx]'"))
FORMATS.add("tflite", FormatSpec("tflite", ".tflite", ("fp32", "fp16", "dynamic", "int8"), "NHWC", ("dynamic", "int8"),
                                 "onnx2tf + TFLiteConverter; run with ai-edge-litert", "pip install 'edgecv[tflite]'"))
FORMATS.add("executorch", FormatSpec("executorch", ".pte", ("fp32", "int8"), "NCHW", ("int8",),
                                     "torch.export + XNNPACK delegate; int8: PT2E with edgecv's calibration",
                                     "pip install 'edgecv[executorch]'"))


def check_options(fmt: str, precision: str, *, calib: str | None = None, out: str | os.PathLike | None = None,
                  min_agreement: float = 95.0, bias_correction: bool = True) -> FormatSpec:
    """Reject unsupported combinations up front (before any model is built)."""
    spec = FORMATS.get(fmt)
    if precision not in spec.precisions:
        raise UserError(f"{spec.name} does not support --precision {precision}; "
                        f"use one of: {', '.join(spec.precisions)}")
    if calib is not None and precision not in spec.calib_precisions:
        raise UserError(f"--calib applies to {spec.name} {'/'.join(spec.calib_precisions)} only "
                        f"(real images to calibrate and check agreement); drop it for {precision}")
    if not bias_correction and precision != "int8":
        raise UserError(f"--no-bias-correction applies to int8 exports only (this is {precision}); drop it")
    if not 0.0 <= min_agreement <= 100.0:
        raise UserError(f"--min-agreement is a percentage between 0 and 100, got {min_agreement}")
    if out is not None and Path(out).suffix != spec.suffix:
        raise UserError(f"output {out} must end in {spec.suffix} for --format {spec.name}")
    return spec


def runner(path: str | os.PathLike, num_threads: int = 1):
    """A callable running an exported file on NCHW float32 batches -> logits (by suffix)."""
    suffix = Path(path).suffix
    if suffix == ".onnx":
        from edgecv.export.onnx import Runner
    elif suffix == ".tflite":
        from edgecv.export.tflite import Runner
    elif suffix == ".pte":
        from edgecv.export.executorch import Runner
    else:
        raise UserError(f"{path}: not an .onnx, .tflite or .pte file")
    return Runner(path, num_threads)


def _metadata(src, precision: str, layout: str, data) -> dict[str, Any]:
    from edgecv import __version__

    c, h, w = src.input_size
    md: dict[str, Any] = {"model": src.name, "precision": precision, "source": src.kind,
                          "input_size": [c, h, w], "input_layout": layout,
                          "input_shape": [1, c, h, w] if layout == "NCHW" else [1, h, w, c],
                          "mean": list(src.mean), "std": list(src.std), "num_classes": src.num_classes,
                          "edgecv": __version__, **src.meta}
    if data is not None and len(data.classes) == src.num_classes:
        md["labels"] = data.classes
    return md


def export(source: str | os.PathLike | Any, fmt: str, *, out: str | os.PathLike, precision: str = "fp32",
           input_size: tuple[int, int] | None = None, weights: str | None = None, calib: str | None = None,
           min_agreement: float = 95.0, per_channel: bool = True, calib_images: int | None = None,
           bias_correction: bool = True, keep_grid: bool = True, progress: Progress | None = None) -> dict[str, Any]:
    """Export ``source`` (model name | checkpoint | .edc | import path | an ``ExportSource`` built
    for a user's module by :func:`edgecv.usermodel.export_source`) to ``out`` and check it against PyTorch.

    ``per_channel`` (int8 weights: one scale per output channel, else per tensor) and
    ``calib_images`` (how many calibration images; default 200 of the ImageNet samples, 300
    CIFAR-10/MNIST train images) tune the int8 calibration; ``bias_correction`` (int8) moves the
    biases of the exported copy so that its simulated int8 outputs keep the float model's mean
    per channel (:mod:`edgecv.export.bias_correction`; the check still compares with the
    uncorrected model). ``keep_grid`` (int8, per-channel): weights that already lie on an 8-bit grid
    (dequantized from a quantization-aware int8 file) keep it exactly instead of being rounded onto
    the converter's own scale (:mod:`edgecv.export.weight_grid`; every format).

    Returns the report: file, format, precision, bytes, input_shape (as in the file), parity
    (fp32/fp16: max_abs, rel; int8/dynamic: agreement_pct, n_images), seconds, and more.
    Raises :class:`ParityError` (nothing written) when the check fails.
    """
    import numpy as np
    import torch

    from edgecv.checkpoint import atomic_write
    from edgecv.export import parity as P
    from edgecv.export.calib import load_real
    from edgecv.export.source import example_input, reference, resolve_source

    t0 = time.perf_counter()
    progress = progress or NullProgress()
    spec = check_options(fmt, precision, calib=calib, out=out, min_agreement=min_agreement,
                         bias_correction=bias_correction)
    out = Path(out)
    for p in (source, weights):
        if isinstance(p, (str, os.PathLike)) and Path(p).exists() and Path(p).resolve() == out.resolve():
            raise UserError(f"output {out} is an input file; choose another -o path")
    steps = 4
    progress.start(f"export {spec.name} {precision}", steps)
    from edgecv.export.source import ExportSource

    src = source if isinstance(source, ExportSource) else resolve_source(source, weights=weights, input_size=input_size)
    quantized = precision in spec.calib_precisions
    if calib_images is not None and (not quantized or calib_images < 1):
        raise UserError("--calib-images applies to int8/dynamic exports and must be >= 1")
    data = load_real(src, calib, required=quantized, n_calib=calib_images) if quantized else \
        load_real(src, None, n_calib=8, n_eval=16, required=False)  # fp32/fp16: a few real images
    progress.advance(1, step="data")
    bn_recalibrated = 0
    if quantized and not src.trained:  # int8 scales of a random init are degenerate (calib.recalibrate_bn)
        from edgecv.export.calib import recalibrate_bn

        bn_recalibrated = recalibrate_bn(src.model, data.calib)
    with torch.no_grad():
        src.num_classes = int(src.model(example_input(src)).shape[-1])
    md = _metadata(src, precision, spec.layout, data)
    timings: dict[str, float] = {}
    bc_report = None
    from edgecv.fsutil import private_tempdir

    with private_tempdir("edgecv-export-") as tmp:  # a killed export's folder is removed by the next one
        tmp_p = Path(tmp)
        t = time.perf_counter()
        from edgecv.export import onnx as ox

        from edgecv.export.rewrite import for_export

        to_file = for_export(src.model, fmt=spec.name, precision=precision)
        reduce_range = spec.name == "onnx" and precision == "int8" and ox.saturating_cpu()
        if reduce_range:  # the parity check runs on this CPU: 8-bit weights would fail it here
            log.warning("this CPU has AVX2 without VNNI, where ONNX Runtime's int8 kernels saturate: "
                        "the int8 ONNX file gets 7-bit weights")
            keep_grid = False  # the 8-bit grids do not fit 7 bits
        if precision == "int8" and bias_correction:
            from edgecv.export.bias_correction import correct_biases

            to_file, bc_report = correct_biases(to_file, data.calib, per_channel=per_channel, keep_grid=keep_grid)
        onnx_fp32 = None
        if spec.name != "executorch":  # ExecuTorch lowers the PyTorch model itself (no ONNX step)
            onnx_fp32 = ox.export_fp32(to_file, tmp_p / "model.onnx", src.input_size, {**md, "precision": "fp32"})
        if spec.name == "onnx" and precision == "fp32":
            ox.set_metadata(onnx_fp32, md)
        timings["onnx"] = time.perf_counter() - t
        progress.advance(1, step="onnx")
        t = time.perf_counter()
        if spec.name == "executorch":
            from edgecv.export import executorch as et

            produced = et.convert(to_file, tmp_p / "model.pte", precision, input_size=src.input_size,
                                  calib=data.calib if quantized else None, per_channel=per_channel, metadata=md,
                                  variant="edgecv" if keep_grid else "edgecv-no-grid")
        elif spec.name == "onnx":
            produced = ox.quantize_int8(onnx_fp32, tmp_p / "model.int8.onnx", data.calib, per_channel=per_channel,
                                        reduce_range=reduce_range) if precision == "int8" else onnx_fp32
        else:
            from edgecv.export import tflite as tl

            produced = tl.convert(onnx_fp32, tmp_p / "model.tflite", precision,
                                  calib=data.calib if data is not None else None, per_channel=per_channel,
                                  workdir=tmp_p / "onnx2tf",
                                  metadata=md)
        grid_report = None
        if precision == "int8" and per_channel and keep_grid and spec.name in ("tflite", "onnx"):
            from edgecv.export import weight_grid

            grid_report = (weight_grid.snap_tflite if spec.name == "tflite" else weight_grid.snap_onnx)(produced, to_file)
        timings["convert"] = time.perf_counter() - t
        progress.advance(1, step="convert")

        t = time.perf_counter()
        run = runner(produced, num_threads=max(1, min(4, os.cpu_count() or 1)))
        if quantized:
            x = data.eval
        elif data is not None:
            x = data.eval[np.linspace(0, len(data.eval) - 1, 16).round().astype(int)]
        else:
            x = example_input(src, batch=8).numpy()
        ref = reference(src.model, torch.from_numpy(x)).numpy()
        got = run(x)
        par = P.float_parity(ref, got)
        par["inputs"] = f"{data.name} images" if data is not None else "seeded N(0,1) noise"
        if quantized:
            labels = data.eval_labels if len(data.classes) == src.num_classes else None
            par.update(P.agreement(ref, got, labels))
        passed, reason = P.gate(precision, par, min_agreement)
        par.update({"passed": passed, "check": reason})
        if quantized:
            par["min_agreement"] = min_agreement
        timings["parity"] = time.perf_counter() - t
        deleg = None
        if spec.name == "tflite":
            from edgecv.bench.litert_runner import delegation

            deleg = delegation(run.it)
            log.info("XNNPACK delegation: %s", deleg)
        elif spec.name == "executorch":
            deleg = et.delegation(produced)
            log.info("XNNPACK delegation: %s", deleg)
        progress.advance(1, step="parity")
        progress.stop()
        if not passed:
            raise ParityError(f"{src.name} {spec.name} {precision} failed the parity check: {reason}; "
                              "no file written" + ("" if src.trained or not quantized else
                                                   " (random weights: pass --weights, or --min-agreement 0)"))
        atomic_write(out, lambda tmp_path: shutil.copyfile(produced, tmp_path), nbytes=Path(produced).stat().st_size)
    c, h, w = src.input_size
    return {
        "file": str(out), "format": spec.name, "precision": precision, "model": src.name, "source": src.kind,
        "bytes": out.stat().st_size, "input_shape": [1, c, h, w] if spec.layout == "NCHW" else [1, h, w, c],
        "input_layout": spec.layout, "mean": list(src.mean), "std": list(src.std), "num_classes": src.num_classes,
        "trained_weights": src.trained, "bn_recalibrated_layers": bn_recalibrated,
        "calibration": ({"data": data.name, "n_images": int(len(data.calib)), "per_channel": per_channel,
                         "bias_correction": bc_report, "weight_grid": grid_report} if quantized else None),
        "parity": par, "delegation": deleg, "metadata": {k: v for k, v in md.items() if k != "labels"},
        "timings_s": timings, "seconds": time.perf_counter() - t0,
    }


from edgecv._callable import make_callable  # noqa: E402  edgecv.export(...) is the API function

make_callable(__name__)
