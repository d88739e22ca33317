"""Rebuild a channel-pruned model from its state_dict's shapes.

Structured pruning (``edgecv.compress.channel_prune``, torch-pruning) shrinks convs, BatchNorms,
Linears and LayerNorms in place. A compressed file stores the pruned tensors; to decode it, the zoo
model is built at its original width and :func:`fit_shapes` resizes every module whose tensors in
the state_dict are smaller, updating the attributes its forward reads (a depthwise conv's
``groups``, ``in/out_channels``, ``num_features``, ``normalized_shape``...). The module classes are
kept (``Conv2dSame`` stays ``Conv2dSame``), so the model behaves as the pruned one did.

Written here because torch-pruning's own save/load path (``tp.state_dict`` / ``tp.load_state_dict``)
stores the whole pruned module structure with pickle, which edgecv never loads from a file.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from edgecv.errors import UserError


def _fit_tensors(mod: nn.Module, prefix: str, state: dict[str, torch.Tensor]) -> bool:
    changed = False
    for name, p in list(mod.named_parameters(recurse=False)):
        t = state.get(prefix + name)
        if t is not None and t.shape != p.shape:
            setattr(mod, name, nn.Parameter(torch.empty(t.shape, dtype=p.dtype), requires_grad=p.requires_grad))
            changed = True
    for name, b in list(mod.named_buffers(recurse=False)):
        t = state.get(prefix + name)
        if b is not None and t is not None and t.shape != b.shape:
            mod.register_buffer(name, torch.empty(t.shape, dtype=b.dtype), persistent=True)
            changed = True
    return changed


def _fix_attributes(mod: nn.Module, name: str, depthwise: bool) -> None:
    if isinstance(mod, nn.Conv2d):
        out_c, in_per_group = mod.weight.shape[:2]
        if depthwise:  # one filter per channel: the group count follows the channels
            if in_per_group != 1:
                raise UserError(f"{name}: a depthwise conv cannot hold weights of shape {tuple(mod.weight.shape)}")
            mod.groups = mod.in_channels = mod.out_channels = int(out_c)
        else:
            mod.out_channels, mod.in_channels = int(out_c), int(in_per_group) * mod.groups
    elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
        mod.num_features = int(mod.weight.shape[0] if mod.weight is not None else mod.running_mean.shape[0])
    elif isinstance(mod, nn.Linear):
        mod.out_features, mod.in_features = (int(d) for d in mod.weight.shape)
    elif isinstance(mod, nn.LayerNorm) and mod.weight is not None:
        mod.normalized_shape = tuple(int(d) for d in mod.weight.shape)


def fit_shapes(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Resize ``model``'s modules in place to the tensor shapes of ``state``; the names of the
    modules changed. Tensors only shrink or grow along their existing dimensions; a rank change
    is refused (that is another model, and ``check_state_dict`` names it)."""
    changed: list[str] = []
    for name, mod in model.named_modules():
        prefix = f"{name}." if name else ""
        for pname, p in list(mod.named_parameters(recurse=False)) + list(mod.named_buffers(recurse=False)):
            t = state.get(prefix + pname)
            if t is not None and p is not None and t.dim() != p.dim():
                raise UserError(f"{prefix + pname}: the file holds a {t.dim()}-d tensor where the model has "
                                f"{p.dim()}-d; it was not saved from this architecture")
        depthwise = isinstance(mod, nn.Conv2d) and mod.groups > 1 and mod.groups == mod.in_channels == mod.out_channels
        if _fit_tensors(mod, prefix, state):
            _fix_attributes(mod, name, depthwise)
            changed.append(name)
    return changed
