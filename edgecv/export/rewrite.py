"""Export-only rewrites of modules that a converter mistranslates, numerically identical.

onnx2tf 1.29 mistranslates the option-A shortcut of the CIFAR ResNets and PyramidNets
(:class:`edgecv.models.resnet_cifar.PadShortcut`): after the strided ``Slice`` that subsamples
H and W it loses track of the NHWC layout, so the channel ``Pad`` (or a ``Concat`` with zeros)
lands on the wrong axis (seen here: its own per-op check reports "Unmatched" from the first such
Pad on, and the logits differ by ~50% of their range). Writing the subsampling as a 1x1
max-pool with the same stride is the same function (each output takes exactly one input) and
converts correctly. Adaptive average pooling is rewritten as well (see
:class:`MatmulAdaptiveAvgPool`). Rewrites are applied to a copy of the model used for export only.

TFLite: onnx2tf turns ``HardSigmoid`` into ``RELU_0_TO_1``, which ai-edge-litert's XNNPACK
delegate does not take (fp32 or int8): each one splits the graph (MobileNetV3-Small fp32: 10
delegate partitions). Written as ``relu6(x + 3) / 6`` the +3 and the clamp fold into the conv
before it. Full-integer int8 also: the converter fuses ``x * relu6(x + 3) / 6`` into one
``HARD_SWISH`` op, which XNNPACK takes in fp32 but not in int8 (29 partitions, and int8 slower
than fp32); written as ``(x / 6) * relu6(x + 3)`` no fusion pattern matches and it becomes
ADD(+RELU6), MUL, MUL, all delegated (1 partition; 96x96 MobileNetV3-Small int8 1.00 -> 0.51 ms
on one core).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F


class PoolPadShortcut(nn.Module):
    """PadShortcut with ``x[:, :, ::s, ::s]`` written as ``max_pool2d(x, 1, s)``."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.s, self.pool, self.pad_before, self.pad_after = m.s, m.pool, m.pad_before, m.pad_after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.s != 1:  # subsampling = a 1x1 max-pool with the stride (no strided Slice)
            x = F.max_pool2d(x, 1, self.s) if self.pool == "subsample" else \
                F.avg_pool2d(x, self.s, self.s, ceil_mode=True)
        if self.pad_before or self.pad_after:
            x = F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))
        return x


class MatmulAdaptiveAvgPool(nn.Module):
    """AdaptiveAvgPool2d as two averaging matrices built for the (static) input size.

    The legacy ONNX exporter refuses adaptive pooling whose output size does not divide the
    input size (AlexNet/VGG heads at small inputs: 1x1 -> 6x6 or 7x7); PyTorch's region rule
    (start = floor(i*H/oh), end = ceil((i+1)*H/oh)) written as ``P_h @ x @ P_w^T`` is the same map.
    """

    def __init__(self, m: nn.AdaptiveAvgPool2d) -> None:
        super().__init__()
        size = m.output_size
        self.out = (size, size) if isinstance(size, int) else tuple(size)

    @staticmethod
    def _matrix(n_in: int, n_out: int, dtype: torch.dtype) -> torch.Tensor:
        p = torch.zeros(n_out, n_in, dtype=dtype)
        for i in range(n_out):
            a, b = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
            p[i, a:b] = 1.0 / (b - a)
        return p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        oh, ow = (h if self.out[0] is None else self.out[0]), (w if self.out[1] is None else self.out[1])
        if h % oh == 0 and w % ow == 0:  # the exporter handles these itself
            return F.adaptive_avg_pool2d(x, (oh, ow))
        return self._matrix(h, oh, x.dtype) @ x @ self._matrix(w, ow, x.dtype).t()


class Relu6Hardswish(nn.Module):
    """hard-swish as ``(x / 6) * relu6(x + 3)``: not fused into HARD_SWISH (see the module doc)."""

    def __init__(self, m: nn.Module | None = None) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * (1.0 / 6.0)) * F.relu6(x + 3.0)


class Relu6Hardsigmoid(nn.Module):
    """hard-sigmoid as ``relu6(x + 3) / 6``: the +3 and the clamp fold into the conv before it."""

    def __init__(self, m: nn.Module | None = None) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) * (1.0 / 6.0)


def for_export(model: nn.Module, *, fmt: str = "onnx", precision: str = "fp32") -> nn.Module:
    """A copy of ``model`` with export-friendly equivalents swapped in (the input is untouched).

    For ``fmt="tflite"`` hard-sigmoid, and for int8 also hard-swish, are rewritten for XNNPACK.
    """
    from edgecv.models.resnet_cifar import PadShortcut

    swaps: dict[type, type] = {PadShortcut: PoolPadShortcut, nn.AdaptiveAvgPool2d: MatmulAdaptiveAvgPool}
    if fmt == "tflite":
        swaps[nn.Hardsigmoid] = Relu6Hardsigmoid
        if precision == "int8":
            swaps[nn.Hardswish] = Relu6Hardswish
    if not any(type(m) in swaps for m in model.modules()):
        return model
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in swaps:
                setattr(parent, name, swaps[type(child)](child))
    return model.eval()
