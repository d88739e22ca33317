"""ExecuTorch ``.pte`` files with the XNNPACK delegate: fp32, and int8 through PT2E with edgecv's calibration.

* fp32: ``torch.export`` -> ``to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()])``
  -> ``to_executorch()`` (the recipe measured in shared/stack.md).
* int8: the model edgecv's bias correction already moved (:mod:`edgecv.export.bias_correction`,
  applied by :func:`edgecv.export.export`) goes through torchao's ``prepare_pt2e`` /
  ``convert_pt2e`` with ExecuTorch's ``XNNPACKQuantizer`` (per-channel symmetric int8 weights,
  asymmetric int8 activations) and two changes against the stock recipe:

  - activation ranges by **min/max** over the calibration images (the stock config uses a
    HistogramObserver, which clips the range to minimise L2 error; the bias correction simulates
    min/max ranges, as TFLite's converter uses);
  - **conv + ReLU6 annotated as one pattern** (output quantized after the clamp). The stock
    quantizer fuses only ``relu`` into a conv, so every ReLU6 (``hardtanh``) of MobileNetV2 /
    EfficientNet-Lite0 gets its own quantize/dequantize pair and XNNPACK's FuseActivationPass
    (which fuses hardtanh only when it follows the conv directly) leaves it as a separate int8
    clamp node with its own requantization (:func:`quantized_stats` counts them). Measured
    (benchmarks/executorch_int8.py, docs/export.md): fusing raises agreement (Lite0 90.5 -> 98.5%)
    but not speed (1.5x edgecv's int8 TFLite either way, with the pads below in fp32);
  - weights already on an 8-bit grid (dequantized from a QAT file) **keep that grid**
    (:func:`_grid_observer`, :mod:`edgecv.export.weight_grid`);
  - **TensorFlow SAME padding's zero pads run in int8 inside their conv** (:func:`quantized_pads`):
    as ``convert_pt2e`` leaves them, each is an fp32 pad between two converts of a whole feature map.
    MobileNetV2 1.49x -> 1.15x edgecv's int8 TFLite, Lite0 1.67x -> 1.39x (AVX-512 VNNI; 1.19x -> 1.08x and
    1.22x -> 1.12x on an AVX2 CPU), outputs bit-identical.

  The file takes float32 NCHW input and returns float32 logits (the quantize / dequantize at
  the two ends run inside the delegate).
* Metadata: a constant method ``edgecv_metadata`` returning the JSON string (ExecuTorch stores
  primitive constant methods in the program), read back by :func:`read_metadata`.
* The runtime's thread pool starts with one thread per core it sees, whatever the process
  affinity: :func:`hold_threads` resets it (``portable_lib._unsafe_reset_threadpool``, a private
  API, stack.md) before a program is loaded.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgecv.errors import UserError

log = logging.getLogger(__name__)

INSTALL = "pip install 'edgecv[executorch]'"
METADATA_METHOD = "edgecv_metadata"
_HARDTANH = ("aten.hardtanh.default", "aten.hardtanh_.default")


def _need():
    try:
        import executorch  # noqa: F401
        from executorch.exir import to_edge_transform_and_lower  # noqa: F401
    except ImportError:
        raise UserError(f"executorch is not installed: {INSTALL}") from None


def hold_threads(n: int = 1) -> None:
    """Resize ExecuTorch's global thread pool to ``n`` threads (before loading a program)."""
    from executorch.extension.pybindings import portable_lib

    portable_lib._unsafe_reset_threadpool(int(n))


# ---------------------------------------------------------------- int8 (PT2E)
def _grid_observer():
    """PerChannelMinMaxObserver that keeps weights already on an 8-bit grid exactly on it
    (:mod:`edgecv.export.weight_grid`): each output channel that fits [-127, 127] steps gets the
    grid's step as its scale. PT2E folds the BatchNorm into the conv before observing, which keeps a
    per-tensor grid when the BN's factor is one value (the identity BNs of weights dequantized from
    a QAT file); otherwise the tensor is not on one grid and the min/max scale stays."""
    import torch
    from torchao.quantization.pt2e import PerChannelMinMaxObserver

    from edgecv.export.weight_grid import fitting_channels, grid_step

    class GridPerChannelObserver(PerChannelMinMaxObserver):
        def forward(self, x):
            self.observed = x.detach()
            return super().forward(x)

        def calculate_qparams(self):
            scale, zp = super().calculate_qparams()
            w = getattr(self, "observed", None)
            s = grid_step(w) if w is not None and self.ch_axis == 0 else None
            if s is None:
                return scale, zp
            fits = fitting_channels(w, s).to(scale.device)
            return torch.where(fits, torch.full_like(scale, s), scale), zp

    return GridPerChannelObserver


def _config(per_channel: bool, observer: str, keep_grid: bool = False):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
    from torchao.quantization.pt2e import MinMaxObserver

    cfg = get_symmetric_quantization_config(is_per_channel=per_channel)
    if keep_grid and per_channel:
        w = dataclasses.replace(cfg.weight, observer_or_fake_quant_ctr=_grid_observer().with_args(eps=2 ** -12))
        cfg = dataclasses.replace(cfg, weight=w)
    if observer == "histogram":  # the stock config's HistogramObserver
        return cfg
    act = dataclasses.replace(cfg.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2 ** -12))
    return dataclasses.replace(cfg, input_activation=act, output_activation=act)


def _quantizer(per_channel: bool, observer: str, fuse_relu6: bool, keep_grid: bool = False):
    from executorch.backends.xnnpack.quantizer import xnnpack_quantizer_utils as U
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer

    cfg = _config(per_channel, observer, keep_grid)

    class Quantizer(XNNPACKQuantizer):
        """XNNPACKQuantizer that also annotates conv -> hardtanh (ReLU6) as one fused pattern."""

        def annotate(self, model):
            if fuse_relu6:
                _annotate_conv_hardtanh(model, cfg, U)
            return super().annotate(model)

    return Quantizer().set_global(cfg)


def _annotate_conv_hardtanh(gm, cfg, U) -> int:
    """conv's inputs/weight/bias quantized, its output not; the hardtanh's output quantized."""
    n_done = 0
    for act in gm.graph.nodes:
        if act.op != "call_function" or str(act.target) not in _HARDTANH:
            continue
        conv = act.args[0]
        if not (hasattr(conv, "op") and U._is_conv_node(conv)) or len(conv.users) > 1:
            continue
        qmap = {conv.args[0]: U.get_input_act_qspec(cfg), conv.args[1]: U.get_weight_qspec(cfg)}
        part = [act, conv, conv.args[1]]
        bias = conv.args[2] if len(conv.args) > 2 else None
        if hasattr(bias, "op"):
            qmap[bias] = U.get_bias_qspec(cfg)
            part.append(bias)
        if U._is_annotated(part):
            continue
        conv.meta[U.Q_ANNOTATION_KEY] = U.QuantizationAnnotation(input_qspec_map=qmap, _annotated=True)
        act.meta[U.Q_ANNOTATION_KEY] = U.QuantizationAnnotation(output_qspec=U.get_output_act_qspec(cfg),
                                                                _annotated=True)
        U._mark_nodes_as_annotated(part)
        n_done += 1
    log.debug("conv+hardtanh annotated as fused: %d", n_done)
    return n_done


#: the stock recipe (stack.md: Lite0 90.6% agreement, 1.65x edgecv's int8 TFLite) and edgecv's
VARIANTS = {"stock": {"observer": "histogram", "fuse_relu6": False},
            "stock+fused-relu6": {"observer": "histogram", "fuse_relu6": True},
            "edgecv-fp32-pads": {"observer": "minmax", "fuse_relu6": True, "keep_grid": True},
            "edgecv-no-grid": {"observer": "minmax", "fuse_relu6": True, "int8_pads": True},
            "edgecv": {"observer": "minmax", "fuse_relu6": True, "keep_grid": True, "int8_pads": True}}


def quantize(model, calib: np.ndarray, *, per_channel: bool = True, variant: str = "edgecv", batch: int = 1):
    """An ExportedProgram of the int8 model (PT2E), calibrated on ``calib`` (N, C, H, W) real images.

    ``variant``: a key of :data:`VARIANTS` (edgecv's default, or the stock recipe for comparison).
    """
    import torch

    _need()
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    x0 = torch.from_numpy(calib[:1])
    gm = torch.export.export(model.eval(), (x0,)).module()
    opts = dict(VARIANTS[variant])
    int8_pads = opts.pop("int8_pads", False)
    prepared = prepare_pt2e(gm, _quantizer(per_channel, **opts))
    with torch.no_grad():
        for i in range(0, len(calib), batch):  # the graph was traced at batch 1
            prepared(torch.from_numpy(calib[i:i + batch]))
    q = convert_pt2e(prepared)
    if int8_pads:
        log.debug("zero pads put in XNNPACK's int8 form: %d", quantized_pads(q))
    return torch.export.export(q, (x0,))


_Q, _DQ = "quantized_decomposed.quantize_per_tensor.default", "quantized_decomposed.dequantize_per_tensor.default"


def quantized_pads(gm) -> int:
    """Put every zero pad (TensorFlow SAME padding's ``F.pad``) in the form XNNPACK runs in int8.

    convert_pt2e leaves ``dq -> pad -> q -> dq -> conv`` (the conv's input quantizer after the pad), which
    ExecuTorch lowers as an fp32 pad between two int8<->fp32 converts; its conv partitioner takes
    ``dq -> pad -> conv`` instead, as one int8 pad (InsertPadQDQPass) and the conv. The q/dq pair after a
    pad is dropped when it repeats the pad input's own (scale, zero point): the same values, since the
    zeros it adds are the zero point exactly. A pad of a float tensor (the graph input) gets that pair
    before it instead. The outputs are bit-identical; measured (benchmarks/executorch_int8.py, 5 pads
    each): MobileNetV2 2.24 -> 1.77 ms, EfficientNet-Lite0 2.99 -> 2.52 ms on one core. Returns the count.
    """
    n = 0
    for pad in list(gm.graph.nodes):
        if pad.op != "call_function" or str(pad.target) != "aten.pad.default":
            continue
        if (pad.args[2:3] or ["constant"])[0] != "constant" or (pad.args[3:4] or [None])[0] not in (None, 0, 0.0):
            continue
        q = next(iter(pad.users)) if len(pad.users) == 1 else None
        dq = next(iter(q.users)) if q is not None and str(q.target) == _Q and len(q.users) == 1 else None
        params = tuple(q.args[1:]) if dq is not None else ()
        # the form ExecuTorch's conv partitioner takes: a spatial pad feeding one conv (anything else,
        # e.g. ResNet option A's channel pad into an add, stays as it is)
        if (dq is None or str(dq.target) != _DQ or tuple(dq.args[1:]) != params or len(pad.args[1]) > 4
                or len(dq.users) != 1 or "conv" not in str(next(iter(dq.users)).target)):
            continue
        src = pad.args[0]
        if str(getattr(src, "target", "")) == _DQ:
            if tuple(src.args[1:]) != params:
                continue  # requantized to other parameters: a real op, left as it is
        else:
            with gm.graph.inserting_before(pad):
                dq_in = gm.graph.call_function(dq.target, (gm.graph.call_function(q.target, (src, *params)), *params))
            pad.replace_input_with(src, dq_in)
        dq.replace_all_uses_with(pad)
        gm.graph.erase_node(dq)
        gm.graph.erase_node(q)
        n += 1
    if n:
        gm.graph.lint()
        gm.recompile()
    return n


def convert(model, out: str | os.PathLike, precision: str, *, input_size: tuple[int, int, int],
            calib: np.ndarray | None = None, per_channel: bool = True, metadata: dict | None = None,
            variant: str = "edgecv") -> Path:
    """Write a ``.pte`` (XNNPACK-delegated) of ``model`` at batch 1; int8 needs ``calib``."""
    import torch

    _need()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    if precision == "int8":
        if calib is None:
            raise ValueError("int8 needs calibration images")
        ep = quantize(model, calib, per_channel=per_channel, variant=variant)
    elif precision == "fp32":
        ep = torch.export.export(model.eval(), (torch.zeros((1, *input_size)),))
    else:
        raise UserError(f"executorch does not support --precision {precision}; use fp32 or int8")
    consts = {METADATA_METHOD: json.dumps(metadata)} if metadata else None
    try:
        edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()], constant_methods=consts)
        prog = edge.to_executorch()
    except Exception as e:  # an op the lowering cannot take: one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"ExecuTorch lowering ({precision}) failed: {first[:300]}") from None
    out = Path(out)
    out.write_bytes(prog.buffer)
    _STATS[str(out)] = graph_stats(edge)
    return out


_STATS: dict[str, dict[str, Any]] = {}  # graph facts of files written in this process (by path)


def graph_stats(edge) -> dict[str, Any]:
    """What the partitioner did: delegate count, ops left outside XNNPACK, and inside the delegates
    the int8 clamps (hardtanh after a dequantize: not fusable into the conv), quantize ops, and zero pads
    taken into their conv (int8, :func:`quantized_pads`) or left as an fp32 op between converts."""
    gm = edge.exported_program().graph_module
    outside: dict[str, int] = {}
    delegates = 0
    inside: dict[str, int] = {}
    for n in gm.graph.nodes:
        if n.op != "call_function":
            continue
        name = str(n.target).split("::")[-1].replace("aten.", "")
        if "executorch_call_delegate" in name:
            delegates += 1
            continue
        if "getitem" in name:
            continue
        outside[name] = outside.get(name, 0) + 1
    for _, sub in gm.named_children():
        orig = getattr(sub, "original_module", None)
        if orig is None:
            continue
        for n in orig.graph_module.graph.nodes:
            if n.op != "call_function":
                continue
            t = str(n.target)
            key = ("clamp_after_dequantize" if any(h.split(".")[1] in t for h in _HARDTANH) and hasattr(n.args[0], "target")
                   and "dequantize" in str(n.args[0].target) else
                   "clamp_fusable" if any(h.split(".")[1] in t for h in _HARDTANH) else
                   "quantize" if "quantize_per_tensor" in t and "dequantize" not in t else
                   "conv" if "convolution" in t else
                   ("pad_in_conv" if n.users and all("convolution" in str(u.target) for u in n.users) else "pad_fp32")
                   if "constant_pad_nd" in t else None)
            if key:
                inside[key] = inside.get(key, 0) + 1
    return {"delegate_partitions": delegates, "undelegated_ops": dict(sorted(outside.items())),
            "delegated_ops": dict(sorted(inside.items()))}


def quantized_stats(ep) -> dict[str, int]:
    """In a converted PT2E graph (before lowering): ReLU6 clamps fed by a dequantize (each one an int8
    op of its own in XNNPACK, not fused into its conv) and quantize ops."""
    out = {"clamp_after_dequantize": 0, "clamp_fused": 0, "quantize": 0}
    for n in ep.graph_module.graph.nodes:
        t = str(n.target)
        if n.op != "call_function":
            continue
        if "hardtanh" in t:
            src = n.args[0]
            out["clamp_after_dequantize" if "dequantize" in str(getattr(src, "target", "")) else "clamp_fused"] += 1
        elif "quantize_per_tensor" in t and "dequantize" not in t:
            out["quantize"] += 1
    return out


def delegation(path: str | os.PathLike) -> dict[str, Any]:
    """What runs where in a ``.pte``: XNNPACK delegate blobs of ``forward`` and the ops left to the
    portable kernels (read off the file's execution plan), plus the graph facts :func:`convert`
    recorded when the file was written in this process."""
    _need()
    from executorch.exir._serialize._program import deserialize_pte_binary

    prog = deserialize_pte_binary(Path(path).read_bytes())
    prog = getattr(prog, "program", prog)
    plan = next(p for p in prog.execution_plan if p.name == "forward")
    ops: dict[str, int] = {}
    for ins in plan.chains[0].instructions:
        arg = ins.instr_args
        if type(arg).__name__ == "KernelCall":
            name = plan.operators[arg.op_index].name
            ops[name] = ops.get(name, 0) + 1
    out = {"delegate_partitions": sum(d.id == "XnnpackBackend" for d in plan.delegates),
           "other_delegates": sorted({d.id for d in plan.delegates} - {"XnnpackBackend"}), "undelegated_ops": ops}
    extra = _STATS.get(str(path)) or {}
    if extra.get("delegated_ops"):
        out["delegated_ops"] = extra["delegated_ops"]
    return out


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON edgecv stored in a ``.pte`` ({} when none)."""
    _need()
    from executorch.runtime import Runtime

    prog = Runtime.get().load_program(Path(path))
    if METADATA_METHOD not in prog.method_names:
        return {}
    return json.loads(prog.load_method(METADATA_METHOD).execute([])[0])


class Runner:
    """Runs a ``.pte`` on NCHW float32 batches (the file has batch 1: one image per call)."""

    layout = "NCHW"

    def __init__(self, path: str | os.PathLike, num_threads: int = 1) -> None:
        _need()
        from executorch.runtime import Runtime

        hold_threads(num_threads)
        self.program = Runtime.get().load_program(Path(path))
        self.method = self.program.load_method("forward")
        meta = self.method.metadata
        t = meta.input_tensor_meta(0)
        self.input_shape = [int(d) for d in t.sizes()]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        ys = []
        for i in range(len(x)):
            y = self.method.execute([torch.from_numpy(np.ascontiguousarray(x[i:i + 1], dtype=np.float32))])[0]
            ys.append(y.numpy().reshape(1, -1).copy())
        return np.concatenate(ys)
