"""Unstructured magnitude pruning (Han et al., "Learning both Weights and Connections",
NIPS 2015; Deep Compression Section 2).

Per layer, the ``round(keep * n)`` weights of largest magnitude are kept (exact count; ties at
the threshold go to the lowest flat indices, so the mask is deterministic); the rest are set to
zero and stay zero through retraining (``MaskedTraining``). Iterative pruning (prune -> retrain
-> prune harder) follows a geometric schedule; dropout before a pruned FC layer is scaled by
``sqrt(kept fraction)`` (Han et al. 2015, Section 3.2: D_r = D_o * sqrt(C_ir / C_io)).

``target_keep`` picks per-layer rates automatically: every layer is pruned alone at a grid of
rates and its sensitivity measured (top-1 drop on a slice of ``ctx.eval_data``, or, without
data, the share of the layer's squared weight magnitude removed); a greedy allocation then
removes, step by step, the weights whose removal costs the least sensitivity per weight until
the global kept fraction reaches the target (Han et al. 2015, Section 4, Fig. 6 sensitivity).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from edgecv.compress import targets as T
from edgecv.compress.base import (Context, Stage, TrainOptions, check_unit, register_stage, retrain,
                                  targets, unlabeled_images)
from edgecv.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_GRID = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.07, 0.05, 0.03, 0.02, 0.01]


def keep_count(keep: float, n: int) -> int:
    """Number of weights kept: round-half-up of ``keep * n``, at least 1."""
    return min(n, max(1, math.floor(keep * n + 0.5)))


@torch.no_grad()
def magnitude_mask(weight: torch.Tensor, k: int, prev: torch.Tensor | None = None) -> torch.Tensor:
    """Bool mask (weight's shape) keeping exactly the ``k`` largest |w|; ties at the threshold
    are kept in increasing flat-index order. Weights outside ``prev`` are never revived."""
    a = weight.detach().abs().reshape(-1).float()
    n = a.numel()
    if prev is not None:
        pv = prev.reshape(-1).to(a.device)
        a = a.masked_fill(~pv, -1.0)
        k = min(k, int(pv.sum()))
    if k >= n:
        return torch.ones_like(weight, dtype=torch.bool)
    thr = torch.kthvalue(a.cpu(), n - k + 1).values.to(a.device)  # k-th largest
    mask = a > thr
    need = k - int(mask.sum())
    if need > 0:
        ties = torch.nonzero(a == thr).reshape(-1)[:need]
        mask[ties] = True
    return mask.reshape(weight.shape)


@dataclass
class PruneConfig(TrainOptions):
    """``keep``: fraction of weights kept, one float for every layer in ``layers`` or
    ``{pattern: fraction}`` (later patterns override earlier ones). ``target_keep``: a global kept
    fraction over ``layers`` reached by a sensitivity scan (``keep`` entries then stay fixed).
    ``schedule``: iterative pruning as increasing fractions t_i in (0, 1] ending at 1: round i keeps
    ``keep ** t_i`` (``iterations: n`` is shorthand for t_i = i / n). Each round is followed by
    ``finetune_epochs`` of masked retraining when training data is present. ``refit_images``: after
    each round's masking, refit the kept weights of every Linear / 1x1 conv so the layer reproduces
    the dense output on this many unlabeled images (least squares, ``refit_damp`` relative ridge;
    :mod:`edgecv.compress.refit`); 0 = off."""

    keep: float | dict[str, float] | None = field(default=None, metadata=targets())
    target_keep: float | None = None
    layers: list[str] = field(default_factory=lambda: ["conv", "fc"], metadata=targets())
    schedule: list[float] | None = None
    iterations: int = 1
    scan_keep: list[float] = field(default_factory=lambda: list(DEFAULT_GRID))
    scan_samples: int = 1000
    min_keep: float = 0.01
    scale_dropout: bool = True
    finetune_epochs: int = 1
    refit_images: int = 0
    refit_damp: float = 0.01

    def __post_init__(self) -> None:
        if self.keep is None and self.target_keep is None:
            raise UserError("prune needs `keep` (per-layer fractions) or `target_keep` (global fraction)")
        for name, v in (self.keep.items() if isinstance(self.keep, dict) else [("keep", self.keep)]):
            if v is not None:
                check_unit(f"keep[{name}]" if name != "keep" else "keep", v)
        if self.target_keep is not None:
            check_unit("target_keep", self.target_keep)
            if self.keep is not None and not isinstance(self.keep, dict):
                raise UserError("prune: give `target_keep` with per-layer `keep` entries or alone, not with a "
                                "single `keep` fraction")
        check_unit("min_keep", self.min_keep)
        if self.iterations < 1:
            raise UserError(f"iterations must be >= 1, got {self.iterations}")
        if self.schedule is not None:
            if self.iterations != 1:
                raise UserError("prune: give `schedule` or `iterations`, not both")
            s = self.schedule
            if not s or any(not 0 < t <= 1 for t in s) or any(b <= a for a, b in zip(s, s[1:])) or s[-1] != 1:
                raise UserError(f"schedule must increase within (0, 1] and end at 1, got {s}")
        for v in self.scan_keep:
            check_unit("scan_keep entries", v)
        if self.finetune_epochs < 0:
            raise UserError(f"finetune_epochs must be >= 0, got {self.finetune_epochs}")
        if not 0 <= self.refit_images <= 100_000:
            raise UserError(f"prune: refit_images must be in [0, 100000], got {self.refit_images}")
        if not 0 < self.refit_damp <= 10:
            raise UserError(f"prune: refit_damp must be in (0, 10], got {self.refit_damp}")

    def rounds(self) -> list[float]:
        return list(self.schedule) if self.schedule else [(i + 1) / self.iterations for i in range(self.iterations)]


# --------------------------------------------------------------------------- sensitivity
@torch.no_grad()
def sensitivity_scan(model: nn.Module, layers: list[str], grid: list[float], ctx: Context,
                     samples: int = 1000) -> dict[str, list[float]]:
    """Per layer, the sensitivity at each keep in ``grid`` (pruning that layer alone).

    With ``ctx.eval_data``: top-1 drop (percentage points) on ``samples`` evenly spaced images.
    Without: the fraction of the layer's squared weight magnitude removed (a proxy; estimated on
    at most 2**20 sampled weights per layer).
    """
    mods = dict(model.named_modules())
    out: dict[str, list[float]] = {}
    if ctx.eval_data is None:
        gen = torch.Generator().manual_seed(ctx.seed)
        for name in layers:
            w2 = mods[name].weight.detach().reshape(-1).float().cpu().square()
            if w2.numel() > 1 << 20:
                w2 = w2[torch.randint(0, w2.numel(), (1 << 20,), generator=gen)]
            cum = torch.cumsum(w2.sort(descending=True).values.double(), 0)
            tot = float(cum[-1]) or 1.0
            out[name] = [1.0 - float(cum[keep_count(g, len(cum)) - 1]) / tot for g in grid]
        return out
    from torch.utils.data import Subset

    from edgecv.engine import evaluate

    n = len(ctx.eval_data)  # type: ignore[arg-type]
    idx = torch.linspace(0, n - 1, min(samples, n)).round().long().unique().tolist()
    ds = Subset(ctx.eval_data, idx)
    base = evaluate(model, ds, device=ctx.device, workers=ctx.workers)["top1"]
    for name in layers:
        w = mods[name].weight
        orig = w.detach().clone()
        prev = ctx.masks.get(T.weight_name(name))
        drops = []
        for g in grid:
            m = magnitude_mask(orig, keep_count(g, orig.numel()), prev)
            w.copy_(orig * m)
            drops.append(base - evaluate(model, ds, device=ctx.device, workers=ctx.workers)["top1"])
        w.copy_(orig)
        out[name] = drops
        log.info("sensitivity %s: %s", name, ", ".join(f"{g:g}:{d:+.2f}" for g, d in zip(grid, drops)))
    return out


def allocate(sizes: dict[str, int], sens: dict[str, list[float]], grid: list[float], budget: float,
             min_keep: float = 0.0) -> dict[str, float]:
    """Per-layer keep fractions whose kept total is ``budget`` weights, removing first the weights
    that cost least sensitivity per weight removed (greedy over the grid, monotone sensitivities;
    the last step is interpolated so the total lands on the budget)."""
    order = sorted(range(len(grid)), key=lambda i: -grid[i])
    g = [1.0] + [grid[i] for i in order if grid[i] < 1.0 and grid[i] >= min_keep]
    s: dict[str, list[float]] = {}
    for n in sizes:
        vals = [0.0] + [sens[n][i] for i in order if grid[i] < 1.0 and grid[i] >= min_keep]
        for j in range(1, len(vals)):  # pruning more never hurts less
            vals[j] = max(vals[j], vals[j - 1])
        s[n] = vals
    level = dict.fromkeys(sizes, 0)
    keep = dict.fromkeys(sizes, 1.0)
    kept = float(sum(sizes.values()))
    while kept > budget + 0.5:
        best: tuple[float, float, int] | None = None
        pick = ""
        for rank, n in enumerate(sizes):
            i = level[n]
            if i + 1 >= len(g):
                continue
            dp = sizes[n] * (g[i] - g[i + 1])
            key = ((s[n][i + 1] - s[n][i]) / dp, -dp, rank)
            if best is None or key < best:
                best, pick = key, n
        if best is None:
            raise UserError(f"target_keep cannot be reached with min_keep {min_keep}: lower min_keep "
                            "or raise target_keep")
        i = level[pick]
        dp = -best[1]
        if kept - dp < budget:
            keep[pick] = g[i] - (kept - budget) / sizes[pick]
            break
        level[pick] = i + 1
        keep[pick] = g[i + 1]
        kept -= dp
    return keep


def scale_dropout(model: nn.Module, keep: dict[str, float]) -> dict[str, float]:
    """Han et al. 2015 Section 3.2: a Dropout directly before a pruned Linear layer (in a
    Sequential) gets p = p_orig * sqrt(kept fraction). Returns module name -> new p."""
    changed: dict[str, float] = {}
    for cname, c in model.named_modules():
        if not isinstance(c, nn.Sequential):
            continue
        kids = list(c.named_children())
        for (dn, d), (ln, lin) in zip(kids, kids[1:]):
            full = f"{cname}.{ln}" if cname else ln
            if isinstance(d, nn.Dropout) and isinstance(lin, nn.Linear) and full in keep:
                p0 = getattr(d, "_edgecv_p0", d.p)
                d._edgecv_p0 = p0  # type: ignore[attr-defined]
                d.p = p0 * math.sqrt(keep[full])
                changed[f"{cname}.{dn}" if cname else dn] = d.p
    return changed


@register_stage
class Prune(Stage):
    """Unstructured magnitude pruning with masked retraining (see module docstring)."""

    name = "prune"
    Config = PruneConfig

    def plan(self, model: nn.Module, ctx: Context) -> dict[str, float]:
        """Module name -> final keep fraction."""
        cfg: PruneConfig = self.config
        if cfg.target_keep is None:
            return T.resolve_values(model, cfg.keep, cfg.layers)
        fixed = T.resolve_values(model, cfg.keep or {}, cfg.layers)
        scope = T.resolve(model, cfg.layers)
        mods = dict(model.named_modules())
        sizes = {n: mods[n].weight.numel() for n in dict.fromkeys([*scope, *fixed])}
        free = [n for n in sizes if n not in fixed]
        budget = cfg.target_keep * sum(sizes.values()) - sum(sizes[n] * fixed[n] for n in fixed)
        if budget < 0:
            raise UserError(f"prune: the fixed `keep` entries already keep more than target_keep "
                            f"{cfg.target_keep}")
        sens = sensitivity_scan(model, free, cfg.scan_keep, ctx, cfg.scan_samples)
        chosen = allocate({n: sizes[n] for n in free}, sens, cfg.scan_keep, budget, cfg.min_keep)
        self._sensitivity = {n: dict(zip(cfg.scan_keep, v)) for n, v in sens.items()}
        return {n: fixed.get(n, chosen.get(n, 1.0)) for n in sizes}

    def _apply(self, model: nn.Module, ctx: Context, report: dict[str, Any]) -> nn.Module:
        cfg: PruneConfig = self.config
        self._sensitivity: dict[str, dict[float, float]] = {}
        plan = self.plan(model, ctx)
        if not plan:
            log.warning("prune: the targets select no layer of this model; nothing pruned")
        clash = [n for n in plan if T.weight_name(n) in ctx.shared]
        if clash:
            raise UserError(f"prune: layers {clash[:5]} are already weight-shared; put `prune` before `share`")
        mods = dict(model.named_modules())
        history: list[dict[str, Any]] = []
        refit = _refit_setup(model, ctx, cfg)
        for r, t in enumerate(cfg.rounds()):
            with torch.no_grad():
                for name, keep in plan.items():
                    w, pname = mods[name].weight, T.weight_name(name)
                    mask = magnitude_mask(w, keep_count(keep ** t, w.numel()), ctx.masks.get(pname))
                    ctx.masks[pname] = mask.cpu()
                    w.mul_(mask.to(w.device))
            if refit is not None:
                from edgecv.compress.refit import refit_pruned

                errs = refit_pruned(model, refit[0], ctx.masks, list(plan), refit[1], damp=cfg.refit_damp,
                                    seed=ctx.seed, progress=ctx.progress,
                                    more_images=lambda n: unlabeled_images(ctx, n))
                report.setdefault("refit", {})[f"round {r + 1}"] = {
                    "layers": len(errs), "images": len(refit[1]),
                    "median_error_ratio": float(torch.tensor(list(errs.values())).median()) if errs else None}
            kept = {n: int(ctx.masks[T.weight_name(n)].sum()) / mods[n].weight.numel() for n in plan}
            if cfg.scale_dropout:
                changed = scale_dropout(model, kept)
                if changed:
                    report["dropout"] = changed
            log.info("prune round %d/%d: kept %s", r + 1, len(cfg.rounds()),
                     ", ".join(f"{n} {100 * k:.1f}%" for n, k in kept.items()))
            history += retrain(model, ctx, cfg, cfg.finetune_epochs, what=f"prune round {r + 1}")
        layers = {}
        for n in plan:
            m = ctx.masks[T.weight_name(n)]
            layers[n] = {"params": m.numel(), "kept": int(m.sum()), "keep": int(m.sum()) / m.numel()}
        total = sum(v["params"] for v in layers.values())
        kept_total = sum(v["kept"] for v in layers.values())
        report.update({"layers": layers, "params": total, "kept": kept_total,
                       "keep": kept_total / max(1, total), "rounds": len(cfg.rounds()),
                       "retrained": bool(history)})
        if self._sensitivity:
            report["sensitivity"] = {n: {str(k): v for k, v in d.items()} for n, d in self._sensitivity.items()}
        if history:
            report["train"] = history[-1]
        return model


def _refit_setup(model: nn.Module, ctx: Context, cfg: PruneConfig) -> tuple[nn.Module, torch.Tensor] | None:
    """(the dense model as the stage found it, the images) for ``refit_images``; None when off."""
    if not cfg.refit_images:
        return None
    images = unlabeled_images(ctx, cfg.refit_images)
    if images is None:
        log.warning("prune: refit_images needs training or calibration images; magnitude pruning only")
        return None
    import copy

    return copy.deepcopy(model).eval(), images
