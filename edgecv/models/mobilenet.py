"""MobileNet v1 and v2, each built from its paper's architecture table.

- v1: Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for
  Mobile Vision Applications", arXiv:1704.04861 (Table 1; width multiplier Table 6).
- v2: Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
  arXiv:1801.04381 (Tables 1 and 2).

MobileNet v3 is in :mod:`edgecv.models.mobilenet_v3`. v2 keeps torchvision's module
names and shapes, so torchvision checkpoints load with ``strict=True``; v1 has no
torchvision counterpart. Both end in a global average pool, so any input resolution
(and CIFAR-sized inputs) works.

``tf_same_padding=True`` (both) pads the stride-2 convs like TensorFlow's ``padding="SAME"``,
computed from the input size (:class:`edgecv.models._blocks.Conv2dSame`; no parameters, the
state_dict is unchanged). Google's TensorFlow-trained MobileNets need it, and v1 also ReLU6
(``act="RE6"``): on the 1,000 ImageNet samples v1-0.25@128 scores 44.0% top-1 with both,
21.1% with PyTorch's symmetric padding (/work/shared/weights/imagenet-float sidecars).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

import torch
import torch.nn as nn

from edgecv.models._blocks import Add, ConvBnAct, init_weights, make_divisible
from edgecv.models._registry import register_model

_V1 = "Howard et al. 2017, arXiv:1704.04861"
_V2 = "Sandler et al. 2018, arXiv:1801.04381"
_SMALL = (3, 32, 32)


class _Classifier(nn.Module):
    """Shared forward: features -> global average pool -> flatten -> classifier."""

    features: nn.Sequential
    classifier: nn.Sequential

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# --------------------------------------------------------------------------- v1


class DwSep(NamedTuple):
    """A row of v1 Table 1: 3x3 depthwise conv (stride ``s``) then 1x1 conv to ``out``
    channels, each with BN + ReLU; repeated ``n`` times (Table 1's "5x" row)."""

    out: int
    s: int
    n: int = 1


V1_STEM = 32  # Table 1 row 1: Conv / s2, 3x3x3x32
MOBILENET_V1: tuple[DwSep, ...] = (
    DwSep(out=64, s=1),
    DwSep(out=128, s=2),
    DwSep(out=128, s=1),
    DwSep(out=256, s=2),
    DwSep(out=256, s=1),
    DwSep(out=512, s=2),
    DwSep(out=512, s=1, n=5),
    DwSep(out=1024, s=2),
    DwSep(out=1024, s=1),  # Table 1 prints "s2", a typo: its input and output are both 7x7
)


class DepthwiseSeparable(nn.Sequential):
    """Depthwise 3x3 (``dw``) + pointwise 1x1 (``pw``), each a fusible Conv-BN-Act."""

    def __init__(self, in_ch: int, out_ch: int, s: int, act: str, tf_same: bool = False) -> None:
        super().__init__(
            OrderedDict(
                dw=ConvBnAct(in_ch, in_ch, 3, s, groups=in_ch, act=act, tf_same=tf_same),
                pw=ConvBnAct(in_ch, out_ch, 1, act=act),
            )
        )
        self.out_channels = out_ch


class MobileNetV1(_Classifier):
    """MobileNet v1 from a table of :class:`DwSep` rows.

    Channels are ``max(8, int(c * width_mult))`` (the paper's alpha, with the reference
    code's floor of 8). ``act="RE"`` follows the paper; Google's TF/TFLite checkpoints
    use ReLU6 (``act="RE6"``), TensorFlow padding (``tf_same_padding=True``) and 1001 classes
    (background first).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        *,
        table: tuple[DwSep, ...] = MOBILENET_V1,
        act: str = "RE",
        dropout: float = 0.0,
        tf_same_padding: bool = False,
    ) -> None:
        super().__init__()

        def ch(c: int) -> int:
            return max(8, int(c * width_mult))

        c_in = ch(V1_STEM)
        layers: list[nn.Module] = [ConvBnAct(3, c_in, 3, 2, act=act, tf_same=tf_same_padding)]
        for row in table:
            for i in range(row.n):
                layers.append(DepthwiseSeparable(c_in, ch(row.out), row.s if i == 0 else 1, act, tf_same_padding))
                c_in = ch(row.out)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(c_in, num_classes))
        init_weights(self)


# --------------------------------------------------------------------------- v2


class IR(NamedTuple):
    """A row of v2 Table 2: ``n`` inverted-residual bottlenecks with expansion ``t`` and
    ``c`` output channels; the first has stride ``s``, the others stride 1."""

    t: int
    c: int
    n: int
    s: int


V2_STEM, V2_LAST = 32, 1280  # Table 2: conv2d 3x3 s2 to 32; conv2d 1x1 to 1280
MOBILENET_V2: tuple[IR, ...] = (
    IR(t=1, c=16, n=1, s=1),
    IR(t=6, c=24, n=2, s=2),
    IR(t=6, c=32, n=3, s=2),
    IR(t=6, c=64, n=4, s=2),
    IR(t=6, c=96, n=3, s=1),
    IR(t=6, c=160, n=3, s=2),
    IR(t=6, c=320, n=1, s=1),
)


class InvertedResidual(nn.Module):
    """v2 Table 1: 1x1 expand (ReLU6, absent when t=1) -> 3x3 depthwise (ReLU6) -> linear
    1x1 projection; identity shortcut when the shapes allow. torchvision's layout:
    ``conv = [ConvBnAct(expand)], ConvBnAct(dw), Conv2d, BatchNorm2d``."""

    def __init__(self, in_ch: int, out_ch: int, s: int, t: int, tf_same: bool = False) -> None:
        super().__init__()
        hidden = int(round(in_ch * t))
        layers: list[nn.Module] = []
        if t != 1:
            layers.append(ConvBnAct(in_ch, hidden, 1, act="RE6"))
        layers += [
            ConvBnAct(hidden, hidden, 3, s, groups=hidden, act="RE6", tf_same=tf_same),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = s == 1 and in_ch == out_ch
        self.add = Add() if self.use_res_connect else None
        self.out_channels = out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.add(x, y) if self.add is not None else y


class MobileNetV2(_Classifier):
    """MobileNet v2 from a table of :class:`IR` rows (torchvision-compatible).

    Channels are ``make_divisible(c * width_mult, 8)``; the last conv keeps 1280
    channels for ``width_mult < 1`` (as in the paper and torchvision). ``tf_same_padding``:
    TensorFlow "SAME" padding for TF-trained weights (see the module docstring).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        *,
        table: tuple[IR, ...] = MOBILENET_V2,
        round_nearest: int = 8,
        dropout: float = 0.2,
        tf_same_padding: bool = False,
    ) -> None:
        super().__init__()
        c_in = make_divisible(V2_STEM * width_mult, round_nearest)
        last = make_divisible(V2_LAST * max(1.0, width_mult), round_nearest)
        layers: list[nn.Module] = [ConvBnAct(3, c_in, 3, 2, act="RE6", tf_same=tf_same_padding)]
        for row in table:
            c_out = make_divisible(row.c * width_mult, round_nearest)
            for i in range(row.n):
                layers.append(InvertedResidual(c_in, c_out, row.s if i == 0 else 1, row.t, tf_same_padding))
                c_in = c_out
        layers.append(ConvBnAct(c_in, last, 1, act="RE6"))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(last, num_classes))
        init_weights(self)


# --------------------------------------------------------------------------- builders


@register_model(family="mobilenet_v1", paper=_V1, small_input=_SMALL)
def mobilenet_v1(*, num_classes: int = 1000, width_mult: float = 1.0, **kw: Any) -> MobileNetV1:
    """MobileNet v1 1.0-224: 4.23M params, 569M MACs (paper: 4.2M, 569M). At 192/160/128
    pixels: 418M/291M/186M MACs (paper Table 7: 418M/290M/186M)."""
    return MobileNetV1(num_classes, width_mult, **kw)


@register_model(family="mobilenet_v1", paper=_V1, small_input=_SMALL)
def mobilenet_v1_075(*, num_classes: int = 1000, width_mult: float = 0.75, **kw: Any) -> MobileNetV1:
    """MobileNet v1 0.75-224: 2.59M params, 325M MACs (paper: 2.6M, 325M)."""
    return MobileNetV1(num_classes, width_mult, **kw)


@register_model(family="mobilenet_v1", paper=_V1, small_input=_SMALL)
def mobilenet_v1_050(*, num_classes: int = 1000, width_mult: float = 0.5, **kw: Any) -> MobileNetV1:
    """MobileNet v1 0.5-224: 1.33M params, 149M MACs (paper: 1.3M, 149M)."""
    return MobileNetV1(num_classes, width_mult, **kw)


@register_model(family="mobilenet_v1", paper=_V1, small_input=_SMALL)
def mobilenet_v1_025(*, num_classes: int = 1000, width_mult: float = 0.25, **kw: Any) -> MobileNetV1:
    """MobileNet v1 0.25-224: 0.47M params, 41M MACs (paper: 0.5M, 41M)."""
    return MobileNetV1(num_classes, width_mult, **kw)


@register_model(family="mobilenet_v2", paper=_V2, small_input=_SMALL, torchvision=True)
def mobilenet_v2(*, num_classes: int = 1000, width_mult: float = 1.0, **kw: Any) -> MobileNetV2:
    """MobileNet v2 1.0-224 (= torchvision ``mobilenet_v2``): 3.50M params, 301M MACs.
    The paper's "3.4M" is a truncated figure for the same network; 300M MACs."""
    return MobileNetV2(num_classes, width_mult, **kw)


@register_model(family="mobilenet_v2", paper=_V2, small_input=_SMALL, torchvision=True)
def mobilenet_v2_035(*, num_classes: int = 1000, width_mult: float = 0.35, **kw: Any) -> MobileNetV2:
    """MobileNet v2 0.35-224 (torchvision ``mobilenet_v2(width_mult=0.35)``): 1.68M params,
    59.3M MACs (v3 paper Table 3: 1.6M, 59.2M). The last conv keeps 1280 channels."""
    return MobileNetV2(num_classes, width_mult, **kw)


@register_model(family="mobilenet_v2", paper=_V2, small_input=_SMALL, torchvision=True)
def mobilenet_v2_140(*, num_classes: int = 1000, width_mult: float = 1.4, **kw: Any) -> MobileNetV2:
    """MobileNet v2 1.4-224 (torchvision ``mobilenet_v2(width_mult=1.4)``): 6.11M params,
    582M MACs. The paper's Table 4 says 6.9M / 585M, but its own Table 2 at width 1.4
    gives 6.1M, and Google's released-checkpoint table lists 6.06M / 582M."""
    return MobileNetV2(num_classes, width_mult, **kw)
