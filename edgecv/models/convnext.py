"""ConvNeXt-Tiny.

Liu, Mao, Wu, Feichtenhofer, Darrell & Xie, "A ConvNet for the 2020s", 2022,
arXiv:2201.03545. A ResNet modernised step by step towards a Swin Transformer: a 4x4
stride-4 "patchify" stem, stages of (7x7 depthwise conv -> LayerNorm -> 1x1 expand x4
-> GELU -> 1x1 project) blocks with layer scale, and LayerNorm + 2x2 stride-2 conv
downsampling between stages. ConvNeXt-T: C = (96, 192, 384, 768), B = (3, 3, 9, 3).

State_dict names and shapes follow torchvision's ``convnext_tiny`` (``features.0`` stem,
``features.1/3/5/7`` stages, ``features.2/4/6`` downsampling, ``classifier`` =
[LayerNorm2d, Flatten, Linear]); the 1x1 convs are ``nn.Linear`` on channels-last
tensors as in the paper's code and torchvision. Stochastic depth rate 0.1 as torchvision.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgecv.models._blocks import Add, StochasticDepth
from edgecv.models._registry import register_model

PAPER = "Liu et al. 2022, arXiv:2201.03545"


class Stage(NamedTuple):
    """``n`` ConvNeXt blocks of width ``c`` (one column entry of the paper's C and B)."""

    c: int
    n: int


TINY_STAGES: tuple[Stage, ...] = (
    Stage(c=96, n=3),
    Stage(c=192, n=3),
    Stage(c=384, n=9),
    Stage(c=768, n=3),
)


class Permute(nn.Module):
    """``torch.permute`` as a module (NCHW <-> NHWC around the channel-wise LayerNorm/Linear)."""

    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        self.dims = list(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (torchvision's LayerNorm2d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    """dw 7x7 -> LN -> Linear(4C) -> GELU -> Linear(C), scaled by ``layer_scale``, + residual."""

    def __init__(self, dim: int, layer_scale: float, sd_prob: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, 7, padding=3, groups=dim),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), layer_scale))
        self.stochastic_depth = StochasticDepth(sd_prob)
        self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.add(self.stochastic_depth(self.layer_scale * self.block(x)), x)


class ConvNeXt(nn.Module):
    """ConvNeXt from a stage table: stem, [stage, downsample]*, stage; LN + Linear head.

    The stochastic-depth rate grows linearly from 0 to ``stochastic_depth`` over all blocks.
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        *,
        num_classes: int = 1000,
        stochastic_depth: float = 0.1,
        layer_scale: float = 1e-6,
    ) -> None:
        super().__init__()
        c0 = stages[0].c
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, c0, 4, stride=4), LayerNorm2d(c0, eps=1e-6))]
        total, idx = sum(s.n for s in stages), 0
        for i, st in enumerate(stages):
            blocks = []
            for _ in range(st.n):
                blocks.append(CNBlock(st.c, layer_scale, stochastic_depth * idx / max(total - 1, 1)))
                idx += 1
            layers.append(nn.Sequential(*blocks))
            if i + 1 < len(stages):
                nxt = stages[i + 1].c
                layers.append(nn.Sequential(LayerNorm2d(st.c, eps=1e-6), nn.Conv2d(st.c, nxt, 2, stride=2)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        c_last = stages[-1].c
        self.classifier = nn.Sequential(LayerNorm2d(c_last, eps=1e-6), nn.Flatten(1), nn.Linear(c_last, num_classes))
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)))


@register_model(family="convnext", paper=PAPER, input_size=(3, 224, 224), small_input=(3, 32, 32), torchvision=True)
def convnext_tiny(*, num_classes: int = 1000, **kw: Any) -> ConvNeXt:
    """ConvNeXt-T: C = (96, 192, 384, 768), B = (3, 3, 9, 3); 28.6M params, 4.5G MACs at 224."""
    return ConvNeXt(TINY_STAGES, num_classes=num_classes, **kw)
