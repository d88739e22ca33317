"""Blocks shared by several families.

They keep torchvision's state_dict layout (``ConvBnAct`` is a Sequential ``0=conv,
1=bn, 2=act`` like ``torchvision.ops.Conv2dNormActivation``; ``SqueezeExcitation`` has
``fc1``/``fc2``) and route residual adds and concats through small modules (``Add``,
``Concat``) so that quantizers and pruners see them as modules, with no parallel
"quantizable" copies of the models.

TensorFlow-trained weights need TensorFlow's ``padding="SAME"``: ``out = ceil(in / s)`` and
``pad = max((out - 1) * s + k_eff - in, 0)`` split with the smaller half first (top/left), a
function of the input size. :class:`Conv2dSame` computes it from each input's H and W
(``ConvBnAct(..., tf_same=True)``); it is an ``nn.Conv2d`` with ``padding=0``, so its
parameters and state_dict names are the plain conv's.
"""
from __future__ import annotations

from collections.abc import Callable

import math
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "RE": lambda: nn.ReLU(inplace=True),
    "RE6": lambda: nn.ReLU6(inplace=True),
    "HS": lambda: nn.Hardswish(inplace=True),
    "SI": lambda: nn.SiLU(inplace=True),  # swish
    "GE": lambda: nn.GELU(),
    "NONE": lambda: nn.Identity(),
}


def make_act(name: str | None) -> nn.Module:
    """Activation by the short names the papers' tables use (RE, RE6, HS, SI, GE)."""
    if name is None:
        return nn.Identity()
    return ACTIVATIONS[name]()


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of ``divisor`` without going below 90% of ``v``
    (the rule of the MobileNet/EfficientNet reference code)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def tf_same_pad(size: int, k: int, s: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding of one spatial side for TensorFlow's ``padding="SAME"``."""
    k_eff = (k - 1) * dilation + 1
    total = max((math.ceil(size / s) - 1) * s + k_eff - size, 0)
    return total // 2, total - total // 2


class _ConstantPad(torch.autograd.Function):
    """Zero padding that the legacy ONNX exporter writes as one ``Pad`` with a constant ``pads``
    initializer (``F.pad``'s own symbolic builds the pads through a Concat/Slice/Transpose
    subgraph that constant folding leaves in place)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:  # type: ignore[override]
        return F.pad(x, pad)

    @staticmethod
    def symbolic(g, x, pad: tuple[int, int, int, int]):  # pragma: no cover - called by torch.onnx only
        left, right, top, bottom = pad
        pads = torch.tensor([0, 0, top, left, 0, 0, bottom, right], dtype=torch.int64)
        return g.op("Pad", x, g.op("Constant", value_t=pads), mode_s="constant")


def _static_hw(x: torch.Tensor) -> tuple[int, int]:
    """H and W as Python ints; while tracing (ONNX export at a fixed size) they become constants."""
    if torch.jit.is_tracing():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return int(x.shape[-2]), int(x.shape[-1])
    return int(x.shape[-2]), int(x.shape[-1])


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding computed from the input's H and W at forward.

    Exact at any input size (stride-2 convs pad less on the top/left than on the bottom/right
    where the total is odd). The pad is a plain ``F.pad``: with a fixed input size the ONNX
    exporter writes it as one ``Pad`` with constant pads (:class:`_ConstantPad`). No parameters
    beyond the conv's, so the state_dict equals ``nn.Conv2d``'s.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs["padding"] = 0
        super().__init__(*args, **kwargs)

    def same_pad(self, h: int, w: int) -> tuple[int, int, int, int]:
        """``F.pad`` order (left, right, top, bottom) for an ``h`` x ``w`` input."""
        top, bottom = tf_same_pad(h, self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = tf_same_pad(w, self.kernel_size[1], self.stride[1], self.dilation[1])
        return left, right, top, bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.same_pad(*_static_hw(x))
        if any(pad):
            x = _ConstantPad.apply(x, pad) if torch.onnx.is_in_onnx_export() else F.pad(x, pad)
        return super().forward(x)


class ConvBnAct(nn.Sequential):
    """Conv2d -> BatchNorm2d -> activation, named 0/1/2 like torchvision's Conv2dNormActivation.

    ``padding=None`` gives "same" padding for odd kernels; ``act=None`` drops the
    activation (the module then has only 0 and 1); ``bn=False`` gives conv (+bias) -> act.
    ``tf_same=True`` pads strided convs like TensorFlow (:class:`Conv2dSame`; stride-1 convs
    with odd kernels are symmetric there already and stay plain ``nn.Conv2d``).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        k: int | tuple[int, int] = 3,
        s: int = 1,
        *,
        groups: int = 1,
        padding: int | tuple[int, int] | None = None,
        dilation: int = 1,
        act: str | None = "RE",
        bn: bool = True,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
        tf_same: bool = False,
    ) -> None:
        kk = (k, k) if isinstance(k, int) else k
        conv: nn.Conv2d
        if tf_same and (s != 1 or any(x % 2 == 0 for x in kk)):
            if padding is not None:
                raise ValueError("tf_same=True computes the padding; do not pass padding")
            conv = Conv2dSame(in_ch, out_ch, k, s, dilation=dilation, groups=groups, bias=not bn)
        else:
            if padding is None:
                padding = tuple((x - 1) // 2 * dilation for x in kk)
            conv = nn.Conv2d(in_ch, out_ch, k, s, padding, dilation=dilation, groups=groups, bias=not bn)
        layers: list[nn.Module] = [conv]
        if bn:
            layers.append(nn.BatchNorm2d(out_ch, eps=bn_eps, momentum=bn_momentum))
        if act is not None:
            layers.append(make_act(act))
        super().__init__(*layers)
        self.out_channels = out_ch


class SqueezeExcitation(nn.Module):
    """Squeeze-and-Excitation (Hu et al. 2018) with torchvision's names (fc1, fc2).

    ``act``/``gate`` default to ReLU / sigmoid; MobileNetV3 uses ReLU / hard-sigmoid.
    """

    def __init__(self, channels: int, squeeze: int, act: str = "RE", gate: str = "sigmoid") -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = make_act(act)
        self.scale_activation = nn.Hardsigmoid() if gate == "hardsigmoid" else nn.Sigmoid()
        self.mul = Mul()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return self.mul(x, s)


class Add(nn.Module):
    """Residual add as a module, so quantizers can observe/fuse it."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class Mul(nn.Module):
    """Elementwise product as a module (SE gating)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * b


class Concat(nn.Module):
    """Channel concatenation as a module (Inception, DenseNet, Fire, ShuffleNet)."""

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, self.dim)


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle: (N, g*c, H, W) -> transpose groups -> flatten."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class StochasticDepth(nn.Module):
    """Drop a residual branch per sample with probability ``p`` while training
    (Huang et al. 2016); identity at eval. Same behaviour as torchvision.ops.StochasticDepth("row")."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


def init_weights(model: nn.Module) -> None:
    """The common default: Kaiming-normal (fan_out) convs, unit BN, small-normal linears."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
