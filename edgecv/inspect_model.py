"""Per-layer description of a model: type, output shape, params, MACs (for ``edgecv info``)."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from edgecv.models import count_macs, create_model, get_spec, model_info


def layer_table(name: str, *, input_size: tuple[int, int, int] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    """One row per leaf module that has parameters or MACs, in forward order."""
    spec = get_spec(name)
    size = tuple(input_size or spec.input_size)
    with torch.device("meta"):
        model = create_model(spec.name, **kwargs)
    order: list[str] = []
    shapes: dict[str, list[int]] = {}
    names = {m: n for n, m in model.named_modules()}

    def hook(mod: nn.Module, _inp: Any, out: Any) -> None:
        n = names[mod]
        if n not in shapes:
            order.append(n)
        t = out[0] if isinstance(out, (tuple, list)) else out
        shapes[n] = list(t.shape[1:]) if isinstance(t, torch.Tensor) else []

    handles = [m.register_forward_hook(hook) for m in model.modules() if not any(True for _ in m.children())]
    _, macs = count_macs(model, size, per_module=True)
    for h in handles:
        h.remove()
    rows = []
    for n in order:
        mod = model.get_submodule(n)
        params = sum(p.numel() for p in mod.parameters(recurse=False))
        if params or macs.get(n):
            rows.append({"layer": n, "type": type(mod).__name__, "output": shapes.get(n, []),
                         "params": params, "macs": macs.get(n, 0)})
    return rows


def describe(name: str, **kwargs: Any) -> dict[str, Any]:
    info = model_info(name, **kwargs)
    info["layers"] = layer_table(name, **kwargs)
    return info
