"""Train and evaluate loops (nanoGPT-style: one plain loop, DDP-aware).

``train`` runs in one process or under torchrun; ``step_hooks`` run after every
optimizer step (compression stages use them to keep pruning masks and shared values).
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from edgecv import distributed as D
from edgecv.errors import UserError
from edgecv.progress import NullProgress, Progress

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128  # global batch; split across DDP processes
    lr: float = 0.05
    optimizer: str = "sgd"  # sgd | adam | adamw
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine | constant | step (x0.1 at 50% and 75%)
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    seed: int = 0
    workers: int = 0
    device: str = "cpu"
    max_steps: int | None = None  # stop early (smoke runs)
    freeze_bn: bool = False  # BatchNorm layers stay in eval mode: running statistics and momentum untouched

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam", "adamw"):
            raise ValueError(f"optimizer must be sgd, adam or adamw, got {self.optimizer!r}")
        if self.schedule not in ("cosine", "constant", "step"):
            raise ValueError(f"schedule must be cosine, constant or step, got {self.schedule!r}")


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.momentum > 0)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_at(step: int, total: int, cfg: TrainConfig, steps_per_epoch: int) -> float:
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "step":
        return cfg.lr * (0.1 ** (int(step >= 0.5 * total) + int(step >= 0.75 * total)))
    t = (step - warm) / max(1, total - warm)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * t))


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def default_loss(cfg: TrainConfig) -> LossFn:
    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if isinstance(out, tuple):  # aux heads (GoogLeNet, Inception v3): 0.3-weighted, as the papers
            return F.cross_entropy(out[0], y, label_smoothing=cfg.label_smoothing) + 0.3 * sum(
                F.cross_entropy(o, y, label_smoothing=cfg.label_smoothing) for o in out[1:])
        return F.cross_entropy(out, y, label_smoothing=cfg.label_smoothing)

    return loss


def train(
    model: nn.Module,
    train_ds: Dataset,
    cfg: TrainConfig,
    *,
    val_ds: Dataset | None = None,
    loss_fn: LossFn | None = None,
    step_hooks: list[Callable[[nn.Module], None]] | None = None,
    params: list[nn.Parameter] | None = None,
    progress: Progress | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` in place; returns one dict of metrics per epoch.

    ``checkpoint``: a file written after every epoch (model, optimizer, data order, random states:
    :mod:`edgecv.resume`); when it exists at the start, training continues after its last epoch and
    ends in the same weights as an uninterrupted run. One process only (not under torchrun).

    Under torchrun the model is wrapped in DDP (gradients all-reduced, so every rank ends
    with identical weights) and each rank sees its shard of the data.
    """
    progress = progress or NullProgress()
    D.maybe_init()
    device = torch.device(cfg.device)
    model.to(device)
    net: nn.Module = model
    if D.is_dist():
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    per_rank = max(1, cfg.batch_size // D.world_size())
    gen = torch.Generator().manual_seed(cfg.seed)
    sampler = DistributedSampler(train_ds, seed=cfg.seed, drop_last=True) if D.is_dist() else None
    loader = DataLoader(train_ds, batch_size=per_rank, shuffle=sampler is None, sampler=sampler,
                        generator=gen if sampler is None else None, num_workers=cfg.workers, drop_last=True)
    steps_per_epoch = len(loader)
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    opt = make_optimizer(params if params is not None else [p for p in model.parameters() if p.requires_grad], cfg)
    loss_fn = loss_fn or default_loss(cfg)
    history: list[dict[str, Any]] = []
    step, first = 0, 0
    rngs: list[Any] = []
    key = f"{type(model).__name__}:{cfg}"
    if checkpoint is not None:
        from edgecv import resume

        if D.is_dist():
            raise UserError("training checkpoints (--resume) run in one process, not under torchrun")
        rngs = resume.random_states(train_ds)
        if Path(checkpoint).is_file():
            first, step, history = resume.load(checkpoint, model=model, opt=opt, gen=gen, rngs=rngs, key=key)
    for epoch in range(first, cfg.epochs):
        if step >= total:
            break
        if sampler is not None:
            sampler.set_epoch(epoch)
        net.train()
        if cfg.freeze_bn:
            for m in net.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        progress.start(f"epoch {epoch + 1}/{cfg.epochs}", min(steps_per_epoch, total - step))
        t0, seen, loss_sum, correct, labeled = time.perf_counter(), 0, 0.0, 0, 0
        for x, y in loader:
            if step >= total:
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, cfg, steps_per_epoch)
            out = net(x)
            loss = loss_fn(net, x, y, out)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for hook in step_hooks or ():
                hook(model)
            logits = out[0] if isinstance(out, tuple) else out
            seen += len(y)
            loss_sum += loss.item() * len(y)
            has = y >= 0  # label -1: an unlabeled photo (distillation), not counted in the accuracy
            correct += (logits.argmax(1)[has] == y[has]).sum().item()
            labeled += int(has.sum().item())
            step += 1
            progress.advance(1, loss=loss_sum / seen, **({"acc": 100.0 * correct / labeled} if labeled else {}))
        progress.stop()
        rec: dict[str, Any] = {"epoch": epoch + 1, "loss": loss_sum / max(1, seen),
                               "train_top1": 100.0 * correct / labeled if labeled else None,
                               "seconds": time.perf_counter() - t0, "lr": opt.param_groups[0]["lr"]}
        if val_ds is not None and D.is_main():
            rec.update({f"val_{k}": v for k, v in evaluate(model, val_ds, batch_size=256, device=cfg.device).items()
                        if k in ("top1", "top5", "loss")})
        log.info("epoch %s", rec)
        history.append(rec)
        if checkpoint is not None:
            resume.save(checkpoint, model=model, opt=opt, gen=gen, rngs=rngs, epoch=epoch + 1, step=step,
                        history=history, key=key)
    D.barrier()
    return history


@torch.no_grad()
def evaluate(model: nn.Module, ds: Dataset, *, batch_size: int = 256, device: str = "cpu",
             workers: int = 0, progress: Progress | None = None) -> dict[str, float]:
    """Top-1 / top-5 accuracy (%), mean loss and throughput (images/s) on ``ds``."""
    progress = progress or NullProgress()
    model.to(device).eval()
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers)
    n = c1 = c5 = 0
    loss_sum, compute_s = 0.0, 0.0
    progress.start("evaluate", len(loader))
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        t0 = time.perf_counter()
        out = model(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        compute_s += time.perf_counter() - t0
        out = out[0] if isinstance(out, tuple) else out
        loss_sum += F.cross_entropy(out, y, reduction="sum").item()
        top = out.topk(min(5, out.shape[1]), dim=1).indices
        c1 += (top[:, 0] == y).sum().item()
        c5 += (top == y[:, None]).any(1).sum().item()
        n += len(y)
        progress.advance(1, top1=100.0 * c1 / n)
    progress.stop()
    return {"top1": 100.0 * c1 / max(1, n), "top5": 100.0 * c5 / max(1, n), "loss": loss_sum / max(1, n),
            "n": n, "images_per_s": n / compute_s if compute_s else 0.0}


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    return asdict(cfg)
