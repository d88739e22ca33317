"""edgecv.data: readers on the real shared datasets (skipped without them) and on tiny files."""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from edgecv.data import (DatasetInfo, TensorImageDataset, calibration_split, load_dataset,
                         shared_root)
from edgecv.data import transforms as T
from edgecv.data.cifar import safe_load
from edgecv.errors import UserError

SKIP_SHARED = "shared data not found: set EDGECV_SHARED"
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="session")
def shared() -> Path:
    root = shared_root(required=False)
    if root is None:
        pytest.skip(SKIP_SHARED)
    return root


def _need(shared: Path, rel: str) -> None:
    if not (shared / rel).exists():
        pytest.skip(f"shared data not found: {shared / rel} is missing (set EDGECV_SHARED)")


@pytest.fixture(scope="session")
def cifar_test(shared):
    _need(shared, "data/cifar10-jpeg.tar.xz")
    return load_dataset("cifar10", "test")  # first run decodes + caches (~10-30 s)


@pytest.fixture(scope="session")
def imagenet(shared):
    _need(shared, "data/imagenet-samples.tar.xz")
    return load_dataset("imagenet-samples", "test")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("EDGECV_CACHE", str(path))
    return path


def _digest(x: torch.Tensor) -> str:
    return hashlib.sha1(x.contiguous().numpy().tobytes()).hexdigest()


# ---------------------------------------------------------------- MNIST / Fashion-MNIST
def test_mnist_sizes_labels_and_first_label(shared):
    _need(shared, "data/mnist")
    train, info = load_dataset("mnist", "train")
    test, _ = load_dataset("mnist", "test")
    assert (len(train), len(test)) == (60000, 10000)
    assert np.bincount(train.labels).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(test.labels).tolist() == MNIST_TEST_COUNTS
    assert sum(MNIST_TRAIN_COUNTS) == 60000 and sum(MNIST_TEST_COUNTS) == 10000
    x, y = train[0]
    assert y == 5 and int(train.labels[0]) == 5  # the canonical file's first label
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert isinstance(info, DatasetInfo) and info.num_classes == 10
    assert info.image_size == (1, 28, 28) and info.mean == (0.1307,) and info.std == (0.3081,)
    # normalisation really applied: background pixel 0 -> -mean/std
    assert x.min().item() == pytest.approx(-0.1307 / 0.3081, abs=1e-5)


def test_mnist_input_size_32_pads_for_lenet(shared):
    _need(shared, "data/mnist")
    ds, info = load_dataset("mnist", "test", input_size=32, limit=10)
    raw, _ = load_dataset("mnist", "test", limit=10)
    x, x28 = ds[3][0], raw[3][0]
    assert x.shape == (1, 32, 32) and info.input_shape == (1, 32, 32)
    assert torch.equal(x[:, 2:30, 2:30], x28)
    assert torch.allclose(x[:, :2], torch.tensor(-0.1307 / 0.3081))
    assert sorted(ds.labels.tolist()) == list(range(10))  # limit=10 is one per class


def test_fashion_mnist_balanced(shared):
    _need(shared, "data/fashion-mnist")
    train, info = load_dataset("fashion-mnist", "train")
    test, _ = load_dataset("fashion-mnist", "test")
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert int(train.labels[0]) == 9 and info.classes[9] == "Ankle boot"
    assert info.mean == (0.2860,) and info.std == (0.3530,)


def test_limit_is_stratified_deterministic_and_disjoint_from_test(shared):
    _need(shared, "data/mnist")
    a, _ = load_dataset("mnist", "train", limit=50)
    b, _ = load_dataset("mnist", "train", limit=50)
    assert np.array_equal(a.labels, b.labels) and np.bincount(a.labels).tolist() == [5] * 10
    calib, evaluation, _ = calibration_split("mnist", 256)
    assert len(calib) == 256 and len(evaluation) == 10000
    test_hashes = {_digest(evaluation.images[i]) for i in range(len(evaluation))}
    assert not {_digest(calib.images[i]) for i in range(len(calib))} & test_hashes


# ---------------------------------------------------------------- CIFAR-10 (JPEG archive)
def test_cifar_test_split(cifar_test):
    ds, info = cifar_test
    assert len(ds) == 10000 and np.bincount(ds.labels).tolist() == [1000] * 10
    assert info.image_size == (3, 32, 32) and info.input_shape == (3, 32, 32)
    assert info.classes[:3] == ["airplane", "automobile", "bird"] and info.num_classes == 10
    assert info.mean == (0.485, 0.456, 0.406) and info.std == (0.229, 0.224, 0.225)
    assert ds.images.shape == (10000, 3, 32, 32) and ds.images.dtype == torch.uint8
    x, y = ds[1234]
    assert x.shape == (3, 32, 32) and y == int(ds.labels[1234])
    assert ds.names[0] == "test/airplane/0000.jpg"
    ref = np.asarray(Image.open(io.BytesIO(_member(info.source, "cifar10/" + ds.names[0]))))
    assert np.array_equal(ds.images[0].permute(1, 2, 0).numpy(), ref)


def _member(archive: str, name: str) -> bytes:
    with tarfile.open(archive, "r|*") as tf:  # stream: stop at the member, no full scan
        for m in tf:
            if m.name == name:
                f = tf.extractfile(m)
                assert f is not None
                return f.read()
    raise AssertionError(f"{name} not in {archive}")


def test_cifar_train_epoch_shapes(cifar_test):
    ds, info = load_dataset("cifar10", "train")  # cached by the fixture's decode
    assert len(ds) == 50000 and np.bincount(ds.labels).tolist() == [5000] * 10
    assert info.train_transform and "RandomCrop" in repr(ds.transform)
    x, y = next(iter(DataLoader(ds, batch_size=128, shuffle=True, num_workers=0)))
    assert x.shape == (128, 3, 32, 32) and y.dtype == torch.int64
    with pytest.raises(UserError, match="no split 'val2'"):
        load_dataset("cifar10", "val2")


# ---------------------------------------------------------------- ImageNet samples
def test_imagenet_samples(imagenet):
    ds, info = imagenet
    assert len(ds) == 1000 and sorted(ds.labels.tolist()) == list(range(1000))
    wnids = sorted(n[:9] for n in ds.names)
    for name in ("n01440764_tench.JPEG", "n04335435_streetcar.JPEG", "n15075141_toilet_tissue.JPEG"):
        i = ds.names.index(name)
        assert int(ds.labels[i]) == wnids.index(name[:9])
    assert int(ds.labels[ds.names.index("n01440764_tench.JPEG")]) == 0
    assert info.classes[0].startswith("tench") and info.image_size == (3, None, None)
    x, y = ds[ds.names.index("n04335435_streetcar.JPEG")]
    assert x.shape == (3, 224, 224) and info.classes[y].startswith("streetcar")
    with pytest.raises(UserError, match="no train split"):
        load_dataset("imagenet-samples", "train")


def test_imagenet_input_size_and_calibration(imagenet):
    ds, info = load_dataset("imagenet-samples", "test", input_size=160, mean=0.5, std=0.5, limit=3)
    assert ds[0][0].shape == (3, 160, 160) and info.mean == (0.5, 0.5, 0.5)
    assert "Resize(183)" in repr(ds.transform)  # round(160 / 0.875)
    calib, evaluation, _ = calibration_split("imagenet-samples", 100)
    assert (len(calib), len(evaluation)) == (100, 900)
    assert not set(calib.names) & set(evaluation.names)
    assert len(set(calib.names) | set(evaluation.names)) == 1000


# ---------------------------------------------------------------- transforms
def _pil(h: int, w: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8))


def _chw(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()


def test_center_crop_and_resize():
    img = _pil(50, 70)
    out = T.CenterCrop(32)(img)
    assert out.size == (32, 32)
    assert np.array_equal(np.array(out), np.array(img)[9:41, 19:51])  # round((50-32)/2)=9
    t = T.CenterCrop((20, 30))(_chw(img))
    assert t.shape == (3, 20, 30) and torch.equal(t, _chw(img)[:, 15:35, 20:50])
    padded = T.CenterCrop(56)(_chw(img))  # larger than the image: zero padded
    assert padded.shape == (3, 56, 56) and padded[:, :3].sum() == 0
    assert T.Resize(32)(img).size == (44, 32)  # (w, h): short side 32, long int(32*70/50)
    assert T.Resize(32)(_chw(img)).shape == (3, 32, 44)
    diff = (_chw(T.Resize(32)(img)).float() - T.Resize(32)(_chw(img)).float()).abs().mean()
    assert diff < 3  # PIL and tensor antialiased bilinear agree closely


def test_normalize_and_to_tensor_math():
    arr = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    x = T.ToTensor()(arr)
    assert x.shape == (3, 2, 3) and x[1, 0, 2].item() == pytest.approx(arr[0, 2, 1] / 255)
    y = T.Normalize((0.1, 0.2, 0.3), (0.5, 0.25, 2.0))(x)
    expect = (x - torch.tensor([0.1, 0.2, 0.3]).view(3, 1, 1)) / torch.tensor([0.5, 0.25, 2.0]).view(3, 1, 1)
    assert torch.allclose(y, expect) and not torch.equal(x, y)


def test_random_crop_padding_and_flip():
    img = _chw(_pil(32, 32, 1))
    padded = torch.zeros(3, 40, 40, dtype=torch.uint8)
    padded[:, 4:36, 4:36] = img
    crop = T.RandomCrop(32, padding=4, rng=3)
    windows: set[tuple[int, int]] = set()
    for _ in range(20):
        out = crop(img)
        assert out.shape == (3, 32, 32)
        hits = [(i, j) for i in range(9) for j in range(9)
                if torch.equal(out, padded[:, i:i + 32, j:j + 32])]
        assert hits, "crop is not a window of the zero-padded image"
        windows.add(hits[0])
    assert len(windows) > 5
    pil = T.RandomCrop(32, padding=4, rng=3)(_pil(32, 32, 1))
    assert pil.size == (32, 32)
    always = T.RandomHorizontalFlip(p=1.0)
    assert torch.equal(always(img), img[:, :, torch.arange(31, -1, -1)])
    assert np.array_equal(np.array(always(_pil(8, 9))), np.array(_pil(8, 9))[:, ::-1])
    assert torch.equal(T.RandomHorizontalFlip(p=0.0)(img), img)


def test_seeded_determinism():
    img = _chw(_pil(64, 80, 2))

    def pipeline(seed):
        rng = T.RandomState(seed)
        return T.Compose([T.RandomResizedCrop(48, rng=rng), T.RandomHorizontalFlip(rng=rng),
                          T.RandomCrop(40, padding=2, rng=rng), T.ToTensor()])

    a, b, c = pipeline(7), pipeline(7), pipeline(8)
    outs_a = [a(img) for _ in range(5)]
    assert all(torch.equal(x, b(img)) for x in outs_a)
    assert not all(torch.equal(x, c(img)) for x in outs_a)
    assert outs_a[0].shape == (3, 40, 40)
    assert T.RandomResizedCrop(24, rng=1)(_pil(64, 80)).size == (24, 24)


def test_workers_get_different_augmentation():
    base = torch.arange(3 * 16 * 16, dtype=torch.int64).remainder(251).to(torch.uint8)
    images = base.view(1, 3, 16, 16).expand(32, 3, 16, 16).contiguous()
    rng = T.RandomState(0)
    ds = TensorImageDataset(images, np.zeros(32, np.int64), ["a"],
                            transform=T.Compose([T.RandomCrop(16, padding=4, rng=rng),
                                                 T.RandomHorizontalFlip(rng=rng)]))
    batches = [x for x, _ in DataLoader(ds, batch_size=8, num_workers=2)]
    assert not torch.equal(batches[0], batches[1])  # worker 0 vs worker 1


# ---------------------------------------------------------------- CIFAR python batches
def _write_batch(path: Path, data: np.ndarray, labels: list[int], protocol: int) -> None:
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"x", b"labels": labels, b"data": data,
                     b"filenames": [b"a.png"] * len(labels)}, f, protocol=protocol)


def _cifar_dir(root: Path) -> Path:
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        _write_batch(root / f"data_batch_{i}", rng.integers(0, 256, (4, 3072), np.uint8),
                     [i % 3, 1, 2, 0], protocol=2 if i % 2 else 5)
    _write_batch(root / "test_batch", np.arange(3 * 3072, dtype=np.uint8).reshape(3, 3072) % 253,
                 [2, 0, 1], protocol=2)
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["cat", "dog", "emu"], "num_vis": 3072}, f, protocol=2)
    return root


def test_cifar_python_batches(tmp_path):
    root = _cifar_dir(tmp_path / "cifar-10-batches-py")
    # the original files were pickled by numpy 1 (module numpy.core.multiarray)
    batch = root / "data_batch_1"
    batch.write_bytes(batch.read_bytes().replace(b"numpy._core.", b"numpy.core."))
    train, info = load_dataset(root, "train")
    test, tinfo = load_dataset(str(root), "test")
    assert len(train) == 20 and len(test) == 3 and info.classes == ["cat", "dog", "emu"]
    assert test.labels.tolist() == [2, 0, 1] and train.labels[:4].tolist() == [1, 1, 2, 0]
    row = np.arange(3 * 3072, dtype=np.uint8).reshape(3, 3072)[1] % 253
    assert torch.equal(test.images[1], torch.from_numpy(row.reshape(3, 32, 32)))  # planar RGB
    assert tinfo.style == "small" and test[0][0].shape == (3, 32, 32)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_rejected_and_never_runs(tmp_path):
    root = _cifar_dir(tmp_path / "evil")
    marker = tmp_path / "pwned"
    with open(root / "data_batch_1", "wb") as f:
        pickle.dump({b"data": _Evil(marker), b"labels": [0]}, f, protocol=2)
    with pytest.raises(UserError, match="refusing to unpickle"):
        load_dataset(root, "train")
    with open(tmp_path / "obj.pkl", "wb") as f:  # numpy object arrays are refused too
        pickle.dump({"data": np.array([marker], dtype=object)}, f)
    with pytest.raises(UserError):
        safe_load(tmp_path / "obj.pkl")
    assert not marker.exists()


# ---------------------------------------------------------------- errors
def test_missing_dataset_names_the_path(tmp_path, monkeypatch):
    missing = tmp_path / "no-such-data"
    with pytest.raises(UserError, match=re.escape(str(missing))):
        load_dataset(missing)
    monkeypatch.setenv("EDGECV_SHARED", str(tmp_path))
    with pytest.raises(UserError, match=re.escape(str(tmp_path / "data" / "mnist"))):
        load_dataset("mnist")
    monkeypatch.setenv("EDGECV_SHARED", str(missing))
    with pytest.raises(UserError, match="EDGECV_SHARED"):
        shared_root()
    assert shared_root(required=False) is None


# ---------------------------------------------------------------- image folders / archives
def _make_folder(root: Path, splits: tuple[str, ...]) -> None:
    for s, split in enumerate(splits):
        for c, cls in enumerate(["zebra", "apple", "mango"]):
            d = root / split / cls if split else root / cls
            d.mkdir(parents=True)
            for k in range(2 + c):
                _pil(40, 48, seed=100 * s + 10 * c + k).save(d / f"{k}.png")


def test_image_folder_directory(tmp_path):
    _make_folder(tmp_path / "ds", ("train", "test"))
    train, info = load_dataset(tmp_path / "ds", "train")
    assert info.classes == ["apple", "mango", "zebra"] and len(train) == 9
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert train.names[0] == "train/apple/0.png" and info.style == "small"
    x, _ = train[0]
    assert x.shape == (3, 40, 48) and info.splits == ("train", "test")
    test, tinfo = load_dataset(tmp_path / "ds", "test", input_size=32)
    assert test[0][0].shape == (3, 32, 32) and tinfo.input_shape == (3, 32, 32)

    _make_folder(tmp_path / "flat", ("",))
    flat, finfo = load_dataset(tmp_path / "flat", "test")
    assert len(flat) == 9 and finfo.split == "all"
    with pytest.raises(UserError, match="no train split"):
        load_dataset(tmp_path / "flat", "train")


def test_image_folder_archive_is_cached(tmp_path, cache):
    _make_folder(tmp_path / "mydata", ("train", "val"))
    archive = tmp_path / "mydata.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tmp_path / "mydata", arcname="mydata")
    calls = []
    test, info = load_dataset(archive, "test", progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (18, 18) and len(test) == 9 and info.split == "val"
    assert list(cache.glob("datasets/mydata-*/meta.json"))
    again, _ = load_dataset(archive, "test")
    assert torch.equal(again.images, test.images) and again.names == test.names
    direct = np.array(Image.open(tmp_path / "mydata" / "val" / "apple" / "0.png"))
    assert np.array_equal(test.images[0].permute(1, 2, 0).numpy(), direct)


def test_unreadable_inputs_are_user_errors(tmp_path, cache):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images found"):
        load_dataset(tmp_path / "empty", "test")
    bad = tmp_path / "broken.tar.xz"
    bad.write_bytes(b"not an archive at all")
    with pytest.raises(UserError, match="cannot read archive"):
        load_dataset(bad, "test")
    with pytest.raises(UserError, match="cannot read dataset file"):
        load_dataset(Path(__file__))

