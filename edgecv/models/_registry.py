"""The model registry: each builder is registered under its own function name.

``@register_model(family=..., input_size=..., paper=...)`` records how to build and
describe a model; ``create_model``/``model_info`` in :mod:`edgecv.models` use it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from edgecv.registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    name: str
    fn: Callable[..., nn.Module]
    family: str
    input_size: tuple[int, int, int]  # default (C, H, W) the published counts refer to
    paper: str  # short reference: "Sandler et al. 2018, arXiv:1801.04381"
    small_input: tuple[int, int, int]  # smallest convenient (C, H, W): used by fast tests
    num_classes: int = 1000
    dataset: str = "imagenet"  # what the default head is for: imagenet | cifar10 | mnist
    torchvision: bool = False  # state_dict names/shapes identical to torchvision's model
    kwargs: dict[str, Any] = field(default_factory=dict)  # fixed kwargs (for variants)


MODELS: Registry[ModelSpec] = Registry("model")


def register_model(
    *,
    family: str,
    paper: str,
    input_size: tuple[int, int, int] = (3, 224, 224),
    small_input: tuple[int, int, int] | None = None,
    num_classes: int = 1000,
    dataset: str = "imagenet",
    torchvision: bool = False,
    name: str | None = None,
    **kwargs: Any,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder ``fn(*, num_classes, **kw) -> nn.Module`` under its name."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or fn.__name__
        MODELS.add(
            key,
            ModelSpec(
                name=key,
                fn=fn,
                family=family,
                input_size=input_size,
                paper=paper,
                small_input=small_input or (input_size[0], 64, 64),
                num_classes=num_classes,
                dataset=dataset,
                torchvision=torchvision,
                kwargs=dict(kwargs),
            ),
        )
        return fn

    return deco
