"""Layer targets: which Conv / Linear layers a config entry means.

A target is an fnmatch pattern on module names (``"ip1"``, ``"features.*"``,
``"classifier.6"``) or a type selector: ``"conv"`` (every convolution) or ``"fc"`` (every
Linear layer). Only layers with a weight matrix (Conv*d, Linear) are compressible; a pattern
that matches none of them is a ``UserError`` that names it and lists valid names; a selector
that selects nothing (``"conv"`` on LeNet-300-100) is simply empty.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import TypeVar

import torch.nn as nn
from torch.nn.modules.conv import _ConvNd

from edgecv.errors import UserError

V = TypeVar("V")
SELECTORS = {"conv": (_ConvNd,), "fc": (nn.Linear,)}


def compressible(model: nn.Module) -> dict[str, nn.Module]:
    """Name -> module of every Conv / Linear layer with a weight, in model order."""
    return {n: m for n, m in model.named_modules()
            if isinstance(m, (_ConvNd, nn.Linear)) and getattr(m, "weight", None) is not None}


def match(pattern: str, layers: Mapping[str, nn.Module]) -> list[str]:
    """Names in ``layers`` that ``pattern`` selects (model order)."""
    if pattern in SELECTORS:
        return [n for n, m in layers.items() if isinstance(m, SELECTORS[pattern])]
    return [n for n in layers if fnmatch.fnmatchcase(n, pattern)]


def _no_match(pattern: str, model: nn.Module, layers: Mapping[str, nn.Module]) -> UserError:
    names = list(layers)
    others = [f"{n} ({type(m).__name__})" for n, m in model.named_modules() if n and fnmatch.fnmatchcase(n, pattern)]
    why = (f"it matches {', '.join(others[:3])} but those have no conv/fc weight (only Conv*d / Linear "
           "layers with a weight are pruned, shared or quantized)" if others else "it matches no conv/fc layer")
    shown = ", ".join(names[:10]) + (f", ... ({len(names)} in all)" if len(names) > 10 else "")
    return UserError(f"layer pattern {pattern!r}: {why}; valid names: {shown or '(none)'} "
                     "or the selectors 'conv' / 'fc'")


def resolve(model: nn.Module, patterns: Iterable[str]) -> list[str]:
    """Module names selected by any of ``patterns`` (model order); each must match something."""
    layers = compressible(model)
    chosen: set[str] = set()
    for p in patterns:
        hit = match(p, layers)
        if not hit and p not in SELECTORS:
            raise _no_match(p, model, layers)
        chosen.update(hit)
    return [n for n in layers if n in chosen]


def resolve_values(model: nn.Module, spec: Mapping[str, V] | V, default_patterns: Iterable[str] = ("conv", "fc")
                   ) -> dict[str, V]:
    """Module name -> value from ``{pattern: value}`` (later entries override earlier ones, so
    ``{"conv": 8, "fc": 5, "ip1": 6}`` works), or from a scalar applied to ``default_patterns``."""
    if not isinstance(spec, Mapping):
        return {n: spec for n in resolve(model, default_patterns)}
    layers = compressible(model)
    out: dict[str, V] = {}
    for p, v in spec.items():
        hit = match(p, layers)
        if not hit and p not in SELECTORS:
            raise _no_match(p, model, layers)
        for n in hit:
            out[n] = v
    return {n: out[n] for n in layers if n in out}


def check_patterns(model: nn.Module, patterns: Iterable[str]) -> None:
    """Raise ``UserError`` for the first pattern that matches no conv/fc layer."""
    layers = compressible(model)
    for p in patterns:
        if p not in SELECTORS and not match(p, layers):
            raise _no_match(p, model, layers)


def weight_name(module_name: str) -> str:
    return f"{module_name}.weight" if module_name else "weight"
