"""Blocks shared by several families.

They keep torchvision's state_dict layout (``ConvBnAct`` is a Sequential ``0=conv,
1=bn, 2=act`` like ``torchvision.ops.Conv2dNormActivation``; ``SqueezeExcitation`` has
``fc1``/``fc2``) and route residual adds and concats through small modules (``Add``,
``Concat``) so that quantizers and pruners see them as modules, with no parallel
"quantizable" copies of the models.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

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


class ConvBnAct(nn.Sequential):
    """Conv2d -> BatchNorm2d -> activation, named 0/1/2 like torchvision's Conv2dNormActivation.

    ``padding=None`` gives "same" padding for odd kernels; ``act=None`` drops the
    activation (the module then has only 0 and 1); ``bn=False`` gives conv (+bias) -> act.
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
    ) -> None:
        if padding is None:
            kk = (k, k) if isinstance(k, int) else k
            padding = tuple((x - 1) // 2 * dilation for x in kk)
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, k, s, padding, dilation=dilation, groups=groups, bias=not bn)
        ]
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
