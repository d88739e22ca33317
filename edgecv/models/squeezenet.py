"""SqueezeNet (Iandola, Han, Moskewicz, Ashraf, Dally, Keutzer 2016, arXiv:1602.07360).

AlexNet-level accuracy with 1.25M parameters from three ideas: 1x1 filters instead of
3x3, few input channels to the 3x3 filters (the Fire module: a 1x1 "squeeze" layer
feeding concatenated 1x1 and 3x3 "expand" layers) and late downsampling.

The layer tables below read like the paper's Table 1 (v1.0) and the v1.1 layout of the
reference repository. Module names and shapes are torchvision's (``features.N`` with
``squeeze`` / ``expand1x1`` / ``expand3x3`` in each Fire; ``classifier.1`` is the final
1x1 conv), so torchvision checkpoints load with ``strict=True``.

Section 6 / Figure 2 of the paper add ResNet-style bypasses: *simple* bypass puts an
identity shortcut around the Fire modules whose input and output widths agree (fire3,
fire5, fire7, fire9), adding no parameters; *complex* bypass additionally puts a 1x1 conv
(with bias, no activation) around the others (fire2, fire4, fire6, fire8). The shortcut
is added to the Fire output (after its ReLUs), with no activation after the add.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Union

import torch
import torch.nn as nn

from edgecv.models._blocks import Add, Concat
from edgecv.models._registry import MODELS, register_model

_PAPER = "Iandola et al. 2016, arXiv:1602.07360"
Bypass = Literal["none", "simple", "complex"]


@dataclass(frozen=True)
class Conv:
    """Plain conv + ReLU (conv1 of the paper; no batch norm in SqueezeNet)."""

    out: int
    k: int
    s: int = 1


@dataclass(frozen=True)
class Pool:
    """Max pool 3x3 / 2 with ceil mode (Caffe's rounding, as torchvision)."""

    k: int = 3
    s: int = 2


@dataclass(frozen=True)
class Fire:
    """Fire module: squeeze 1x1 (``squeeze`` filters) -> [expand 1x1 | expand 3x3]."""

    squeeze: int
    e1x1: int
    e3x3: int


Row = Union[Conv, Pool, Fire]

# Table 1 of the paper (conv1, maxpool1, fire2-4, maxpool4, fire5-8, maxpool8, fire9).
SQUEEZENET_1_0: tuple[Row, ...] = (
    Conv(out=96, k=7, s=2),
    Pool(),
    Fire(squeeze=16, e1x1=64, e3x3=64),  # fire2
    Fire(squeeze=16, e1x1=64, e3x3=64),  # fire3
    Fire(squeeze=32, e1x1=128, e3x3=128),  # fire4
    Pool(),
    Fire(squeeze=32, e1x1=128, e3x3=128),  # fire5
    Fire(squeeze=48, e1x1=192, e3x3=192),  # fire6
    Fire(squeeze=48, e1x1=192, e3x3=192),  # fire7
    Fire(squeeze=64, e1x1=256, e3x3=256),  # fire8
    Pool(),
    Fire(squeeze=64, e1x1=256, e3x3=256),  # fire9
)

# v1.1 (reference repository): 3x3/64 conv1 and earlier pooling; 2.4x fewer MACs.
SQUEEZENET_1_1: tuple[Row, ...] = (
    Conv(out=64, k=3, s=2),
    Pool(),
    Fire(squeeze=16, e1x1=64, e3x3=64),
    Fire(squeeze=16, e1x1=64, e3x3=64),
    Pool(),
    Fire(squeeze=32, e1x1=128, e3x3=128),
    Fire(squeeze=32, e1x1=128, e3x3=128),
    Pool(),
    Fire(squeeze=48, e1x1=192, e3x3=192),
    Fire(squeeze=48, e1x1=192, e3x3=192),
    Fire(squeeze=64, e1x1=256, e3x3=256),
    Fire(squeeze=64, e1x1=256, e3x3=256),
)


class FireModule(nn.Module):
    """Fire module with torchvision's names, an optional bypass (identity or 1x1 conv)."""

    def __init__(self, in_ch: int, cfg: Fire, bypass: Bypass = "none") -> None:
        super().__init__()
        out_ch = cfg.e1x1 + cfg.e3x3
        self.squeeze = nn.Conv2d(in_ch, cfg.squeeze, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(cfg.squeeze, cfg.e1x1, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(cfg.squeeze, cfg.e3x3, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)
        self.cat = Concat()
        self.bypass: nn.Module | None = None
        if bypass != "none" and in_ch == out_ch:
            self.bypass = nn.Identity()
        elif bypass == "complex":
            self.bypass = nn.Conv2d(in_ch, out_ch, kernel_size=1)
        self.add = Add() if self.bypass is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze_activation(self.squeeze(x))
        out = self.cat([self.expand1x1_activation(self.expand1x1(s)), self.expand3x3_activation(self.expand3x3(s))])
        if self.bypass is not None and self.add is not None:
            out = self.add(out, self.bypass(x))
        return out


class SqueezeNet(nn.Module):
    """SqueezeNet built from a layer table; the classifier is dropout -> 1x1 conv -> ReLU -> global pool."""

    def __init__(
        self,
        table: tuple[Row, ...],
        num_classes: int = 1000,
        *,
        in_channels: int = 3,
        dropout: float = 0.5,
        bypass: Bypass = "none",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_channels
        for row in table:
            if isinstance(row, Conv):
                layers += [nn.Conv2d(ch, row.out, row.k, row.s), nn.ReLU(inplace=True)]
                ch = row.out
            elif isinstance(row, Pool):
                layers.append(nn.MaxPool2d(row.k, row.s, ceil_mode=True))
            else:
                layers.append(FireModule(ch, row, bypass))
                ch = row.e1x1 + row.e3x3
        self.features = nn.Sequential(*layers)
        final_conv = nn.Conv2d(ch, num_classes, kernel_size=1)  # conv10
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1)
        )
        # torchvision's init: Kaiming-uniform convs, small-normal final conv, zero biases.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is final_conv:
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


_COMMON: dict[str, Any] = dict(family="squeezenet", paper=_PAPER, small_input=(3, 32, 32))


@register_model(torchvision=True, **_COMMON)
def squeezenet1_0(*, num_classes: int = 1000, **kw: Any) -> SqueezeNet:
    """SqueezeNet v1.0 (paper Table 1): 1.25M params, 0.82G MACs at 224; torchvision layout."""
    return SqueezeNet(SQUEEZENET_1_0, num_classes, **kw)


MODELS.alias("squeezenet", "squeezenet1_0")


@register_model(torchvision=True, **_COMMON)
def squeezenet1_1(*, num_classes: int = 1000, **kw: Any) -> SqueezeNet:
    """SqueezeNet v1.1: same accuracy as v1.0 with 1.24M params and 0.35G MACs; torchvision layout."""
    return SqueezeNet(SQUEEZENET_1_1, num_classes, **kw)


@register_model(**_COMMON)
def squeezenet1_0_simple_bypass(*, num_classes: int = 1000, **kw: Any) -> SqueezeNet:
    """SqueezeNet v1.0 with simple bypass (paper Figure 2 middle): identity shortcuts around
    fire3/5/7/9. Same 1.25M params and state_dict keys as ``squeezenet1_0``."""
    return SqueezeNet(SQUEEZENET_1_0, num_classes, bypass="simple", **kw)


@register_model(**_COMMON)
def squeezenet1_0_complex_bypass(*, num_classes: int = 1000, **kw: Any) -> SqueezeNet:
    """SqueezeNet v1.0 with complex bypass (paper Figure 2 right): identity shortcuts around
    fire3/5/7/9 and 1x1-conv shortcuts around fire2/4/6/8 (+0.34M params, 1.59M in all; 1.17G MACs)."""
    return SqueezeNet(SQUEEZENET_1_0, num_classes, bypass="complex", **kw)
