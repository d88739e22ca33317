"""Structured (channel / filter) pruning with torch-pruning's dependency graph.

Unstructured pruning (``prune``) needs sparse storage or sparse kernels to pay off; removing
whole filters/channels instead shrinks the dense model that any runtime executes (Li et al.,
"Pruning Filters for Efficient ConvNets", ICLR 2017: rank filters by their L1/L2 norm). The
coupled layers (a conv's BN, the next layer's input channels, residual adds and concatenations)
are found by torch-pruning's DepGraph (Fang et al., CVPR 2023) and pruned together, physically
shrinking every tensor. The classifier (every layer whose output size equals the number of
classes, including auxiliary heads) is never pruned. With training data the model is then
fine-tuned.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn as nn

from edgecv.compress import targets as T
from edgecv.compress.base import (Context, Stage, TrainOptions, check_unit, register_stage, retrain, targets,
                                  unlabeled_images)
from edgecv.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class StructuredPruneConfig(TrainOptions):
    """``ratio``: fraction of the channels removed from every prunable layer group (torch-pruning's
    ``pruning_ratio``); ``ratios``: ``{pattern: ratio}`` per-layer overrides; ``ignore``: layer
    patterns left untouched (the classifier always is); ``importance``: filter norm "l1" or "l2", or
    "output": each channel's contribution to its consumers' outputs on ``importance_images``
    unlabeled images (:mod:`edgecv.compress.reconstruct`; the choice for folded-BN models);
    ``global_pruning``: rank channels across layers instead of per layer; ``round_to``: keep channel
    counts multiples of this; ``iterative_steps``: reach ``ratio`` in this many prune+fine-tune
    steps; ``input_size``: (C, H, W) for tracing and MAC counts (default: the model's);
    ``bn_images``: after each pruning step, re-estimate every BatchNorm's running statistics on
    this many images of the training (else calibration) data, labels unused (0 = off): removing
    channels shifts the statistics the next layers' BNs hold, and this restores much of the accuracy
    in seconds, before any fine-tuning. ``reconstruct_images``: after each step, refit every layer
    that lost input channels but kept its outputs (1x1 conv, Linear) by least squares to the
    unpruned model's output on this many unlabeled images (He et al. 2017; 0 = off)."""

    ratio: float = 0.5
    ratios: dict[str, float] = field(default_factory=dict, metadata=targets())
    ignore: list[str] = field(default_factory=list, metadata=targets())
    importance: Literal["l1", "l2", "output"] = "l2"
    importance_images: int = 256
    reconstruct_images: int = 0
    reconstruct_damp: float = 0.01
    global_pruning: bool = False
    round_to: int | None = None
    iterative_steps: int = 1
    input_size: list[int] | None = None
    finetune_epochs: int = 1
    bn_images: int = 200

    def __post_init__(self) -> None:
        check_unit("ratio", self.ratio, low_open=False)
        if not 0 <= self.bn_images <= 100_000:
            raise UserError(f"structured_prune: bn_images must be in [0, 100000], got {self.bn_images}")
        for what in ("importance_images", "reconstruct_images"):
            if not 0 <= getattr(self, what) <= 100_000:
                raise UserError(f"structured_prune: {what} must be in [0, 100000], got {getattr(self, what)}")
        if not 0 < self.reconstruct_damp <= 10:
            raise UserError(f"structured_prune: reconstruct_damp must be in (0, 10], got {self.reconstruct_damp}")
        if self.ratio >= 1:
            raise UserError(f"structured_prune: ratio must be < 1, got {self.ratio}")
        for k, v in self.ratios.items():
            if not 0 <= v < 1:
                raise UserError(f"structured_prune: ratios[{k!r}] must be in [0, 1), got {v}")
        if self.iterative_steps < 1:
            raise UserError("structured_prune: iterative_steps must be >= 1")
        if self.round_to is not None and self.round_to < 1:
            raise UserError("structured_prune: round_to must be >= 1")
        if self.finetune_epochs < 0:
            raise UserError(f"finetune_epochs must be >= 0, got {self.finetune_epochs}")


def classifier_layers(model: nn.Module, num_classes: int) -> list[nn.Module]:
    """Layers whose output size is the class count (the classifier and any auxiliary heads)."""
    out = []
    for m in T.compressible(model).values():
        n_out = m.out_features if isinstance(m, nn.Linear) else m.out_channels  # type: ignore[union-attr]
        if n_out == num_classes:
            out.append(m)
    return out


def _out_size(m: nn.Module) -> int:
    return m.out_features if isinstance(m, nn.Linear) else m.out_channels  # type: ignore[return-value]


def _reestimate_bn(model: nn.Module, ctx: Context, n: int) -> int:
    """BatchNorm statistics re-measured on ``n`` unlabeled images (training data, else calibration data)."""
    images = unlabeled_images(ctx, n)
    if images is None:
        if n:
            log.warning("structured_prune: no training or calibration images, BatchNorm statistics kept")
        return 0
    import numpy as np

    from edgecv.export.calib import recalibrate_bn

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.to("cpu")
    layers = recalibrate_bn(model, images.numpy().astype(np.float32))
    model.to(device)
    return layers


@register_stage
class StructuredPrune(Stage):
    """Filter/channel pruning that physically shrinks the model (see module docstring)."""

    name = "structured_prune"
    Config = StructuredPruneConfig

    def _input_size(self, ctx: Context) -> tuple[int, ...]:
        if self.config.input_size:
            return tuple(self.config.input_size)
        size = ctx.resolved_input_size()
        if size is None:
            for ds in (ctx.train_data, ctx.eval_data):
                if ds is not None:
                    return tuple(ds[0][0].shape)
            raise UserError("structured_prune needs an input size: set `input_size: [C, H, W]` or the model name")
        return size

    def _apply(self, model: nn.Module, ctx: Context, report: dict[str, Any]) -> nn.Module:
        try:
            import torch_pruning as tp
        except ImportError as e:  # pragma: no cover - optional dependency
            raise UserError("structured_prune needs torch-pruning: pip install 'edgecv[prune]'") from e
        from edgecv.models import count_macs, count_params

        cfg: StructuredPruneConfig = self.config
        if ctx.masks or ctx.shared:
            raise UserError("structured_prune changes tensor shapes: put it before prune / share in the recipe")
        size = self._input_size(ctx)
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        example = torch.zeros((1, *size), device=device)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            out = model(example)
        num_classes = (out[0] if isinstance(out, tuple) else out).shape[1]
        ignored = classifier_layers(model, num_classes)
        mods = T.compressible(model)
        ignored += [mods[n] for n in T.resolve(model, cfg.ignore)] if cfg.ignore else []
        ratio_dict = {mods[n]: r for n, r in T.resolve_values(model, cfg.ratios).items()} if cfg.ratios else None
        before_shape = {n: _out_size(m) for n, m in mods.items()}
        p0, c0 = count_params(model), count_macs(model, size)
        importance, dense, images = self._data_parts(model, ctx)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pruner = tp.pruner.MetaPruner(
                    model, example, importance=importance,
                    pruning_ratio=cfg.ratio, pruning_ratio_dict=ratio_dict, ignored_layers=ignored,
                    global_pruning=cfg.global_pruning, round_to=cfg.round_to, iterative_steps=cfg.iterative_steps)
        except Exception as e:  # tracing failures are model limitations, not bugs here
            raise UserError(f"structured_prune: torch-pruning could not trace this model "
                            f"({type(e).__name__}: {e}); use unstructured `prune` instead") from e
        history: list[dict[str, Any]] = []
        recon: dict[str, Any] = {}
        for step in range(cfg.iterative_steps):
            if hasattr(importance, "measure"):
                importance.measure(model)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    pruner.step()
                    with torch.no_grad():
                        model(example)
            except Exception as e:
                raise UserError(f"structured_prune: torch-pruning failed on this model "
                                f"({type(e).__name__}: {e}); try another ratio or `prune`") from e
            log.info("structured_prune step %d/%d: %d params", step + 1, cfg.iterative_steps, count_params(model))
            bn_layers = _reestimate_bn(model, ctx, cfg.bn_images)
            if dense is not None and images is not None:
                from edgecv.compress.reconstruct import reconstruct

                errs = reconstruct(model, dense, images[: cfg.reconstruct_images], damp=cfg.reconstruct_damp,
                                   seed=ctx.seed, more_images=lambda n: unlabeled_images(ctx, n),
                                   progress=ctx.progress)
                recon[f"step {step + 1}"] = {"layers": len(errs), "median_error_ratio":
                                             float(torch.tensor(list(errs.values())).median()) if errs else None}
            model.train(was_training)
            history += retrain(model, ctx, cfg, cfg.finetune_epochs, what=f"structured_prune step {step + 1}")
        model.train(was_training)
        p1, c1 = count_params(model), count_macs(model, size)
        after = T.compressible(model)
        changed = {n: [before_shape[n], _out_size(m)] for n, m in after.items()
                   if n in before_shape and before_shape[n] != _out_size(m)}
        report.update({"params_before": p0, "params_after": p1, "macs_before": c0, "macs_after": c1,
                       "input_size": list(size), "channels": changed, "retrained": bool(history),
                       "bn_reestimated_layers": bn_layers, "importance": cfg.importance})
        if recon:
            report["reconstruct"] = recon
        if history:
            report["train"] = history[-1]
        log.info("structured_prune: params %d -> %d, MACs %d -> %d", p0, p1, c0, c1)
        return model

    def _data_parts(self, model: nn.Module, ctx: Context) -> tuple[Any, nn.Module | None, torch.Tensor | None]:
        """(the torch-pruning importance, the unpruned copy for reconstruction, the unlabeled images)."""
        import copy

        import torch_pruning as tp

        cfg: StructuredPruneConfig = self.config
        n = max(cfg.reconstruct_images, cfg.importance_images if cfg.importance == "output" else 0)
        images = unlabeled_images(ctx, n) if n else None
        if n and images is None:
            raise UserError("structured_prune: importance 'output' and reconstruct_images need training or "
                            "calibration images (--data)")
        if cfg.importance == "output":
            from edgecv.compress.reconstruct import OutputImportance

            importance: Any = OutputImportance(images[: cfg.importance_images])
        else:
            importance = tp.importance.MagnitudeImportance(p=1 if cfg.importance == "l1" else 2)
        dense = copy.deepcopy(model).eval() if cfg.reconstruct_images else None
        return importance, dense, images
