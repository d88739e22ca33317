"""CIFAR-10 ResNets (20/32/44/56/110) and PyramidNets.

- He, Zhang, Ren, Sun 2015, "Deep Residual Learning for Image Recognition", arXiv:1512.03385,
  Section 4.2: a 3x3 conv of 16 channels, three stages of ``n`` basic blocks on 32/16/8 px
  maps with 16/32/64 channels (depth ``6n + 2``), global average pool, a 10-way linear
  layer. Shortcuts are "option A": identity, or, where the shape changes, stride-2
  subsampling plus zero channels -- no parameters at all.
  Module names follow Yerlan Idelbayev's reference implementation (``conv1, bn1,
  layer{1,2,3}.N.{conv1,bn1,conv2,bn2}, linear``) so its released checkpoints (e.g.
  ``resnet20-12fca82f.th``, 91.78% top-1) load with :func:`load_cifar_resnet_checkpoint`
  and ``strict=True``.
- Han, Kim, Kim 2016, "Deep Pyramidal Residual Networks", arXiv:1610.02915: the width grows
  by ``alpha / N`` at *every* block (additive widening, ``N`` = number of blocks) instead of
  doubling per stage; pre-activation-style blocks ``BN-conv-BN-ReLU-conv-BN`` (no ReLU after
  the sum, none after the stem's BN) with basic blocks (depth 110) or bottlenecks (x4,
  depth 272); identity shortcuts zero-padded to the wider output, with 2x2 average pooling
  at the two down-sampling blocks. Names follow the authors' PyTorch code (``bn1, conv1, ...,
  bn_final, fc``).

The shortcut is a :class:`PadShortcut` module and the sum an ``Add()``, so quantizers and
pruners see them; neither holds state.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgecv.errors import UserError
from edgecv.models._blocks import Add, init_weights
from edgecv.models._registry import register_model

PAPER_RESNET = "He et al. 2015, arXiv:1512.03385 (Sec. 4.2, CIFAR-10)"
PAPER_PYRAMIDNET = "Han et al. 2016, arXiv:1610.02915"
_CIFAR = dict(input_size=(3, 32, 32), small_input=(3, 32, 32), num_classes=10, dataset="cifar10")


class PadShortcut(nn.Module):
    """Parameter-free shortcut: spatial down-sampling, then zero channels up to ``out_ch``.

    Args:
        in_ch, out_ch: channels in / out (``out_ch >= in_ch``).
        s: stride (1 or 2).
        pool: "subsample" takes every ``s``-th pixel (ResNet option A); "avg" is a 2x2
            average pool with ``ceil_mode`` (PyramidNet).
        pad: "both" puts half the zero channels before and half after the input's
            (ResNet option A as in the reference code); "end" appends them (PyramidNet).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        s: int = 1,
        *,
        pool: Literal["subsample", "avg"] = "subsample",
        pad: Literal["both", "end"] = "both",
    ) -> None:
        super().__init__()
        if out_ch < in_ch:
            raise ValueError(f"PadShortcut cannot shrink channels ({in_ch} -> {out_ch})")
        self.s, self.pool = s, pool
        extra = out_ch - in_ch
        self.pad_before = extra // 2 if pad == "both" else 0
        self.pad_after = extra - self.pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.s != 1:
            if self.pool == "subsample":
                x = x[:, :, :: self.s, :: self.s]
            else:
                x = F.avg_pool2d(x, self.s, self.s, ceil_mode=True)
        if self.pad_before or self.pad_after:
            x = F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))
        return x

    def extra_repr(self) -> str:
        return f"s={self.s}, pool={self.pool}, pad=({self.pad_before}, {self.pad_after})"


# ============================================================================ CIFAR ResNet
class CifarStage(NamedTuple):
    """One row of Section 4.2's table: ``n`` basic blocks of ``width`` channels, first with stride ``s``."""

    n: int
    width: int
    s: int


def cifar_resnet_table(depth: int) -> tuple[CifarStage, ...]:
    """Stages of the depth-``6n+2`` CIFAR ResNet: 32x32 (16 ch), 16x16 (32 ch), 8x8 (64 ch)."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
    n = (depth - 2) // 6
    return (CifarStage(n, 16, 1), CifarStage(n, 32, 2), CifarStage(n, 64, 2))


class CifarBasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN + option-A shortcut, ReLU after the sum."""

    def __init__(self, in_ch: int, width: int, s: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 3, s, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        changes = s != 1 or in_ch != width
        self.shortcut = PadShortcut(in_ch, width, s) if changes else nn.Identity()
        self.add = Add()
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(self.add(out, self.shortcut(x)))


class CifarResNet(nn.Module):
    """CIFAR ResNet from a table of :class:`CifarStage` rows (stem 3x3 conv of 16 channels)."""

    def __init__(self, stages: tuple[CifarStage, ...], *, num_classes: int = 10, in_chans: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        ch = 16
        for i, st in enumerate(stages, start=1):
            blocks = []
            for j in range(st.n):
                blocks.append(CifarBasicBlock(ch, st.width, st.s if j == 0 else 1))
                ch = st.width
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
        self.num_stages = len(stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.linear = nn.Linear(ch, num_classes)
        self.num_features = ch
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return self.linear(self.flatten(self.avgpool(x)))


def load_cifar_resnet_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a CIFAR ResNet checkpoint (``{'state_dict', 'best_prec1'}`` as released by the
    reference implementation, or a bare state_dict) safely (``weights_only``) on the CPU and
    strip DataParallel's ``module.`` prefix; the result loads into ``resnet20`` etc. with
    ``strict=True``. Raises :class:`UserError` if the file cannot be read."""
    try:
        obj = torch.load(str(path), weights_only=True, map_location="cpu")
    except OSError as e:  # missing file, a directory, no permission
        raise UserError(f"cannot read CIFAR ResNet checkpoint {path}: {e.strerror or e}") from e
    except Exception as e:  # not a torch file, or one holding more than tensors
        raise UserError(
            f"cannot read CIFAR ResNet checkpoint {path}: not a PyTorch file of plain tensors "
            f"({type(e).__name__}); expected a torch.save'd state_dict or {{'state_dict': ...}}"
        ) from e
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} is not a CIFAR ResNet checkpoint (expected a state_dict of tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _cifar_resnet(depth: int, num_classes: int, **kw: Any) -> CifarResNet:
    return CifarResNet(cifar_resnet_table(depth), num_classes=num_classes, **kw)


@register_model(family="resnet_cifar", paper=PAPER_RESNET, **_CIFAR)
def resnet20(*, num_classes: int = 10, **kw: Any) -> CifarResNet:
    """CIFAR ResNet-20 (n=3): 0.27M params, 41M MACs; published 8.75% error (91.25%)."""
    return _cifar_resnet(20, num_classes, **kw)


@register_model(family="resnet_cifar", paper=PAPER_RESNET, **_CIFAR)
def resnet32(*, num_classes: int = 10, **kw: Any) -> CifarResNet:
    """CIFAR ResNet-32 (n=5): 0.46M params; published 7.51% error."""
    return _cifar_resnet(32, num_classes, **kw)


@register_model(family="resnet_cifar", paper=PAPER_RESNET, **_CIFAR)
def resnet44(*, num_classes: int = 10, **kw: Any) -> CifarResNet:
    """CIFAR ResNet-44 (n=7): 0.66M params; published 7.17% error."""
    return _cifar_resnet(44, num_classes, **kw)


@register_model(family="resnet_cifar", paper=PAPER_RESNET, **_CIFAR)
def resnet56(*, num_classes: int = 10, **kw: Any) -> CifarResNet:
    """CIFAR ResNet-56 (n=9): 0.85M params, 125M MACs; published 6.97% error."""
    return _cifar_resnet(56, num_classes, **kw)


@register_model(family="resnet_cifar", paper=PAPER_RESNET, **_CIFAR)
def resnet110(*, num_classes: int = 10, **kw: Any) -> CifarResNet:
    """CIFAR ResNet-110 (n=18): 1.7M params, 253M MACs; published 6.43% error."""
    return _cifar_resnet(110, num_classes, **kw)


# ============================================================================ PyramidNet
class PyramidRow(NamedTuple):
    """One residual unit: ``stage`` (1..3), input channels, base ``width`` (output is
    ``width`` for basic blocks, ``4 * width`` for bottlenecks), stride ``s``."""

    stage: int
    in_ch: int
    width: int
    s: int


def pyramid_table(depth: int, alpha: float, bottleneck: bool) -> tuple[PyramidRow, ...]:
    """Per-unit widths of a CIFAR PyramidNet: ``round(16 + k * alpha / N)`` for the k-th of
    ``N`` units (``N = 3n``; ``n = (depth-2)/6`` basic, ``(depth-2)/9`` bottleneck units per stage),
    stride 2 at the first unit of stages 2 and 3 (the authors' rounding)."""
    per = 9 if bottleneck else 6
    if (depth - 2) % per:
        raise ValueError(f"PyramidNet depth must be {per}n+2, got {depth}")
    n = (depth - 2) // per
    add = alpha / (3 * n)
    exp = 4 if bottleneck else 1
    rows, in_ch, dim = [], 16, 16.0
    for stage in (1, 2, 3):
        for j in range(n):
            dim += add
            width = int(round(dim))
            rows.append(PyramidRow(stage, in_ch, width, 2 if stage > 1 and j == 0 else 1))
            in_ch = width * exp
    return tuple(rows)


class PyramidBasic(nn.Module):
    """BN-conv3x3-BN-ReLU-conv3x3-BN, zero-padded identity shortcut, no ReLU after the sum."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, s: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, width, 3, s, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.shortcut = PadShortcut(in_ch, width, s, pool="avg", pad="end")
        self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn2(self.conv1(self.bn1(x))))
        out = self.bn3(self.conv2(out))
        return self.add(out, self.shortcut(x))


class PyramidBottleneck(nn.Module):
    """BN-conv1x1-BN-ReLU-conv3x3-BN-ReLU-conv1x1(x4)-BN, zero-padded identity shortcut."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, s: int = 1) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, s, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn4 = nn.BatchNorm2d(out_ch)
        self.shortcut = PadShortcut(in_ch, out_ch, s, pool="avg", pad="end")
        self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn2(self.conv1(self.bn1(x))))
        out = self.relu2(self.bn3(self.conv2(out)))
        out = self.bn4(self.conv3(out))
        return self.add(out, self.shortcut(x))


class PyramidNet(nn.Module):
    """CIFAR PyramidNet from a :func:`pyramid_table`: 3x3 conv (16) + BN, ``layer1..3``,
    final BN + ReLU, global average pool, ``fc``."""

    def __init__(
        self,
        depth: int,
        alpha: float,
        *,
        bottleneck: bool,
        num_classes: int = 10,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        block = PyramidBottleneck if bottleneck else PyramidBasic
        self.table = pyramid_table(depth, alpha, bottleneck)
        self.conv1 = nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        for stage in (1, 2, 3):
            units = [block(r.in_ch, r.width, r.s) for r in self.table if r.stage == stage]
            self.add_module(f"layer{stage}", nn.Sequential(*units))
        ch = self.table[-1].width * block.expansion
        self.bn_final = nn.BatchNorm2d(ch)
        self.relu_final = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(ch, num_classes)
        self.num_features = ch
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv1(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.relu_final(self.bn_final(x))
        return self.fc(self.flatten(self.avgpool(x)))


@register_model(family="pyramidnet", paper=PAPER_PYRAMIDNET, **_CIFAR)
def pyramidnet110_a48(*, num_classes: int = 10, **kw: Any) -> PyramidNet:
    """PyramidNet-110 (alpha=48, basic blocks, widths 16 -> 64): 1.77M params (the paper
    lists 1.7M; the authors' code builds exactly this network); published 4.58% CIFAR-10 error."""
    return PyramidNet(110, 48, bottleneck=False, num_classes=num_classes, **kw)


@register_model(family="pyramidnet", paper=PAPER_PYRAMIDNET, **_CIFAR)
def pyramidnet272_a200(*, num_classes: int = 10, **kw: Any) -> PyramidNet:
    """PyramidNet-272 (alpha=200, bottlenecks, widths 16 -> 216 x4 = 864): 26.2M params (26.0M);
    published 3.31% CIFAR-10 error."""
    return PyramidNet(272, 200, bottleneck=True, num_classes=num_classes, **kw)
