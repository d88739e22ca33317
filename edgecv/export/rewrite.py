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

Also TFLite only, found by scripts/export_matrix.py: average pooling over padding
(:class:`ConvAvgPool`), grouped 1x1 convs (:class:`SplitGroupConv`), ConvNeXt's permuted
LayerNorm block (:class:`ConvCNBlock`, :class:`DecomposedLayerNorm`) and exact GELU
(:class:`PolyErfGELU`); each class says what onnx2tf or the converter did with the original.
"""
from __future__ import annotations

import copy
from collections.abc import Callable

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
        if h == 1 and w == 1:  # a 1x1 map (AlexNet/VGG at small inputs): every output is the input
            return F.interpolate(x, size=(oh, ow), mode="nearest")  # a Resize; onnx2tf mistranslates
            # the 4-D MatMul below and drops the multiples of a Tile
        return self._matrix(h, oh, x.dtype) @ x @ self._matrix(w, ow, x.dtype).t()


class ConvAvgPool(nn.Module):
    """AvgPool2d with padding or ceil_mode as zero padding + a fixed depthwise conv + a constant
    divisor map, for TFLite only.

    onnx2tf gets average pooling over padding wrong on small maps (measured with 8 channels:
    3x3/1 pad 1 on a 1x1 or 2x2 map, 3x3/2 pad 1 on 1x1 or 3x3: off by up to 2.1, i.e. the
    padding left out of the divisor), which broke BN-Inception at 16x16. A convolution over an
    explicitly zero-padded input converts exactly; the divisor of every window (PyTorch's rule,
    including count_include_pad and ceil_mode overhang) is measured once per input size by
    pooling a map of ones, so the result is the same function.
    """

    def __init__(self, m: nn.AvgPool2d) -> None:
        super().__init__()
        pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
        self.k, self.s, self.p = pair(m.kernel_size), pair(m.stride or m.kernel_size), pair(m.padding)
        self.ceil, self.incl, self.div = m.ceil_mode, m.count_include_pad, m.divisor_override

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.k, self.s, self.p, self.ceil, self.incl, self.div)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
        ones = torch.ones(1, 1, h, w, dtype=x.dtype)
        avg_of_ones = self._pool(ones)  # = (real elements in the window) / divisor
        oh, ow = int(avg_of_ones.shape[2]), int(avg_of_ones.shape[3])
        extra_h = max(0, (oh - 1) * self.s[0] + self.k[0] - (h + 2 * self.p[0]))
        extra_w = max(0, (ow - 1) * self.s[1] + self.k[1] - (w + 2 * self.p[1]))
        pad = (self.p[1], self.p[1] + extra_w, self.p[0], self.p[0] + extra_h)
        box = torch.ones(1, 1, *self.k, dtype=x.dtype)
        real = F.conv2d(F.pad(ones, pad), box, stride=self.s)  # real elements per window
        factor = torch.where(real > 0, avg_of_ones / real.clamp(min=1), torch.zeros_like(real))
        y = F.conv2d(F.pad(x, pad), box.expand(c, 1, *self.k), stride=self.s, groups=c)
        return y * factor


class DecomposedLayerNorm(nn.Module):
    """LayerNorm as mean / variance / scale ops, for TFLite only (same function up to float rounding).

    onnx2tf 1.29 fails on ONNX ``LayerNormalization`` after ConvNeXt's NCHW->NHWC permute
    ("Eager execution of tf.constant with unsupported shape" while building the Keras layer's
    initialisers). ``channels_first`` normalises dim 1 of an NCHW tensor (ConvNeXt's LayerNorm2d,
    without its two permutes); otherwise the trailing ``normalized_shape`` dims, as nn.LayerNorm.
    """

    def __init__(self, m: nn.LayerNorm, channels_first: bool | None = None) -> None:
        super().__init__()
        from edgecv.models.convnext import LayerNorm2d

        self.channels_first = isinstance(m, LayerNorm2d) if channels_first is None else channels_first
        self.dims = tuple(range(-len(m.normalized_shape), 0))
        self.eps, self.weight, self.bias = m.eps, m.weight, m.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = (1,) if self.channels_first else self.dims
        u = x.mean(dims, keepdim=True)
        d = x - u
        y = d / torch.sqrt((d * d).mean(dims, keepdim=True) + self.eps)
        w, b = self.weight, self.bias
        if self.channels_first and w is not None:
            w, b = w[:, None, None], (b[:, None, None] if b is not None else None)
        y = y * w if w is not None else y
        return y + b if b is not None else y


class ConvCNBlock(nn.Module):
    """ConvNeXt's block without its NCHW<->NHWC permutes, for TFLite only: LayerNorm over
    channels, the two Linear layers as 1x1 convs (same weights). With the permutes onnx2tf loses
    the layout and broadcasts the (C, 1, 1) layer scale over the wrong axis."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        dw, _, ln, fc1, act, fc2, _ = m.block
        self.dw, self.ln, self.act = dw, DecomposedLayerNorm(ln, channels_first=True), act
        self.pw1, self.pw2 = (nn.Conv2d(fc.in_features, fc.out_features, 1) for fc in (fc1, fc2))
        with torch.no_grad():
            for conv, fc in ((self.pw1, fc1), (self.pw2, fc2)):
                conv.weight.copy_(fc.weight[:, :, None, None])
                conv.bias.copy_(fc.bias)
        self.layer_scale = m.layer_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # eval: stochastic depth is the identity
        return x + self.layer_scale * self.pw2(self.act(self.pw1(self.ln(self.dw(x)))))


class PolyErfGELU(nn.Module):
    """Exact (erf) GELU for TFLite builds that have no Erf op: erf from Abramowitz & Stegun 7.1.26
    (|error| <= 1.5e-7), built from abs/exp/mul/add/div, all TFLite builtins. onnx2tf turns ONNX's
    Erf into tf.Erf, which the TFLite converter refuses ("neither a custom op nor a flex op")."""

    P, A = 0.3275911, (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)

    def __init__(self, m: nn.Module | None = None) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x * 0.7071067811865476  # x / sqrt(2)
        a = torch.abs(z)
        t = 1.0 / (1.0 + self.P * a)
        poly = t * (self.A[0] + t * (self.A[1] + t * (self.A[2] + t * (self.A[3] + t * self.A[4]))))
        erf_abs = 1.0 - poly * torch.exp(-a * a)
        # 0.5 * x * (1 + erf(z)) with erf odd: 0.5 * (x + |x| * erf(|z|))
        return 0.5 * (x + torch.abs(x) * erf_abs)


class SplitGroupConv(nn.Module):
    """A grouped 1x1 conv (ShuffleNet v1) as split -> one conv per group -> concat, for TFLite only.

    onnx2tf builds ShuffleNet v1 g2/g4's grouped pointwise convs on small maps as a wrongly shaped
    tensor ([1, 2, 2, 20000] for 200 -> 100 channels, groups 2) and then cannot add the bias;
    per-group convs are plain CONV_2D ops. Same weights, same function."""

    def __init__(self, m: nn.Conv2d) -> None:
        super().__init__()
        g, cin, cout = m.groups, m.in_channels // m.groups, m.out_channels // m.groups
        self.split = cin
        self.convs = nn.ModuleList(nn.Conv2d(cin, cout, m.kernel_size, m.stride, m.padding, m.dilation,
                                             bias=m.bias is not None) for _ in range(g))
        with torch.no_grad():
            for i, conv in enumerate(self.convs):
                conv.weight.copy_(m.weight[i * cout:(i + 1) * cout])
                if m.bias is not None:
                    conv.bias.copy_(m.bias[i * cout:(i + 1) * cout])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([conv(part) for conv, part in zip(self.convs, torch.split(x, self.split, dim=1))], dim=1)


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


Rule = tuple[Callable[[nn.Module], bool], Callable[[nn.Module], nn.Module]]  # (which instances, replacement)


def _rules(fmt: str, precision: str) -> dict[type, Rule]:
    """module type -> (which instances to rewrite, replacement) for this format and precision."""
    from edgecv.models.convnext import CNBlock, LayerNorm2d
    from edgecv.models.resnet_cifar import PadShortcut

    every = lambda m: True  # noqa: E731
    rules = {PadShortcut: (every, PoolPadShortcut), nn.AdaptiveAvgPool2d: (every, MatmulAdaptiveAvgPool)}
    if fmt == "tflite":
        rules.update({
            nn.Hardsigmoid: (every, Relu6Hardsigmoid),
            nn.LayerNorm: (every, DecomposedLayerNorm), LayerNorm2d: (every, DecomposedLayerNorm),
            CNBlock: (every, ConvCNBlock),
            nn.GELU: (lambda m: m.approximate == "none", PolyErfGELU),
            nn.AvgPool2d: (_pads, ConvAvgPool),
            nn.Conv2d: (_grouped_pointwise, SplitGroupConv),
        })
        if precision == "int8":
            rules[nn.Hardswish] = (every, Relu6Hardswish)
    return rules


def for_export(model: nn.Module, *, fmt: str = "onnx", precision: str = "fp32") -> nn.Module:
    """A copy of ``model`` with export-friendly equivalents swapped in (the input is untouched).

    Every format: the rewrites in the first paragraph of the module doc; TFLite also the
    XNNPACK and onnx2tf ones (hard-swish only for int8).
    """
    rules = _rules(fmt, precision)

    def replacement(m: nn.Module) -> Callable[[nn.Module], nn.Module] | None:
        rule = rules.get(type(m))
        return rule[1] if rule is not None and rule[0](m) else None

    if not any(replacement(m) for m in model.modules()):
        return model
    model = copy.deepcopy(model)
    while any(replacement(m) for m in model.modules()):  # again: a replacement may hold swappable modules
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                new = replacement(child)
                if new is not None:
                    setattr(parent, name, new(child))
    return model.eval()


def _pads(m: nn.AvgPool2d) -> bool:
    """Average pooling that looks past the input: padding or ceil_mode (see ConvAvgPool)."""
    p = m.padding if isinstance(m.padding, (tuple, list)) else (m.padding,)
    return any(v for v in p) or bool(m.ceil_mode)


def _grouped_pointwise(m: nn.Module) -> bool:
    """A 1x1 conv with groups that is not depthwise (see SplitGroupConv)."""
    return type(m) is nn.Conv2d and 1 < m.groups < m.in_channels and tuple(m.kernel_size) == (1, 1)
