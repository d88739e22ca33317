"""Int8 (and N-bit) quantization through nncf: post-training (PTQ) and quantization-aware training (QAT).

``nncf.quantize`` inserts fake-quantizers (per-channel symmetric weights, per-tensor activations,
ranges from ``calib_size`` real calibration images; nncf's own "fast bias correction") into the
model and returns it, still a PyTorch module. QAT = training that returned model (the quantizer
ranges are trainable). Depthwise convolutions get per-channel weight quantizers like any conv;
hard-swish, SE gating (the zoo's ``Mul``), residual ``Add`` and ``Concat`` modules are plain traced
ops to nncf, so it places activation quantizers around them by its own fusing rules.

Afterwards every weight quantizer is *baked*: the weight is replaced by its integer form
``scale[c] * (code - zero_point)`` exactly as the codec's ``AffineCode`` decodes it, and the weight
quantizer is removed (it would be the identity on such weights). What remains is the fake-quant
model the file stands for: integer-grid weights + nncf's activation quantizers. The activation
quantizers' parameters are ordinary buffers/parameters of the model's state_dict (stored raw), and
their placement is a small JSON description (``quantizer_meta``) kept in the file's meta;
``restore_fake_quant`` rebuilds the same model from a fresh one.

Sub-8-bit weights the other way: a ``share`` stage (k-means codebook, e.g. 6 bits) before
``quantize`` keeps its codebook; ``quantize`` then adds activation quantizers only to those layers.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from edgecv.compress import targets as T
from edgecv.compress.base import (
    Context,
    Stage,
    TrainOptions,
    register_stage,
    retrain,
    targets,
)
from edgecv.errors import UserError

log = logging.getLogger(__name__)

HOOK_PREFIX = "__nncf_hooks."
# the first nncf quantize compiles a C++ extension (~40 s alone, minutes on a busy 2-core machine);
# nncf gives up after 60 s by default and leaves a lock behind, so allow it much longer
os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "1200")


def _nncf() -> Any:
    try:
        import nncf
        import nncf.torch
    except ImportError:
        raise UserError("nncf is not installed: pip install 'edgecv[nncf]'") from None
    return nncf


@dataclass
class QuantizeConfig(TrainOptions):
    """``bits``: weight bits (per-channel symmetric, 2..8); ``activation_bits``: activation bits
    (per-tensor, 2..8; the backend decides what runs fast: 8 everywhere). ``mode``: ``ptq`` or
    ``qat`` (PTQ, then ``epochs`` of training the fake-quant model with the TrainOptions; lr
    defaults to 1e-4). ``calib_size`` calibration images (a held-out train slice), fed in batches
    of ``calib_batch``. ``preset``: nncf preset (performance = symmetric activations, mixed =
    asymmetric). ``per_channel``: per-output-channel weight scales. ``weights`` / ``activations``:
    quantize either (weights already shared by a ``share`` stage keep their codebook).
    ``ignored``: layer patterns left in float. ``fast_bias_correction``: nncf's bias correction.
    ``huffman``: Huffman-code the integer weights in the file when that is smaller."""

    bits: int = 8
    activation_bits: int = 8
    mode: Literal["ptq", "qat"] = "ptq"
    calib_size: int = 300
    calib_batch: int = 25
    preset: Literal["performance", "mixed"] = "performance"
    per_channel: bool = True
    weights: bool = True
    activations: bool = True
    ignored: list[str] | None = field(default=None, metadata=targets())
    fast_bias_correction: bool = True
    epochs: int = 1
    huffman: bool = True
    lr: float = 1e-4

    def __post_init__(self) -> None:
        for name in ("bits", "activation_bits"):
            v = getattr(self, name)
            if not 2 <= v <= 8:
                raise UserError(f"quantize: {name} must be 2..8 (wider weights: leave them float; "
                                f"other widths: a share stage's codebook), got {v}")
        if self.calib_size < 1 or self.calib_batch < 1:
            raise UserError("quantize: calib_size and calib_batch must be >= 1")
        if self.epochs < 0:
            raise UserError(f"quantize: epochs must be >= 0, got {self.epochs}")
        if not (self.weights or self.activations):
            raise UserError("quantize: weights and activations are both false; nothing to quantize")


def quant_codes(ctx: Context) -> dict[str, Any]:
    """``param name -> AffineCode`` of the weights baked by quantize stages (kept on the context)."""
    codes = getattr(ctx, "quantized", None)
    if codes is None:
        codes = {}
        ctx.quantized = codes  # type: ignore[attr-defined]
    return codes


@register_stage
class Quantize(Stage):
    """int8 / N-bit PTQ or QAT through nncf, weights baked to integers (see module docstring)."""

    name = "quantize"
    Config = QuantizeConfig

    def with_bits(self, bits: int) -> Quantize:
        if not 2 <= bits <= 8:
            raise UserError(f"--bits {bits}: the quantize stage takes 2..8 bit weights")
        return Quantize(dataclasses.replace(self.config, bits=bits), origin=self.origin)

    def _apply(self, model: nn.Module, ctx: Context, report: dict[str, Any]) -> nn.Module:
        cfg: QuantizeConfig = self.config
        nncf = _nncf()
        from nncf.quantization.advanced_parameters import (
            AdvancedQuantizationParameters,
            QuantizationParameters,
        )

        calib = getattr(ctx, "calib_data", None) or ctx.train_data
        if calib is None:
            raise UserError("quantize: needs calibration images; pass --data (a dataset with real images)")
        n = min(cfg.calib_size, len(calib))
        subset = torch.utils.data.Subset(calib, range(n))
        loader = torch.utils.data.DataLoader(subset, batch_size=cfg.calib_batch, shuffle=False)
        example = next(iter(loader))[0][:1]
        ignored = None
        if cfg.ignored:
            names = T.resolve(model, cfg.ignored)
            ignored = nncf.IgnoredScope(patterns=[f"^{n.replace('.', '/')}/.*" for n in names], validate=False)
        # nncf's hardware configs allow 8-bit quantizers only (other widths: "incompatible with HW
        # capabilities"), so nncf places and calibrates 8-bit ones and the widths are set below
        adv = AdvancedQuantizationParameters(
            weights_quantization_params=QuantizationParameters(num_bits=8, per_channel=cfg.per_channel),
            activations_quantization_params=QuantizationParameters(num_bits=8))
        model.eval()
        qmodel = nncf.quantize(model, nncf.Dataset(loader, lambda b: b[0]), preset=nncf.QuantizationPreset(cfg.preset),
                               subset_size=math.ceil(n / cfg.calib_batch), fast_bias_correction=cfg.fast_bias_correction,
                               ignored_scope=ignored, advanced_parameters=adv)
        weight_q, act_q = _split_quantizers(qmodel, example)
        hooks = _hook_storage(qmodel)
        for hook, pname in list(weight_q.items()):
            if pname in ctx.shared or not cfg.weights:  # a codebook already is this weight's quantization
                hooks.delete_hook(hook)
                del weight_q[hook]
        if not cfg.activations:
            for hook in act_q:
                hooks.delete_hook(hook)
            act_q = []
        for hook in weight_q:  # nncf's own setter re-derives the integer levels; the calibrated range stays
            hooks.get_submodule(hook).num_bits = cfg.bits
        for hook in act_q:
            hooks.get_submodule(hook).num_bits = cfg.activation_bits
        history: list[dict[str, Any]] = []
        if cfg.mode == "qat":
            history = retrain(qmodel, ctx, cfg, cfg.epochs, what="quantize (QAT)")
            qmodel.eval()
        codes = quant_codes(ctx)
        layers: dict[str, Any] = {}
        for hook, pname in weight_q.items():
            code = bake_weight(qmodel, hook, pname, huffman=cfg.huffman)
            hooks.delete_hook(hook)
            codes[pname] = code
            layers[pname] = {"bits": code.bits, "scales": int(code.scales.size), "zero_point": int(code.zero_points[0])}
        report.update({"mode": cfg.mode, "calibration_images": n, "weight_bits": cfg.bits,
                       "activation_bits": cfg.activation_bits if act_q else None, "preset": cfg.preset,
                       "weights_quantized": len(layers), "activation_quantizers": len(act_q), "layers": layers,
                       "retrained": bool(history)})
        if history:
            report["train"] = history[-1]
        log.info("quantize: %d weights baked to %d-bit integers, %d activation quantizers (%s)", len(layers),
                 cfg.bits, len(act_q), cfg.mode)
        return qmodel


def _hook_storage(model: nn.Module) -> Any:
    from nncf.torch.function_hook.wrapper import get_hook_storage

    return get_hook_storage(model)


def _split_quantizers(model: nn.Module, example: torch.Tensor) -> tuple[dict[str, str], list[str]]:
    """(weight quantizer hook -> weight parameter name, activation quantizer hooks)."""
    from nncf.torch.function_hook.hook_storage import decode_hook_name
    from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph
    from nncf.torch.model_graph_manager import get_const_node
    from nncf.torch.quantization.layers import BaseQuantizer

    graph = build_nncf_graph(model, example)
    weights: dict[str, str] = {}
    acts: list[str] = []
    for name, module in _hook_storage(model).named_hooks():
        if not isinstance(module, BaseQuantizer):
            continue
        hook_type, op_name, port = decode_hook_name(name)
        const = get_const_node(graph.get_node_by_name(op_name), port, graph) if hook_type == "pre_hooks" else None
        if const is None:
            acts.append(name)
        else:
            weights[name] = const.layer_attributes.name
    return weights, acts


@torch.no_grad()
def bake_weight(model: nn.Module, hook: str, pname: str, *, huffman: bool = True) -> Any:
    """Replace weight ``pname`` by the integers its quantizer ``hook`` maps it to, as an AffineCode.

    With nncf's kernel arithmetic per channel (s = (levels - 1) / (high - low), zero point
    zp = round(-low * s), m = round((clamp(w) - low) * s - zp), fake-quant value m / s): code = m + zp,
    and the weight becomes ``AffineCode.to_numpy()`` = step * (code - zp) with step = (high - low) /
    (levels - 1), what the file decodes to (within an ulp of m / s).
    """
    from edgecv.codec import AffineCode

    q = _hook_storage(model).get_submodule(hook)
    w = model.get_parameter(pname)
    low, high = (t.detach().float() for t in q.get_input_low_input_high())
    levels = int(q.levels)
    step = (high - low) / (levels - 1)
    c = step.numel()
    if c not in (1, w.shape[0]) or (c > 1 and step.shape[0] != w.shape[0]):
        raise UserError(f"quantize: {pname}: quantizer scale shape {tuple(step.shape)} is not per output channel "
                        f"(axis 0) of weight {tuple(w.shape)}")
    lo, hi = low.reshape(c, 1).cpu(), high.reshape(c, 1).cpu()
    s = (levels - 1) / (hi - lo)
    zp = torch.round(-lo * s)  # nncf's kernel: zp = round(-low * s), m = round((clamp(w) - low) * s - zp), w' = m / s
    if zp.min() < 0 or zp.max() >= 1 << q.num_bits:
        raise UserError(f"quantize: {pname}: range [{float(low.min())}, {float(high.max())}] does not hold 0; "
                        "use the symmetric preset for weights")
    # the grid index from nncf's own fake-quant output (m / s, so m = round(fq * s) exactly): recomputing
    # the rounding here would pick the other neighbour where the argument sits within an ulp of .5
    fq = q(w.detach()).float().cpu()
    m = torch.round(fq.reshape(c, -1) * s)
    codes = torch.clamp(m + zp, 0, levels - 1).long()
    zp = zp.reshape(-1).long()
    st = step.reshape(c, 1).cpu()
    zps = zp.cpu().numpy()
    code = AffineCode(tuple(w.shape), int(q.num_bits), st.reshape(-1).numpy().astype(np.float32),
                      zps[:1] if bool((zps == zps[0]).all()) else zps, codes.reshape(-1).numpy(), huffman=huffman)
    baked = torch.from_numpy(code.to_numpy())
    err = float((baked - fq).abs().max()) if fq.numel() else 0.0
    if err > float(step.max()) * 1e-3:
        log.warning("quantize: %s: baked integers differ from nncf's fake-quant by %.3g", pname, err)
    w.copy_(baked.to(w.device, w.dtype))
    return code


def quantizer_meta(model: nn.Module) -> dict[str, Any] | None:
    """Placement of the model's remaining quantizers (nncf's ``get_config``, de-duplicated) or None."""
    if not any(k.startswith(HOOK_PREFIX) for k in model.state_dict()):
        return None
    nncf = _nncf()
    configs: list[dict[str, Any]] = []
    hooks: list[list[Any]] = []
    for cmd in nncf.torch.get_config(model)["compression_state"]:
        c = {"module_path": cmd["module_path"], "module_cls_name": cmd["module_cls_name"],
             "module_config": cmd["module_config"]}
        if c not in configs:
            configs.append(c)
        hooks.append([configs.index(c), cmd["hook_names_in_model"]])
    return {"format": "nncf.get_config/1", "configs": configs, "hooks": hooks}


def restore_fake_quant(model: nn.Module, meta: dict[str, Any] | None) -> nn.Module:
    """Re-insert the quantizers ``quantizer_meta`` described into a fresh ``model`` (then load the
    decoded state_dict into it). Only nncf's own quantizer classes are imported (its allow-list)."""
    if not meta:
        return model
    nncf = _nncf()
    try:
        configs, hooks = meta["configs"], meta["hooks"]
        state = [{"hook_names_in_model": names, **configs[i]} for i, names in hooks]
        return nncf.torch.load_from_config(model, {"compression_state": state})
    except (KeyError, IndexError, TypeError, ValueError, nncf.InternalError) as e:
        raise UserError(f"the file's quantizer description is malformed ({type(e).__name__}: {e}); "
                        "re-create it with `edgecv compress`") from None
