"""ONNX files: fp32 from the legacy TorchScript exporter (opset 17), int8 as a QDQ graph.

* fp32: ``torch.onnx.export(dynamo=False, opset_version=17)`` - stack.md: the dynamo exporter
  writes external ``.onnx.data`` files and cannot export every zoo model; the legacy one can.
* int8: onnxruntime's ``quantize_static`` (QDQ, per-channel int8 weights, uint8 activations,
  calibrated on real images). stack.md measured nncf's QDQ graphs running *slower* than fp32
  in onnxruntime while onnxruntime's own quantizer gave the fast int8 graph.
* Every file passes ``onnx.checker`` (full check) and carries metadata_props: model name,
  recipe, input size, mean/std and labels.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn as nn

from edgecv.errors import UserError

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "logits"
INSTALL = "pip install 'edgecv[onnx]'"


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"{module.split('.')[0]} is not installed: {INSTALL}") from None


def export_fp32(model: nn.Module, path: str | os.PathLike, input_size: tuple[int, int, int],
                metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (batch 1, NCHW float32) as an ONNX file and check it."""
    import torch

    onnx = _need("onnx")
    path = Path(path)
    x = torch.zeros((1, *input_size))
    try:
        torch.onnx.export(model, (x,), str(path), opset_version=OPSET, dynamo=False, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], do_constant_folding=True)
    except Exception as e:  # an op the exporter cannot express: say which model and why
        from edgecv.errors import disk_full, disk_full_errno

        if disk_full_errno(e):  # no space for the working file: say where and how much, not "could not export"
            weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
            raise disk_full(OSError(disk_full_errno(e), ""), path, weights, at_least=True,
                            fix="free space there or set TMPDIR to a folder with room") from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"torch.onnx could not export {getattr(model, 'edgecv_name', 'the model')} at "
                        f"{input_size[1]}x{input_size[2]}: {first[:200]}") from None
    if metadata:
        set_metadata(path, metadata)
    check(path)
    return path


def set_metadata(path: str | os.PathLike, metadata: dict[str, Any]) -> None:
    """Store ``metadata`` as ONNX metadata_props (strings; lists/dicts as JSON)."""
    import onnx

    m = onnx.load(str(path))
    del m.metadata_props[:]
    for k, v in metadata.items():
        if v is None:
            continue
        p = m.metadata_props.add()
        p.key, p.value = k, v if isinstance(v, str) else json.dumps(v)
    onnx.save(m, str(path))


def metadata(path: str | os.PathLike) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def check(path: str | os.PathLike) -> None:
    import onnx

    onnx.checker.check_model(str(path), full_check=True)
    opset = max(o.version for o in onnx.load(str(path), load_external_data=False).opset_import
                if o.domain in ("", "ai.onnx"))
    if opset < OPSET:
        raise RuntimeError(f"{path}: opset {opset} < {OPSET}")


class _Reader:
    """onnxruntime CalibrationDataReader over an (N, C, H, W) array, one image per call."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.i = data, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.data):
            return None
        self.i += 1
        return {INPUT_NAME: self.data[self.i - 1:self.i]}

    def rewind(self) -> None:
        self.i = 0


_VNNI = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_info() -> dict[str, Any]:
    """This machine's CPU: ``model`` name and ``flags`` (the first processor in /proc/cpuinfo; empty
    when there is none). XNNPACK and ONNX Runtime pick their int8 kernels from these flags."""
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "model name" and not model:
                model = val.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(val.split())
    except OSError:
        pass
    return {"model": model, "flags": flags}


def saturating_cpu(flags: set[str] | None = None) -> bool:
    """True on an x86 CPU with AVX2 and no VNNI (``flags``: :func:`cpu_info`'s when None).

    ONNX Runtime's u8s8 int8 kernels there multiply pairs with VPMADDUBSW, whose int16 sum saturates
    for large 8-bit weights (onnxruntime's quantization docs; OpenVINO calls it the saturation issue).
    Measured on an AVX2-only EPYC: CIFAR ResNet-20's int8 ONNX agreed with float on 92.5% of 1,000 images
    with 8-bit weights and 98.2% with 7-bit ones (``reduce_range``)."""
    flags = cpu_info()["flags"] if flags is None else flags
    return "avx2" in flags and not any(f in flags for f in _VNNI)


def quantize_int8(fp32: str | os.PathLike, out: str | os.PathLike, calib: np.ndarray, *,
                  per_channel: bool = True, method: str = "minmax", reduce_range: bool = False) -> Path:
    """QDQ int8 ONNX from an fp32 file, calibrated on ``calib`` (N, C, H, W) real images.

    ``reduce_range``: 7-bit weights, for CPUs whose int8 kernels saturate (:func:`saturating_cpu`)."""
    q = _need("onnxruntime.quantization")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32, out = Path(fp32), Path(out)
    pre = out.with_name(out.stem + ".pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    methods = {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
               "percentile": q.CalibrationMethod.Percentile}
    q.quantize_static(str(pre), str(out), _Reader(calib), quant_format=q.QuantFormat.QDQ, per_channel=per_channel,
                      activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                      calibrate_method=methods[method], reduce_range=reduce_range)
    pre.unlink(missing_ok=True)
    set_metadata(out, {**metadata(fp32), "precision": "int8", "weight_bits": 7 if reduce_range else 8})
    check(out)
    return out


def session(path: str | os.PathLike, num_threads: int = 1):
    """An onnxruntime CPU session (intra/inter threads as given, sequential, all optimisations)."""
    ort = _need("onnxruntime")
    so = ort.SessionOptions()
    so.intra_op_num_threads = num_threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class Runner:
    """Runs an ONNX file on NCHW float32 batches (the file has batch 1: one image per call)."""

    layout = "NCHW"

    def __init__(self, path: str | os.PathLike, num_threads: int = 1) -> None:
        self.sess = session(path, num_threads)
        self.input_shape = [int(d) for d in self.sess.get_inputs()[0].shape]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([self.sess.run(None, {INPUT_NAME: x[i:i + 1].astype(np.float32)})[0]
                               for i in range(len(x))])
