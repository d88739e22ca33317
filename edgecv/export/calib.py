"""Real images for calibration and for the parity/agreement check, never the same ones.

Uses :func:`edgecv.data.calibration_split`: CIFAR-10/MNIST calibrate on a stratified slice of
their train split and are checked on the test split; the ImageNet samples (one image set)
calibrate on a stratified slice and are checked on the remaining images.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from edgecv.errors import UserError
from edgecv.export.source import ExportSource

log = logging.getLogger(__name__)

DEFAULT_CALIB = {"imagenet-samples": 200}  # one image set of 1,000: 200 calibrate, 800 check
DEFAULT_CALIB_OTHER = 300  # CIFAR-10 / MNIST train images (the peers' PTQ setting in stack.md)
DEFAULT_EVAL = 1000


@dataclass
class RealData:
    name: str
    calib: np.ndarray  # (N, C, H, W) float32, normalised as the model expects
    eval: np.ndarray  # (M, C, H, W) float32, disjoint from calib
    eval_labels: np.ndarray  # (M,) int64 ground truth
    classes: list[str]


def _stack(ds, idx: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for i in idx:
        x, y = ds[int(i)]
        xs.append(x)
        ys.append(int(y))
    x = torch.stack(xs)
    if tuple(x.shape[-2:]) != size:  # non-square --input-size: the data loader makes squares
        x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x.numpy().astype(np.float32), np.asarray(ys, dtype=np.int64)


def spread(n_total: int, n: int) -> np.ndarray:
    """n indices spread evenly over range(n_total): every class of a class-sorted folder is seen."""
    if n >= n_total:
        return np.arange(n_total)
    return np.unique(np.linspace(0, n_total - 1, n).round().astype(np.int64))


def load_real(src: ExportSource, data: str | None, *, n_calib: int | None = None, n_eval: int = DEFAULT_EVAL,
              required: bool = True, progress=None) -> RealData | None:
    """Calibration and check images for ``src`` from ``data`` (default: the model's dataset).

    Returns None when ``data`` is None, the shared data is absent and ``required`` is False.
    """
    from edgecv.data import calibration_split, shared_root

    name = data or src.default_data
    if name is None:  # a user's model without a dataset named
        if required:
            raise UserError(f"{src.name}: calibration needs real images: pass calib= / --calib DATA "
                            "(a dataset name, folder or archive)")
        return None
    if data is None and shared_root(required=False) is None:
        if required:
            raise UserError(f"calibration needs real images and the shared data ({name}) was not found: "
                            "pass --calib DATA (a dataset name, folder or archive) or set EDGECV_SHARED")
        return None
    n_calib = n_calib or DEFAULT_CALIB.get(name, DEFAULT_CALIB_OTHER)
    c, h, w = src.input_size
    resize = src.meta.get("resize") if isinstance(src.meta.get("resize"), int) else None
    calib_ds, eval_ds, info = calibration_split(name, n_calib, input_size=max(h, w), mean=src.mean, std=src.std,
                                                resize=resize,
                                                interpolation=src.meta.get("interpolation") or "bilinear")
    if info.input_shape[0] != c:
        raise UserError(f"{src.name} takes {c}-channel images but {name} has {info.input_shape[0]}; "
                        f"pass --calib with {c}-channel data")
    calib, _ = _stack(calib_ds, np.arange(len(calib_ds)), (h, w))
    ev, labels = _stack(eval_ds, spread(len(eval_ds), n_eval), (h, w))
    log.info("real data %s: %d calibration + %d check images at %dx%d", name, len(calib), len(ev), h, w)
    return RealData(name=str(name), calib=calib, eval=ev, eval_labels=labels, classes=list(info.classes))


def recalibrate_bn(model: torch.nn.Module, images: np.ndarray, batch: int = 25) -> int:
    """Re-estimate every BatchNorm's running statistics on ``images``; returns how many were reset.

    Used after structured pruning (edgecv.compress.channel_prune) and for random-weight models at
    export. Random weights: activations shrink layer by layer (1e-7..1e-9 deep in a random MobileNetV3), so int8 scales become tiny and XNNPACK declines the element-wise ops
    whose operand scales differ by more than it supports (an int8 MobileNetV3-Small fell apart
    into 17 delegate partitions). With statistics measured on real images every BN output is
    normalised, as in a trained network, and the int8 file is the one a trained model would give
    for latency purposes. The model is changed in place.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    training = {m: m.training for m in model.modules()}
    momentum = {m: m.momentum for m in bns}
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
        m.train()
    with torch.no_grad():
        for i in range(0, len(images), batch):
            model(torch.from_numpy(images[i:i + batch]))
    for m, was_training in training.items():
        m.train(was_training)
    for m, value in momentum.items():
        m.momentum = value
    log.info("BatchNorm statistics of %d layers re-estimated on %d real images", len(bns), len(images))
    return len(bns)
