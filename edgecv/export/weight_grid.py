"""Keep weights on the 8-bit grid they already lie on (weights dequantized from an int8/uint8 file).

The float ImageNet MobileNets in ../shared/weights/imagenet-float are Google's quantization-aware
uint8 files dequantized: each weight tensor is ``s * (q - z)`` for one step ``s`` per tensor and
integers ``q`` in 0..255. The converters' per-channel int8 scale (``max|w_c| / 127``) is not a
multiple of ``s``, so requantizing rounds every weight off the grid QAT trained it on; measured on
MobileNet v1-0.75 (800 held-out ImageNet samples, no bias correction) that alone costs 2.8 pp of
top-1 agreement with the float model (94.6% vs 97.4% with the grid kept).

A tensor is "on a grid" when one step ``s`` makes every value an integer multiple (within
``TOLERANCE`` of a step) and the multiples span at most 256 values (an 8-bit grid, not a
coincidence of a fine one). Then each output channel whose multiples fit in [-127, 127] gets the
per-channel scale ``s * g_c`` (``g_c`` the folded BatchNorm's factor) and its integers exactly: no
rounding at all. A channel that does not fit (usually the one holding the tensor's extreme value,
since the uint8 grid is asymmetric) keeps the converter's own scale. Weights of a model trained in
float are not on any such grid and are left to the converter unchanged.

This is a post-pass over the converter's output (TFLite flatbuffer, ONNX QDQ initializers), because
neither TFLiteConverter nor onnxruntime.quantization lets a caller give weight scales; the bias
(int32 on ``input scale * weight scale``) is rescaled with the weight scale.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

log = logging.getLogger(__name__)

TOLERANCE = 0.01  # of one step: float32 rounding of s * k stays far below this
MATCH_REL = 0.02  # a converter's weight matches a model weight when within 2% of its range


@dataclass
class Grid:
    """One weight tensor on a grid: ``folded = steps[c] * ints`` (output channel c first, torch layout)."""

    name: str
    ints: np.ndarray  # int64, the torch weight's shape (O, ...)
    steps: np.ndarray  # float64 [O]: grid step times the folded BatchNorm factor of channel c
    folded: np.ndarray  # float64, the weight with its BatchNorm folded in (what the converter quantizes)

    def fits(self) -> np.ndarray:
        """Output channels whose integers fit symmetric int8 ([-127, 127])."""
        return np.abs(self.ints.reshape(len(self.ints), -1)).max(1) <= 127


def grid_step(w: torch.Tensor | np.ndarray) -> float | None:
    """The step of the 8-bit per-tensor grid ``w`` lies on, else None."""
    w = np.asarray(w.detach().cpu().numpy() if isinstance(w, torch.Tensor) else w).reshape(-1)
    if len(w) > 65536 and len(np.unique(w[:: len(w) // 65536])) > 256:  # float weights: seen in a sample
        return None
    w = w.astype(np.float64)
    u = np.unique(w)
    if len(u) < 3 or len(u) > 256:
        return None
    d = np.diff(u)
    s = float(d.min())
    if s <= 0:
        return None
    k = w / s
    if np.abs(k - np.round(k)).max() > TOLERANCE or np.round(k).max() - np.round(k).min() > 255:
        return None
    return s


def fitting_channels(w: torch.Tensor, step: float) -> torch.Tensor:
    """Output channels (dim 0) of ``w`` whose grid integers fit symmetric int8 ([-127, 127])."""
    return torch.round(w.reshape(len(w), -1).double() / step).abs().amax(1) <= 127


def fake_quant_on_grid(w: torch.Tensor) -> torch.Tensor | None:
    """What the grid-keeping int8 file holds for ``w`` (an unfolded torch weight, output channel first),
    or None when ``w`` is not on a grid: exact for the channels that fit, the usual symmetric
    per-channel rounding (the bias correction's) for the others."""
    from edgecv.export.bias_correction import _fake_quant_weight

    s = grid_step(w)
    if s is None:
        return None
    fits = fitting_channels(w, s).reshape(-1, *[1] * (w.dim() - 1))
    return torch.where(fits, w, _fake_quant_weight(w, True))


def model_grids(model: nn.Module) -> list[Grid]:
    """Every conv / linear weight of ``model`` on a grid, with its BatchNorm (the module after it in
    the same ``nn.Sequential``, or the fx-traced consumer) folded in."""
    from edgecv.compress.equalize import conv_bn_pairs

    bns = {name: bn for name, _, bn in conv_bn_pairs(model)}
    out = []
    for name, m in model.named_modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        s = grid_step(m.weight)
        if s is None:
            continue
        w = m.weight.detach().double().cpu()
        g = torch.ones(len(w), dtype=torch.float64)
        bn = bns.get(name)
        if bn is not None:
            g = (bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)).double().cpu()
        shape = (-1, *[1] * (w.dim() - 1))
        out.append(Grid(name, torch.round(w / s).long().numpy(), (s * g).numpy(), (w * g.reshape(shape)).numpy()))
    return out


def _match(grids: list[Grid], deq: np.ndarray) -> Grid | None:
    """The model weight the converter's dequantized weight ``deq`` (torch layout) came from."""
    best, err = None, MATCH_REL
    for gr in grids:
        if gr.folded.shape != deq.shape:
            continue
        e = float(np.abs(gr.folded - deq).max() / (np.abs(gr.folded).max() + 1e-12))
        if e < err:
            best, err = gr, e
    return best


def _new_scales(rep: dict[str, int], fits: np.ndarray, steps: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The grid's step where a channel fits, the converter's scale elsewhere (as float32 will hold it);
    counted into ``rep``."""
    rep["layers"] += 1
    rep["channels"] += int(fits.sum())
    rep["channels_not_fitting"] += int((~fits).sum())
    return np.where(fits, steps, scale).astype(np.float32).astype(np.float64)


def _rescale_bias(b: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """int32 bias on ``s_in * old[c]`` -> the same value on ``s_in * new[c]``."""
    return np.clip(np.round(b.astype(np.float64) * old / new), -2**31, 2**31 - 1).astype(np.int32)


def snap_tflite(path: str | Path, model: nn.Module) -> dict[str, int]:
    """Rewrite the int8 weights of a full-integer TFLite file onto the grids of ``model``'s weights
    (in place; the caller writes to a temporary file). Returns counts: layers, channels kept exact."""
    from tensorflow.lite.python import schema_py_generated as S
    from tensorflow.lite.tools import flatbuffer_utils as fu

    grids = model_grids(model)
    rep = {"layers": 0, "channels": 0, "channels_not_fitting": 0}
    if not grids:
        return rep
    path = Path(path)
    m = fu.read_model_from_bytearray(bytearray(path.read_bytes()))
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in m.operatorCodes]
    to_torch = {S.BuiltinOperator.CONV_2D: (0, 3, 1, 2), S.BuiltinOperator.DEPTHWISE_CONV_2D: (3, 0, 1, 2),
                S.BuiltinOperator.FULLY_CONNECTED: None}
    for sg in m.subgraphs:
        for op in sg.operators:
            code = codes[op.opcodeIndex]
            if code not in to_torch or len(op.inputs) < 3 or op.inputs[2] < 0:
                continue
            ti, tw, tb = (sg.tensors[i] for i in op.inputs[:3])
            if tw.type != S.TensorType.INT8 or tw.quantization is None or ti.quantization is None:
                continue
            scale = np.asarray(tw.quantization.scale, np.float64)
            dim = tw.quantization.quantizedDimension
            q = np.frombuffer(bytes(m.buffers[tw.buffer].data), np.int8).reshape(tw.shape).astype(np.int64)
            bshape = [-1 if i == dim else 1 for i in range(q.ndim)]
            perm = to_torch[code]
            deq = q * scale.reshape(bshape)
            gr = _match(grids, deq.transpose(perm) if perm else deq)
            if gr is None:
                continue
            fits, steps = gr.fits(), gr.steps
            if len(scale) == 1:  # per-tensor weights: only when one step serves every channel
                if not (fits.all() and np.allclose(steps, steps[0], rtol=1e-6)):
                    continue
                fits, steps = fits[:1], steps[:1]
            elif len(scale) != len(steps):
                continue
            ints = gr.ints.transpose(np.argsort(perm)) if perm else gr.ints
            new_scale = _new_scales(rep, fits, steps, scale)
            sel = fits.reshape(bshape) if len(fits) > 1 else np.ones(q.shape, bool)
            q = np.where(sel, ints, q)
            m.buffers[tw.buffer].data = q.astype(np.int8).reshape(-1).view(np.uint8)
            tw.quantization.scale = new_scale.tolist()
            s_in = float(ti.quantization.scale[0])
            b = np.frombuffer(bytes(m.buffers[tb.buffer].data), np.int32)
            m.buffers[tb.buffer].data = _rescale_bias(b, scale, new_scale).view(np.uint8)
            tb.quantization.scale = (s_in * new_scale).astype(np.float32).tolist()
    path.write_bytes(bytes(fu.convert_object_to_bytearray(m)))
    log.info("weights kept on their 8-bit grid: %s", rep)
    return rep


def snap_onnx(path: str | Path, model: nn.Module) -> dict[str, int]:
    """The same for an onnxruntime QDQ file: each Conv / Gemm whose weight and bias come through
    DequantizeLinear from int8 / int32 initializers gets the grid's integers and scales (in place)."""
    import onnx
    from onnx import numpy_helper

    grids = model_grids(model)
    rep = {"layers": 0, "channels": 0, "channels_not_fitting": 0}
    if not grids:
        return rep
    path = Path(path)
    g = (mp := onnx.load(str(path))).graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}

    def dq(name: str):  # (int initializer, scale initializer) behind a DequantizeLinear, else None
        n = producer.get(name)
        if n is None or n.op_type != "DequantizeLinear" or n.input[0] not in inits or n.input[1] not in inits:
            return None
        return inits[n.input[0]], inits[n.input[1]]

    for node in g.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3:
            continue
        if node.op_type == "Gemm" and not any(a.name == "transB" and a.i == 1 for a in node.attribute):
            continue  # weight stored [in, out]: not the torch layout
        w, b = dq(node.input[1]), dq(node.input[2])
        if w is None or b is None:
            continue
        q = numpy_helper.to_array(w[0]).astype(np.int64)
        scale = numpy_helper.to_array(w[1]).astype(np.float64).reshape(-1)
        if numpy_helper.to_array(w[0]).dtype != np.int8 or len(scale) != len(q):
            continue
        bshape = (-1, *[1] * (q.ndim - 1))
        gr = _match(grids, q * scale.reshape(bshape))
        if gr is None:
            continue
        fits = gr.fits()
        new_scale = _new_scales(rep, fits, gr.steps, scale)
        q = np.where(fits.reshape(bshape), gr.ints, q)
        bq = numpy_helper.to_array(b[0])
        bscale = numpy_helper.to_array(b[1]).astype(np.float64).reshape(-1)
        s_in = bscale / scale  # the bias scale is input scale x weight scale
        w[0].CopyFrom(numpy_helper.from_array(q.astype(np.int8), w[0].name))
        w[1].CopyFrom(numpy_helper.from_array(new_scale.astype(np.float32), w[1].name))
        b[0].CopyFrom(numpy_helper.from_array(_rescale_bias(bq, scale, new_scale), b[0].name))
        b[1].CopyFrom(numpy_helper.from_array((s_in * new_scale).astype(np.float32), b[1].name))
    onnx.save(mp, str(path))
    log.info("weights kept on their 8-bit grid: %s", rep)
    return rep
