"""Weight sharing by k-means (Deep Compression, Section 3; Han, Mao, Dally, ICLR 2016).

Per layer, the kept weights are clustered into k = 2**bits values by 1-D k-means (Eq. 1:
minimise the within-cluster sum of squares); each weight then stores only its centroid index.
In a pruned layer the index 0 is reserved for the value 0.0 (the codec's filler entries, and
every pruned position), so k-means fits 2**bits - 1 centroids to the kept weights; a dense
layer uses all 2**bits. Centroid initialisation (Section 3.2): "linear" (evenly spaced between
the min and max weight, the paper's best), "density" (evenly spaced quantiles of the weight
CDF) or "random" (Forgy: k distinct weights chosen at random). Centroids are then fine-tuned
(Section 3.3, Eq. 3) by ``MaskedTraining`` when training data is present.

k-means in 1-D is exact and fast on sorted data: the clusters are contiguous intervals whose
borders are the midpoints between sorted centroids, so each Lloyd iteration is a
``searchsorted`` of K-1 midpoints into the sorted sample plus prefix-sum differences
(O(K log n)), and it has converged when the borders stop moving. Layers with more than
``max_fit`` kept weights are fitted on a random subsample of that size (seeded; VGG-16's fc6
has 102.8M weights) and then every weight is assigned to its nearest centroid.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn as nn

from edgecv.compress import targets as T
from edgecv.compress.base import (Context, SharedWeight, Stage, TrainOptions, register_stage, retrain,
                                  targets, unlabeled_images)
from edgecv.errors import UserError

log = logging.getLogger(__name__)

Init = Literal["linear", "density", "random"]


def _init_centroids(s: torch.Tensor, k: int, init: str, lo: float, hi: float, gen: torch.Generator
                    ) -> torch.Tensor:
    """Initial centroids (float64, sorted) from the sorted fit sample ``s``."""
    m = s.numel()
    if init == "linear":
        return torch.linspace(lo, hi, k, dtype=torch.float64)
    if init == "density":
        q = (torch.arange(k, dtype=torch.float64) + 0.5) / k
        return s[(q * (m - 1)).round().long()]
    if init == "random":
        pick = torch.randperm(m, generator=gen)[:k] if m >= k else torch.randint(0, m, (k,), generator=gen)
        return s[pick].sort().values
    raise ValueError(f"unknown init {init!r}")


def kmeans_1d(x: torch.Tensor, k: int, *, init: str = "linear", iters: int = 100, seed: int = 0,
              max_fit: int = 1 << 22, reseed_empty: bool = True) -> torch.Tensor:
    """k sorted float32 centroids of the values ``x`` (Lloyd's algorithm, exact in 1-D).

    ``reseed_empty``: a centroid left with no member (linear init strands many in the gap that
    pruning leaves around zero) is moved into the cluster of largest squared error, the usual
    k-means repair; without it such centroids stay unused. Deterministic for a given ``seed``
    (used by the subsample and the "random" init)."""
    x = x.detach().reshape(-1).float().cpu()
    if x.numel() == 0:
        return torch.zeros(k)
    gen = torch.Generator().manual_seed(seed)
    lo, hi = (float(v) for v in torch.aminmax(x))
    s = x if x.numel() <= max_fit else x[torch.randint(0, x.numel(), (max_fit,), generator=gen)]
    s = s.double().sort().values
    c = _init_centroids(s, k, init, lo, hi, gen)
    zero = torch.zeros(1, dtype=torch.float64)
    cs, cs2 = torch.cat([zero, torch.cumsum(s, 0)]), torch.cat([zero, torch.cumsum(s * s, 0)])
    prev = None
    for _ in range(iters):
        mids = (c[1:] + c[:-1]) / 2
        b = torch.cat([torch.zeros(1, dtype=torch.long), torch.searchsorted(s, mids, right=True),
                       torch.tensor([s.numel()])])
        lo, hi = b[:-1], b[1:]
        cnt = (hi - lo).double()
        empty = cnt == 0
        if prev is not None and torch.equal(b, prev) and not (reseed_empty and bool(empty.any())):
            break
        prev = b
        sums = cs[hi] - cs[lo]
        c = torch.where(empty, c, sums / cnt.clamp(min=1))
        if reseed_empty and bool(empty.any()):
            # move each empty centroid into one of the clusters with the largest squared error, at
            # the 3/4 point of its sorted members (the next Lloyd step splits that cluster)
            sse = (cs2[hi] - cs2[lo]) - sums * sums / cnt.clamp(min=1)
            donors = torch.argsort(-sse, stable=True)[: int(empty.sum())]
            donors = donors[sse[donors] > 1e-30 * float(s.abs().max()) ** 2]
            if donors.numel():
                at = lo[donors] + ((hi[donors] - lo[donors]) * 3) // 4
                c[torch.nonzero(empty).reshape(-1)[: donors.numel()]] = s[at.clamp(max=s.numel() - 1)]
        c = c.sort().values
    return c.float()


def nearest(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index (long) of the nearest centroid of a SORTED codebook for every value of ``x``."""
    mids = (codebook[1:] + codebook[:-1]) / 2
    return torch.bucketize(x.detach().float(), mids.to(x.device).float(), right=False)


@torch.no_grad()
def share_weight(w: torch.Tensor, bits: int, mask: torch.Tensor | None = None, *, init: str = "linear",
                 iters: int = 100, seed: int = 0, max_fit: int = 1 << 22, reseed_empty: bool = True
                 ) -> SharedWeight:
    """Cluster one weight tensor; with ``mask`` (True = kept) codebook[0] = 0.0 is reserved."""
    flat = w.detach().reshape(-1).float()
    if mask is None:
        cb = kmeans_1d(flat, 2 ** bits, init=init, iters=iters, seed=seed, max_fit=max_fit,
                        reseed_empty=reseed_empty)
        assign = nearest(flat, cb.to(flat.device)).cpu()
    else:
        m = mask.reshape(-1).to(flat.device)
        vals = flat[m]
        fit = kmeans_1d(vals, 2 ** bits - 1, init=init, iters=iters, seed=seed, max_fit=max_fit,
                        reseed_empty=reseed_empty)
        cb = torch.cat([torch.zeros(1), fit])
        assign = torch.zeros(flat.numel(), dtype=torch.long)
        assign[m.cpu()] = 1 + nearest(vals, fit.to(vals.device)).cpu()
    return SharedWeight(codebook=cb, assign=assign.reshape(w.shape), bits=bits, sparse=mask is not None)


@dataclass
class ShareConfig(TrainOptions):
    """``bits``: index width per layer, one int for all conv/fc layers or ``{pattern: bits}``
    (default: the paper's 8 bits conv / 5 bits FC). ``init``: centroid initialisation.
    ``iters``: max Lloyd iterations (stops earlier once the clusters are stable). ``max_fit``:
    largest number of weights the k-means is fitted on (subsampled beyond). ``reseed_empty``: move
    centroids left without members into the worst cluster (see ``kmeans_1d``). ``finetune_epochs``:
    centroid fine-tuning epochs (Eq. 3), ``centroid_reduce``: "sum" (the paper) or "mean".
    ``compensate_images``: assign the weights of every Linear / 1x1 conv with GPTQ's error
    compensation and least-squares centroids, so the layer keeps the output of the model as this
    stage found it on this many unlabeled images (:mod:`edgecv.compress.gptq`; ``compensate_damp``
    the ridge relative to the mean input energy, 1.0 measured best on MobileNetV2); 0 =
    nearest-centroid rounding (the paper). ``compensate_refit``: first refit each layer by least
    squares to the reference output on its current inputs (off by default: on Tiny ImageNet
    photos it fits the calibration images, measured below in :mod:`edgecv.compress.gptq`)."""

    bits: int | dict[str, int] = field(default_factory=lambda: {"conv": 8, "fc": 5}, metadata=targets())
    init: Init = "linear"
    iters: int = 100
    max_fit: int = 1 << 22
    reseed_empty: bool = True
    finetune_epochs: int = 1
    centroid_reduce: Literal["sum", "mean"] = "sum"
    compensate_images: int = 0
    compensate_damp: float = 1.0
    compensate_refit: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.compensate_images <= 100_000:
            raise UserError(f"share: compensate_images must be in [0, 100000], got {self.compensate_images}")
        if not 0 < self.compensate_damp <= 10:
            raise UserError(f"share: compensate_damp must be in (0, 10], got {self.compensate_damp}")
        for name, b in (self.bits.items() if isinstance(self.bits, dict) else [("bits", self.bits)]):
            if not 1 <= b <= 16:
                raise UserError(f"share: bits for {name!r} must be 1..16, got {b}")
        if self.iters < 1 or self.max_fit < 1:
            raise UserError("share: iters and max_fit must be >= 1")
        if self.finetune_epochs < 0:
            raise UserError(f"finetune_epochs must be >= 0, got {self.finetune_epochs}")


@register_stage
class Share(Stage):
    """k-means weight sharing + centroid fine-tuning (see module docstring)."""

    name = "share"
    Config = ShareConfig

    def with_bits(self, bits: int) -> Share:
        b = self.config.bits
        new = {k: bits for k in b} if isinstance(b, dict) else bits
        return Share(dataclasses.replace(self.config, bits=new), origin=self.origin)

    def _apply(self, model: nn.Module, ctx: Context, report: dict[str, Any]) -> nn.Module:
        cfg: ShareConfig = self.config
        plan = T.resolve_values(model, cfg.bits)
        if not plan:
            log.warning("share: the targets select no layer of this model; nothing shared")
        mods = dict(model.named_modules())
        layers: dict[str, Any] = {}
        comp = _Compensation(model, ctx, cfg) if cfg.compensate_images else None
        if comp is not None:
            ctx.progress.start("share (compensated)", len(plan))
        for name, bits in plan.items():
            w, pname = mods[name].weight, T.weight_name(name)
            mask = ctx.masks.get(pname)
            if mask is not None and mask.shape != w.shape:
                raise UserError(f"share: mask of {pname} has shape {tuple(mask.shape)} but the weight "
                                f"{tuple(w.shape)}; run structured_prune before prune/share")
            t0 = time.perf_counter()
            sw = comp.share(name, bits, mask) if comp is not None else None
            if sw is None:
                sw = share_weight(w, bits, mask, init=cfg.init, iters=cfg.iters, seed=ctx.seed, max_fit=cfg.max_fit,
                                  reseed_empty=cfg.reseed_empty)
            if comp is not None:
                ctx.progress.advance(1)
            with torch.no_grad():
                w.copy_(sw.decode().to(w.device, w.dtype))
            ctx.shared[pname] = sw
            dt = time.perf_counter() - t0
            used = int(torch.bincount(sw.assign.reshape(-1), minlength=sw.codebook.numel()).count_nonzero())
            layers[name] = {"bits": bits, "centroids": sw.codebook.numel(), "used": used, "sparse": sw.sparse,
                            "seconds": round(dt, 3)}
            if comp is not None and name in comp.errors:
                layers[name]["output_error_vs_rounding"] = round(comp.errors[name], 4)
            log.info("share %s: %d-bit, %d of %d centroids used (%.2fs)", name, bits, used,
                     sw.codebook.numel(), dt)
        if comp is not None:
            ctx.progress.stop()
            report["compensated"] = {"layers": len(comp.errors), "images": comp.n_images}
        history = retrain(model, ctx, cfg, cfg.finetune_epochs, what="share",
                          centroid_reduce=cfg.centroid_reduce)
        report.update({"layers": layers, "retrained": bool(history)})
        if history:
            report["train"] = history[-1]
        return model


class _Compensation:
    """GPTQ-style sharing of the Linear / 1x1 conv layers (:mod:`edgecv.compress.gptq`): each one
    refit by least squares to the output of the model as the stage found it, on its inputs in the
    model shared so far, then assigned with error compensation."""

    def __init__(self, model: nn.Module, ctx: Context, cfg: ShareConfig) -> None:
        import copy

        self.model, self.cfg, self.seed, self.ctx = model, cfg, ctx.seed, ctx
        # the unshared model is only needed to refit to its outputs; GPTQ's target is the layer's own
        # weights, which are still unshared when `share` reaches the layer
        self.reference = copy.deepcopy(model).eval() if cfg.compensate_refit else None
        self.images = unlabeled_images(ctx, cfg.compensate_images)
        if self.images is None:
            log.warning("share: compensate_images needs training or calibration images; rounding instead")
        self.n_images = 0 if self.images is None else len(self.images)
        from edgecv.compress.refit import bn_after

        self.bns = bn_after(model)  # a bias-free conv's offset goes into its BatchNorm's running mean
        self.errors: dict[str, float] = {}

    @torch.no_grad()
    def share(self, name: str, bits: int, mask: torch.Tensor | None) -> SharedWeight | None:
        from edgecv.compress.gptq import gptq_share
        from edgecv.compress.refit import _inputs, images_for, refittable, set_offset, with_offset

        m = dict(self.model.named_modules())[name]
        if self.images is None or not refittable(m):
            return None
        ref = m if self.reference is None else dict(self.reference.named_modules())[name]
        device = m.weight.device
        images = images_for(m, self.images.to(device), lambda n: unlabeled_images(self.ctx, n))
        xd, idx = (None, None) if self.reference is None else _inputs(self.reference, name, images, None, 64, 16384,
                                                                       self.seed)
        xp = _inputs(self.model, name, images, idx, 64, 16384, self.seed)[0].cpu()
        rows = m.weight.shape[0]
        wd = ref.weight.detach().reshape(rows, -1).double().cpu()
        bn = self.bns.get(name) if m.bias is None else None
        bias = m.bias is not None or bn is not None
        if bias:
            xp = with_offset(xp)
            xd = None if xd is None else with_offset(xd.cpu())
            b = ref.bias.detach().double().cpu() if ref.bias is not None else torch.zeros(rows, dtype=torch.float64)
            wd = torch.cat([wd, b[:, None]], 1)
        if len(xp) < 2 * xp.shape[1]:
            log.info("share %s: %d input rows for %d features, too few to compensate; rounding", name, len(xp),
                     xp.shape[1])
            return None
        h = xp.T @ xp
        lam = self.cfg.compensate_damp * float(h.diagonal().mean()) + 1e-12
        if self.cfg.compensate_refit:  # target: the weights that best reproduce the reference output here,
            # with the ridge pulling toward the reference weights (refit.refit_layer says why)
            w_ls = torch.linalg.solve(h + lam * torch.eye(len(h), dtype=h.dtype),
                                      xp.T @ (xd.cpu() @ wd.T) + lam * wd.T).T
        else:  # target: the reference weights themselves (GPTQ as published)
            w_ls = wd
        sw, fcols, rel = gptq_share(w_ls, h, bits, None if mask is None else mask.reshape(rows, -1).cpu(),
                                    float_cols=1 if bias else 0, damp=self.cfg.compensate_damp, seed=self.seed)
        sw = SharedWeight(codebook=sw.codebook, assign=sw.assign.reshape(m.weight.shape), bits=bits,
                          sparse=sw.sparse)
        if bias:
            set_offset(m, bn, fcols[:, 0])
        self.errors[name] = rel
        log.info("share %s: %d-bit compensated, output error %.3f of rounding's", name, bits, rel)
        return sw
