"""Dataset classes and the per-source readers behind :func:`edgecv.data.load_dataset`."""
from __future__ import annotations

import functools
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from edgecv.data import tiny_imagenet
from edgecv.data.cifar import cifar_splits, load_cifar_batches
from edgecv.data.folder import FolderData, Progress, SplitData, read_archive, scan_dir
from edgecv.data.idx import idx_splits, load_idx
from edgecv.data.sources import Source, shared_root
from edgecv.errors import UserError

log = logging.getLogger(__name__)

Transform = Callable[[object], torch.Tensor]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SMALL_MAX_SIDE = 64  # uniform images up to this size get CIFAR-style transforms
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
PRESET_STATS = {"mnist": ((0.1307,), (0.3081,)), "fashion-mnist": ((0.2860,), (0.3530,))}


class ImageDataset(Dataset):
    """Base: ``labels`` (N,) int64 numpy, ``classes``, optional ``names``; yields (tensor, label)."""

    def __init__(self, labels: np.ndarray, classes: list[str], names: list[str] | None,
                 transform: Transform | None) -> None:
        self.labels, self.classes, self.names, self.transform = labels, classes, names, transform

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> Image.Image | torch.Tensor:
        """The untransformed image (CHW uint8 tensor for in-memory data, else a PIL image)."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = self.image(index)
        return (img if self.transform is None else self.transform(img)), int(self.labels[index])


class TensorImageDataset(ImageDataset):
    """All images in memory as one (N, C, H, W) uint8 tensor; transforms run on tensors."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray, classes: list[str],
                 names: list[str] | None = None, transform: Transform | None = None) -> None:
        super().__init__(labels, classes, names, transform)
        self.images = images

    def image(self, index: int) -> torch.Tensor:
        return self.images[index]


class EncodedImageDataset(ImageDataset):
    """Encoded images (from an archive) held in memory, decoded with PIL per sample."""

    def __init__(self, split: SplitData, classes: list[str], transform: Transform | None = None
                 ) -> None:
        super().__init__(split.labels, classes, split.names, transform)
        self.blob, self.starts, self.ends = split.blob, split.starts, split.ends

    def image(self, index: int) -> Image.Image:
        start, end = int(self.starts[index]), int(self.ends[index])  # type: ignore[index]
        return _open_rgb(io.BytesIO(self.blob[start:end].tobytes()),  # type: ignore[index]
                         self.names[index] if self.names else str(index))


class FileImageDataset(ImageDataset):
    """Image files on disk, decoded with PIL per sample."""

    def __init__(self, split: SplitData, classes: list[str], transform: Transform | None = None
                 ) -> None:
        super().__init__(split.labels, classes, split.names, transform)
        self.files = split.files or []

    def image(self, index: int) -> Image.Image:
        return _open_rgb(self.files[index], str(self.files[index]))


def _open_rgb(src: io.BytesIO | Path, name: str) -> Image.Image:
    try:
        with Image.open(src) as im:
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise UserError(f"cannot decode image {name}: {e}") from e


@dataclass
class Opened:
    """A source read far enough to know its splits, classes and default preprocessing."""

    source: Source
    splits: list[str]
    classes: list[str]
    style: str  # "gray" (IDX) | "small" (CIFAR-like) | "imagenet"
    channels: int
    stored_hw: tuple[int, int] | None  # None: sizes vary (or unknown for a directory)
    probe_hw: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    load: Callable[[str], SplitData]

    def dataset(self, split: SplitData, transform: Transform | None) -> ImageDataset:
        if split.images is not None:
            images = torch.from_numpy(split.images).permute(0, 3, 1, 2).contiguous()
            return TensorImageDataset(images, split.labels, self.classes, split.names, transform)
        if split.blob is not None:
            return EncodedImageDataset(split, self.classes, transform)
        return FileImageDataset(split, self.classes, transform)


def open_source(source: Source, progress: Progress | None = None) -> Opened:
    return {"idx": _open_idx, "cifar-batches": _open_cifar, "archive": _open_folder,
            "image-dir": _open_folder}[source.format](source, progress)


def _open_idx(source: Source, progress: Progress | None) -> Opened:
    @functools.lru_cache(maxsize=2)
    def load(split: str) -> SplitData:
        images, labels = load_idx(source.path, split)
        return SplitData(labels, None, images=images[..., None])

    splits = idx_splits(source.path)
    if not splits:
        raise UserError(f"no IDX train/test file pairs in {source.path}")
    ref = load("train" if "train" in splits else splits[0])
    if source.preset in PRESET_STATS:
        mean, std = PRESET_STATS[source.preset]
    else:  # the data's own statistics (this is how the MNIST numbers were made)
        pixels = ref.images / 255.0  # type: ignore[operator]
        mean, std = (round(float(pixels.mean()), 4),), (round(float(pixels.std()), 4),)
    num = int(ref.labels.max()) + 1
    classes = FASHION_CLASSES if source.preset == "fashion-mnist" and num == 10 else \
        [str(i) for i in range(num)]
    hw = ref.images.shape[1:3]  # type: ignore[union-attr]
    return Opened(source, splits, classes, "gray", 1, hw, hw, mean, std, load)


def _open_cifar(source: Source, progress: Progress | None) -> Opened:
    classes_box: list[list[str]] = []

    @functools.lru_cache(maxsize=2)
    def load(split: str) -> SplitData:
        images, labels, classes = load_cifar_batches(source.path, split)
        classes_box.append(classes)
        return SplitData(labels, None, images=np.ascontiguousarray(images.transpose(0, 2, 3, 1)))

    splits = cifar_splits(source.path)
    if not splits:
        raise UserError(f"incomplete CIFAR batch directory {source.path}")
    load(splits[-1])  # the test batch is the small one
    return Opened(source, splits, classes_box[0], "small", 3, (32, 32), (32, 32),
                  IMAGENET_MEAN, IMAGENET_STD, load)


def _open_folder(source: Source, progress: Progress | None) -> Opened:
    data: FolderData = read_archive(source.path, progress) if source.format == "archive" \
        else scan_dir(source.path)
    classes = data.classes
    if data.layout == "wnid-files":
        classes = _imagenet_names(classes) or [data.wnid_names.get(w, w) for w in classes]
    if source.preset in tiny_imagenet.NAMES:
        from edgecv.data.imagenet_wnids import WNIDS

        splits, classes = tiny_imagenet.adapt(data, source.preset, _imagenet_names(list(WNIDS)))
        data = FolderData(classes, splits, data.layout, stored_hw=data.stored_hw, probe_hw=data.probe_hw)
    hw = data.stored_hw or data.probe_hw
    small = source.preset == "cifar10" or (
        max(hw) <= SMALL_MAX_SIDE and (data.stored_hw is not None or source.format == "image-dir"))
    return Opened(source, list(data.splits), classes, "small" if small else "imagenet", 3,
                  data.stored_hw, data.probe_hw, IMAGENET_MEAN, IMAGENET_STD,
                  lambda split: data.splits[split])


def _imagenet_names(wnids: list[str]) -> list[str] | None:
    """The 1000 ImageNet class names of the shared TFLite label file, when it matches."""
    root = shared_root(required=False)
    path = root / "weights" / "tflite-imagenet" / "imagenet_labels.txt" if root else None
    if len(wnids) != 1000 or path is None or not path.is_file():
        return None
    lines = path.read_text().splitlines()
    return lines[1:] if len(lines) == 1001 and lines[0].strip() == "background" else None


def stratified_order(labels: np.ndarray) -> np.ndarray:
    """Indices interleaving the classes round-robin, each class in stored order.

    ``stratified_order(labels)[:n]`` is the deterministic ``limit=n`` slice: about ``n / K``
    images of each of the K classes, the first ones of each class in the stored order.
    """
    n = len(labels)
    by_class = np.argsort(labels, kind="stable")
    sorted_labels = labels[by_class]
    rank = np.empty(n, dtype=np.int64)
    rank[by_class] = np.arange(n) - np.searchsorted(sorted_labels, sorted_labels, side="left")
    return np.lexsort((labels, rank))
