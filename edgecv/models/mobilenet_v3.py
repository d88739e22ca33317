"""MobileNet v3, built from the paper's architecture tables.

Howard et al. 2019, "Searching for MobileNetV3", arXiv:1905.02244 (Tables 1-3).

The 1.0 models keep torchvision's module names and shapes (``load_state_dict`` of a
torchvision checkpoint works with ``strict=True``). Where the paper and torchvision
disagree, torchvision is followed so that its checkpoints load:

- Table 2 (V3-Small) marks SE on the final 1x1 conv (576 channels); torchvision and the
  TF reference code have none there, and neither has this module.
- The paper's two "conv2d 1x1, NBN" after pooling are ``Linear -> Hardswish -> Dropout(0.2)
  -> Linear`` (equivalent on a 1x1 map).

Width multipliers come in two rules (identical at 1.0): ``width_rule="torchvision"``
scales every table entry, including the 1280/1024 head; ``width_rule="paper"`` is the TF
reference code that produced Table 3's 0.75 models: expansion is the row's ratio
``exp / in`` times the scaled input, and the head keeps 1280/1024 ("finegrain
classification mode").

``tf_same_padding=True`` pads the strided convs like TensorFlow's ``padding="SAME"`` at any
input size (:class:`edgecv.models._blocks.Conv2dSame`), for TensorFlow-trained weights; the
state_dict is unchanged.
"""
from __future__ import annotations

from typing import Any, Literal, NamedTuple

import torch
import torch.nn as nn

from edgecv.models._blocks import Add, ConvBnAct, SqueezeExcitation, init_weights, make_divisible
from edgecv.models._registry import register_model

_V3 = "Howard et al. 2019, arXiv:1905.02244"
_SMALL = (3, 32, 32)
_V3_BN = {"bn_eps": 1e-3, "bn_momentum": 0.01}  # torchvision's (TF's) BN settings for v3


class Bneck(NamedTuple):
    """A row of Tables 1/2: bottleneck with a ``k`` x ``k`` depthwise kernel, expansion to
    ``exp`` channels, ``out`` output channels, optional squeeze-excite, activation ``act``
    (RE = ReLU, HS = hard-swish) and stride ``s``."""

    k: int
    exp: int
    out: int
    se: bool
    act: str
    s: int


class V3Spec(NamedTuple):
    """Stem (conv2d 3x3 s2, HS, ``stem`` channels), the bneck rows, and the hidden width
    of the NBN head; the conv before pooling has ``6 * out`` channels (960 / 576)."""

    stem: int
    rows: tuple[Bneck, ...]
    head: int


MOBILENET_V3_LARGE = V3Spec(
    stem=16,
    rows=(
        Bneck(k=3, exp=16, out=16, se=False, act="RE", s=1),
        Bneck(k=3, exp=64, out=24, se=False, act="RE", s=2),
        Bneck(k=3, exp=72, out=24, se=False, act="RE", s=1),
        Bneck(k=5, exp=72, out=40, se=True, act="RE", s=2),
        Bneck(k=5, exp=120, out=40, se=True, act="RE", s=1),
        Bneck(k=5, exp=120, out=40, se=True, act="RE", s=1),
        Bneck(k=3, exp=240, out=80, se=False, act="HS", s=2),
        Bneck(k=3, exp=200, out=80, se=False, act="HS", s=1),
        Bneck(k=3, exp=184, out=80, se=False, act="HS", s=1),
        Bneck(k=3, exp=184, out=80, se=False, act="HS", s=1),
        Bneck(k=3, exp=480, out=112, se=True, act="HS", s=1),
        Bneck(k=3, exp=672, out=112, se=True, act="HS", s=1),
        Bneck(k=5, exp=672, out=160, se=True, act="HS", s=2),
        Bneck(k=5, exp=960, out=160, se=True, act="HS", s=1),
        Bneck(k=5, exp=960, out=160, se=True, act="HS", s=1),
    ),
    head=1280,
)
MOBILENET_V3_SMALL = V3Spec(
    stem=16,
    rows=(
        Bneck(k=3, exp=16, out=16, se=True, act="RE", s=2),
        Bneck(k=3, exp=72, out=24, se=False, act="RE", s=2),
        Bneck(k=3, exp=88, out=24, se=False, act="RE", s=1),
        Bneck(k=5, exp=96, out=40, se=True, act="HS", s=2),
        Bneck(k=5, exp=240, out=40, se=True, act="HS", s=1),
        Bneck(k=5, exp=240, out=40, se=True, act="HS", s=1),
        Bneck(k=5, exp=120, out=48, se=True, act="HS", s=1),
        Bneck(k=5, exp=144, out=48, se=True, act="HS", s=1),
        Bneck(k=5, exp=288, out=96, se=True, act="HS", s=2),
        Bneck(k=5, exp=576, out=96, se=True, act="HS", s=1),
        Bneck(k=5, exp=576, out=96, se=True, act="HS", s=1),
    ),
    head=1024,
)


class V3Bottleneck(nn.Module):
    """Section 5 block: [1x1 expand] -> kxk depthwise -> [SE] -> linear 1x1 projection,
    identity shortcut when shapes allow. SE squeezes to ``make_divisible(exp // 4, 8)``
    with ReLU and a hard-sigmoid gate. torchvision layout: ``block = Sequential(...)``."""

    def __init__(self, in_ch: int, exp: int, out: int, row: Bneck, tf_same: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if exp != in_ch:
            layers.append(ConvBnAct(in_ch, exp, 1, act=row.act, **_V3_BN))
        layers.append(ConvBnAct(exp, exp, row.k, row.s, groups=exp, act=row.act, tf_same=tf_same, **_V3_BN))
        if row.se:
            layers.append(SqueezeExcitation(exp, make_divisible(exp // 4, 8), act="RE", gate="hardsigmoid"))
        layers.append(ConvBnAct(exp, out, 1, act=None, **_V3_BN))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = row.s == 1 and in_ch == out
        self.add = Add() if self.use_res_connect else None
        self.out_channels = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return self.add(y, x) if self.add is not None else y


class MobileNetV3(nn.Module):
    """MobileNet v3 from a :class:`V3Spec`: stem, bneck rows, 1x1 conv to ``6 * out``,
    global pool, ``Linear -> Hardswish -> Dropout -> Linear`` (torchvision's layout).

    Channels are ``make_divisible(c * width_mult, 8)``; see the module docstring for the
    two ``width_rule`` choices (they agree at ``width_mult=1``).
    """

    def __init__(
        self,
        spec: V3Spec,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        *,
        width_rule: Literal["torchvision", "paper"] = "torchvision",
        dropout: float = 0.2,
        tf_same_padding: bool = False,
    ) -> None:
        super().__init__()
        if width_rule not in ("torchvision", "paper"):
            raise ValueError(f"width_rule must be 'torchvision' or 'paper', not {width_rule!r}")
        paper = width_rule == "paper"

        def ch(c: float) -> int:
            return make_divisible(c * width_mult, 8)

        c_in, raw_in = ch(spec.stem), spec.stem
        layers: list[nn.Module] = [ConvBnAct(3, c_in, 3, 2, act="HS", tf_same=tf_same_padding, **_V3_BN)]
        for row in spec.rows:
            exp = make_divisible(c_in * row.exp / raw_in, 8) if paper else ch(row.exp)
            layers.append(V3Bottleneck(c_in, exp, ch(row.out), row, tf_same_padding))
            c_in, raw_in = ch(row.out), row.out
        last = ch(6 * raw_in) if paper else 6 * c_in
        layers.append(ConvBnAct(c_in, last, 1, act="HS", **_V3_BN))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        head = spec.head if paper else ch(spec.head)
        self.classifier = nn.Sequential(
            nn.Linear(last, head),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(head, num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model(family="mobilenet_v3", paper=_V3, small_input=_SMALL, torchvision=True)
def mobilenet_v3_large(*, num_classes: int = 1000, width_mult: float = 1.0, **kw: Any) -> MobileNetV3:
    """MobileNet v3-Large 1.0-224 (= torchvision ``mobilenet_v3_large``): 5.48M params,
    217M MACs (paper Table 3: 5.4M, 219M). ``width_mult`` scales as torchvision does."""
    return MobileNetV3(MOBILENET_V3_LARGE, num_classes, width_mult, **kw)


@register_model(family="mobilenet_v3", paper=_V3, small_input=_SMALL)
def mobilenet_v3_large_075(*, num_classes: int = 1000, width_mult: float = 0.75, **kw: Any) -> MobileNetV3:
    """MobileNet v3-Large 0.75-224 of the paper's Table 3 (TF reference width rule):
    3.99M params, 155M MACs (paper: 4.0M, 155M). Not torchvision's
    ``mobilenet_v3_large(width_mult=0.75)``, which has 3.38M params and 140M MACs
    (``create_model("mobilenet_v3_large", width_mult=0.75)`` builds that one)."""
    return MobileNetV3(MOBILENET_V3_LARGE, num_classes, width_mult, **{"width_rule": "paper", **kw})


@register_model(family="mobilenet_v3", paper=_V3, small_input=_SMALL, torchvision=True)
def mobilenet_v3_small(*, num_classes: int = 1000, width_mult: float = 1.0, **kw: Any) -> MobileNetV3:
    """MobileNet v3-Small 1.0-224 (= torchvision ``mobilenet_v3_small``): 2.54M params,
    56.5M MACs (paper Table 3: 2.5M, 56M). No SE on the last 1x1 conv (see module doc)."""
    return MobileNetV3(MOBILENET_V3_SMALL, num_classes, width_mult, **kw)


@register_model(family="mobilenet_v3", paper=_V3, small_input=_SMALL)
def mobilenet_v3_small_075(*, num_classes: int = 1000, width_mult: float = 0.75, **kw: Any) -> MobileNetV3:
    """MobileNet v3-Small 0.75-224 of the paper's Table 3 (TF reference width rule):
    2.04M params, 43.4M MACs (paper: 2.0M, 44M). torchvision's
    ``mobilenet_v3_small(width_mult=0.75)`` differs (1.65M params, 39M MACs)."""
    return MobileNetV3(MOBILENET_V3_SMALL, num_classes, width_mult, **{"width_rule": "paper", **kw})
