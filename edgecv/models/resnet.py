"""ImageNet ResNets, ResNeXts and Wide ResNets with torchvision's state_dict layout.

- He, Zhang, Ren, Sun 2015, "Deep Residual Learning for Image Recognition", arXiv:1512.03385
  (Table 1: ResNet-18/34 with basic blocks, ResNet-50/101/152 with bottlenecks).
- Xie, Girshick, Dollar, Tu, He 2016, "Aggregated Residual Transformations for Deep Neural
  Networks" (ResNeXt), arXiv:1611.05431: the bottleneck's 3x3 conv becomes a grouped conv
  (cardinality 32) of ``groups * width_per_group`` channels.
- Zagoruyko, Komodakis 2016, "Wide Residual Networks", arXiv:1605.07146: the bottleneck's
  inner width doubled (torchvision's ``wide_resnet50_2`` / ``wide_resnet101_2``).

Where the stride goes. The paper (and Caffe's released models) put the stride-2 of a
down-sampling bottleneck on its first 1x1 conv; torchvision (ResNet "v1.5", following
fb.resnet.torch) puts it on the 3x3 conv, which costs more (ResNet-50: 4.1G instead of
3.8G MACs) and is about 0.5% more accurate. The default here follows torchvision, so
torchvision checkpoints load with ``strict=True`` and give the accuracy they were trained
for; ``stride_in_1x1=True`` builds the paper's layout with the very same state_dict.
Basic blocks (ResNet-18/34) have no 1x1 conv and are identical in both layouts.

Module names follow torchvision (``conv1, bn1, layer1..4.N.{conv1,bn1,conv2,bn2[,conv3,bn3],
downsample.{0,1}}, fc``); the ReLUs are separate modules per position (``relu1/2/3``) and
the residual sum goes through ``Add()``, neither of which has state, so conv+bn(+relu)
triples stay fusible and the keys stay torchvision's.
"""
from __future__ import annotations

from typing import Any, Literal, NamedTuple

import torch
import torch.nn as nn

from edgecv.models._blocks import Add, init_weights
from edgecv.models._registry import register_model

PAPER_RESNET = "He et al. 2015, arXiv:1512.03385"
PAPER_RESNEXT = "Xie et al. 2016, arXiv:1611.05431"
PAPER_WRN = "Zagoruyko & Komodakis 2016, arXiv:1605.07146"


class Stage(NamedTuple):
    """One row of the paper's Table 1: ``n`` blocks of base ``width``, first one with stride ``s``.

    The stage's output has ``width * expansion`` channels (expansion 1 for "basic", 4 for
    "bottleneck"); a bottleneck's inner (3x3) width is ``width * width_per_group / 64 * groups``.
    """

    block: Literal["basic", "bottleneck"]
    n: int
    width: int
    s: int


def _table(block: Literal["basic", "bottleneck"], n: tuple[int, int, int, int]) -> tuple[Stage, ...]:
    return tuple(Stage(block, k, w, s) for k, w, s in zip(n, (64, 128, 256, 512), (1, 2, 2, 2)))


# conv2_x .. conv5_x of Table 1 (the stem is the 7x7/2 conv and 3x3/2 max-pool).
RESNET18 = _table("basic", (2, 2, 2, 2))
RESNET34 = _table("basic", (3, 4, 6, 3))
RESNET50 = _table("bottleneck", (3, 4, 6, 3))
RESNET101 = _table("bottleneck", (3, 4, 23, 3))
RESNET152 = _table("bottleneck", (3, 8, 36, 3))

EXPANSION = {"basic": 1, "bottleneck": 4}


def _downsample(in_ch: int, out_ch: int, s: int) -> nn.Sequential:
    """Projection shortcut (option B of the paper): 1x1 conv with stride + BN, named 0/1."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, s, bias=False), nn.BatchNorm2d(out_ch))


class BasicBlock(nn.Module):
    """3x3 -> 3x3 residual block (ResNet-18/34)."""

    def __init__(self, in_ch: int, width: int, s: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 3, s, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = _downsample(in_ch, width, s) if s != 1 or in_ch != width else None
        self.add = Add()
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu2(self.add(out, identity))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (grouped for ResNeXt) -> 1x1 (x4) residual block.

    The stride sits on the 3x3 conv (torchvision, "v1.5") unless ``stride_in_1x1`` (paper).
    """

    def __init__(
        self,
        in_ch: int,
        width: int,
        s: int = 1,
        *,
        groups: int = 1,
        width_per_group: int = 64,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        inner = int(width * (width_per_group / 64.0)) * groups
        out_ch = width * EXPANSION["bottleneck"]
        s1, s3 = (s, 1) if stride_in_1x1 else (1, s)
        self.conv1 = nn.Conv2d(in_ch, inner, 1, s1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(inner, inner, 3, s3, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(inner, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.downsample = _downsample(in_ch, out_ch, s) if s != 1 or in_ch != out_ch else None
        self.add = Add()
        self.relu3 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu3(self.add(out, identity))


class ResNet(nn.Module):
    """ResNet built from a table of :class:`Stage` rows.

    Stem 7x7/2 conv (64) + BN + ReLU + 3x3/2 max-pool, the stages as ``layer1..layer4``,
    adaptive average pool, ``fc``. Works at any input size >= 32 px.

    Args:
        stages: the stage table (e.g. ``RESNET50``).
        num_classes: classifier outputs.
        groups, width_per_group: ResNeXt cardinality / width per group (bottlenecks only).
        stride_in_1x1: put a bottleneck's stride on its first 1x1 conv (paper) instead of
            the 3x3 conv (torchvision, default). Same state_dict either way.
        zero_init_residual: zero the last BN's gamma of each block (as torchvision's flag).
        in_chans: input channels.
    """

    def __init__(
        self,
        stages: tuple[Stage, ...],
        *,
        num_classes: int = 1000,
        groups: int = 1,
        width_per_group: int = 64,
        stride_in_1x1: bool = False,
        zero_init_residual: bool = False,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        ch = 64
        for i, st in enumerate(stages, start=1):
            blocks: list[nn.Module] = []
            for j in range(st.n):
                s = st.s if j == 0 else 1
                if st.block == "basic":
                    if groups != 1 or width_per_group != 64:
                        raise ValueError("basic blocks support only groups=1, width_per_group=64")
                    blocks.append(BasicBlock(ch, st.width, s))
                else:
                    blocks.append(
                        Bottleneck(
                            ch,
                            st.width,
                            s,
                            groups=groups,
                            width_per_group=width_per_group,
                            stride_in_1x1=stride_in_1x1,
                        )
                    )
                ch = st.width * EXPANSION[st.block]
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
        self.num_stages = len(stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(ch, num_classes)
        self.num_features = ch

        init_weights(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.avgpool(self.forward_features(x))))


_SMALL = (3, 32, 32)


# ---------------------------------------------------------------------------- ResNet
@register_model(family="resnet", paper=PAPER_RESNET, small_input=_SMALL, torchvision=True)
def resnet18(*, num_classes: int = 1000, **kw: Any) -> ResNet:
    """ResNet-18 (basic blocks 2-2-2-2): 11.7M params, 1.8G MACs at 224 px."""
    return ResNet(RESNET18, num_classes=num_classes, **kw)


@register_model(family="resnet", paper=PAPER_RESNET, small_input=_SMALL, torchvision=True)
def resnet34(*, num_classes: int = 1000, **kw: Any) -> ResNet:
    """ResNet-34 (basic blocks 3-4-6-3): 21.8M params, 3.6G MACs at 224 px."""
    return ResNet(RESNET34, num_classes=num_classes, **kw)


@register_model(family="resnet", paper=PAPER_RESNET, small_input=_SMALL, torchvision=True)
def resnet50(*, num_classes: int = 1000, **kw: Any) -> ResNet:
    """ResNet-50 (bottlenecks 3-4-6-3): 25.6M params; 4.1G MACs as built by default
    (torchvision's stride-on-3x3 "v1.5"), 3.8G with ``stride_in_1x1=True`` (the paper's)."""
    return ResNet(RESNET50, num_classes=num_classes, **kw)


@register_model(family="resnet", paper=PAPER_RESNET, small_input=_SMALL, torchvision=True)
def resnet101(*, num_classes: int = 1000, **kw: Any) -> ResNet:
    """ResNet-101 (bottlenecks 3-4-23-3): 44.5M params; 7.8G MACs by default (torchvision
    layout), 7.6G with ``stride_in_1x1=True`` (the paper's)."""
    return ResNet(RESNET101, num_classes=num_classes, **kw)


@register_model(family="resnet", paper=PAPER_RESNET, small_input=_SMALL, torchvision=True)
def resnet152(*, num_classes: int = 1000, **kw: Any) -> ResNet:
    """ResNet-152 (bottlenecks 3-8-36-3): 60.2M params; 11.5G MACs by default (torchvision
    layout), 11.3G with ``stride_in_1x1=True`` (the paper's)."""
    return ResNet(RESNET152, num_classes=num_classes, **kw)


# ---------------------------------------------------------------------------- ResNeXt
@register_model(family="resnext", paper=PAPER_RESNEXT, small_input=_SMALL, torchvision=True)
def resnext50_32x4d(*, num_classes: int = 1000, **kw: Any) -> ResNet:
    """ResNeXt-50 (32x4d): ResNet-50's table with cardinality 32 and 4 channels per group
    (3x3 conv of 128 channels in the first stage); 25.0M params, 4.2G MACs (stride on the
    3x3 conv, as both the ResNeXt paper and torchvision build it)."""
    kw.setdefault("groups", 32)
    kw.setdefault("width_per_group", 4)
    return ResNet(RESNET50, num_classes=num_classes, **kw)


@register_model(family="resnext", paper=PAPER_RESNEXT, small_input=_SMALL, torchvision=True)
def resnext101_32x8d(*, num_classes: int = 1000, **kw: Any) -> ResNet:
    """ResNeXt-101 (32x8d): ResNet-101's table with cardinality 32 and 8 channels per group;
    88.8M params, 16.5G MACs (torchvision layout)."""
    kw.setdefault("groups", 32)
    kw.setdefault("width_per_group", 8)
    return ResNet(RESNET101, num_classes=num_classes, **kw)


# ---------------------------------------------------------------------------- Wide ResNet
@register_model(family="wide_resnet", paper=PAPER_WRN, small_input=_SMALL, torchvision=True)
def wide_resnet50_2(*, num_classes: int = 1000, **kw: Any) -> ResNet:
    """Wide ResNet-50-2: ResNet-50 with every bottleneck's inner (1x1/3x3) width doubled
    (output widths unchanged); 68.9M params, 11.4G MACs (torchvision layout)."""
    kw.setdefault("width_per_group", 128)
    return ResNet(RESNET50, num_classes=num_classes, **kw)


@register_model(family="wide_resnet", paper=PAPER_WRN, small_input=_SMALL, torchvision=True)
def wide_resnet101_2(*, num_classes: int = 1000, **kw: Any) -> ResNet:
    """Wide ResNet-101-2: ResNet-101 with every bottleneck's inner width doubled;
    126.9M params, 22.8G MACs (torchvision layout)."""
    kw.setdefault("width_per_group", 128)
    return ResNet(RESNET101, num_classes=num_classes, **kw)
