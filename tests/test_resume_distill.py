"""Recovery by distillation from the uncompressed model (labels optional) and resumable fine-tuning:
an interrupted `compress` continued with --resume writes the same bytes as an uninterrupted run.
Real weights and data: edgecv's LeNet-5 trained on MNIST (weights/), the shared MNIST."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = str(REPO / "weights" / "lenet5-mnist.safetensors")

RECIPE = """\
model: lenet5
stages:
  - prune:
      keep: {conv: 0.3, fc: 0.1}
      finetune_epochs: 3
      lr: 0.01
      batch_size: 64
      distill_from: original
      distill_alpha: 0.7
  - share:
      bits: 4
      finetune_epochs: 0
  - huffman: {}
"""


class ZeroLabels(torch.utils.data.Dataset):
    """The images of ``ds`` with every label 0: only a loss that ignores labels can learn from it."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return self.ds[i][0], 0


def _agreement(a, b, ds) -> float:
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        return float((a(x).argmax(1) == b(x).argmax(1)).float().mean()) * 100


def test_distillation_from_the_original_needs_no_labels(shared):
    from edgecv.compress import load_recipe
    from edgecv.compress.base import Context
    from edgecv.data import load_dataset
    from edgecv.workflows import build

    train, _ = load_dataset("mnist", "train", limit=512, train_transform=False, input_size=32)
    test, _ = load_dataset("mnist", "test", limit=300, input_size=32)
    original = build("lenet5", num_classes=10, weights=WEIGHTS).eval()
    agree = {}
    for mode in ("distill", "no fine-tuning", "labels"):
        text = RECIPE.replace("{conv: 0.3, fc: 0.1}", "{conv: 0.5, fc: 0.2}").replace("distill_alpha: 0.7", "distill_alpha: 1.0")
        if mode == "labels":
            text = text.replace("distill_from: original", "distill_from: none")
        if mode == "no fine-tuning":
            text = text.replace("finetune_epochs: 3", "finetune_epochs: 0")
        rec = load_recipe(text)
        rec.stages = rec.stages[:1]  # the pruning + fine-tuning only
        model = build("lenet5", num_classes=10, weights=WEIGHTS)
        out = rec.run(model, Context(model_name="lenet5", train_data=ZeroLabels(train))).eval()
        agree[mode] = _agreement(out, original, test)
    # soft targets of the dense model recover the pruned one though every label is wrong (measured 98.3 vs 90.0)
    assert agree["distill"] >= 95.0 and agree["distill"] >= agree["no fine-tuning"] + 4, agree
    # the same fine-tuning on the (all-zero) labels collapses it (measured 10%): the loss really ignored them
    assert agree["labels"] < 50.0, agree


def test_interrupted_compress_resumes_to_the_same_bytes(tmp_path, shared, monkeypatch):
    from edgecv import resume
    from edgecv.errors import UserError
    from edgecv.pipeline import compress

    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    kw = dict(recipe=str(recipe), weights=WEIGHTS, data="mnist", train_limit=512, eval_limit=200, seed=3)
    a = tmp_path / "a.edc"
    compress("lenet5", out=a, **kw)
    assert not resume.run_dir(a).exists()  # removed once the file is written

    real_save, saves = resume.save, []

    def killed_after_two(*args, **kwargs):
        real_save(*args, **kwargs)
        saves.append(kwargs["epoch"])
        if len(saves) == 2:
            raise KeyboardInterrupt  # the process dies after epoch 2's checkpoint

    b = tmp_path / "b.edc"
    monkeypatch.setattr(resume, "save", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        compress("lenet5", out=b, **kw)
    assert not b.exists() and list(resume.run_dir(b).glob("train01-*.safetensors"))
    monkeypatch.setattr(resume, "save", real_save)

    with pytest.raises(UserError, match="other inputs"):  # another seed cannot continue these checkpoints
        compress("lenet5", out=b, resume=True, **{**kw, "seed": 4})
    # (the refused run left the checkpoints alone)
    trained: list[int] = []
    monkeypatch.setattr(resume, "save", lambda *a_, **k: (trained.append(k["epoch"]), real_save(*a_, **k)))
    compress("lenet5", out=b, resume=True, **kw)
    assert trained == [3]  # only the last epoch ran again
    assert b.read_bytes() == a.read_bytes()
    assert not resume.run_dir(b).exists()


def test_interrupted_train_resumes_to_the_same_weights(tmp_path, shared, monkeypatch):
    from safetensors.torch import load_file

    from edgecv import resume
    from edgecv.engine import TrainConfig
    from edgecv.workflows import train_model

    cfg = TrainConfig(epochs=3, batch_size=64, lr=0.05, seed=5)
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    train_model("lenet5", "mnist", a, cfg, limit=512, resume=True)
    ckpt = tmp_path / ".b.safetensors.resume.safetensors"
    real_save, saves = resume.save, []

    def killed_after_two(*args, **kwargs):
        real_save(*args, **kwargs)
        saves.append(kwargs["epoch"])
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(resume, "save", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        train_model("lenet5", "mnist", b, cfg, limit=512, resume=True)
    assert ckpt.is_file() and not b.exists()
    trained: list[int] = []
    monkeypatch.setattr(resume, "save", lambda *a_, **k: (trained.append(k["epoch"]), real_save(*a_, **k)))
    train_model("lenet5", "mnist", b, cfg, limit=512, resume=True)
    assert trained == [3] and not ckpt.exists()
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
