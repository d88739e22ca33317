"""Datasets: MNIST, Fashion-MNIST, CIFAR-10, ImageNet samples, or any image folder / archive.

>>> ds, info = load_dataset("cifar10", split="test")       # doctest: +SKIP
>>> calib, evaluation, info = calibration_split("imagenet-samples", 100)  # doctest: +SKIP

Standard preprocessing per dataset (``mean``/``std``/``input_size`` override it):

* MNIST / Fashion-MNIST (and any IDX directory): (1, 28, 28) float, normalised with
  (0.1307,)/(0.3081,) resp. (0.2860,)/(0.3530,) (a user IDX folder: its own train statistics).
  ``input_size=32`` zero-pads 2 pixels per side (the LeNet-5 input); other sizes resize.
* CIFAR-10 (and any CIFAR batch directory or uniform image set up to 64 px): train =
  RandomCrop(32, padding=4) + horizontal flip, test = none. Mean/std default to the ImageNet
  values (0.485, 0.456, 0.406)/(0.229, 0.224, 0.225) because the shared pretrained CIFAR
  ResNets were trained with them. ``input_size`` resizes after augmentation.
* ImageNet-style (imagenet-samples, other folders/archives): test = Resize(round(s / 0.875))
  + CenterCrop(s), train = RandomResizedCrop(s) + flip, s = ``input_size`` (224), ImageNet
  mean/std (EfficientNet-Lite, for one, wants ``mean=0.5, std=0.5``).

``limit=n`` keeps n samples chosen deterministically and stratified by order: the classes are
interleaved round-robin, each in stored order, so the slice holds about n/K of each class
(the first ones). Train and test come from different files/folders, so a train slice used for
calibration never overlaps the test split; a single-split source (imagenet-samples, a plain
``<class>/`` folder) refuses ``split="train"`` - use :func:`calibration_split` there.

In-memory datasets (IDX, CIFAR) keep uint8 (N, C, H, W) tensors and augment on tensors;
archives are decoded once and cached (see :mod:`edgecv.data.folder`).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgecv.data import transforms as T
from edgecv.data.datasets import (EncodedImageDataset, FileImageDataset, ImageDataset, Opened,
                                  TensorImageDataset, open_source, stratified_order)
from edgecv.data.folder import Progress
from edgecv.data.sources import KNOWN, cache_root, pick_split, resolve, shared_root
from edgecv.errors import UserError

log = logging.getLogger(__name__)

__all__ = ["DatasetInfo", "load_dataset", "calibration_split", "shared_root", "cache_root",
           "known_datasets", "ImageDataset", "TensorImageDataset", "EncodedImageDataset",
           "FileImageDataset", "transforms"]
transforms = T
Stats = float | Sequence[float] | None


@dataclass
class DatasetInfo:
    name: str
    num_classes: int
    image_size: tuple[int, int | None, int | None]  # (C, H, W) as stored; None where sizes vary
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str]
    split: str = "test"  # the split actually read ("all" for a single-split source)
    num_samples: int = 0
    input_shape: tuple[int, int, int] = (0, 0, 0)  # (C, H, W) of the tensors the dataset yields
    splits: tuple[str, ...] = ()
    source: str = ""
    train_transform: bool = False
    style: str = ""  # "gray" | "small" | "imagenet"


def known_datasets() -> list[str]:
    return list(KNOWN)


def _stats(value: Stats, default: tuple[float, ...], channels: int, what: str
           ) -> tuple[float, ...]:
    if value is None:
        values = default
    elif isinstance(value, (int, float)):
        values = (float(value),)
    else:
        values = tuple(float(v) for v in value)
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise UserError(f"{what} has {len(values)} values for {channels}-channel images; "
                        f"give 1 or {channels}")
    if what == "std" and any(v <= 0 for v in values):
        raise UserError(f"std must be positive, got {values}")
    return values


def build_transform(opened: Opened, train: bool, input_size: int | None, mean: tuple[float, ...],
                    std: tuple[float, ...], seed: int = 0, resize: int | None = None,
                    interpolation: str = "bilinear") -> tuple[T.Compose, tuple[int, int, int]]:
    """The standard preprocessing of ``opened`` (see the module docstring) and its output shape.

    ``resize``: the short side before the centre crop of ImageNet-style evaluation (default
    round(input_size / 0.875)); ``interpolation``: bilinear | bicubic (what the weights were made with).
    """
    if input_size is not None and input_size < 1:
        raise UserError(f"input_size must be a positive number of pixels, got {input_size}")
    if resize is not None and not 1 <= resize <= 4096:
        raise UserError(f"resize must be a short side of 1..4096 pixels, got {resize}")
    if interpolation not in ("bilinear", "bicubic"):
        raise UserError(f"interpolation must be bilinear or bicubic, got {interpolation!r}")
    rng = T.RandomState(seed)
    steps: list = []
    h, w = opened.stored_hw or opened.probe_hw
    if opened.style == "imagenet":
        s = input_size or 224
        steps = [T.RandomResizedCrop(s, rng=rng), T.RandomHorizontalFlip(rng=rng)] if train \
            else [T.Resize(max(s, resize or round(s / 0.875)), interpolation), T.CenterCrop(s)]
        h = w = s
    else:
        if opened.stored_hw is None:  # a directory of small images: make the sizes agree
            steps.append(T.Resize((h, w)))
        if opened.style == "small" and train:
            steps += [T.RandomCrop((h, w), padding=h // 8, rng=rng), T.RandomHorizontalFlip(rng=rng)]
        if input_size is not None and (input_size, input_size) != (h, w):
            grow = input_size - h
            if h == w and grow > 0 and grow % 2 == 0 and grow <= 8 and opened.style == "gray":
                steps.append(T.Pad(grow // 2))  # 28 -> 32: the LeNet-5 input
            else:
                steps.append(T.Resize((input_size, input_size), interpolation))
            h = w = input_size
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps), (opened.channels, h, w)


def _open(name_or_path: str | os.PathLike[str], progress: Progress | None) -> Opened:
    return open_source(resolve(name_or_path), progress)


def _info(opened: Opened, split: str, ds: ImageDataset, shape: tuple[int, int, int],
          mean: tuple[float, ...], std: tuple[float, ...], train: bool) -> DatasetInfo:
    hw = opened.stored_hw
    return DatasetInfo(
        name=opened.source.name, num_classes=len(opened.classes),
        image_size=(opened.channels, hw[0] if hw else None, hw[1] if hw else None),
        mean=mean, std=std, classes=list(opened.classes), split=split, num_samples=len(ds),
        input_shape=shape, splits=tuple(opened.splits), source=str(opened.source.path),
        train_transform=train, style=opened.style)


def load_dataset(name_or_path: str | os.PathLike[str], split: str = "train", *,
                 train_transform: bool | None = None, input_size: int | None = None,
                 mean: Stats = None, std: Stats = None, limit: int | None = None,
                 seed: int = 0, progress: Progress | None = None, resize: int | None = None,
                 interpolation: str = "bilinear") -> tuple[ImageDataset, DatasetInfo]:
    """Load one split of a dataset with its standard preprocessing (module docstring).

    ``train_transform`` defaults to ``split == "train"``; ``seed`` seeds the augmentation;
    ``progress(done, total)`` is called while an archive is decoded the first time.
    """
    if limit is not None and limit < 1:
        raise UserError(f"limit must be at least 1, got {limit}")
    opened = _open(name_or_path, progress)
    single = len(opened.load(opened.splits[0])) if opened.splits == ["all"] else None
    chosen = pick_split(opened.splits, split, opened.source.name, single)
    data = opened.load(chosen)
    if limit is not None:
        data = data.take(stratified_order(data.labels)[:limit])
    train = chosen in ("train", "training") if train_transform is None else train_transform
    m = _stats(mean, opened.mean, opened.channels, "mean")
    s = _stats(std, opened.std, opened.channels, "std")
    transform, shape = build_transform(opened, train, input_size, m, s, seed, resize, interpolation)
    ds = opened.dataset(data, transform)
    log.info("dataset %s/%s: %d images, %d classes", opened.source.name, chosen, len(ds),
             len(opened.classes))
    log.debug("transform: %r", transform)
    return ds, _info(opened, chosen, ds, shape, m, s, train)


def calibration_split(name_or_path: str | os.PathLike[str], n: int, *,
                      input_size: int | None = None, mean: Stats = None, std: Stats = None,
                      progress: Progress | None = None, resize: int | None = None,
                      interpolation: str = "bilinear") -> tuple[ImageDataset, ImageDataset, DatasetInfo]:
    """(calibration set of n images, evaluation set, info) that never share an image.

    With train/test splits: the ``limit=n`` slice of train (evaluation transforms) and all of
    test. With a single image set: the ``limit=n`` slice of it and the remaining images (the
    evaluation set shrinks by n; logged).
    """
    if n < 1:
        raise UserError(f"calibration size must be at least 1, got {n}")
    opened = _open(name_or_path, progress)
    m = _stats(mean, opened.mean, opened.channels, "mean")
    s = _stats(std, opened.std, opened.channels, "std")
    transform, shape = build_transform(opened, False, input_size, m, s, 0, resize, interpolation)
    test_split = pick_split(opened.splits, "test", opened.source.name)
    test = opened.load(test_split)
    if any(sp in opened.splits for sp in ("train", "training")):
        train = opened.load(pick_split(opened.splits, "train", opened.source.name))
        calib = train.take(stratified_order(train.labels)[:n])
    else:
        if n >= len(test):
            raise UserError(f"calibration size {n} leaves nothing to evaluate in "
                            f"{opened.source.name} ({len(test)} images); use fewer")
        order = stratified_order(test.labels)
        calib, test = test.take(order[:n]), test.take(np.sort(order[n:]))
        log.warning("%s has a single image set: calibrating on %d images and evaluating on the "
                    "other %d", opened.source.name, n, len(test))
    evaluation = opened.dataset(test, transform)
    info = _info(opened, test_split, evaluation, shape, m, s, False)
    return opened.dataset(calib, transform), evaluation, info
