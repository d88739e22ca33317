"""LeNets: LeNet-5 (LeCun et al. 1998), LeNet-300-100 and the Caffe "LeNet-5" that
Deep Compression (Han et al. 2016, arXiv:1510.00149) compresses.

Layer names follow the Deep Compression paper's per-layer tables (``conv1``, ``conv2``,
``ip1`` ...), so recipes can target them by the paper's names.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from edgecv.models._registry import register_model


@dataclass(frozen=True)
class Conv:
    name: str
    out: int
    k: int


@dataclass(frozen=True)
class Pool:
    k: int = 2


@dataclass(frozen=True)
class FC:
    name: str
    out: int


# LeNet-5 as the lecture draws it: 32x32 input, C1 6@5x5, S2, C3 16@5x5, S4, C5 120, F6 84, 10.
# C3 is fully connected to S2 (the 1998 paper's sparse C3 table is not kept), giving 61,706 params.
LENET5 = [Conv("conv1", 6, 5), Pool(), Conv("conv2", 16, 5), Pool(), Conv("conv3", 120, 5), FC("fc1", 84)]
# Caffe's examples/mnist/lenet.prototxt (the network Deep Compression calls LeNet-5): 431,080 params.
LENET5_CAFFE = [Conv("conv1", 20, 5), Pool(), Conv("conv2", 50, 5), Pool(), FC("ip1", 500)]
LENET_300_100 = [FC("ip1", 300), FC("ip2", 100)]

_ACT = {"tanh": nn.Tanh, "relu": nn.ReLU}


class LeNet(nn.Module):
    """A LeNet built from a table of Conv/Pool/FC rows; the classifier is named ``last``.

    ``act`` is "tanh" (the 1998 paper) or "relu" (Caffe); ``pool`` is "avg" or "max".
    Hidden layers are direct attributes (``conv1``, ``ip1`` ...) so names read like the paper.
    """

    def __init__(
        self,
        table: list,
        *,
        in_ch: int = 1,
        input_hw: int = 28,
        num_classes: int = 10,
        last: str = "ip2",
        act: str = "relu",
        pool: str = "max",
    ) -> None:
        super().__init__()
        self.order: list[str] = []
        ch, hw, flat = in_ch, input_hw, None
        pool_cls = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
        for i, row in enumerate(table):
            if isinstance(row, Conv):
                setattr(self, row.name, nn.Conv2d(ch, row.out, row.k))
                setattr(self, f"act_{row.name}", _ACT[act]())
                self.order += [row.name, f"act_{row.name}"]
                ch, hw = row.out, hw - row.k + 1
            elif isinstance(row, Pool):
                setattr(self, f"pool{i}", pool_cls(row.k))
                self.order.append(f"pool{i}")
                hw //= row.k
            else:
                if flat is None:
                    flat = ch * hw * hw
                    self.order.append("flatten")
                setattr(self, row.name, nn.Linear(flat, row.out))
                setattr(self, f"act_{row.name}", _ACT[act]())
                self.order += [row.name, f"act_{row.name}"]
                flat = row.out
        if flat is None:
            flat = ch * hw * hw
            self.order.append("flatten")
        setattr(self, last, nn.Linear(flat, num_classes))
        self.order.append(last)
        self.flatten = nn.Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.order:
            x = getattr(self, name)(x)
        return x


@register_model(family="lenet", paper="LeCun et al. 1998", input_size=(1, 32, 32),
                small_input=(1, 32, 32), num_classes=10, dataset="mnist")
def lenet5(*, num_classes: int = 10, act: str = "tanh", pool: str = "avg", in_ch: int = 1) -> nn.Module:
    """LeNet-5 as the seeds describe it: 32x32 input, 6-16-120-84-10, tanh, average pooling
    (61.7K params). MNIST's 28x28 digits are padded to 32 (``load_dataset(..., input_size=32)``)."""
    return LeNet(LENET5, in_ch=in_ch, input_hw=32, num_classes=num_classes, last="fc2", act=act, pool=pool)


@register_model(family="lenet", paper="Han et al. 2015 (Caffe LeNet-5), arXiv:1510.00149",
                input_size=(1, 28, 28), small_input=(1, 28, 28), num_classes=10, dataset="mnist")
def lenet5_caffe(*, num_classes: int = 10, in_ch: int = 1) -> nn.Module:
    """Caffe's MNIST "LeNet-5" (conv 20 and 50 filters of 5x5, max pooling, ip1 500 ReLU, ip2 10):
    431K params, 1,720 KB in float32 — the net Deep Compression's Table 1 compresses 39x."""
    return LeNet(LENET5_CAFFE, in_ch=in_ch, input_hw=28, num_classes=num_classes, last="ip2")


@register_model(family="lenet", paper="LeCun et al. 1998; Han et al. 2015, arXiv:1510.00149",
                input_size=(1, 28, 28), small_input=(1, 28, 28), num_classes=10, dataset="mnist")
def lenet_300_100(*, num_classes: int = 10, in_ch: int = 1) -> nn.Module:
    """LeNet-300-100: 784-300-100-10 fully connected, ReLU (266K params, 1,070 KB float32)."""
    return LeNet(LENET_300_100, in_ch=in_ch, input_hw=28, num_classes=num_classes, last="ip3")
