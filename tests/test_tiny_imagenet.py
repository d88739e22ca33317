"""Tiny ImageNet as a dataset: ImageNet-1k labels (tiny-imagenet) or its own 200 (tiny-imagenet-200)."""
from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from edgecv.data import load_dataset
from edgecv.data.imagenet_wnids import INDEX, WNIDS
from edgecv.errors import UserError


def _wnid(name: str) -> str:
    return name.split("/")[-1].split("_")[0]


def test_imagenet_1k_labels_and_held_out_split(shared):
    train, info = load_dataset("tiny-imagenet", "train")
    test, _ = load_dataset("tiny-imagenet", "test")
    assert info.num_classes == 1000 and len(train) == 18000 and len(test) == 2000
    for ds in (train, test):  # every label is the wnid's index among the sorted 1,000
        assert all(int(y) == INDEX[_wnid(n)] for y, n in zip(ds.labels, ds.names))
    assert not set(train.names) & set(test.names)
    assert all(int(n.rsplit("_", 1)[1].split(".")[0]) >= 90 for n in test.names)
    assert info.classes[INDEX["n01443537"]].startswith("goldfish")


def test_200_class_variant_and_upsampling(shared):
    test, info = load_dataset("tiny-imagenet-200", "test", input_size=96)
    assert info.num_classes == 200 and len(test) == 2000
    assert sorted(set(int(y) for y in test.labels)) == list(range(200))
    assert np.bincount(np.asarray(test.labels)).tolist() == [10] * 200
    x, _ = test[0]
    assert tuple(x.shape) == (3, 96, 96)


def test_model_and_data_classes_must_fit(shared):
    from edgecv.workflows import evaluate_model

    with pytest.raises(UserError, match="1000 classes, the data has 200"):
        evaluate_model("mobilenet_v1_025", "imagenet", "tiny-imagenet-200", limit=10)


def test_tiny_imagenet_layout_in_a_user_archive(tmp_path):
    """The Tiny ImageNet folder layout (train/<wnid>/images/<wnid>_<i>.JPEG) read from any archive."""
    path = tmp_path / "mini-tiny.tar.gz"
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tf:
        for w in WNIDS[:3]:
            for i in range(4):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
                ti = tarfile.TarInfo(f"tiny/train/{w}/images/{w}_{i}.JPEG")
                ti.size = len(buf.getvalue())
                tf.addfile(ti, io.BytesIO(buf.getvalue()))
    ds, info = load_dataset(path, "train")
    assert info.num_classes == 3 and len(ds) == 12 and info.classes == list(WNIDS[:3])
