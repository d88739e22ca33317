"""The library side of ``edgecv train`` / ``edgecv eval``: resolve model + data, run, report.

The CLI only parses options, calls these, and prints.
"""
from __future__ import annotations

import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from edgecv import distributed as D
from edgecv.checkpoint import load_meta, load_weights, save_checkpoint
from edgecv.engine import TrainConfig, evaluate, train
from edgecv.errors import UserError
from edgecv.models import create_model, get_spec
from edgecv.progress import Progress

log = logging.getLogger(__name__)

_KIND = {"mnist": "mnist", "fashion-mnist": "mnist", "cifar10": "cifar10", "imagenet-samples": "imagenet"}


def data_for_model(model_name: str, data: str, split: str, *, train: bool | None = None,
                   input_size: int | None = None, limit: int | None = None,
                   mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None):
    """Load ``data`` with the input size the model wants when the model was designed for it.

    A model made for the dataset's kind (LeNet-5 for MNIST: 32x32) gets its own input size;
    otherwise the dataset's native size is kept (e.g. SqueezeNet on CIFAR-10 at 32x32)
    unless ``input_size`` says otherwise.
    """
    from edgecv.data import load_dataset

    spec = get_spec(model_name)
    if input_size is None and _KIND.get(str(data)) == spec.dataset:
        input_size = spec.input_size[-1]
    ds, info = load_dataset(data, split, train_transform=train, input_size=input_size, mean=mean, std=std, limit=limit)
    in_ch = info.image_size[0]
    if in_ch != spec.input_size[0]:
        raise UserError(f"{spec.name} takes {spec.input_size[0]}-channel images but {data} has {in_ch}; "
                        f"pick a model made for it (e.g. {'lenet5' if in_ch == 1 else 'resnet20'})")
    return ds, info


def build(model_name: str, *, num_classes: int | None, weights: str | os.PathLike | None = None,
          seed: int = 0, **kwargs: Any) -> nn.Module:
    """create_model (seeded init) and, when given, strict loading of ``weights``."""
    torch.manual_seed(seed)
    if weights is not None and num_classes is None:
        num_classes = load_meta(weights).get("num_classes")
    model = create_model(model_name, num_classes=num_classes, **kwargs)
    if weights is not None:
        load_weights(model, weights)
    return model


def environment() -> dict[str, Any]:
    return {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "threads": torch.get_num_threads()}


def train_model(model_name: str, data: str, out: str | os.PathLike, cfg: TrainConfig, *,
                weights: str | None = None, input_size: int | None = None, limit: int | None = None,
                progress: Progress | None = None) -> dict[str, Any]:
    """Train a zoo model on ``data``; save safetensors + JSON metadata (rank 0); return a report."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise UserError(f"output {out} must end in .safetensors")
    if weights is not None and Path(weights).resolve() == out.resolve():
        raise UserError(f"output {out} is the input weights file; choose another -o path")
    train_ds, info = data_for_model(model_name, data, "train", train=True, input_size=input_size, limit=limit)
    test_ds, _ = data_for_model(model_name, data, "test", train=False, input_size=input_size)
    model = build(model_name, num_classes=info.num_classes, weights=weights, seed=cfg.seed)
    t0 = time.perf_counter()
    history = train(model, train_ds, cfg, progress=progress)
    seconds = time.perf_counter() - t0
    report: dict[str, Any] = {"model": get_spec(model_name).name, "data": str(data), "num_classes": info.num_classes,
                              "input_size": list(next(iter(train_ds))[0].shape), "mean": list(info.mean),
                              "std": list(info.std), "train": {**vars(cfg)}, "history": history,
                              "train_seconds": seconds, "world_size": D.world_size(), "env": environment()}
    if D.is_main():
        report["test"] = evaluate(model, test_ds, progress=progress)
        save_checkpoint(model, out, report)
        report["weights"] = str(out)
    D.barrier()
    return report


def evaluate_model(model_name: str, weights: str | None, data: str, *, split: str = "test",
                   input_size: int | None = None, limit: int | None = None, batch_size: int = 256,
                   mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                   device: str = "cpu", progress: Progress | None = None) -> dict[str, Any]:
    """Top-1/top-5/images-per-second of a model (with ``weights``) on ``data``."""
    meta = load_meta(weights) if weights else {}
    mean = mean or (tuple(meta["mean"]) if "mean" in meta else None)
    std = std or (tuple(meta["std"]) if "std" in meta else None)
    ds, info = data_for_model(model_name, data, split, train=False, input_size=input_size, limit=limit,
                              mean=mean, std=std)
    model = build(model_name, num_classes=info.num_classes, weights=weights)
    res = evaluate(model, ds, batch_size=batch_size, device=device, progress=progress)
    return {"model": get_spec(model_name).name, "weights": str(weights) if weights else None, "data": str(data),
            "split": split, **res, "env": environment()}
