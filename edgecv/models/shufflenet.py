"""ShuffleNet v1 and v2.

* ShuffleNet v1: Zhang, Zhou, Lin, Sun 2017, arXiv:1707.01083. Pointwise *group*
  convolutions made cheap enough for tiny budgets, with a channel shuffle after the first
  group conv so information crosses groups. Unit (Figure 2 b/c): GConv1x1-BN-ReLU ->
  shuffle -> DWConv3x3(stride)-BN -> GConv1x1-BN, then add the input (stride 1) or
  concatenate a 3x3/2 average pool of it (stride 2), then ReLU. Bottleneck width is 1/4 of
  the unit's output; the first pointwise conv of stage 2 is not grouped (only 24 input
  channels). No torchvision model exists; names here are ``conv1``, ``maxpool``,
  ``stage2..4``, ``fc`` (as in v2) and per unit ``gconv1`` / ``dwconv`` / ``gconv2``
  (each a fusible ConvBnAct).
* ShuffleNet v2: Ma, Zhang, Zheng, Sun 2018, arXiv:1807.11164. Practical guidelines
  (equal widths, few groups, little fragmentation, few elementwise ops) lead to a
  channel-split unit: half the channels pass through, half go through 1x1-DW3x3-1x1, then
  concat and shuffle. Module names/shapes are torchvision's (flat ``branch1`` /
  ``branch2`` Sequentials), so torchvision checkpoints load with ``strict=True``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from edgecv.models._blocks import Add, ChannelShuffle, Concat, ConvBnAct, init_weights, make_divisible
from edgecv.models._registry import register_model

_PAPER_V1 = "Zhang et al. 2017, arXiv:1707.01083"
_PAPER_V2 = "Ma et al. 2018, arXiv:1807.11164"


@dataclass(frozen=True)
class Stage:
    """One stage of the paper's table: ``repeats`` units, the first with stride 2."""

    out: int
    repeats: int


# ----------------------------------------------------------------------------- v1
# Table 1 of the v1 paper (complexity 1x): output channels of stages 2/3/4 per group count.
V1_STAGES: dict[int, tuple[Stage, ...]] = {
    1: (Stage(out=144, repeats=4), Stage(out=288, repeats=8), Stage(out=576, repeats=4)),
    2: (Stage(out=200, repeats=4), Stage(out=400, repeats=8), Stage(out=800, repeats=4)),
    3: (Stage(out=240, repeats=4), Stage(out=480, repeats=8), Stage(out=960, repeats=4)),
    4: (Stage(out=272, repeats=4), Stage(out=544, repeats=8), Stage(out=1088, repeats=4)),
    8: (Stage(out=384, repeats=4), Stage(out=768, repeats=8), Stage(out=1536, repeats=4)),
}
V1_STEM = 24  # conv1: 3x3/2, 24 filters, then max pool 3x3/2


class ShuffleUnitV1(nn.Module):
    """ShuffleNet v1 unit (Figure 2 b: stride 1, residual add; c: stride 2, concat avg-pool)."""

    def __init__(self, in_ch: int, out_ch: int, mid_ch: int, groups: int, stride: int, group_first: bool) -> None:
        super().__init__()
        self.stride = stride
        branch_out = out_ch - in_ch if stride == 2 else out_ch
        if stride == 1 and in_ch != out_ch:
            raise ValueError(f"stride-1 ShuffleNet unit needs in == out channels, got {in_ch} -> {out_ch}")
        g1 = groups if group_first else 1
        self.gconv1 = ConvBnAct(in_ch, mid_ch, 1, groups=g1, act="RE")
        # A shuffle after an ungrouped conv is a fixed permutation: it is skipped there.
        self.shuffle = ChannelShuffle(groups) if g1 > 1 else nn.Identity()
        self.dwconv = ConvBnAct(mid_ch, mid_ch, 3, stride, groups=mid_ch, act=None)
        self.gconv2 = ConvBnAct(mid_ch, branch_out, 1, groups=groups, act=None)
        if stride == 2:
            self.shortcut: nn.Module = nn.AvgPool2d(3, 2, padding=1)
            self.merge: nn.Module = Concat()
        else:
            self.shortcut = nn.Identity()
            self.merge = Add()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gconv2(self.dwconv(self.shuffle(self.gconv1(x))))
        if self.stride == 2:
            return self.act(self.merge([self.shortcut(x), y]))  # concat
        return self.act(self.merge(self.shortcut(x), y))  # add


class ShuffleNetV1(nn.Module):
    """ShuffleNet v1 with ``groups`` in {1, 2, 3, 4, 8} and width multiplier ``width_mult``
    ("ShuffleNet s x" scales every layer's filters by s). Scaled stage widths are rounded to
    a multiple of 4*groups (so the bottleneck, 1/4 of it, splits into the groups) and the
    stem to a multiple of ``groups``; at 1x both roundings are no-ops."""

    def __init__(
        self,
        groups: int = 3,
        num_classes: int = 1000,
        *,
        width_mult: float = 1.0,
        in_channels: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if groups not in V1_STAGES:
            raise ValueError(f"ShuffleNet v1 groups must be one of {sorted(V1_STAGES)}, got {groups}")
        self.groups = groups
        stem = make_divisible(V1_STEM * width_mult, groups)
        self.conv1 = ConvBnAct(in_channels, stem, 3, 2, act="RE")
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        ch = stem
        for i, st in enumerate(V1_STAGES[groups]):
            out = make_divisible(st.out * width_mult, 4 * groups)
            units = []
            for j in range(st.repeats):
                units.append(
                    ShuffleUnitV1(ch, out, out // 4, groups, 2 if j == 0 else 1, group_first=not (i == 0 and j == 0))
                )
                ch = out
            self.add_module(f"stage{i + 2}", nn.Sequential(*units))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(ch, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


_V1: dict[str, Any] = dict(family="shufflenet_v1", paper=_PAPER_V1, small_input=(3, 32, 32))


@register_model(**_V1)
def shufflenet_v1_g1(*, num_classes: int = 1000, **kw: Any) -> ShuffleNetV1:
    """ShuffleNet v1 1x, g=1 (stages 144/288/576); ``width_mult`` scales it."""
    return ShuffleNetV1(1, num_classes, **kw)


@register_model(**_V1)
def shufflenet_v1_g2(*, num_classes: int = 1000, **kw: Any) -> ShuffleNetV1:
    """ShuffleNet v1 1x, g=2 (stages 200/400/800); ``width_mult`` scales it."""
    return ShuffleNetV1(2, num_classes, **kw)


@register_model(**_V1)
def shufflenet_v1_g3(*, num_classes: int = 1000, **kw: Any) -> ShuffleNetV1:
    """ShuffleNet v1 1x, g=3 (stages 240/480/960): the paper's main model, ~140M MACs, 1.9M
    params; ``width_mult=2.0`` gives "ShuffleNet 2x (g=3)"."""
    return ShuffleNetV1(3, num_classes, **kw)


@register_model(**_V1)
def shufflenet_v1_g4(*, num_classes: int = 1000, **kw: Any) -> ShuffleNetV1:
    """ShuffleNet v1 1x, g=4 (stages 272/544/1088); ``width_mult`` scales it."""
    return ShuffleNetV1(4, num_classes, **kw)


@register_model(**_V1)
def shufflenet_v1_g8(*, num_classes: int = 1000, **kw: Any) -> ShuffleNetV1:
    """ShuffleNet v1 1x, g=8 (stages 384/768/1536); ``width_mult`` scales it."""
    return ShuffleNetV1(8, num_classes, **kw)


# ----------------------------------------------------------------------------- v2
# Table 5 of the v2 paper: conv1 24, stages 2-4 (4/8/4 units), conv5 1x1.
@dataclass(frozen=True)
class V2Config:
    conv1: int
    stages: tuple[Stage, Stage, Stage]
    conv5: int


def _v2(c2: int, c3: int, c4: int, conv5: int) -> V2Config:
    return V2Config(24, (Stage(out=c2, repeats=4), Stage(out=c3, repeats=8), Stage(out=c4, repeats=4)), conv5)


V2_CONFIGS: dict[str, V2Config] = {
    "0.5x": _v2(48, 96, 192, 1024),
    "1.0x": _v2(116, 232, 464, 1024),
    "1.5x": _v2(176, 352, 704, 1024),
    "2.0x": _v2(244, 488, 976, 2048),
}


def _dw(ch: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(ch, ch, 3, stride, 1, groups=ch, bias=False)


def _pw(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, bias=False)


class ShuffleUnitV2(nn.Module):
    """ShuffleNet v2 unit (Figure 3 c: channel split, stride 1; d: both branches, stride 2),
    then concat and a 2-group channel shuffle. Names are torchvision's ``InvertedResidual``."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = out_ch // 2
        if stride == 1 and in_ch != 2 * half:
            raise ValueError(f"stride-1 ShuffleNet v2 unit needs in == out channels, got {in_ch} -> {out_ch}")
        if stride > 1:
            # DW3x3/2-BN -> 1x1-BN-ReLU on the shortcut side.
            self.branch1 = nn.Sequential(
                _dw(in_ch, stride), nn.BatchNorm2d(in_ch), _pw(in_ch, half), nn.BatchNorm2d(half), nn.ReLU(inplace=True)
            )
        else:
            self.branch1 = nn.Sequential()
        # 1x1-BN-ReLU -> DW3x3-BN -> 1x1-BN-ReLU.
        self.branch2 = nn.Sequential(
            _pw(in_ch if stride > 1 else half, half),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            _dw(half, stride),
            nn.BatchNorm2d(half),
            _pw(half, half),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
        )
        self.cat = Concat()
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = self.cat([x1, self.branch2(x2)])
        else:
            out = self.cat([self.branch1(x), self.branch2(x)])
        return self.shuffle(out)


class ShuffleNetV2(nn.Module):
    """ShuffleNet v2 from a :class:`V2Config` (torchvision's ``ShuffleNetV2`` layout)."""

    def __init__(self, cfg: V2Config, num_classes: int = 1000, *, in_channels: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = ConvBnAct(in_channels, cfg.conv1, 3, 2, act="RE")
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        ch = cfg.conv1
        for i, st in enumerate(cfg.stages):
            units = [ShuffleUnitV2(ch, st.out, 2)] + [ShuffleUnitV2(st.out, st.out, 1) for _ in range(st.repeats - 1)]
            self.add_module(f"stage{i + 2}", nn.Sequential(*units))
            ch = st.out
        self.conv5 = ConvBnAct(ch, cfg.conv5, 1, act="RE")
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cfg.conv5, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


_V2: dict[str, Any] = dict(family="shufflenet_v2", paper=_PAPER_V2, small_input=(3, 32, 32), torchvision=True)


@register_model(**_V2)
def shufflenet_v2_x0_5(*, num_classes: int = 1000, **kw: Any) -> ShuffleNetV2:
    """ShuffleNet v2 0.5x (stages 48/96/192, conv5 1024): 1.4M params, 41M MACs."""
    return ShuffleNetV2(V2_CONFIGS["0.5x"], num_classes, **kw)


@register_model(**_V2)
def shufflenet_v2_x1_0(*, num_classes: int = 1000, **kw: Any) -> ShuffleNetV2:
    """ShuffleNet v2 1x (stages 116/232/464, conv5 1024): 2.3M params, 146M MACs."""
    return ShuffleNetV2(V2_CONFIGS["1.0x"], num_classes, **kw)


@register_model(**_V2)
def shufflenet_v2_x1_5(*, num_classes: int = 1000, **kw: Any) -> ShuffleNetV2:
    """ShuffleNet v2 1.5x (stages 176/352/704, conv5 1024): 3.5M params, 299M MACs."""
    return ShuffleNetV2(V2_CONFIGS["1.5x"], num_classes, **kw)


@register_model(**_V2)
def shufflenet_v2_x2_0(*, num_classes: int = 1000, **kw: Any) -> ShuffleNetV2:
    """ShuffleNet v2 2x (stages 244/488/976, conv5 2048): 7.4M params, 591M MACs."""
    return ShuffleNetV2(V2_CONFIGS["2.0x"], num_classes, **kw)
