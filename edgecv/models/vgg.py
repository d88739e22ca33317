"""VGG: very deep networks of small (3x3) convolutions.

Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", 2014, arXiv:1409.1556. ``CONFIGS`` is the paper's Table 1 (columns
A, B, C, D, E; the A-LRN column is left out), one typed row per layer: ``Conv(3, 256)``
is "conv3-256", ``Pool()`` is "maxpool" (2x2, stride 2).

The layout is torchvision's ``VGG`` (flat ``features`` Sequential of conv, [BN], ReLU,
max-pool; ``avgpool`` adaptive 7x7; ``classifier`` FC-ReLU-dropout x2 then FC), so
torchvision's state_dicts load strictly for A/B/D/E with and without batch norm
(``vgg11``..``vgg19_bn``; the ``_bn`` variants are torchvision's, not the paper's).
Configuration C (``vgg16_c``, with 1x1 convolutions) is not in torchvision; it uses the
same layout. The adaptive pool lets small inputs (32 x 32) through; at 224 x 224 it is
the identity, as in the paper.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn as nn

from edgecv.models._blocks import init_weights
from edgecv.models._registry import register_model


class Conv(NamedTuple):
    """"conv<k>-<out>": ``k`` x ``k`` convolution, stride 1, "same" padding, then ReLU."""

    k: int
    out: int


class Pool(NamedTuple):
    """"maxpool": 2x2 max-pool, stride 2."""


Row = Conv | Pool

# Table 1 of the paper (ConvNet configurations), one entry per layer.
CONFIGS: dict[str, tuple[Row, ...]] = {
    "A": (  # 11 weight layers
        Conv(3, 64), Pool(),
        Conv(3, 128), Pool(),
        Conv(3, 256), Conv(3, 256), Pool(),
        Conv(3, 512), Conv(3, 512), Pool(),
        Conv(3, 512), Conv(3, 512), Pool(),
    ),
    "B": (  # 13 weight layers
        Conv(3, 64), Conv(3, 64), Pool(),
        Conv(3, 128), Conv(3, 128), Pool(),
        Conv(3, 256), Conv(3, 256), Pool(),
        Conv(3, 512), Conv(3, 512), Pool(),
        Conv(3, 512), Conv(3, 512), Pool(),
    ),
    "C": (  # 16 weight layers, 1x1 convs
        Conv(3, 64), Conv(3, 64), Pool(),
        Conv(3, 128), Conv(3, 128), Pool(),
        Conv(3, 256), Conv(3, 256), Conv(1, 256), Pool(),
        Conv(3, 512), Conv(3, 512), Conv(1, 512), Pool(),
        Conv(3, 512), Conv(3, 512), Conv(1, 512), Pool(),
    ),
    "D": (  # 16 weight layers ("VGG-16")
        Conv(3, 64), Conv(3, 64), Pool(),
        Conv(3, 128), Conv(3, 128), Pool(),
        Conv(3, 256), Conv(3, 256), Conv(3, 256), Pool(),
        Conv(3, 512), Conv(3, 512), Conv(3, 512), Pool(),
        Conv(3, 512), Conv(3, 512), Conv(3, 512), Pool(),
    ),
    "E": (  # 19 weight layers ("VGG-19")
        Conv(3, 64), Conv(3, 64), Pool(),
        Conv(3, 128), Conv(3, 128), Pool(),
        Conv(3, 256), Conv(3, 256), Conv(3, 256), Conv(3, 256), Pool(),
        Conv(3, 512), Conv(3, 512), Conv(3, 512), Conv(3, 512), Pool(),
        Conv(3, 512), Conv(3, 512), Conv(3, 512), Conv(3, 512), Pool(),
    ),
}


class VGG(nn.Module):
    """A VGG column built from its table; ``batch_norm`` inserts BN after each conv
    (torchvision's ``_bn`` models). Classifier: FC-4096, FC-4096, FC-``num_classes``."""

    def __init__(
        self,
        table: tuple[Row, ...],
        *,
        num_classes: int = 1000,
        batch_norm: bool = False,
        in_chans: int = 3,
        fc: int = 4096,
        dropout: float = 0.5,
        pool_size: int = 7,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_chans
        for row in table:
            if isinstance(row, Pool):
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            layers.append(nn.Conv2d(ch, row.out, row.k, padding=(row.k - 1) // 2))
            if batch_norm:
                layers.append(nn.BatchNorm2d(row.out))
            layers.append(nn.ReLU(inplace=True))
            ch = row.out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((pool_size, pool_size))
        self.classifier = nn.Sequential(
            nn.Linear(ch * pool_size * pool_size, fc),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(fc, fc),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(fc, num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


_PAPER = "Simonyan & Zisserman 2014, arXiv:1409.1556"


def _vgg(config: str, batch_norm: bool, num_classes: int, **kw: Any) -> VGG:
    return VGG(CONFIGS[config], num_classes=num_classes, batch_norm=batch_norm, **kw)


@register_model(family="vgg", paper=_PAPER, small_input=(3, 32, 32), torchvision=True)
def vgg11(*, num_classes: int = 1000, **kw: Any) -> VGG:
    """VGG-11 (configuration A): 132.9M params, 7.6G MACs at 224 x 224."""
    return _vgg("A", False, num_classes, **kw)


@register_model(family="vgg", paper=_PAPER, small_input=(3, 32, 32), torchvision=True)
def vgg11_bn(*, num_classes: int = 1000, **kw: Any) -> VGG:
    """VGG-11 (configuration A) with batch norm after every conv (torchvision)."""
    return _vgg("A", True, num_classes, **kw)


@register_model(family="vgg", paper=_PAPER, small_input=(3, 32, 32), torchvision=True)
def vgg13(*, num_classes: int = 1000, **kw: Any) -> VGG:
    """VGG-13 (configuration B): 133.0M params, 11.3G MACs at 224 x 224."""
    return _vgg("B", False, num_classes, **kw)


@register_model(family="vgg", paper=_PAPER, small_input=(3, 32, 32), torchvision=True)
def vgg13_bn(*, num_classes: int = 1000, **kw: Any) -> VGG:
    """VGG-13 (configuration B) with batch norm after every conv (torchvision)."""
    return _vgg("B", True, num_classes, **kw)


@register_model(family="vgg", paper=_PAPER, small_input=(3, 32, 32))
def vgg16_c(*, num_classes: int = 1000, **kw: Any) -> VGG:
    """VGG-16 configuration C (1x1 convs ending blocks 3-5): 133.6M params, 11.8G MACs
    at 224 x 224. Not in torchvision; torchvision's ``vgg16`` is configuration D."""
    return _vgg("C", False, num_classes, **kw)


@register_model(family="vgg", paper=_PAPER, small_input=(3, 32, 32), torchvision=True)
def vgg16(*, num_classes: int = 1000, **kw: Any) -> VGG:
    """VGG-16 (configuration D): 138.4M params, 15.5G MACs at 224 x 224."""
    return _vgg("D", False, num_classes, **kw)


@register_model(family="vgg", paper=_PAPER, small_input=(3, 32, 32), torchvision=True)
def vgg16_bn(*, num_classes: int = 1000, **kw: Any) -> VGG:
    """VGG-16 (configuration D) with batch norm after every conv (torchvision)."""
    return _vgg("D", True, num_classes, **kw)


@register_model(family="vgg", paper=_PAPER, small_input=(3, 32, 32), torchvision=True)
def vgg19(*, num_classes: int = 1000, **kw: Any) -> VGG:
    """VGG-19 (configuration E): 143.7M params, 19.6G MACs at 224 x 224."""
    return _vgg("E", False, num_classes, **kw)


@register_model(family="vgg", paper=_PAPER, small_input=(3, 32, 32), torchvision=True)
def vgg19_bn(*, num_classes: int = 1000, **kw: Any) -> VGG:
    """VGG-19 (configuration E) with batch norm after every conv (torchvision)."""
    return _vgg("E", True, num_classes, **kw)
