"""MnasNet (Tan, Chen, Pang, Vasudevan, Sandler, Howard, Le 2018, arXiv:1807.11626).

Platform-aware neural architecture search: an RL controller searches a factorized
hierarchical space (per-stage op, kernel, expansion, SE, repeats) with a reward that
multiplies accuracy by (measured phone latency / target)^w.

Which variant this code follows: **MnasNet-B1**, the one torchvision implements and
ships weights for. The paper's headline model MnasNet-A1 (Figure 7; 3.9M params, 312M
MACs) uses squeeze-and-excitation in three stages and different kernels/expansions
(16-24x2-40x3 SE-80x4-112x2 SE-160x3 SE-320); B1 is the search result without SE
(reference TF code ``mnasnet_b1``), and its stage table below reads
32-16-24x3-40x3-80x3-96x2-192x4-320. We follow B1 so that module names and shapes are
identical to torchvision's (``layers.N`` flat stem/head, ``layers.8-13`` stacks of blocks
each with a flat ``layers`` Sequential, ``classifier.1`` linear) and torchvision
checkpoints load with ``strict=True``: mnasnet1_0 has 4.4M params, 0.31G MACs.

Width multiplier ``alpha`` scales every width except the 1280-wide head, rounding to a
multiple of 8 (never more than 10% down) like torchvision's "version 2" MNASNet.
Batch-norm momentum defaults to torchvision's 0.0003 (its reading of TF's 0.9997); pass
``bn_momentum=0.1`` for short trainings, where running stats would otherwise lag.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import torch
import torch.nn as nn

from edgecv.models._blocks import Add, make_divisible
from edgecv.models._registry import register_model

_PAPER = "Tan et al. 2018, arXiv:1807.11626"
_BN_MOMENTUM = 1 - 0.9997  # torchvision's default


@dataclass(frozen=True)
class Conv:
    """Regular conv-BN-ReLU; ``scale=False`` keeps the width fixed under ``alpha``."""

    out: int
    k: int
    s: int = 1
    scale: bool = True


@dataclass(frozen=True)
class SepConv:
    """Depthwise-separable conv (DW kxk-BN-ReLU -> 1x1-BN, linear output), no skip."""

    out: int
    k: int = 3


@dataclass(frozen=True)
class MBConv:
    """A stage of ``n`` inverted-residual blocks (1x1 expand ``e``x -> DW kxk -> linear 1x1);
    only the first has stride ``s``; identity skip where shapes allow."""

    e: int
    k: int
    s: int
    out: int
    n: int


Row = Union[Conv, SepConv, MBConv]

# MnasNet-B1 (torchvision's mnasnet*).
MNASNET_B1: tuple[Row, ...] = (
    Conv(out=32, k=3, s=2),  # 224 -> 112
    SepConv(out=16, k=3),
    MBConv(e=3, k=3, s=2, out=24, n=3),  # -> 56
    MBConv(e=3, k=5, s=2, out=40, n=3),  # -> 28
    MBConv(e=6, k=5, s=2, out=80, n=3),  # -> 14
    MBConv(e=6, k=3, s=1, out=96, n=2),
    MBConv(e=6, k=5, s=2, out=192, n=4),  # -> 7
    MBConv(e=6, k=3, s=1, out=320, n=1),
    Conv(out=1280, k=1, scale=False),
)


class InvertedResidual(nn.Module):
    """MBConv block with torchvision's flat ``layers`` Sequential (0-2 expand, 3-5 DW, 6-7 project)."""

    def __init__(self, in_ch: int, out_ch: int, k: int, stride: int, expand: int, bn_momentum: float) -> None:
        super().__init__()
        mid = in_ch * expand
        self.layers = nn.Sequential(
            nn.Conv2d(in_ch, mid, 1, bias=False),
            nn.BatchNorm2d(mid, momentum=bn_momentum),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False),
            nn.BatchNorm2d(mid, momentum=bn_momentum),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch, momentum=bn_momentum),
        )
        self.add = Add() if in_ch == out_ch and stride == 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layers(x)
        return self.add(y, x) if self.add is not None else y


class MNASNet(nn.Module):
    """MnasNet built from a stage table with width multiplier ``alpha``."""

    def __init__(
        self,
        alpha: float = 1.0,
        num_classes: int = 1000,
        *,
        table: tuple[Row, ...] = MNASNET_B1,
        in_channels: int = 3,
        dropout: float = 0.2,
        bn_momentum: float = _BN_MOMENTUM,
    ) -> None:
        super().__init__()
        if alpha <= 0.0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.alpha = alpha

        def bn(c: int) -> nn.BatchNorm2d:
            return nn.BatchNorm2d(c, momentum=bn_momentum)

        layers: list[nn.Module] = []
        ch = in_channels
        for row in table:
            if isinstance(row, Conv):
                out = make_divisible(row.out * alpha, 8) if row.scale else row.out
                layers += [nn.Conv2d(ch, out, row.k, row.s, row.k // 2, bias=False), bn(out), nn.ReLU(inplace=True)]
            elif isinstance(row, SepConv):
                out = make_divisible(row.out * alpha, 8)
                layers += [
                    nn.Conv2d(ch, ch, row.k, 1, row.k // 2, groups=ch, bias=False),
                    bn(ch),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(ch, out, 1, bias=False),
                    bn(out),
                ]
            else:
                out = make_divisible(row.out * alpha, 8)
                blocks = [InvertedResidual(ch, out, row.k, row.s, row.e, bn_momentum)]
                blocks += [InvertedResidual(out, out, row.k, 1, row.e, bn_momentum) for _ in range(row.n - 1)]
                layers.append(nn.Sequential(*blocks))
            ch = out
        self.layers = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(ch, num_classes))

        # torchvision's init.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, mode="fan_out", nonlinearity="sigmoid")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.layers(x)), 1))


_COMMON: dict[str, Any] = dict(family="mnasnet", paper=_PAPER, small_input=(3, 32, 32), torchvision=True)


@register_model(**_COMMON)
def mnasnet0_5(*, num_classes: int = 1000, **kw: Any) -> MNASNet:
    """MnasNet-B1 with width multiplier 0.5 (2.2M params, 0.10G MACs)."""
    return MNASNet(0.5, num_classes, **kw)


@register_model(**_COMMON)
def mnasnet0_75(*, num_classes: int = 1000, **kw: Any) -> MNASNet:
    """MnasNet-B1 with width multiplier 0.75 (3.2M params, 0.22G MACs)."""
    return MNASNet(0.75, num_classes, **kw)


@register_model(**_COMMON)
def mnasnet1_0(*, num_classes: int = 1000, **kw: Any) -> MNASNet:
    """MnasNet-B1 1.0 (4.4M params, 0.31G MACs; the paper's SE-using A1 is 3.9M / 312M)."""
    return MNASNet(1.0, num_classes, **kw)


@register_model(**_COMMON)
def mnasnet1_3(*, num_classes: int = 1000, **kw: Any) -> MNASNet:
    """MnasNet-B1 with width multiplier 1.3 (6.3M params, 0.53G MACs)."""
    return MNASNet(1.3, num_classes, **kw)
