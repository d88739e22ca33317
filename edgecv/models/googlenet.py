"""GoogLeNet / Inception v1 (Szegedy et al. 2014, "Going Deeper with Convolutions",
arXiv:1409.4842) and BN-Inception / Inception v2 (Ioffe & Szegedy 2015, "Batch
Normalization", arXiv:1502.03167).

This module also holds the machinery of every Inception-style net of the zoo (imported by
``inception.py``): typed rows ``Cv`` (conv-BN-ReLU), ``Pool``, ``Branch`` (ops in series,
optionally ending in a parallel ``split``), ``Blk`` (parallel branches, concatenated) and
``Aux`` (an auxiliary classifier tapped off a block); ``Mixed`` builds one block from its
branch table, ``InceptionNet`` a whole net from a table of rows. Names come from the rows
or follow torchvision's GoogLeNet / Cadene's convention (``branch{i}`` for a one-op branch,
else a Sequential ``branch{i}.{j}``); dotted row names (``"features.3"``) become nested
Sequentials, so reference state_dict layouts are reproduced exactly.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgecv.models._blocks import Concat, init_weights
from edgecv.models._registry import register_model

Kernel = int | tuple[int, int]
V = 0  # "valid" padding, as the papers' tables mark it ("V")


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BN -> ReLU, named ``conv``/``bn``/``relu`` like torchvision's and
    Cadene's ``BasicConv2d`` (BN eps 1e-3, the TensorFlow value). Fusible as a unit."""

    def __init__(
        self, cin: int, cout: int, k: Kernel, s: int = 1, p: Kernel = 0, *, eps: float = 1e-3
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, p, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=eps)
        self.relu = nn.ReLU(inplace=True)
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class Cv(NamedTuple):
    """Conv-BN-ReLU: ``out`` channels, kernel ``k``, stride ``s``; ``p=None`` is "same"."""

    out: int
    k: Kernel
    s: int = 1
    p: Kernel | None = None
    name: str = ""

    def build(self, cin: int, eps: float) -> nn.Module:
        p = self.p
        if p is None:
            kk = (self.k, self.k) if isinstance(self.k, int) else self.k
            p = ((kk[0] - 1) // 2, (kk[1] - 1) // 2)
        return BasicConv2d(cin, self.out, self.k, self.s, p, eps=eps)


class Pool(NamedTuple):
    """Max or average pooling (``count_pad`` = count_include_pad for "avg")."""

    kind: str  # "max" | "avg"
    k: int = 3
    s: int = 1
    p: int = 0
    ceil: bool = False
    count_pad: bool = True
    name: str = ""

    def build(self, cin: int, eps: float) -> nn.Module:
        if self.kind == "max":
            return nn.MaxPool2d(self.k, self.s, self.p, ceil_mode=self.ceil)
        return nn.AvgPool2d(self.k, self.s, self.p, ceil_mode=self.ceil, count_include_pad=self.count_pad)


class Branch(NamedTuple):
    """One parallel path of an Inception block: ``ops`` in series, then optionally the
    parallel ``split`` convs (e.g. 1x3 | 3x1), concatenated. ``name`` prefixes auto names."""

    ops: tuple[Cv | Pool, ...]
    split: tuple[Cv, ...] = ()
    name: str = ""


def B(*ops: Cv | Pool, split: tuple[Cv, ...] = (), name: str = "") -> Branch:
    """Shorthand: ``B(Cv(64, 1), Cv(96, 3))``."""
    return Branch(tuple(ops), split, name)


def _put(root: nn.Module, path: str, module: nn.Module) -> None:
    """``root.add_module`` for dotted paths, creating intermediate Sequentials."""
    *parents, leaf = path.split(".")
    for p in parents:
        if p not in root._modules:
            root.add_module(p, nn.Sequential())
        root = root._modules[p]  # type: ignore[assignment]
    root.add_module(leaf, module)


class Mixed(nn.Module):
    """An Inception block from its table of branches; the outputs are concatenated."""

    def __init__(
        self, cin: int, branches: Sequence[Branch], *, first: int = 0, eps: float = 1e-3
    ) -> None:
        super().__init__()
        self.plan: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        out = 0
        for i, b in enumerate(branches):
            prefix = b.name or f"branch{i + first}"
            names, c = [], cin
            for j, op in enumerate(b.ops):
                name = op.name or (prefix if len(b.ops) == 1 else f"{prefix}.{j}")
                _put(self, name, op.build(c, eps))
                names.append(name)
                c = op.out if isinstance(op, Cv) else c
            for op in b.split:
                _put(self, op.name, op.build(c, eps))
            if b.split:
                self.add_module(f"cat{i}", Concat())
                c = sum(op.out for op in b.split)
            self.plan.append((tuple(names), tuple(op.name for op in b.split)))
            out += c
        self.cat = Concat()
        self.out_channels = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for i, (ops, split) in enumerate(self.plan):
            y = x
            for name in ops:
                y = self.get_submodule(name)(y)
            if split:
                y = self.get_submodule(f"cat{i}")([self.get_submodule(n)(y) for n in split])
            outs.append(y)
        return self.cat(outs)


class Blk(NamedTuple):
    """A row of the network table: Inception block ``name`` made of ``branches``."""

    name: str
    branches: tuple[Branch, ...]
    cin: int | None = None  # as printed in the paper; checked against the running width
    first: int = 0  # index of the first auto-named branch (torchvision's GoogLeNet: 1)

    def build(self, cin: int, eps: float) -> nn.Module:
        if self.cin is not None and self.cin != cin:
            raise ValueError(f"{self.name}: table says {self.cin} input channels, net gives {cin}")
        return Mixed(cin, self.branches, first=self.first, eps=eps)


class Aux(NamedTuple):
    """Aux classifier ``name`` = ``head(channels, num_classes)`` on block ``tap``'s output;
    its position in the table only fixes where its weights sit in the state_dict."""

    name: str
    tap: str
    head: Callable[[int, int], nn.Module]


Row = Any  # Cv | Pool | Blk | Aux | Res (anything with a ``name`` and ``build(cin, eps)``)


class InceptionNet(nn.Module):
    """A net built from a table of rows, then avgpool -> dropout -> linear (``fc_name``).

    With ``aux_logits`` the ``Aux`` rows are built and, in training mode only, the forward
    returns ``outputs(logits, *aux)`` with the aux outputs deepest first (torchvision's
    ``(logits, aux2, aux1)``); otherwise the logits alone. ``transform_input`` maps
    ImageNet-normalised input to the [-1, 1] scaling Google's checkpoints expect.
    """

    outputs: Callable[..., Any] | None = None  # a NamedTuple type for the training outputs

    def __init__(
        self,
        table: Sequence[Row],
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        aux_logits: bool = False,
        transform_input: bool = False,
        dropout: float = 0.0,
        fc_name: str = "fc",
        eps: float = 1e-3,
    ) -> None:
        super().__init__()
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.body: list[str] = []
        self.taps: dict[str, str] = {}
        width: dict[str, int] = {}
        c = in_chans
        for row in table:
            if isinstance(row, Aux):
                if aux_logits:
                    _put(self, row.name, row.head(width[row.tap], num_classes))
                    self.taps[row.tap] = row.name
                continue
            m = row.build(c, eps)
            _put(self, row.name, m)
            self.body.append(row.name)
            c = width[row.name] = getattr(m, "out_channels", c)
        self.num_features = c
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc_name = fc_name
        self.add_module(fc_name, nn.Linear(c, num_classes))
        init_weights(self)

    def _transform_input(self, x: torch.Tensor) -> torch.Tensor:
        chans = [
            x[:, i : i + 1] * (s / 0.5) + (m - 0.5) / 0.5
            for i, (m, s) in enumerate(((0.485, 0.229), (0.456, 0.224), (0.406, 0.225)))
        ]
        return torch.cat(chans, 1)

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The table's rows in order: (last feature map, aux outputs in training mode)."""
        if self.transform_input:
            x = self._transform_input(x)
        aux: list[torch.Tensor] = []
        for name in self.body:
            x = self.get_submodule(name)(x)
            if name in self.taps and self.training:
                aux.append(self.get_submodule(self.taps[name])(x))
        return x, aux

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[0]

    def forward(self, x: torch.Tensor) -> Any:
        x, aux = self._run(x)
        x = self.dropout(torch.flatten(self.avgpool(x), 1))
        logits = self.get_submodule(self.fc_name)(x)
        if self.training and self.aux_logits:
            out = (logits, *reversed(aux))
            return self.outputs(*out) if self.outputs is not None else out
        return logits


# ------------------------------------------------------------------------------ GoogLeNet
class Inception(NamedTuple):
    """A row of GoogLeNet's Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj."""

    name: str
    cin: int
    c1: int
    c3r: int
    c3: int
    c5r: int
    c5: int
    pool_proj: int

    def block(self, k5: int) -> Blk:
        return Blk(self.name, (
            B(Cv(self.c1, 1)),
            B(Cv(self.c3r, 1), Cv(self.c3, 3)),
            B(Cv(self.c5r, 1), Cv(self.c5, k5)),
            B(Pool("max", 3, 1, 1, ceil=True), Cv(self.pool_proj, 1)),
        ), self.cin, first=1)


class GoogLeNetAux(nn.Module):
    """GoogLeNet's auxiliary classifier (torchvision layout): avgpool to 4x4 -> 1x1 conv 128
    -> fc 1024 -> ReLU -> dropout 0.7 -> fc."""

    def __init__(self, cin: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        self.conv = BasicConv2d(cin, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(F.adaptive_avg_pool2d(x, 4)), 1)
        return self.fc2(self.dropout(F.relu(self.fc1(x), inplace=True)))


GOOGLENET: tuple[Row, ...] = (
    Cv(64, 7, s=2, name="conv1"),
    Pool("max", 3, 2, ceil=True, name="maxpool1"),
    Cv(64, 1, name="conv2"),
    Cv(192, 3, name="conv3"),
    Pool("max", 3, 2, ceil=True, name="maxpool2"),
    #          name        in   1x1  3x3r  3x3  5x5r  5x5  pool proj
    Inception("inception3a", 192, 64, 96, 128, 16, 32, 32),
    Inception("inception3b", 256, 128, 128, 192, 32, 96, 64),
    Pool("max", 3, 2, ceil=True, name="maxpool3"),
    Inception("inception4a", 480, 192, 96, 208, 16, 48, 64),
    Inception("inception4b", 512, 160, 112, 224, 24, 64, 64),
    Inception("inception4c", 512, 128, 128, 256, 24, 64, 64),
    Inception("inception4d", 512, 112, 144, 288, 32, 64, 64),
    Inception("inception4e", 528, 256, 160, 320, 32, 128, 128),
    Pool("max", 2, 2, ceil=True, name="maxpool4"),  # torchvision; the paper: 3x3/2
    Inception("inception5a", 832, 256, 160, 320, 32, 128, 128),
    Inception("inception5b", 832, 384, 192, 384, 48, 128, 128),
    Aux("aux1", "inception4a", GoogLeNetAux),
    Aux("aux2", "inception4d", GoogLeNetAux),
)


class GoogLeNetOutputs(NamedTuple):  # torchvision's training-mode outputs
    logits: torch.Tensor
    aux_logits2: torch.Tensor
    aux_logits1: torch.Tensor


class GoogLeNet(InceptionNet):
    """GoogLeNet from ``GOOGLENET``; ``branch5x5_kernel`` is the "5x5" branch's kernel."""

    outputs = GoogLeNetOutputs

    def __init__(self, *, branch5x5_kernel: int = 3, dropout: float = 0.2, **kw: Any) -> None:
        table = [r.block(branch5x5_kernel) if isinstance(r, Inception) else r for r in GOOGLENET]
        super().__init__(table, dropout=dropout, **kw)


@register_model(
    family="googlenet",
    paper="Szegedy et al. 2014, arXiv:1409.4842",
    small_input=(3, 16, 16),
    torchvision=True,
)
def googlenet(*, num_classes: int = 1000, aux_logits: bool = False, **kw: Any) -> nn.Module:
    """GoogLeNet (Inception v1), torchvision's state_dict layout.

    Follows torchvision by default, which differs from the paper in three ways: the "5x5"
    branch uses a 3x3 conv (torchvision issue #906; 6.6M params instead of 6.8M;
    ``branch5x5_kernel=5`` builds the paper's model), maxpool4 is 2x2/2 instead of 3x3/2
    (same output size), and there is no LRN. Dropout defaults to torchvision's 0.2 (paper:
    0.4). ``aux_logits=True`` adds the two auxiliary heads (aux1 after 4a, aux2 after 4d);
    training-mode forward then returns ``(logits, aux2, aux1)``. Off by default so every
    parameter gets a gradient from the logits. torchvision's checkpoint carries the aux
    weights: build with ``aux_logits=True`` (and ``transform_input=True``) to load it strictly.
    """
    return GoogLeNet(num_classes=num_classes, aux_logits=aux_logits, **kw)


# --------------------------------------------------------------------------- BN-Inception
class BnInception(NamedTuple):
    """A row of BN-Inception's table (Ioffe & Szegedy 2015, Figure 5): #1x1, #3x3 reduce,
    #3x3, double #3x3 reduce, double #3x3, pool (+ proj; 0 = pass through), stride."""

    name: str
    cin: int
    c1: int
    c3r: int
    c3: int
    d3r: int
    d3: int
    pool: str
    proj: int
    s: int = 1

    def block(self) -> Blk:
        s = self.s
        pool = B(Pool(self.pool, 3, s, 1), *([Cv(self.proj, 1)] if self.proj else []), name="branch4")
        branches = (
            *([B(Cv(self.c1, 1), name="branch1")] if self.c1 else []),
            B(Cv(self.c3r, 1), Cv(self.c3, 3, s), name="branch2"),
            B(Cv(self.d3r, 1), Cv(self.d3, 3), Cv(self.d3, 3, s), name="branch3"),
            pool,
        )
        return Blk(self.name, branches, self.cin)


BN_INCEPTION: tuple[Row, ...] = (
    Cv(64, 7, s=2, name="conv1"),
    Pool("max", 3, 2, ceil=True, name="maxpool1"),
    Cv(64, 1, name="conv2"),
    Cv(192, 3, name="conv3"),
    Pool("max", 3, 2, ceil=True, name="maxpool2"),
    #             name         in   1x1 3x3r 3x3 d3x3r d3x3 pool  proj
    BnInception("inception3a", 192, 64, 64, 64, 64, 96, "avg", 32),
    BnInception("inception3b", 256, 64, 64, 96, 64, 96, "avg", 64),
    BnInception("inception3c", 320, 0, 128, 160, 64, 96, "max", 0, s=2),
    BnInception("inception4a", 576, 224, 64, 96, 96, 128, "avg", 128),
    BnInception("inception4b", 576, 192, 96, 128, 96, 128, "avg", 128),
    BnInception("inception4c", 576, 160, 128, 160, 128, 160, "avg", 128),
    BnInception("inception4d", 608, 96, 128, 192, 160, 192, "avg", 128),
    BnInception("inception4e", 608, 0, 128, 192, 192, 256, "max", 0, s=2),
    BnInception("inception5a", 1056, 352, 192, 320, 160, 224, "avg", 128),
    BnInception("inception5b", 1024, 352, 192, 320, 192, 224, "max", 128),
)


@register_model(
    family="googlenet",
    paper="Ioffe & Szegedy 2015, arXiv:1502.03167",
    small_input=(3, 16, 16),
)
def bn_inception(*, num_classes: int = 1000, dropout: float = 0.0, **kw: Any) -> nn.Module:
    """BN-Inception (Inception v2 of the BatchNorm paper): GoogLeNet with BN after every
    conv, each 5x5 replaced by two 3x3, 3c/4e as stride-2 reduction blocks (max pool pass
    through), avg pooling in most pool branches, no dropout and no LRN; BN eps 1e-5 (Caffe).
    The table's printed widths for 4c-4e (576, 576, 1024) do not add up; the columns give
    608, 608 and 1056 (as in the released Caffe model), which is what is built.
    No torchvision counterpart; names follow our GoogLeNet (``branch1`` 1x1 ... ``branch4`` pool)."""
    table = [r.block() if isinstance(r, BnInception) else r for r in BN_INCEPTION]
    return InceptionNet(table, num_classes=num_classes, dropout=dropout, fc_name="fc", eps=1e-5, **kw)
