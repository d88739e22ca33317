"""A folder of unlabeled photos as --data: distillation from the uncompressed model and calibration
use it; anything that needs labels (plain fine-tuning, evaluation, training) refuses it in one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecv.cli import main
from edgecv.data.folder import plan_layout
from edgecv.errors import UserError
from tests.conftest import needs_shared


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_flat_folder_without_wnids_is_unlabeled():
    layout, classes, splits = plan_layout(["b/photo 2.jpg", "b/IMG_0001.png"], "DIR")
    assert layout == "unlabeled" and classes == []
    assert list(splits) == ["unlabeled"]
    assert [(e[1], e[2]) for e in splits["unlabeled"]] == [("IMG_0001.png", -1), ("photo 2.jpg", -1)]
    layout, classes, _ = plan_layout(["n01440764_1.JPEG", "n01443537_2.JPEG"], "DIR")  # ImageNet samples
    assert layout == "wnid-files" and classes == ["n01440764", "n01443537"]
    with pytest.raises(UserError, match="some images are named <wnid>_<name>"):
        plan_layout(["n01440764_1.JPEG", "holiday.jpg"], "DIR")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """48 real CIFAR-10 training photos as plain files with no class folders and no labels."""
    from edgecv.data.datasets import open_source
    from edgecv.data.sources import resolve, shared_root

    if shared_root(required=False) is None:
        pytest.skip("shared data not found: set EDGECV_SHARED to the shared/ folder")
    split = open_source(resolve("cifar10"), None).load("train")
    root = tmp_path_factory.mktemp("photos")
    for i in np.linspace(0, len(split) - 1, 48).astype(int):
        Image.fromarray(split.images[i]).save(root / f"photo_{i:05d}.png")
    return root


def _recipe(tmp_path: Path, distill: bool) -> Path:
    opts = "distill_from: original, " if distill else ""
    path = tmp_path / f"r{int(distill)}.yaml"
    path.write_text("model: resnet20\nstages:\n"
                    f"  - prune: {{keep: 0.5, finetune_epochs: 1, {opts}lr: 0.002, batch_size: 16}}\n"
                    "  - huffman: {}\n")
    return path


@needs_shared
def test_compress_distils_on_unlabeled_photos(capsys, tmp_path, photos, shared):
    from edgecv.pipeline import load_compressed

    weights = shared / "weights/resnet-cifar10/resnet20-12fca82f.th"
    common = ["--weights", weights, "--data", photos, "--eval-data", "cifar10", "--eval-limit", "200"]
    out, rep = tmp_path / "m.edc", tmp_path / "m.json"
    code, _, err = run(capsys, "compress", "resnet20", "--recipe", _recipe(tmp_path, True), *common,
                       "-o", out, "--json", rep)
    assert code == 0, err
    report = json.loads(rep.read_text())
    prune = report["stages"]["prune"]
    assert prune["retrained"] and np.isfinite(prune["train"]["loss"])
    assert prune["train"]["train_top1"] is None  # no labels to count
    assert "48 unlabeled photos" in report["data_notes"]["train"]
    acc = report["accuracy"]
    assert acc["n"] == 200 and acc["before"] > 70  # the real ResNet-20 (81% on the JPEG test set), measured on labeled CIFAR-10
    assert acc["after"] > 10
    model, _ = load_compressed(out)
    w = model.layer1[0].conv1.weight
    assert 0.45 < float((w != 0).float().mean()) < 0.55

    # the labels-based fine-tuning of the same recipe refuses the photos, and writes nothing
    bad = tmp_path / "bad.edc"
    code, _, err = run(capsys, "compress", "resnet20", "--recipe", _recipe(tmp_path, False), *common, "-o", bad)
    assert code == 2 and "have no labels" in err and "distill_from: original" in err
    assert len(err.strip().splitlines()) == 1 and not bad.exists()


@needs_shared
def test_unlabeled_photos_refuse_evaluation_and_training(capsys, tmp_path, photos):
    code, _, err = run(capsys, "eval", "resnet20", "--data", photos, "--limit", "8")
    assert code == 2 and "unlabeled photos only" in err and "--eval-data" in err
    out = tmp_path / "t.safetensors"
    code, _, err = run(capsys, "train", "resnet20", "--data", photos, "--epochs", "1", "-o", out)
    assert code == 2 and "edgecv train needs labels" in err and not out.exists()
    code, _, err = run(capsys, "compress", "resnet20", "--data", photos, "-o", tmp_path / "c.edc")
    assert code == 2 and "unlabeled photos only" in err
