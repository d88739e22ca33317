"""AlexNet and ZFNet: five convolutions, three max-pools, three fully connected layers.

- AlexNet: Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep
  Convolutional Neural Networks", NeurIPS 2012.
- ZFNet: Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks",
  2013, arXiv:1311.2901 (the network of its Fig. 3).

Both are built by one class from a table of typed rows (``Conv`` / ``Pool``) that reads
like the papers' layer lists. The layout follows torchvision's ``AlexNet``: a flat
``features`` Sequential (conv, ReLU, [max-pool]), ``avgpool`` (adaptive, 6x6), and a
``classifier`` of dropout/linear/ReLU, so torchvision's state_dict loads strictly.

Where the papers and torchvision differ, the code follows torchvision (its weights are
the ones people have): the single-tower "one weird trick" AlexNet (Krizhevsky 2014,
arXiv:1404.5997) with 64-192-384-256-256 filters, not the two-GPU 96-256-384-384-256
of 2012, and no local response normalisation (LRN has no parameters and torchvision
drops it). ZFNet follows the same convention: no contrast normalisation layers.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn as nn

from edgecv.models._blocks import init_weights
from edgecv.models._registry import register_model


class Conv(NamedTuple):
    """``out`` filters of ``k`` x ``k``, stride ``s``, zero padding ``p``; followed by ReLU."""

    out: int
    k: int
    s: int = 1
    p: int = 0


class Pool(NamedTuple):
    """``k`` x ``k`` max-pool with stride ``s`` (and padding ``p``)."""

    k: int = 3
    s: int = 2
    p: int = 0


Row = Conv | Pool

# torchvision's AlexNet (the single-GPU variant of arXiv:1404.5997), 224 x 224 input:
ALEXNET: tuple[Row, ...] = (
    Conv(64, k=11, s=4, p=2),   # conv1 -> 55 x 55
    Pool(3, 2),                 # -> 27
    Conv(192, k=5, p=2),        # conv2
    Pool(3, 2),                 # -> 13
    Conv(384, k=3, p=1),        # conv3
    Conv(256, k=3, p=1),        # conv4
    Conv(256, k=3, p=1),        # conv5
    Pool(3, 2),                 # -> 6
)

# Zeiler & Fergus 2013, Fig. 3 (224 x 224 input; sizes as in the figure):
ZFNET: tuple[Row, ...] = (
    Conv(96, k=7, s=2, p=1),    # layer 1 -> 110 x 110
    Pool(3, 2, p=1),            # -> 55
    Conv(256, k=5, s=2),        # layer 2 -> 26
    Pool(3, 2, p=1),            # -> 13
    Conv(384, k=3, p=1),        # layer 3
    Conv(384, k=3, p=1),        # layer 4
    Conv(256, k=3, p=1),        # layer 5
    Pool(3, 2),                 # -> 6
)


class AlexNet(nn.Module):
    """Conv/pool ``features`` from a table, adaptive 6x6 average pool, and a
    dropout-FC(4096)-dropout-FC(4096)-FC classifier (torchvision's names)."""

    def __init__(
        self,
        table: tuple[Row, ...] = ALEXNET,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        fc: int = 4096,
        dropout: float = 0.5,
        pool_size: int = 6,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_chans
        for row in table:
            if isinstance(row, Conv):
                layers += [nn.Conv2d(ch, row.out, row.k, row.s, row.p), nn.ReLU(inplace=True)]
                ch = row.out
            else:
                layers.append(nn.MaxPool2d(row.k, row.s, row.p))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((pool_size, pool_size))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(ch * pool_size * pool_size, fc),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(fc, fc),
            nn.ReLU(inplace=True),
            nn.Linear(fc, num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


@register_model(
    family="alexnet",
    paper="Krizhevsky et al. 2012 (NeurIPS); single-tower arXiv:1404.5997",
    small_input=(3, 63, 63),
    torchvision=True,
)
def alexnet(*, num_classes: int = 1000, **kw: Any) -> AlexNet:
    """AlexNet as in torchvision (64-192-384-256-256 filters, no LRN): 61.1M params,
    0.71G MACs at 224 x 224. Smallest input that forwards: 63 x 63."""
    return AlexNet(ALEXNET, num_classes=num_classes, **kw)


@register_model(
    family="alexnet",
    paper="Zeiler & Fergus 2013, arXiv:1311.2901",
    small_input=(3, 53, 53),
)
def zfnet(*, num_classes: int = 1000, **kw: Any) -> AlexNet:
    """ZFNet (Zeiler & Fergus 2013, Fig. 3): 7x7/2 conv1 (96), 5x5/2 conv2 (256),
    3x3 conv3-5 (384, 384, 256), FC 4096-4096, no contrast normalisation: 62.4M params,
    1.17G MACs at 224 x 224; smallest input 53 x 53. Not in torchvision; same module
    names as ``alexnet``."""
    return AlexNet(ZFNET, num_classes=num_classes, **kw)
