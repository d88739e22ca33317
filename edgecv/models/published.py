"""Published parameter counts and multiply-adds of the zoo's models, with their sources.

Figures are as printed (papers.md, the seed lectures, the papers' tables). A printed figure
carries its rounding: "0.5M" means 0.45M-0.55M. ``check`` accepts a count within 2% or
within half a unit of the printed last digit, whichever is wider.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Published:
    name: str
    params: str | None  # "4.2M", "61.7K", None when the source gives none
    macs: str | None  # multiply-adds, "569M", "1.8G"
    source: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    input_hw: int | None = None  # the resolution the figure refers to (default: model's)
    note: str = ""


_UNIT = {"K": 1e3, "M": 1e6, "G": 1e9}


def parse(fig: str) -> tuple[float, float]:
    """'4.2M' -> (4.2e6, half a unit of the last digit = 0.05e6)."""
    m = re.fullmatch(r"([0-9]+)(?:\.([0-9]+))?([KMG])", fig)
    if not m:
        raise ValueError(f"bad figure {fig!r}")
    decimals = len(m.group(2) or "")
    unit = _UNIT[m.group(3)]
    return float(fig[:-1]) * unit, 0.5 * 10 ** (-decimals) * unit


def within(measured: int, fig: str, rel: float = 0.02) -> bool:
    value, half_ulp = parse(fig)
    return abs(measured - value) <= max(rel * value, half_ulp)


PAPER_DC = "Han et al. 2016 (Deep Compression), Table 1"
PUBLISHED: list[Published] = [
    Published("lenet5", "61.7K", None, "seed lecture (LeNet-5, 32x32, 6-16-120-84-10)"),
    Published("lenet_300_100", "266K", None, "papers.md: LeNet-300-100 266K (1,070 KB)"),
    Published("lenet5_caffe", "431K", None, "papers.md: Caffe LeNet-5 431K (1,720 KB)"),
    Published("alexnet", "61M", None, "papers.md: AlexNet ~61M"),
    Published("vgg11", "133M", None, "VGG Table 2, config A"),
    Published("vgg13", "133M", None, "VGG Table 2, config B"),
    Published("vgg16_c", "134M", None, "VGG Table 2, config C"),
    Published("vgg16", "138M", None, "VGG Table 2, config D"),
    Published("vgg19", "144M", None, "VGG Table 2, config E"),
    # The GoogLeNet paper's Table 1 counts in K = 1024 (3a: 163,328 weights -> "159K"); its rows sum
    # to 6,797.7K = 6.96M parameters, printed as "6.8M". Its conv1 row (34M ops) is ~3.4x too low,
    # which is why its 1.5G total matches the torchvision layout (3x3 "5x5" branch) rather than the paper's.
    Published("googlenet", "6.96M", None, "GoogLeNet Table 1 rows summed (K = 1024), printed 6.8M",
              kwargs={"branch5x5_kernel": 5}, note="paper's 5x5 branch; torchvision's default uses 3x3"),
    Published("googlenet", "6.6M", "1.5G", "torchvision model card (6,624,904 params, 1.50 GFLOPS); papers.md 1.5G"),
    Published("resnet18", "11.7M", "1.8G", "ResNet Table 1"),
    Published("resnet34", "21.8M", "3.6G", "ResNet Table 1"),
    Published("resnet50", "25.6M", "3.8G", "ResNet Table 1", kwargs={"stride_in_1x1": True},
              note="paper layout (stride in the first 1x1); torchvision's v1.5 default is 4.1G"),
    Published("resnet101", "44.5M", "7.6G", "ResNet Table 1", kwargs={"stride_in_1x1": True}),
    Published("resnet152", "60.2M", "11.3G", "ResNet Table 1", kwargs={"stride_in_1x1": True}),
    Published("resnext50_32x4d", "25.0M", "4.2G", "ResNeXt Table 1"),
    Published("resnet20", "0.27M", None, "ResNet Table 6 (CIFAR-10)"),
    Published("resnet32", "0.46M", None, "ResNet Table 6 (CIFAR-10)"),
    Published("resnet44", "0.66M", None, "ResNet Table 6 (CIFAR-10)"),
    Published("resnet56", "0.85M", None, "ResNet Table 6 (CIFAR-10)"),
    Published("resnet110", "1.7M", None, "ResNet Table 6 (CIFAR-10)"),
    Published("pyramidnet110_a48", "1.77M", None, "the authors' reference code builds 1,772,926 params; the paper's Table 4 rounds to 1.7M"),
    Published("pyramidnet272_a200", "26.0M", None, "PyramidNet Table 4 (alpha=200, bottleneck)"),
    Published("wide_resnet50_2", "68.9M", "11.4G", "torchvision model card"),
    Published("densenet121", "8.0M", "2.83G", "torchvision model card (2.83 GFLOPS = multiply-adds)"),
    Published("densenet169", "14.1M", "3.36G", "torchvision model card"),
    Published("densenet201", "20.0M", "4.29G", "torchvision model card"),
    Published("squeezenet1_0", "1.25M", None, "papers.md: SqueezeNet 1.25M params, 4.8 MB"),
    Published("shufflenet_v1_g3", None, "140M", "papers.md: ShuffleNet 1x (g=3) 140 MFLOPs"),
    Published("shufflenet_v1_g3", None, "524M", "papers.md: ShuffleNet 2x (g=3) 524 MFLOPs", kwargs={"width_mult": 2.0}),
    Published("shufflenet_v2_x0_5", "1.4M", "41M", "ShuffleNet v2 Table 5"),
    Published("shufflenet_v2_x1_0", "2.3M", "146M", "ShuffleNet v2 Table 5"),
    Published("shufflenet_v2_x1_5", "3.5M", "299M", "ShuffleNet v2 Table 5"),
    Published("shufflenet_v2_x2_0", "7.4M", "591M", "ShuffleNet v2 Table 5"),
    Published("mobilenet_v1", "4.2M", "569M", "papers.md: MobileNet v1 1.0-224"),
    Published("mobilenet_v1_075", "2.6M", "325M", "papers.md: MobileNet v1 0.75"),
    Published("mobilenet_v1_050", "1.3M", "149M", "papers.md: MobileNet v1 0.5"),
    Published("mobilenet_v1_025", "0.5M", "41M", "papers.md: MobileNet v1 0.25"),
    Published("mobilenet_v1", None, "418M", "papers.md: MobileNet v1 1.0-192", input_hw=192),
    Published("mobilenet_v1", None, "290M", "papers.md: MobileNet v1 1.0-160", input_hw=160),
    Published("mobilenet_v1", None, "186M", "papers.md: MobileNet v1 1.0-128", input_hw=128),
    Published("mobilenet_v2", "3.47M", "300M", "released-checkpoint table of the reference code (paper prints 3.4M)",
              note="the paper's 3.4M truncates the reference implementation's 3.47M"),
    Published("mobilenet_v2_140", "6.06M", "585M", "released-checkpoint table (paper prints 6.9M, inconsistent with its Table 2)"),
    Published("mobilenet_v2_035", "1.7M", "59M", "MobileNetV3 paper Table 3 (V2 0.35)"),
    Published("mobilenet_v3_large", "5.4M", "219M", "papers.md: V3-Large 1.0"),
    Published("mobilenet_v3_large_075", "4.0M", "155M", "papers.md: V3-Large 0.75"),
    Published("mobilenet_v3_small", "2.5M", "56M", "papers.md: V3-Small 1.0"),
    Published("mobilenet_v3_small_075", "2.0M", "44M", "papers.md: V3-Small 0.75"),
    Published("efficientnet_b0", "5.3M", "0.39G", "EfficientNet Table 2"),
    Published("efficientnet_b1", "7.8M", "0.70G", "EfficientNet Table 2"),
    Published("efficientnet_b2", "9.2M", "1.0G", "EfficientNet Table 2"),
    Published("efficientnet_b3", "12M", "1.8G", "EfficientNet Table 2"),
    # B4/B5: the paper prints 4.2G/9.9G; torchvision's implementation (which ours matches key for
    # key) is documented at 4.39/10.27 GFLOPS: the paper's figures are for slightly different crops.
    Published("efficientnet_b4", "19M", "4.39G", "torchvision model card (paper prints 4.2G)"),
    Published("efficientnet_b5", "30M", "10.27G", "torchvision model card (paper prints 9.9G)"),
    Published("efficientnet_b6", "43M", "19G", "EfficientNet Table 2"),
    Published("efficientnet_b7", "66M", "37.75G", "torchvision model card (paper prints 37G)"),
    # Google's Lite MAC figures (407M/631M/899M...) include element-wise ops; params are comparable.
    Published("efficientnet_lite0", "4.7M", None, "Google EfficientNet-Lite README (checkpoint has 4,652,008)"),
    Published("efficientnet_lite1", "5.4M", None, "Google EfficientNet-Lite README"),
    Published("efficientnet_lite2", "6.1M", None, "Google EfficientNet-Lite README"),
    Published("efficientnet_lite3", "8.2M", None, "Google EfficientNet-Lite README"),
    Published("efficientnet_lite4", "13.0M", None, "Google EfficientNet-Lite README"),
    Published("efficientnet_v2_s", "21.5M", "8.4G", "torchvision model card (eval at 384)"),
    Published("inception_v3", "23.8M", "5.7G", "torchvision model card (27.2M incl. aux head)"),
    Published("inception_v3", "27.2M", None, "torchvision model card, with the aux head", kwargs={"aux_logits": True}),
    Published("inception_v4", "42.7M", "12.3G", "Inception-v4 reference implementations"),
    Published("inception_resnet_v2", "55.8M", "13.2G", "Inception-ResNet-v2 reference implementations"),
    Published("xception", "22.9M", "8.4G", "Xception paper Table 3 (22.9M); 8.4G Mult-Adds at 299"),
    Published("bn_inception", "11.3M", "2.0G", "BN-Inception (released Caffe model)"),
    Published("mnasnet1_0", "4.4M", "0.31G", "torchvision model card (B1 variant)"),
    Published("convnext_tiny", "28.6M", "4.5G", "ConvNeXt Table (ImageNet-1K, 224)"),
]
