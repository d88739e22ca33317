"""Plain retraining that keeps pruning masks and weight sharing (the "retrain" boxes of Deep
Compression's Figure 1; Han, Mao, Dally, ICLR 2016): pruned weights stay exactly zero, shared
weights move as clusters (centroid gradient = sum of member gradients, Eq. 3)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import torch.nn as nn

from edgecv.compress.base import Context, Stage, TrainOptions, register_stage, retrain
from edgecv.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class FinetuneConfig(TrainOptions):
    """``epochs`` of retraining with the ``TrainOptions`` (lr, batch_size, weight_decay, momentum,
    optimizer, lr_schedule, max_steps); ``centroid_reduce`` as in ``share``."""

    epochs: int = 1
    centroid_reduce: Literal["sum", "mean"] = "sum"

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise UserError(f"finetune: epochs must be >= 0, got {self.epochs}")


@register_stage
class Finetune(Stage):
    name = "finetune"
    Config = FinetuneConfig

    def _apply(self, model: nn.Module, ctx: Context, report: dict[str, Any]) -> nn.Module:
        cfg: FinetuneConfig = self.config
        history = retrain(model, ctx, cfg, cfg.epochs, what="finetune", centroid_reduce=cfg.centroid_reduce)
        report["retrained"] = bool(history)
        if history:
            report["train"] = history[-1]
        return model
