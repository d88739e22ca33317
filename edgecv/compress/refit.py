"""Least-squares refit of magnitude-pruned layers to the dense model's outputs, from unlabeled images.

Magnitude pruning zeroes weights and leaves the rest as they were; the layer's output then drifts,
and the drift compounds through the network (measured: keeping 45% of MobileNetV2's 1x1 conv
weights gives 0.0% top-1 before any fine-tuning). Optimal Brain Surgeon (Hassibi & Stork 1993) and
its layer-wise form (Optimal Brain Compression, Frantar & Alistarh 2022; SparseGPT 2023) instead
update the kept weights so that the layer reproduces its dense output. With the mask fixed, that
update is an ordinary least-squares problem per output row ``r`` over the kept inputs ``K``:

    min_w || X_dense W_dense[r] - X_pruned[:, K] w ||^2 + damp ||w - w_now||^2
        ->   (H_pp[K, K] + damp I) w = H_pd[K, :] W_dense[r] + damp w_now

with ``H_pp = X_pruned^T X_pruned`` and ``H_pd = X_pruned^T X_dense`` accumulated over a few hundred
images; ``X_pruned`` is the layer's input in the model pruned so far (layers are refit in model
order, so each one also corrects the error of the layers before it) and ``X_dense`` its input in
the dense model. A bias is fitted as a constant input. No labels, no gradients: seconds per layer.

Handled: ``nn.Linear`` and 1x1 ``nn.Conv2d`` with ``groups=1`` and no padding (MobileNet's
pointwise convs and classifier, ResNet's 1x1s); other layers keep their magnitude-pruned weights.
Written here because torch-pruning and nncf have no mask-preserving layer-wise refit.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import torch
import torch.nn as nn

log = logging.getLogger(__name__)


def refittable(m: nn.Module) -> bool:
    if isinstance(m, nn.Linear):
        return True
    return isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1 and m.padding in ((0, 0), 0) \
        and type(m).forward is nn.Conv2d.forward


def _rows(x: torch.Tensor, m: nn.Module) -> torch.Tensor:
    """The layer input as (positions, features): Linear (N, C); 1x1 conv (N*H'*W', C) at its stride."""
    if isinstance(m, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    s = m.stride
    x = x[:, :, ::s[0], ::s[1]]
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def images_for(m: nn.Module, images: torch.Tensor, more: Callable[[int], torch.Tensor | None] | None
               ) -> torch.Tensor:
    """The images to fit ``m`` on: a Linear sees one row per image, so with fewer images than twice
    its inputs (a classifier on 256 images: 256 rows for 1280 weights per output, an underdetermined
    fit) ``more`` supplies 2 x in_features of them; a conv sees many positions per image."""
    if isinstance(m, nn.Linear) and more is not None and len(images) < 2 * m.in_features:
        extra = more(2 * m.in_features + 64)
        if extra is not None and len(extra) > len(images):
            return extra.to(images.device)
    return images


class _Captured(Exception):
    """Raised by the capture hook: the rest of the forward pass is not needed."""


@torch.no_grad()
def _inputs(model: nn.Module, name: str, images: torch.Tensor, idx: list[torch.Tensor] | None,
            batch_size: int, max_positions: int, seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The inputs of module ``name`` (float64 rows); ``idx``: the positions sampled per batch (made
    on the first call and reused, so the pruned and the dense inputs are the same positions)."""
    mod = dict(model.named_modules())[name]
    got: list[torch.Tensor] = []

    def capture(_m: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        got.append(_rows(inp[0].detach(), mod))
        raise _Captured

    h = mod.register_forward_pre_hook(capture)
    out, chosen = [], []
    g = torch.Generator().manual_seed(seed)
    was = model.training
    model.eval()
    try:
        nb = (len(images) + batch_size - 1) // batch_size
        for b, i in enumerate(range(0, len(images), batch_size)):
            got.clear()
            try:
                model(images[i:i + batch_size])
            except _Captured:
                pass
            rows = got[0]
            if idx is None:
                k = min(len(rows), max(1, max_positions // nb))
                sel = torch.randperm(len(rows), generator=g)[:k]
                chosen.append(sel)
            else:
                sel = idx[b]
            out.append(rows[sel].double())
    finally:
        h.remove()
        model.train(was)
    return torch.cat(out), (chosen if idx is None else idx)


def with_offset(x: torch.Tensor) -> torch.Tensor:
    """``x`` (rows, features) with the constant input a fitted offset (bias) reads appended."""
    return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], 1)


@torch.no_grad()
def set_offset(m: nn.Module, bn: nn.Module | None, b: torch.Tensor) -> None:
    """Store the fitted per-output offset ``b`` of ``m``: its bias, or for a bias-free ``m`` in the
    BatchNorm ``bn`` after it (exact in eval mode: conv + b, then BN with mean mu, is the conv then BN
    with mean mu - b)."""
    if m.bias is not None:
        m.bias.copy_(b.to(m.bias.dtype).to(m.bias.device))
    elif bn is not None:
        bn.running_mean.sub_(b.to(bn.running_mean.dtype).to(bn.running_mean.device))


@torch.no_grad()
def refit_layer(m: nn.Module, mask: torch.Tensor, w_dense: torch.Tensor, b_dense: torch.Tensor | None,
                xp: torch.Tensor, xd: torch.Tensor, damp: float = 0.01, bn: nn.Module | None = None) -> float:
    """Refit ``m``'s kept weights (``mask``, ``m.weight``'s shape) in place to reproduce ``xd @ w_dense.T``
    from ``xp`` (which may have fewer features than ``xd``: a channel-pruned input); returns the
    relative output error after / before. ``bn``: the BatchNorm after a bias-free ``m``; an offset is
    then fitted too and moved into its running mean (:func:`set_offset`), which cancels the output's
    mean shift."""
    out_ch = w_dense.shape[0]
    wd = w_dense.reshape(out_ch, -1).double()
    mk = mask.reshape(out_ch, -1).bool()
    bias = m.bias is not None or bn is not None
    if bias:
        xp, xd = with_offset(xp), with_offset(xd)
        wd = torch.cat([wd, (b_dense if b_dense is not None else torch.zeros(out_ch)).double()[:, None]], 1)
        mk = torch.cat([mk, torch.ones(out_ch, 1, dtype=torch.bool)], 1)
    hpp, hpd = xp.T @ xp, xp.T @ xd
    lam = damp * float(hpp.diagonal().mean()) + 1e-12
    b_old = (m.bias if m.bias is not None else torch.zeros(out_ch)).double() if bias else None
    w_old = torch.cat([m.weight.reshape(out_ch, -1).double(), b_old[:, None]], 1) if bias \
        else m.weight.reshape(out_ch, -1).double()
    # the ridge pulls toward the layer's current weights, not toward zero: directions the images
    # barely excite (64-px Tiny ImageNet photos upsampled carry little high-frequency energy, which
    # real photos have) keep their trained values instead of being fitted to the calibration set
    target = hpd @ wd.T + lam * w_old.T  # (features, rows): H_pd W_dense^T + lam W_now^T
    new = torch.zeros(out_ch, xp.shape[1], dtype=wd.dtype)  # the layer's own inputs (fewer after channel pruning)
    for r in range(out_ch):
        k = mk[r].nonzero().squeeze(1)
        if len(k) == 0:
            continue
        a = hpp[k][:, k]  # a copy: the ridge goes on its diagonal
        a.diagonal().add_(lam)
        new[r, k] = torch.linalg.solve(a, target[k, r])
    ref = xd @ wd.T
    err_old = float(((xp @ w_old.T) - ref).square().sum())
    err_new = float(((xp @ new.T) - ref).square().sum())
    if err_new >= err_old:  # never make a layer worse (ill-conditioned statistics)
        return 1.0
    if bias:
        set_offset(m, bn, new[:, -1])
        new = new[:, :-1]
    m.weight.copy_(new.reshape(m.weight.shape).to(m.weight.dtype).to(m.weight.device))
    return err_new / max(err_old, 1e-30)


@torch.no_grad()
def refit_pruned(model: nn.Module, dense: nn.Module, masks: dict[str, torch.Tensor], layers: list[str],
                 images: torch.Tensor, *, damp: float = 0.01, batch_size: int = 64, max_positions: int = 16384,
                 seed: int = 0, progress: Any = None, more_images: Callable[[int], torch.Tensor | None] | None = None
                 ) -> dict[str, float]:
    """Refit every refittable layer of ``layers`` (model order) whose weight has a mask in ``masks``;
    ``dense``: the same architecture before pruning; ``more_images(n)``: n images for a classifier
    (:func:`images_for`). Returns {layer: relative error after/before}."""
    mods = dict(model.named_modules())
    todo = [n for n in layers if refittable(mods[n]) and f"{n}.weight" in masks]
    skipped = [n for n in layers if n not in todo]
    if skipped:
        log.info("refit: %d layers keep their magnitude-pruned weights (not Linear / 1x1 conv): %s",
                 len(skipped), ", ".join(skipped[:5]))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return refit_layers(model, dense, todo, lambda n: masks[f"{n}.weight"].to(device), images, damp=damp,
                        batch_size=batch_size, max_positions=max_positions, seed=seed, progress=progress,
                        more_images=more_images, what="refit")


@torch.no_grad()
def refit_layers(model: nn.Module, dense: nn.Module, todo: list[str], mask_of: Callable[[str], torch.Tensor],
                 images: torch.Tensor, *, damp: float = 0.01, batch_size: int = 64, max_positions: int = 16384,
                 seed: int = 0, progress: Any = None, more_images: Callable[[int], torch.Tensor | None] | None = None,
                 what: str = "refit") -> dict[str, float]:
    """Refit the layers ``todo`` (model order, all refittable) of ``model`` to ``dense``'s outputs, each
    on its inputs in ``model`` as refit so far; ``mask_of(name)``: its kept weights. A bias-free conv
    before a BatchNorm gets its offset in the BN (``refit_layer``). Returns {layer: error after/before}."""
    mods, dmods = dict(model.named_modules()), dict(dense.named_modules())
    bns = bn_after(model)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    images = images.to(device)
    out: dict[str, float] = {}
    if progress is not None:
        progress.start(what, len(todo))
    for n in todo:
        m, dm = mods[n], dmods[n]
        imgs = images_for(m, images, more_images)
        xd, idx = _inputs(dense, n, imgs, None, batch_size, max_positions, seed)
        xp, _ = _inputs(model, n, imgs, idx, batch_size, max_positions, seed)
        out[n] = refit_layer(m, mask_of(n), dm.weight.detach().cpu(),
                             None if dm.bias is None else dm.bias.detach().cpu(), xp.cpu(), xd.cpu(), damp,
                             bn=bns.get(n) if m.bias is None else None)
        if progress is not None:
            progress.advance(1)
    if progress is not None:
        progress.stop()
    return out


def bn_after(model: nn.Module) -> dict[str, nn.Module]:
    """{conv name: the BatchNorm2d that alone consumes it} (``equalize.conv_bn_pairs``)."""
    from edgecv.compress.equalize import conv_bn_pairs

    return {name: bn for name, _conv, bn in conv_bn_pairs(model)}
