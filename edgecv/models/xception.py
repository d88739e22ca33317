"""Xception (Chollet 2016, "Xception: Deep Learning with Depthwise Separable
Convolutions", arXiv:1610.02357).

The entry / middle / exit flows of the paper's Figure 5 are tables of ``XBlock`` rows.
Names and state_dict layout follow Cadene's ``pretrainedmodels`` Xception (the one timm
kept as ``legacy_xception``): ``conv1``/``bn1``, ``block1..12`` with ``skip``/``skipbn`` and
a ``rep`` Sequential (ReLU, SeparableConv2d, BN, ..., MaxPool), ``conv3``/``conv4``
separable convs, ``fc``. As in the paper there is no BN or ReLU between the depthwise and
the pointwise conv of a separable conv.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn as nn

from edgecv.models._blocks import Add, init_weights
from edgecv.models._registry import register_model


class XBlock(NamedTuple):
    """A residual module: ``reps`` x (ReLU, SeparableConv 3x3, BN) to ``out`` channels,
    then a 3x3 max pool of stride ``s``; 1x1 conv + BN shortcut when the shape changes.
    ``grow_first``: the first separable conv changes the width (else the last does);
    ``relu_first=False`` drops the leading ReLU (the first block, right after the stem)."""

    out: int
    reps: int
    s: int = 1
    relu_first: bool = True
    grow_first: bool = True


ENTRY_FLOW = (
    XBlock(128, reps=2, s=2, relu_first=False),
    XBlock(256, reps=2, s=2),
    XBlock(728, reps=2, s=2),
)
MIDDLE_FLOW = (XBlock(728, reps=3),) * 8
EXIT_FLOW = (XBlock(1024, reps=2, s=2, grow_first=False),)
EXIT_CONVS = (1536, 2048)  # SeparableConv 3x3 -> BN -> ReLU, twice


class SeparableConv2d(nn.Module):
    """Depthwise k x k (``conv1``) then pointwise 1x1 (``pointwise``), no bias."""

    def __init__(self, cin: int, cout: int, k: int = 3, s: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, k, s, k // 2, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.conv1(x))


class Block(nn.Module):
    """One ``XBlock`` row: ``rep(x) + shortcut(x)``."""

    def __init__(self, cin: int, row: XBlock) -> None:
        super().__init__()
        if row.out != cin or row.s != 1:
            self.skip: nn.Module | None = nn.Conv2d(cin, row.out, 1, row.s, bias=False)
            self.skipbn: nn.Module | None = nn.BatchNorm2d(row.out)
        else:
            self.skip = self.skipbn = None
        if row.grow_first:
            widths = [(cin, row.out)] + [(row.out, row.out)] * (row.reps - 1)
        else:
            widths = [(cin, cin)] * (row.reps - 1) + [(cin, row.out)]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(widths):
            # the leading ReLU must not work in place: its input also feeds the shortcut
            layers += [nn.ReLU(inplace=i > 0), SeparableConv2d(a, b), nn.BatchNorm2d(b)]
        if not row.relu_first:
            layers = layers[1:]
        if row.s != 1:
            layers.append(nn.MaxPool2d(3, row.s, 1))
        self.rep = nn.Sequential(*layers)
        self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.skip is None else self.skipbn(self.skip(x))
        return self.add(self.rep(x), shortcut)


class Xception(nn.Module):
    """Stem (conv 3x3/2 32, conv 3x3 64, both "valid"), the three flows, global pool, fc."""

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 32, 3, 2, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(32, 64, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.act2 = nn.ReLU(inplace=True)
        c = 64
        self.blocks: list[str] = []
        for i, row in enumerate(ENTRY_FLOW + MIDDLE_FLOW + EXIT_FLOW, start=1):
            self.add_module(f"block{i}", Block(c, row))
            self.blocks.append(f"block{i}")
            c = row.out
        c3, c4 = EXIT_CONVS
        self.conv3 = SeparableConv2d(c, c3)
        self.bn3 = nn.BatchNorm2d(c3)
        self.act3 = nn.ReLU(inplace=True)
        self.conv4 = SeparableConv2d(c3, c4)
        self.bn4 = nn.BatchNorm2d(c4)
        self.act4 = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c4, num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))))
        for name in self.blocks:
            x = self.get_submodule(name)(x)
        x = self.act3(self.bn3(self.conv3(x)))
        return self.act4(self.bn4(self.conv4(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.forward_features(x)), 1)
        return self.fc(self.dropout(x))


@register_model(
    family="xception",
    paper="Chollet 2016, arXiv:1610.02357",
    input_size=(3, 299, 299),
    small_input=(3, 16, 16),
)
def xception(*, num_classes: int = 1000, **kw: Any) -> nn.Module:
    """Xception: entry flow (3 blocks, 128/256/728, stride 2 each), middle flow (8 x 728,
    3 separable convs each), exit flow (728 -> 1024 block, then 1536 and 2048 separable
    convs), global average pool and a linear classifier (optional ``dropout``, default 0:
    the paper's optional FC layers are not used, as in the reported model)."""
    return Xception(num_classes=num_classes, **kw)
