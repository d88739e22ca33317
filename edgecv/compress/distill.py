"""Knowledge distillation (Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural
Network", 2015, arXiv:1503.02531).

A frozen teacher's logits ``v`` and the student's logits ``z`` are softened at temperature
``T``: ``p = softmax(v / T)``, ``q = softmax(z / T)``. The student minimises a weighted average
of the cross-entropy with these soft targets and the ordinary cross-entropy with the labels::

    L = alpha * T^2 * H(p, q)  +  (1 - alpha) * CE(z, y),      H(p, q) = -sum_i p_i log q_i

The soft term is multiplied by ``T^2`` because its gradients scale as ``1/T^2`` (paper,
Section 2), which keeps the two terms' relative contribution roughly unchanged when ``T``
changes. ``alpha = 0`` is plain training. ``H(p, q)`` differs from ``KL(p || q)`` only by the
teacher's entropy, a constant for the student, so the gradients are those of the usual
KL formulation; the reported loss is the cross-entropy.

The stage ``distill`` trains the incoming model (the student) on ``ctx.train_data`` with this
loss. It keeps pruning masks and weight sharing made by earlier stages (``MaskedTraining``),
so it can be used alone (a student from scratch) or to recover accuracy after pruning or
sharing; it runs in one process or under ``torchrun`` (DDP; the teacher is not wrapped: each
process evaluates it on its own shard). The teacher is any zoo model with its weights; it is
put in eval mode with ``requires_grad=False`` and evaluated under ``torch.no_grad()``.
It sees the student's input batches, so both must take the same input size and normalisation
(e.g. the CIFAR ResNets) and predict the same classes (checked on the first batch).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgecv.compress.base import Context, Stage, TrainOptions, check_unit, register_stage, retrain
from edgecv.errors import UserError

log = logging.getLogger(__name__)

SHARED_PREFIX = "shared:"


def _logits(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
                      temperature: float, alpha: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """``alpha * T^2 * H(softmax(v/T), softmax(z/T)) + (1 - alpha) * CE(z, y)`` averaged over the
    batch (module docstring); ``z`` = student logits, ``v`` = teacher logits (no gradient)."""
    t = float(temperature)
    if alpha == 0:
        return F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    p = F.softmax(teacher_logits.detach().float() / t, dim=1)
    log_q = F.log_softmax(student_logits.float() / t, dim=1)
    soft = -(p * log_q).sum(1).mean()
    if alpha == 1:  # soft targets only: the labels are not read (unlabeled images work)
        return (t * t) * soft
    hard = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    return alpha * (t * t) * soft + (1.0 - alpha) * hard


class DistillLoss:
    """``engine.train`` loss hook ``(net, x, y, out) -> loss``: runs the frozen teacher on ``x``.

    A student with auxiliary heads (GoogLeNet, Inception v3) distils its main head; the aux
    heads keep their 0.3-weighted hard-label loss, as in ``engine.default_loss``.
    """

    def __init__(self, teacher: nn.Module, *, temperature: float, alpha: float, label_smoothing: float = 0.0) -> None:
        self.teacher = freeze(teacher)
        self.temperature, self.alpha, self.label_smoothing = temperature, alpha, label_smoothing
        self._checked = False

    def __call__(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, out: Any) -> torch.Tensor:
        z = _logits(out)
        with torch.no_grad():
            v = _logits(self.teacher(x))
        if not self._checked:
            if v.shape != z.shape:
                raise UserError(f"distill: teacher outputs {tuple(v.shape[1:])} per image but the student "
                                f"{tuple(z.shape[1:])}; both must predict the same classes")
            self._checked = True
        loss = distillation_loss(z, v, y, temperature=self.temperature, alpha=self.alpha,
                                 label_smoothing=self.label_smoothing)
        if isinstance(out, (tuple, list)) and len(out) > 1 and self.alpha < 1:  # alpha 1: labels unused
            loss = loss + 0.3 * sum(F.cross_entropy(o, y, label_smoothing=self.label_smoothing) for o in out[1:])
        return loss


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode (BatchNorm statistics and dropout fixed) and no gradients."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def resolve_weights(path: str) -> Path:
    """``shared:rel/path`` -> ``<shared root>/rel/path`` (``edgecv.data.shared_root``); other
    paths as given (a relative path missing from the working folder is also looked up in the
    checkout, where edgecv's own trained weights live). A missing file is a UserError naming the path."""
    if path.startswith(SHARED_PREFIX):
        from edgecv.data import shared_root

        p = shared_root(required=True) / path[len(SHARED_PREFIX):]
    else:
        p = Path(path).expanduser()
        repo = Path(__file__).resolve().parents[2] / p  # edgecv's own weights/ (shipped recipes name them)
        if not p.is_absolute() and not p.is_file() and repo.is_file():
            p = repo
    if not p.is_file():
        raise UserError(f"distill: teacher weights {p} not found; give an existing file "
                        f"(or `{SHARED_PREFIX}weights/...` relative to the shared data folder)")
    return p


def load_teacher(name: str, weights: str | None, *, num_classes: int | None = None) -> nn.Module:
    """Zoo model ``name`` with ``weights`` loaded strictly (safetensors, or a weights-only torch
    file such as the CIFAR ResNet ``.th`` releases), frozen."""
    from edgecv.workflows import build

    path = resolve_weights(weights) if weights else None
    if path is None:
        log.warning("distill: teacher %s has no weights: a randomly initialised teacher teaches nothing", name)
    return freeze(build(name, num_classes=num_classes, weights=path))


@dataclass
class DistillConfig(TrainOptions):
    """``teacher``: zoo model name (may be left out when the caller passes a teacher module,
    ``edgecv.compress(..., teacher=net)``); ``teacher_weights``: its weights file (``shared:`` prefix =
    relative to the shared data folder). ``temperature`` T, ``alpha`` = weight of the soft term
    (Hinton et al. put "considerably lower weight" on the hard term; 0.9 by default). ``epochs``
    of training with the ``TrainOptions`` (lr, batch_size, weight_decay, momentum, optimizer,
    lr_schedule, max_steps); ``centroid_reduce`` as in ``share``."""

    teacher: str | None = None
    teacher_weights: str | None = None
    temperature: float = 4.0
    alpha: float = 0.9
    epochs: int = 1
    label_smoothing: float = 0.0
    centroid_reduce: Literal["sum", "mean"] = "sum"

    def __post_init__(self) -> None:
        if self.teacher:  # no teacher: edgecv.compress(..., teacher=MODULE) supplies it (checked before any stage runs)
            from edgecv.models import get_spec

            self.teacher = get_spec(self.teacher).name  # unknown names: UserError with close matches
        if not self.temperature > 0:
            raise UserError(f"distill: temperature must be > 0, got {self.temperature}")
        check_unit("distill: alpha", self.alpha, low_open=False)
        check_unit("distill: label_smoothing", self.label_smoothing, low_open=False)
        if self.epochs < 0:
            raise UserError(f"distill: epochs must be >= 0, got {self.epochs}")


@register_stage
class Distill(Stage):
    """Train the model with a frozen teacher's soft targets, keeping masks and sharing.

    ``teacher_model`` (keyword) supplies the teacher module directly instead of loading
    ``config.teacher`` / ``config.teacher_weights`` (library use and tests)."""

    name = "distill"
    Config = DistillConfig

    def __init__(self, config: DistillConfig | None = None, *, origin: Any = None,
                 teacher_model: nn.Module | None = None) -> None:
        super().__init__(config, origin=origin)
        self.teacher_model = teacher_model

    def _apply(self, model: nn.Module, ctx: Context, report: dict[str, Any]) -> nn.Module:
        cfg: DistillConfig = self.config
        report.update({"teacher": cfg.teacher, "teacher_weights": cfg.teacher_weights,
                       "temperature": cfg.temperature, "alpha": cfg.alpha, "retrained": False})
        if cfg.epochs <= 0:
            return model
        if ctx.train_data is None:
            log.warning("distill: no training data, nothing distilled (pass a dataset)")
            return model
        if self.teacher_model is None and not cfg.teacher:
            raise UserError("distill has no teacher: name a zoo model in the recipe (`teacher: resnet56`) "
                            "or pass teacher= to edgecv.compress")
        teacher = self.teacher_model if self.teacher_model is not None else load_teacher(cfg.teacher, cfg.teacher_weights)
        teacher = freeze(teacher).to(ctx.device)
        loss = DistillLoss(teacher, temperature=cfg.temperature, alpha=cfg.alpha, label_smoothing=cfg.label_smoothing)
        history = retrain(model, ctx, cfg, cfg.epochs, what="distill", loss_fn=loss,
                          centroid_reduce=cfg.centroid_reduce)
        log.info("distill: %d epoch(s) from %s at T=%g, alpha=%g: %s", cfg.epochs, cfg.teacher, cfg.temperature,
                 cfg.alpha, history[-1] if history else {})
        report["retrained"] = bool(history)
        if history:
            report["train"] = history[-1]
        return model

