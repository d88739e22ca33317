"""Inception v3 (Szegedy et al. 2015, "Rethinking the Inception Architecture for Computer
Vision", arXiv:1512.00567), Inception v4 and Inception-ResNet-v2 (Szegedy et al. 2016,
"Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning",
arXiv:1602.07261).

Every block is a table of branches (``Cv``/``Pool`` rows from :mod:`.googlenet`) and each
network a table of blocks. Inception v3 keeps torchvision's state_dict names
(``Mixed_5b.branch5x5_1.conv.weight``, ``AuxLogits``); Inception v4 and
Inception-ResNet-v2 use the layout of Cadene's ``pretrainedmodels`` (``features.6.branch1.0``,
``repeat_1.3.conv2d``, ``last_linear``), the one timm inherited (not verified against it).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgecv.models._blocks import Add
from edgecv.models._registry import register_model
from edgecv.models.googlenet import (
    B,
    BasicConv2d,
    Blk,
    Branch,
    Aux,
    Cv,
    InceptionNet,
    Mixed,
    Pool,
    Row,
    V,
)


def flat(prefix: str, *ops: Cv | Pool, split: tuple[Cv, ...] = (), start: int = 1) -> Branch:
    """A branch with flat names: ``prefix`` for a lone conv, else ``prefix_1``, ``prefix_2``
    ... and ``prefix_{n}a``/``b`` for the split (torchvision's v3; ``start=0``: Cadene's v4)."""
    convs = [op for op in ops if isinstance(op, Cv)]
    named: list[Cv | Pool] = []
    j = start
    for op in ops:
        if isinstance(op, Pool):
            named.append(op._replace(name=f"{prefix}_pool"))
        elif len(convs) == 1 and not split:
            named.append(op._replace(name=prefix))
        else:
            named.append(op._replace(name=f"{prefix}_{j}"))
            j += 1
    tail = tuple(op._replace(name=f"{prefix}_{j}{ab}") for op, ab in zip(split, "ab"))
    return Branch(tuple(named), tail)


# --------------------------------------------------------------------------- Inception v3
AVG = Pool("avg", 3, 1, 1)  # torchvision: F.avg_pool2d(3, 1, 1), padding counted
MAX2 = Pool("max", 3, 2)  # grid reduction pool, "valid"


def _v3_a(pool_features: int) -> tuple[Branch, ...]:
    """35x35 block (paper Figure 5; torchvision keeps the original 5x5 branch)."""
    return (
        flat("branch1x1", Cv(64, 1)),
        flat("branch5x5", Cv(48, 1), Cv(64, 5)),
        flat("branch3x3dbl", Cv(64, 1), Cv(96, 3), Cv(96, 3)),
        flat("branch_pool", AVG, Cv(pool_features, 1)),
    )


def _v3_b() -> tuple[Branch, ...]:
    """Grid reduction 35 -> 17 (paper Figure 10)."""
    return (
        flat("branch3x3", Cv(384, 3, 2, V)),
        flat("branch3x3dbl", Cv(64, 1), Cv(96, 3), Cv(96, 3, 2, V)),
        B(MAX2._replace(name="branch_pool")),
    )


def _v3_c(c7: int) -> tuple[Branch, ...]:
    """17x17 block with factorised 7x7 = 1x7 + 7x1 (paper Figure 6, n = 7)."""
    return (
        flat("branch1x1", Cv(192, 1)),
        flat("branch7x7", Cv(c7, 1), Cv(c7, (1, 7)), Cv(192, (7, 1))),
        flat("branch7x7dbl", Cv(c7, 1), Cv(c7, (7, 1)), Cv(c7, (1, 7)), Cv(c7, (7, 1)), Cv(192, (1, 7))),
        flat("branch_pool", AVG, Cv(192, 1)),
    )


def _v3_d() -> tuple[Branch, ...]:
    """Grid reduction 17 -> 8."""
    return (
        flat("branch3x3", Cv(192, 1), Cv(320, 3, 2, V)),
        flat("branch7x7x3", Cv(192, 1), Cv(192, (1, 7)), Cv(192, (7, 1)), Cv(192, 3, 2, V)),
        B(MAX2._replace(name="branch_pool")),
    )


def _v3_e() -> tuple[Branch, ...]:
    """8x8 block with expanded filter banks: 1x3 | 3x1 splits (paper Figure 7)."""
    split = (Cv(384, (1, 3)), Cv(384, (3, 1)))
    return (
        flat("branch1x1", Cv(320, 1)),
        flat("branch3x3", Cv(384, 1), split=split),
        flat("branch3x3dbl", Cv(448, 1), Cv(384, 3), split=split),
        flat("branch_pool", AVG, Cv(192, 1)),
    )


class InceptionV3Aux(nn.Module):
    """v3's auxiliary classifier on the 17x17 grid (torchvision layout): avgpool 5/3 ->
    1x1 conv 128 -> 5x5 conv 768 -> global pool -> fc. Needs a >= 5x5 grid (input >= ~150)."""

    def __init__(self, cin: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = BasicConv2d(cin, 128, 1)
        self.conv1 = BasicConv2d(128, 768, 5)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.conv0(F.avg_pool2d(x, kernel_size=5, stride=3)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


INCEPTION_V3: tuple[Row, ...] = (
    Cv(32, 3, s=2, p=V, name="Conv2d_1a_3x3"),
    Cv(32, 3, p=V, name="Conv2d_2a_3x3"),
    Cv(64, 3, name="Conv2d_2b_3x3"),
    Pool("max", 3, 2, name="maxpool1"),
    Cv(80, 1, name="Conv2d_3b_1x1"),
    Cv(192, 3, p=V, name="Conv2d_4a_3x3"),
    Pool("max", 3, 2, name="maxpool2"),
    Blk("Mixed_5b", _v3_a(pool_features=32), 192),  # 3 x Inception, 35x35
    Blk("Mixed_5c", _v3_a(pool_features=64), 256),
    Blk("Mixed_5d", _v3_a(pool_features=64), 288),
    Blk("Mixed_6a", _v3_b(), 288),
    Blk("Mixed_6b", _v3_c(c7=128), 768),  # 5 x Inception (incl. reduction), 17x17
    Blk("Mixed_6c", _v3_c(c7=160), 768),
    Blk("Mixed_6d", _v3_c(c7=160), 768),
    Blk("Mixed_6e", _v3_c(c7=192), 768),
    Aux("AuxLogits", "Mixed_6e", InceptionV3Aux),
    Blk("Mixed_7a", _v3_d(), 768),
    Blk("Mixed_7b", _v3_e(), 1280),  # 2 x Inception, 8x8
    Blk("Mixed_7c", _v3_e(), 2048),
)


class InceptionOutputs(NamedTuple):
    logits: torch.Tensor
    aux_logits: torch.Tensor


class InceptionV3(InceptionNet):
    outputs = InceptionOutputs

    def __init__(self, *, dropout: float = 0.5, **kw: Any) -> None:
        super().__init__(INCEPTION_V3, dropout=dropout, **kw)


@register_model(
    family="inception",
    paper="Szegedy et al. 2015, arXiv:1512.00567",
    input_size=(3, 299, 299),
    small_input=(3, 75, 75),
    torchvision=True,
)
def inception_v3(*, num_classes: int = 1000, aux_logits: bool = False, **kw: Any) -> nn.Module:
    """Inception v3, torchvision's state_dict layout and modules (follows torchvision where
    it differs from the paper: the 35x35 blocks keep a 5x5 branch, the stem matches the
    released TF model). ``aux_logits`` defaults to False here (torchvision: True) so every
    parameter gets a gradient from the logits; with ``aux_logits=True`` the state_dict equals
    torchvision's and training-mode forward returns ``(logits, aux_logits)`` (input >= ~150
    px). ``transform_input=True`` is what torchvision's checkpoint expects."""
    return InceptionV3(num_classes=num_classes, aux_logits=aux_logits, **kw)


# --------------------------------------------------------------------------- Inception v4
AVG_NP = Pool("avg", 3, 1, 1, count_pad=False)  # TF "SAME" average pooling
MAX2_V4 = Pool("max", 3, 2)

V4_A = (  # Figure 4, 35x35x384
    B(Cv(96, 1)),
    B(Cv(64, 1), Cv(96, 3)),
    B(Cv(64, 1), Cv(96, 3), Cv(96, 3)),
    B(AVG_NP, Cv(96, 1)),
)
V4_REDUCTION_A = (  # Figure 7 with k, l, m, n = 192, 224, 256, 384
    B(Cv(384, 3, 2, V)),
    B(Cv(192, 1), Cv(224, 3), Cv(256, 3, 2, V)),
    B(MAX2_V4),
)
V4_B = (  # Figure 5, 17x17x1024
    B(Cv(384, 1)),
    B(Cv(192, 1), Cv(224, (1, 7)), Cv(256, (7, 1))),
    B(Cv(192, 1), Cv(192, (7, 1)), Cv(224, (1, 7)), Cv(224, (7, 1)), Cv(256, (1, 7))),
    B(AVG_NP, Cv(128, 1)),
)
V4_REDUCTION_B = (  # Figure 8
    B(Cv(192, 1), Cv(192, 3, 2, V)),
    B(Cv(256, 1), Cv(256, (1, 7)), Cv(320, (7, 1)), Cv(320, 3, 2, V)),
    B(MAX2_V4),
)
V4_C = (  # Figure 6, 8x8x1536
    B(Cv(256, 1)),
    flat("branch1", Cv(384, 1), split=(Cv(256, (1, 3)), Cv(256, (3, 1))), start=0),
    flat("branch2", Cv(384, 1), Cv(448, (3, 1)), Cv(512, (1, 3)),
         split=(Cv(256, (1, 3)), Cv(256, (3, 1))), start=0),
    B(AVG_NP, Cv(256, 1)),
)

INCEPTION_V4: tuple[Row, ...] = (
    # stem (Figure 3), 299 -> 35x35x384
    Cv(32, 3, 2, V, name="features.0"),
    Cv(32, 3, p=V, name="features.1"),
    Cv(64, 3, name="features.2"),
    Blk("features.3", (B(MAX2_V4._replace(name="maxpool")),
                       B(Cv(96, 3, 2, V, name="conv")))),
    Blk("features.4", (B(Cv(64, 1), Cv(96, 3, p=V)),
                       B(Cv(64, 1), Cv(64, (1, 7)), Cv(64, (7, 1)), Cv(96, 3, p=V)))),
    Blk("features.5", (B(Cv(192, 3, 2, V, name="conv")),
                       B(MAX2_V4._replace(name="maxpool")))),
    *(Blk(f"features.{6 + i}", V4_A, 384) for i in range(4)),
    Blk("features.10", V4_REDUCTION_A, 384),
    *(Blk(f"features.{11 + i}", V4_B, 1024) for i in range(7)),
    Blk("features.18", V4_REDUCTION_B, 1024),
    *(Blk(f"features.{19 + i}", V4_C, 1536) for i in range(3)),
)


@register_model(
    family="inception",
    paper="Szegedy et al. 2016, arXiv:1602.07261",
    input_size=(3, 299, 299),
    small_input=(3, 75, 75),
)
def inception_v4(*, num_classes: int = 1000, dropout: float = 0.2, **kw: Any) -> nn.Module:
    """Inception v4 (Figure 9): stem, 4 x Inception-A, Reduction-A, 7 x Inception-B,
    Reduction-B, 3 x Inception-C, avgpool, dropout (keep 0.8), linear. Cadene's layout
    (``features.N``, ``last_linear``); 75x75 is the smallest input its "valid" convs allow."""
    return InceptionNet(INCEPTION_V4, num_classes=num_classes, dropout=dropout, fc_name="last_linear", **kw)


# -------------------------------------------------------------------- Inception-ResNet-v2
class ResMixed(Mixed):
    """Inception-ResNet block: ``relu(x + scale * conv1x1(concat(branches)))``; the 1x1
    "filter-expansion" conv (bias, no BN) restores the input width."""

    def __init__(self, cin: int, branches: Sequence[Branch], *, scale: float, relu: bool, eps: float) -> None:
        super().__init__(cin, branches, eps=eps)
        self.conv2d = nn.Conv2d(self.out_channels, cin, 1)
        self.add = Add()
        self.relu = nn.ReLU(inplace=True) if relu else nn.Identity()
        self.scale = scale
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.add(x, self.conv2d(super().forward(x)) * self.scale))


class Res(NamedTuple):
    """A row: residual Inception block ``name`` with its branch table and residual scale."""

    name: str
    branches: tuple[Branch, ...]
    scale: float
    relu: bool = True

    def build(self, cin: int, eps: float) -> nn.Module:
        return ResMixed(cin, self.branches, scale=self.scale, relu=self.relu, eps=eps)


IRV2_35 = (B(Cv(32, 1)), B(Cv(32, 1), Cv(32, 3)), B(Cv(32, 1), Cv(48, 3), Cv(64, 3)))  # Figure 16
IRV2_17 = (B(Cv(192, 1)), B(Cv(128, 1), Cv(160, (1, 7)), Cv(192, (7, 1))))  # Figure 17
IRV2_8 = (B(Cv(192, 1)), B(Cv(192, 1), Cv(224, (1, 3)), Cv(256, (3, 1))))  # Figure 19

INCEPTION_RESNET_V2: tuple[Row, ...] = (
    Cv(32, 3, 2, V, name="conv2d_1a"),
    Cv(32, 3, p=V, name="conv2d_2a"),
    Cv(64, 3, name="conv2d_2b"),
    Pool("max", 3, 2, name="maxpool_3a"),
    Cv(80, 1, name="conv2d_3b"),
    Cv(192, 3, p=V, name="conv2d_4a"),
    Pool("max", 3, 2, name="maxpool_5a"),
    Blk("mixed_5b", (B(Cv(96, 1)), B(Cv(48, 1), Cv(64, 5)), B(Cv(64, 1), Cv(96, 3), Cv(96, 3)),
                     B(AVG_NP, Cv(64, 1)))),
    *(Res(f"repeat.{i}", IRV2_35, 0.17) for i in range(10)),  # 10 x Inception-ResNet-A
    Blk("mixed_6a", (B(Cv(384, 3, 2, V)), B(Cv(256, 1), Cv(256, 3), Cv(384, 3, 2, V)), B(MAX2))),
    *(Res(f"repeat_1.{i}", IRV2_17, 0.10) for i in range(20)),  # 20 x Inception-ResNet-B
    Blk("mixed_7a", (B(Cv(256, 1), Cv(384, 3, 2, V)), B(Cv(256, 1), Cv(288, 3, 2, V)),
                     B(Cv(256, 1), Cv(288, 3), Cv(320, 3, 2, V)), B(MAX2))),
    *(Res(f"repeat_2.{i}", IRV2_8, 0.20) for i in range(9)),  # 10 x Inception-ResNet-C
    Res("block8", IRV2_8, 1.0, relu=False),
    Cv(1536, 1, name="conv2d_7b"),
)


@register_model(
    family="inception",
    paper="Szegedy et al. 2016, arXiv:1602.07261",
    input_size=(3, 299, 299),
    small_input=(3, 75, 75),
)
def inception_resnet_v2(*, num_classes: int = 1000, dropout: float = 0.2, **kw: Any) -> nn.Module:
    """Inception-ResNet-v2 as released (TF-slim / Cadene layout): the released model's
    widths (Mixed_5b stem tail, 320/1088/2080 grids, 1536 final 1x1) differ from some of
    the paper's figures but give its 55.8M parameters; residual scales 0.17/0.10/0.20
    (paper section 3.3), the last block without ReLU. 75x75 is the smallest input."""
    return InceptionNet(
        INCEPTION_RESNET_V2, num_classes=num_classes, dropout=dropout, fc_name="last_linear", **kw
    )
