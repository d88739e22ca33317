"""DenseNet-BC: every layer of a dense block sees the concatenation of all earlier ones.

Huang, Liu, van der Maaten & Weinberger, "Densely Connected Convolutional Networks",
2016, arXiv:1608.06993. ``CONFIGS`` is the paper's Table 1 (ImageNet DenseNets,
growth rate k = 32): a 7x7/2 conv and 3x3/2 max-pool stem, four dense blocks of
bottleneck layers (BN-ReLU-1x1 conv to 4k channels, BN-ReLU-3x3 conv to k channels)
separated by transitions (BN-ReLU-1x1 conv halving the channels, compression 0.5, then
2x2 average pool), then BN-ReLU, global average pool and the classifier.

Module names follow torchvision's ``DenseNet`` (``features.conv0``,
``features.denseblock1.denselayer1.norm1``, ``features.transition1.conv``,
``features.norm5``, ``classifier``), so torchvision's state_dicts load strictly into
``densenet121/169/201``; ``densenet264`` (not in torchvision) uses the same names.
Concatenations go through ``Concat`` modules (no parameters, names unaffected).
torchvision's ``memory_efficient`` (checkpointing) option is not provided.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn as nn

from edgecv.models._blocks import Concat, init_weights
from edgecv.models._registry import register_model


class DenseNetConfig(NamedTuple):
    """One column of Table 1: layers per dense block, growth rate ``k``, bottleneck
    width ``bn_size * k``, stem width ``init`` and transition compression ``theta``."""

    blocks: tuple[int, ...]
    k: int = 32
    bn_size: int = 4
    init: int = 64
    theta: float = 0.5


CONFIGS: dict[str, DenseNetConfig] = {
    "121": DenseNetConfig(blocks=(6, 12, 24, 16)),
    "169": DenseNetConfig(blocks=(6, 12, 32, 32)),
    "201": DenseNetConfig(blocks=(6, 12, 48, 32)),
    "264": DenseNetConfig(blocks=(6, 12, 64, 48)),
}


class DenseLayer(nn.Module):
    """Bottleneck layer: concat(inputs) -> BN-ReLU-1x1 conv (bn_size*k) -> BN-ReLU-3x3 conv (k)."""

    def __init__(self, in_ch: int, k: int, bn_size: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.concat = Concat()
        self.norm1 = nn.BatchNorm2d(in_ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_ch, bn_size * k, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * k)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * k, k, kernel_size=3, padding=1, bias=False)
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        x = self.conv1(self.relu1(self.norm1(self.concat(inputs))))
        return self.drop(self.conv2(self.relu2(self.norm2(x))))


class DenseBlock(nn.Module):
    """``n`` dense layers (``denselayer1``..``denselayer<n>``); output is the
    concatenation of the block input and every layer's ``k`` new channels."""

    def __init__(self, n: int, in_ch: int, k: int, bn_size: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.n = n
        for i in range(n):
            self.add_module(f"denselayer{i + 1}", DenseLayer(in_ch + i * k, k, bn_size, drop_rate))
        self.concat = Concat()
        self.out_channels = in_ch + n * k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for i in range(self.n):
            features.append(getattr(self, f"denselayer{i + 1}")(features))
        return self.concat(features)


class Transition(nn.Sequential):
    """BN-ReLU-1x1 conv (compression) then 2x2 average pool, stride 2."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    """DenseNet-BC for ImageNet from a :class:`DenseNetConfig` (torchvision's names)."""

    def __init__(
        self,
        cfg: DenseNetConfig,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        ch = cfg.init
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(in_chans, ch, 7, 2, 3, bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(ch))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        self.features.add_module("pool0", nn.MaxPool2d(3, 2, 1))
        for i, n in enumerate(cfg.blocks, start=1):
            block = DenseBlock(n, ch, cfg.k, cfg.bn_size, drop_rate)
            self.features.add_module(f"denseblock{i}", block)
            ch = block.out_channels
            if i < len(cfg.blocks):
                out = int(ch * cfg.theta)
                self.features.add_module(f"transition{i}", Transition(ch, out))
                ch = out
        self.features.add_module("norm5", nn.BatchNorm2d(ch))
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(ch, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.relu(self.features(x)))
        return self.classifier(torch.flatten(x, 1))


_PAPER = "Huang et al. 2016, arXiv:1608.06993"


@register_model(family="densenet", paper=_PAPER, small_input=(3, 32, 32), torchvision=True)
def densenet121(*, num_classes: int = 1000, **kw: Any) -> DenseNet:
    """DenseNet-121 (blocks 6-12-24-16, k=32): 8.0M params, 2.9G MACs at 224 x 224."""
    return DenseNet(CONFIGS["121"], num_classes=num_classes, **kw)


@register_model(family="densenet", paper=_PAPER, small_input=(3, 32, 32), torchvision=True)
def densenet169(*, num_classes: int = 1000, **kw: Any) -> DenseNet:
    """DenseNet-169 (blocks 6-12-32-32, k=32): 14.1M params, 3.4G MACs at 224 x 224."""
    return DenseNet(CONFIGS["169"], num_classes=num_classes, **kw)


@register_model(family="densenet", paper=_PAPER, small_input=(3, 32, 32), torchvision=True)
def densenet201(*, num_classes: int = 1000, **kw: Any) -> DenseNet:
    """DenseNet-201 (blocks 6-12-48-32, k=32): 20.0M params, 4.3G MACs at 224 x 224."""
    return DenseNet(CONFIGS["201"], num_classes=num_classes, **kw)


@register_model(family="densenet", paper=_PAPER, small_input=(3, 32, 32))
def densenet264(*, num_classes: int = 1000, **kw: Any) -> DenseNet:
    """DenseNet-264 (blocks 6-12-64-48, k=32). Not in torchvision; same module names."""
    return DenseNet(CONFIGS["264"], num_classes=num_classes, **kw)
