"""Tiny ImageNet (Stanford CS231n): 64x64 ImageNet training photos, as two datasets.

* ``tiny-imagenet``: labels are ImageNet-1k indices (the wnid's index in the sorted 1,000 wnids,
  the imagenet-samples rule), classes the 1,000 ImageNet names, so that it fine-tunes and
  calibrates 1000-class ImageNet models (images are upsampled to the model's input size);
* ``tiny-imagenet-200``: its own 200 classes (sorted wnids), for models trained on it.

The shared archive holds the first 100 training images of each class
(``train/<wnid>/images/<wnid>_<i>.JPEG``, i = 0..99). Both datasets split them the same way:
``test`` = the images with i >= 90 (10 per class, 2,000 in all), ``train`` = the rest (18,000),
so an evaluation never sees a training image.
"""
from __future__ import annotations

import re

import numpy as np

from edgecv.data.folder import FolderData, SplitData
from edgecv.errors import UserError

NAMES = ("tiny-imagenet", "tiny-imagenet-200")
HELD_OUT_FROM = 90  # image index i >= this: the test split
_INDEX = re.compile(r"_(\d+)\.[A-Za-z]+$")


def _image_index(name: str) -> int:
    m = _INDEX.search(name)
    if m is None:
        raise UserError(f"Tiny ImageNet image {name!r} is not named <wnid>_<i>.JPEG; is this the Tiny ImageNet archive?")
    return int(m.group(1))


def adapt(data: FolderData, preset: str, imagenet_names: list[str] | None) -> tuple[dict[str, SplitData], list[str]]:
    """(splits, classes) of the Tiny ImageNet preset ``preset`` from the archive as read (one train split)."""
    from edgecv.data.imagenet_wnids import INDEX, WNIDS

    if "train" not in data.splits or len(data.splits) != 1:
        raise UserError(f"expected the Tiny ImageNet training archive (train/<wnid>/images/...), found splits "
                        f"{list(data.splits)}")
    wnids = list(data.classes)
    unknown = [w for w in wnids if w not in INDEX]
    if unknown:
        raise UserError(f"Tiny ImageNet classes {unknown[:3]} are not ImageNet-1k wnids; is this the Tiny ImageNet archive?")
    split = data.splits["train"]
    held = np.array([_image_index(n) >= HELD_OUT_FROM for n in split.names])
    if preset == "tiny-imagenet":
        to_1k = np.array([INDEX[w] for w in wnids], dtype=np.int64)
        split = SplitData(to_1k[split.labels], split.names, images=split.images, blob=split.blob,
                          starts=split.starts, ends=split.ends)
        classes = imagenet_names or list(WNIDS)
    else:  # the ImageNet names of its 200 wnids where the label file is there
        classes = [imagenet_names[INDEX[w]] for w in wnids] if imagenet_names else wnids
    out = {"train": split.take(np.flatnonzero(~held)), "test": split.take(np.flatnonzero(held))}
    if not len(out["test"]):
        raise UserError(f"no Tiny ImageNet images with index >= {HELD_OUT_FROM} to hold out for the test split")
    return out, classes
