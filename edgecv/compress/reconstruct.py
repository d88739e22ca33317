"""Channel pruning by output contribution, and least-squares reconstruction of the layers after the
removed channels (He, Zhang, Sun, "Channel Pruning for Accelerating Very Deep Neural Networks",
ICCV 2017; ThiNet, Luo et al. 2017), from a few hundred unlabeled images.

Filter-norm importance ranks a channel by the weights that *produce* it. In a model whose
BatchNorm was folded and then re-balanced (``equalize``: Google's MobileNets) those norms are
nearly equal by construction, and the channel's real effect is elsewhere: in how large it is on
real images and how strongly the next layer reads it. ``OutputImportance`` scores channel ``c`` of
a torch-pruning group by its first-order contribution to every consumer's output energy,

    score_c = sum over consumers L of ||W_L[:, c]||^2 * E[x_c^2]     (x: L's input on the images)

(the zeroth-order term of ThiNet's greedy criterion), measured on unlabeled images.

After the channels are removed, every consumer whose outputs are all kept (MobileNetV2's project
convs when the residual channels are left alone, the classifier) is refit by least squares to
reproduce the unpruned model's output from the channels that remain, in model order, so each
refit also cancels what earlier pruning changed (``refit.refit_layer``). No labels, no gradients.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import torch
import torch.nn as nn

log = logging.getLogger(__name__)


def _consumer(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)


@torch.no_grad()
def input_energy(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> dict[nn.Module, torch.Tensor]:
    """E[x_c^2] of every Conv2d (groups=1) / Linear input channel over ``images`` (eval mode)."""
    sums: dict[nn.Module, torch.Tensor] = {}
    counts: dict[nn.Module, int] = {}
    hooks = []

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        x = inp[0].detach().float()
        x2 = x.square().transpose(0, 1).reshape(x.shape[1], -1) if x.dim() == 4 else x.square().reshape(-1, x.shape[-1]).T
        sums[m] = sums.get(m, 0) + x2.sum(1).cpu()
        counts[m] = counts.get(m, 0) + x2.shape[1]

    for m in model.modules():
        if _consumer(m):
            hooks.append(m.register_forward_pre_hook(hook))
    was = model.training
    model.eval()
    try:
        for i in range(0, len(images), batch_size):
            model(images[i:i + batch_size])
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return {m: sums[m] / max(1, counts[m]) for m in sums}


class OutputImportance:
    """A torch-pruning importance (``importance(group) -> scores``, one per channel of the group's
    root) from the consumers' input energy; call :meth:`measure` before each pruning step."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images
        self.energy: dict[nn.Module, torch.Tensor] = {}

    def measure(self, model: nn.Module) -> None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self.energy = input_energy(model, self.images.to(device))

    @torch.no_grad()
    def __call__(self, group: Any) -> torch.Tensor | None:
        import torch_pruning as tp

        fns = (tp.pruner.function.prune_conv_in_channels, tp.pruner.function.prune_linear_in_channels)
        score: torch.Tensor | None = None
        for i, (dep, idxs) in enumerate(group):
            layer = dep.layer
            if dep.pruning_fn not in fns or not _consumer(layer) or layer not in self.energy:
                continue
            root = group[i].root_idxs
            if any(r is None for r in root):
                continue
            w = layer.weight.detach().float().cpu()
            col = w.square().transpose(0, 1).reshape(w.shape[1], -1).sum(1)  # ||W[:, c]||^2
            local = (col * self.energy[layer])[list(idxs)]
            if score is None:
                score = torch.zeros(len(group[0][1]))  # one per channel of the root layer
            score.scatter_add_(0, torch.tensor(root), local)
        return score


@torch.no_grad()
def reconstruct(model: nn.Module, dense: nn.Module, images: torch.Tensor, *, damp: float = 0.01, seed: int = 0,
                more_images: Callable[[int], torch.Tensor | None] | None = None, progress: Any = None
                ) -> dict[str, float]:
    """Refit, in model order, every layer that lost input channels but kept all its outputs (1x1 conv
    or Linear) to the ``dense`` model's output; returns {layer: output error after / before}."""
    from edgecv.compress.refit import refit_layers, refittable

    mods, dmods = dict(model.named_modules()), dict(dense.named_modules())
    todo = []
    for n, m in mods.items():
        d = dmods.get(n)
        if d is None or not refittable(m) or type(d) is not type(m):
            continue
        if d.weight.shape[0] == m.weight.shape[0] and d.weight.shape[1] != m.weight.shape[1]:
            todo.append(n)
    out = refit_layers(model, dense, todo, lambda n: torch.ones_like(mods[n].weight, dtype=torch.bool), images,
                       damp=damp, seed=seed, progress=progress, more_images=more_images, what="reconstruct")
    log.info("reconstruct: %d layers refit to the unpruned outputs", len(out))
    return out
