"""Empirical bias correction before int8 conversion (Nagel et al. 2019, arXiv:1906.04721, sec. 4.2).

Rounding weights and activations to int8 shifts the mean of every layer's output a little, and
the shifts add up through a deep network. This module runs the calibration images through a
PyTorch *simulation* of the converter's int8 file (symmetric int8 weights per output channel or
per tensor; asymmetric 8-bit activations with min/max ranges at the points where TFLite and
onnxruntime requantize: the input, every layer output except a conv/linear folded into the
BatchNorm after it and a BN or conv whose ReLU/ReLU6 is fused into it) and moves each layer's
bias so that its output mean per channel equals the float model's on those images. The
corrected float model is what the converter then quantizes (it re-calibrates its own ranges).

Why our own and not a library's: neither TFLiteConverter nor onnxruntime.quantization corrects
biases; nncf's BiasCorrection corrects for nncf's own quantizer placement inside its own quantized
graph, not for the file the TFLite converter writes (and nncf's own int8 Lite0, with its default
FastBiasCorrection, agreed 97.6%: docs/quantization.md). Measured with this module
(docs/int8_calibration.md): Lite0 TFLite int8 97.67% -> 99.00% agreement on 600 held-out
ImageNet samples.

Layers are corrected in execution order in one pass over all calibration images at once (each
layer sees inputs with every earlier correction applied: exact sequential correction). A
mini-batched fixed-point iteration (every layer updated from the previous pass) was tried and
diverged on Lite0: a correction upstream changes the means downstream by large gains.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
FUSED_ACTS = (nn.ReLU, nn.ReLU6)  # TFLite / onnxruntime fold these into the producing op's requantization
SHAPE_ONLY = (nn.Identity, nn.Dropout, nn.Flatten)


@dataclass
class Graph:
    """What one traced forward pass tells about the leaf modules (by module name)."""

    order: list[str]  # leaf modules in execution order (first call)
    folded: dict[str, str]  # conv/linear -> the BatchNorm that consumes its output (folded by converters)
    fused: set[str]  # modules whose output goes straight into a ReLU/ReLU6 (no requantization there)
    targets: list[str]  # where corrections go: BNs and the convs/linears without a BN after them
    max_output_bytes: int  # largest leaf output of the traced batch, per image (float32)


def _leaves(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if not list(m.children()) and n}


def trace(model: nn.Module, x: torch.Tensor) -> Graph:
    """Which leaf produced the input of which, from tensor identity in one forward pass."""
    leaves = _leaves(model)
    produced: dict[int, str] = {}
    keep: list[torch.Tensor] = []  # hold outputs so ids are not reused during the pass
    consumer_of: dict[str, list[str]] = {}
    order: list[str] = []
    hooks = []

    def pre(name):
        def h(m, inputs):
            if name not in order:
                order.append(name)
            for t in inputs:
                if isinstance(t, torch.Tensor) and id(t) in produced:
                    consumer_of.setdefault(produced[id(t)], []).append(name)
        return h

    def post(name):
        def h(m, inputs, out):
            if isinstance(out, torch.Tensor):
                produced[id(out)] = name
                keep.append(out)
        return h

    for name, m in leaves.items():
        hooks += [m.register_forward_pre_hook(pre(name)), m.register_forward_hook(post(name))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    folded, fused = {}, set()
    for name, users in consumer_of.items():
        kinds = [leaves[u] for u in users]
        if isinstance(leaves[name], WEIGHTED) and len(users) == 1 and isinstance(kinds[0], NORMS):
            folded[name] = users[0]
        if len(users) == 1 and isinstance(kinds[0], FUSED_ACTS):
            fused.add(name)
    targets = [n for n in order if isinstance(leaves[n], NORMS) and getattr(leaves[n], "affine", False)
               or isinstance(leaves[n], WEIGHTED) and n not in folded]
    biggest = max((t.numel() * 4 // max(len(x), 1) for t in keep), default=0)
    return Graph(order, folded, fused, targets, biggest)


def _fake_quant_weight(w: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """Symmetric int8 in [-127, 127], one scale per output channel (dim 0) or per tensor."""
    dims = tuple(range(1, w.dim())) if per_channel else tuple(range(w.dim()))
    s = w.abs().amax(dim=dims, keepdim=True).clamp_min(1e-12) / 127.0
    return torch.clamp(torch.round(w / s), -127, 127) * s


def _qparams(lo: float, hi: float) -> tuple[float, float]:
    """Asymmetric 8-bit (scale, zero point) covering [lo, hi] and 0, zero point on the grid."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-12) / 255.0
    return scale, float(round(-128 - lo / scale))


def _fake_quant(t: torch.Tensor, scale: float, zp: float) -> torch.Tensor:
    return (torch.clamp(torch.round(t / scale) + zp, -128, 127) - zp) * scale


def _channel_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean per channel (dim 1) over every other dim, in float64."""
    dims = [d for d in range(t.dim()) if d != 1] if t.dim() > 1 else [0]
    return t.double().mean(dim=dims)


def _batches(images: np.ndarray, batch: int):
    for i in range(0, len(images), batch):
        yield torch.from_numpy(images[i:i + batch])


def _float_stats(model: nn.Module, g: Graph, images: np.ndarray, quant_points: list[str], batch: int):
    """Min/max at the quantization points; per-channel mean and std at the targets (float model)."""
    leaves = _leaves(model)
    lo_hi: dict[str, list[float]] = {}
    s1: dict[str, torch.Tensor] = {}
    s2: dict[str, torch.Tensor] = {}
    count: dict[str, int] = {}  # samples seen per target (a module called twice counts twice)

    def rng(name):
        def h(m, i, o):
            r = lo_hi.setdefault(name, [float("inf"), float("-inf")])
            r[0], r[1] = min(r[0], float(o.min())), max(r[1], float(o.max()))
        return h

    def stats(name):
        def h(m, i, o):
            s1[name] = s1.get(name, 0) + _channel_mean(o) * len(o)
            s2[name] = s2.get(name, 0) + _channel_mean(o.double() ** 2) * len(o)
            count[name] = count.get(name, 0) + len(o)
        return h

    hooks = [leaves[n].register_forward_hook(rng(n)) for n in quant_points]
    hooks += [leaves[n].register_forward_hook(stats(n)) for n in g.targets]
    try:
        with torch.no_grad():
            for xb in _batches(images, batch):
                model(xb)
    finally:
        for h in hooks:
            h.remove()
    mean = {n: s1[n] / count[n] for n in g.targets}
    std = {}
    for n in g.targets:  # floor: dead channels (std ~ 0) must not dominate the report
        sd = (s2[n] / count[n] - mean[n] ** 2).clamp_min(0).sqrt()
        std[n] = sd.clamp_min(max(1e-3 * float(sd.max()), 1e-12))
    return lo_hi, mean, std


def _simulator(model: nn.Module, g: Graph, quant_points: list[str], lo_hi: dict, in_range: tuple[float, float],
               per_channel: bool, keep_grid: bool = True) -> nn.Module:
    """A copy of ``model`` computing what the int8 file computes (fake-quantised weights and activations;
    ``keep_grid``: weights already on an 8-bit grid stay on it, as :mod:`edgecv.export.weight_grid` writes them)."""
    from edgecv.export.weight_grid import fake_quant_on_grid

    sim = copy.deepcopy(model)
    leaves = _leaves(sim)
    with torch.no_grad():
        for m in leaves.values():
            if isinstance(m, WEIGHTED):
                on_grid = fake_quant_on_grid(m.weight) if keep_grid and per_channel else None
                m.weight.copy_(on_grid if on_grid is not None else _fake_quant_weight(m.weight, per_channel))
    q_in = _qparams(*in_range)
    sim.register_forward_pre_hook(lambda m, i: (_fake_quant(i[0], *q_in), *i[1:]))
    for n in quant_points:
        q = _qparams(*lo_hi[n])
        leaves[n].register_forward_hook(lambda m, i, o, q=q: _fake_quant(o, *q))
    return sim


def _hook_first(module: nn.Module, fn) -> None:
    """Register a forward hook that runs before the module's other forward hooks."""
    handle = module.register_forward_hook(fn)
    module._forward_hooks.move_to_end(handle.id, last=False)


def _setup(model: nn.Module, images: np.ndarray, per_channel: bool, batch: int, reference: nn.Module | None = None,
           g: Graph | None = None, keep_grid: bool = True):
    """Graph, float means/stds at the targets (of ``reference`` when given) and the int8 simulator."""
    g = g or trace(model, torch.from_numpy(images[:2]))
    leaves = _leaves(model)
    quant_points = [n for n in g.order if n not in g.folded and n not in g.fused
                    and not isinstance(leaves[n], SHAPE_ONLY)]
    lo_hi, mean, std = _float_stats(model, g, images, quant_points, batch)
    if reference is not None:
        _, mean, std = _float_stats(reference.eval(), g, images, [], batch)
    sim = _simulator(model, g, quant_points, lo_hi, (float(images.min()), float(images.max())), per_channel,
                     keep_grid)
    return g, mean, std, sim


def mean_shift(model: nn.Module, images: np.ndarray, *, reference: nn.Module | None = None, per_channel: bool = True,
               batch: int = 25, keep_grid: bool = True) -> dict[str, float]:
    """Per target layer: the largest |mean(int8 simulation of model) - mean(float)| / std(float) over channels.

    The float statistics come from ``reference`` (the uncorrected model) when given, else ``model``.
    """
    model = model.eval()
    g, mean, std, sim = _setup(model, images, per_channel, batch, reference, keep_grid=keep_grid)
    acc: dict[str, torch.Tensor] = {}
    count: dict[str, int] = {}
    sl = _leaves(sim)

    def h(name):
        def fn(m, i, o):
            acc[name] = acc.get(name, 0) + _channel_mean(o) * len(o)
            count[name] = count.get(name, 0) + len(o)
        return fn

    for n in g.targets:
        _hook_first(sl[n], h(n))
    with torch.no_grad():
        for xb in _batches(images, batch):
            sim(xb)
    return {n: float(((acc[n] / count[n] - mean[n]).abs() / std[n]).max()) for n in g.targets}


def correct_biases(model: nn.Module, images: np.ndarray, *, per_channel: bool = True, batch: int = 25,
                   memory_bytes: int = 4 << 30, keep_grid: bool = True) -> tuple[nn.Module, dict]:
    """A copy of ``model`` whose biases cancel the int8 mean shifts measured on ``images``.

    ``images``: (N, C, H, W) float32 calibration images, normalised as the model expects.
    Layers are corrected in execution order in one pass over all images at once (each sees its
    inputs with every earlier correction applied), so the number of images is capped to keep
    about ``memory_bytes`` of activations alive. Returns the corrected copy and a report
    (layers, images, the largest mean shift corrected relative to the float std).
    """
    model = copy.deepcopy(model).eval()
    g = trace(model, torch.from_numpy(images[:2]))
    per_image = 6 * g.max_output_bytes  # a few full-size tensors alive at once
    n = max(1, min(len(images), memory_bytes // max(per_image, 1)))
    if n < len(images):
        log.info("bias correction on %d of %d images (activation memory)", n, len(images))
        images = images[np.linspace(0, len(images) - 1, n).round().astype(int)]
    g, mean, std, sim = _setup(model, images, per_channel, batch, g=g, keep_grid=keep_grid)
    if not g.targets:
        return model, {"layers": 0, "images": int(len(images)), "max_rel_shift": 0.0}
    sl = _leaves(sim)
    corr: dict[str, torch.Tensor] = {}
    rel: dict[str, float] = {}

    def shift(name):
        def h(m, i, o):
            if name in corr:  # called twice in one forward: the first call's correction holds
                d = corr[name]
            else:
                d = (mean[name] - _channel_mean(o)).to(o.dtype)
                corr[name] = d
                rel[name] = float((d.double().abs() / std[name]).max())
            return o + (d.view(1, -1, *([1] * (o.dim() - 2))) if o.dim() > 1 else d)
        return h

    for n in g.targets:
        _hook_first(sl[n], shift(n))
    with torch.no_grad():
        sim(torch.from_numpy(images))
    leaves = _leaves(model)
    with torch.no_grad():
        for n, c in corr.items():
            m = leaves[n]
            if m.bias is None:
                m.bias = nn.Parameter(torch.zeros(c.numel(), dtype=m.weight.dtype))
            m.bias.add_(c.to(m.bias.dtype))
    rep = {"layers": len(corr), "images": int(len(images)), "max_rel_shift": round(max(rel.values()), 4)}
    log.info("bias correction: %s", rep)
    return model, rep
