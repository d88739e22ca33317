"""Parameter and multiply-add counts.

MACs come from ``torch.utils.flop_counter.FlopCounterMode`` (it counts convolutions and
matrix products, as the papers' "Mult-Adds" do; FLOPs = 2 x MACs), run on the meta
device so even VGG-19 or EfficientNet-B7 is counted in milliseconds without memory.
"""
from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_macs(model: nn.Module, input_size: tuple[int, ...], *, per_module: bool = False):
    """Multiply-accumulates of one forward pass at batch 1 (eval mode).

    Returns the total, or ``(total, {module_name: macs})`` with ``per_module`` (leaf
    modules only, so the table adds up).
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    x = torch.zeros((1, *input_size), device=device)
    counter = FlopCounterMode(display=False, depth=None)
    with counter:
        model(x)
    model.train(was_training)
    total = counter.get_total_flops() // 2
    if not per_module:
        return total
    leaves = {n for n, m in model.named_modules() if not any(True for _ in m.children())}
    table: dict[str, int] = defaultdict(int)
    for key, ops in counter.get_flop_counts().items():
        # keys look like "Global", "ModelName", "ModelName.features.0.0"
        name = key.split(".", 1)[1] if "." in key else ""
        if name in leaves:
            table[name] += sum(ops.values()) // 2
    return total, dict(table)
