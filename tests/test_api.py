"""The Python API on models outside the zoo: compress -> .edc -> load -> export (parity) -> bench.

The models are defined here (not registered) and trained a few dozen steps on real MNIST images,
so the parity, agreement and accuracy checks compare non-trivial weights.
"""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

import edgecv
from edgecv.cli import main
from edgecv.data import shared_root
from edgecv.errors import UserError

pytestmark = pytest.mark.skipif(shared_root(required=False) is None, reason="shared data (MNIST) not found")

RECIPE = """
stages:
  - prune: {keep: {conv: 0.6, fc: 0.3}, finetune_epochs: 1, max_steps: 8, lr: 0.001}
  - share: {bits: {conv: 6, fc: 5}, finetune_epochs: 1, max_steps: 8, lr: 0.0005}
  - huffman: {index_bits: 4}
"""


class SmallCNN(nn.Module):
    """A user's own network (not in edgecv's zoo)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 7 * 7, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, written with torch.nn only (same module names)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + idt)


class TinyResNet(nn.Module):
    """torchvision.models.resnet layout (conv1, bn1, layer1..2, avgpool, fc) at MNIST size."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@pytest.fixture(scope="module")
def mnist():
    from edgecv.data import load_dataset

    train, _ = load_dataset("mnist", "train", limit=1200)
    test, _ = load_dataset("mnist", "test", limit=300)
    return train, test


def _trained(model: nn.Module, train, steps: int = 30) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True)
    it = iter(loader)
    model.train()
    for _ in range(steps):
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            x, y = next(it)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def test_user_cnn_compress_load_export_bench(mnist, tmp_path):
    train, test = mnist
    net = _trained(SmallCNN(), train)
    loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True)
    res = edgecv.compress(net, RECIPE, train=loader, eval=test)
    rep = res.report
    assert rep["model"] == "SmallCNN" and rep["architecture"].endswith("test_api.SmallCNN")
    assert rep["accuracy"]["before"] > 60, "a few dozen steps on MNIST should pass 60% top-1"
    assert rep["accuracy"]["after"] > rep["accuracy"]["before"] - 15
    assert rep["ratio"] > 8 and rep["compressed_bytes"] < rep["original_bytes"] / 8
    kept = {r["name"]: r["kept_pct"] for r in rep["layers"] if r["kind"] != "raw"}
    assert kept["head.1.weight"] == pytest.approx(30, abs=1) and kept["features.0.weight"] == pytest.approx(60, abs=2)

    path = res.save(tmp_path / "net.edc")
    assert path.stat().st_size == rep["compressed_bytes"]
    back = edgecv.load(path, model=SmallCNN())
    x = torch.stack([test[i][0] for i in range(16)])
    with torch.no_grad():
        assert torch.equal(back(x), res.model.eval()(x))  # the file holds exactly the compressed weights
    with pytest.raises(UserError, match="model=MyNet"):
        edgecv.load(path)  # not a zoo model: the file cannot rebuild it alone
    with pytest.raises(UserError, match="does not fit"):
        edgecv.load(path, model=TinyResNet())

    onnx = edgecv.export(back, "onnx", out=tmp_path / "net.onnx", example_input=(1, 1, 28, 28), data="mnist")
    assert onnx["parity"]["passed"] and onnx["parity"]["rel"] < 1e-4 and onnx["parity"]["inputs"] == "mnist images"
    tfl = edgecv.export(back, "tflite", out=tmp_path / "net.tflite", example_input=(1, 1, 28, 28), data="mnist")
    assert tfl["parity"]["passed"] and tfl["input_shape"] == [1, 28, 28, 1] and tfl["parity"]["rel"] < 1e-4
    assert tfl["metadata"]["architecture"].endswith("SmallCNN")

    b = edgecv.bench(tmp_path / "net.onnx", runs=5, warmup=1)
    assert b["format"] == "onnx" and b["mean_ms"] > 0 and b["file_bytes"] == onnx["bytes"]


def test_torchvision_style_resnet_by_patterns(mnist, tmp_path):
    train, test = mnist
    net = _trained(TinyResNet(), train, steps=15)
    bad = RECIPE.replace("{conv: 0.6, fc: 0.3}", "{'layer1.0.bn1': 0.5}")
    with pytest.raises(UserError, match=r"layer1\.0\.bn1 \(BatchNorm2d\).*no conv/fc weight"):
        edgecv.compress(net, bad, train=train)  # a stage that cannot handle a module says which and why
    recipe = RECIPE.replace("{conv: 0.6, fc: 0.3}", "{conv: 0.7, 'layer*.conv*': 0.5, '*downsample.0': 0.9, fc: 0.6}")
    res = edgecv.compress(net, recipe, train=train, eval=test)
    kept = {r["name"]: r["kept_pct"] for r in res.report["layers"] if r["kind"] != "raw"}
    assert kept["layer2.0.conv2.weight"] == pytest.approx(50, abs=1)
    assert kept["layer2.0.downsample.0.weight"] == pytest.approx(90, abs=1)
    assert kept["conv1.weight"] == pytest.approx(70, abs=2)
    assert res.report["accuracy"]["agreement"] > 50

    res.save(tmp_path / "r.edc")
    back = edgecv.load(tmp_path / "r.edc", model=TinyResNet())
    rep = edgecv.export(back, "onnx", out=tmp_path / "r.onnx", example_input=torch.randn(1, 1, 28, 28), data="mnist")
    assert rep["parity"]["passed"] and rep["parity"]["rel"] < 1e-4
    b = edgecv.bench(back, example_input=(1, 1, 28, 28), runs=5, warmup=1, isolate=False)  # exported, then measured
    assert b["format"] == "onnx" and b["mean_ms"] > 0 and b["export"]["parity"]["passed"]


def test_cli_takes_a_model_by_import_path(mnist, tmp_path, capsys):
    from safetensors.torch import save_file

    train, _ = mnist
    w = tmp_path / "w.safetensors"
    save_file(_trained(SmallCNN(), train, steps=20).state_dict(), str(w))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    out, js = tmp_path / "net.edc", tmp_path / "c.json"
    assert main(["compress", "tests.test_api:SmallCNN", "--weights", str(w), "--data", "mnist", "--recipe",
                 str(recipe), "--train-limit", "300", "--eval-limit", "200", "-o", str(out), "--json", str(js)]) == 0
    rep = json.loads(js.read_text())
    assert rep["model"] == "tests.test_api:SmallCNN" and rep["accuracy"]["n"] == 200 and out.is_file()
    assert rep["accuracy"]["before"] > 50  # the weights file was loaded, not a random init
    onnx = tmp_path / "net.onnx"
    assert main(["export", "tests.test_api:SmallCNN", "--weights", str(out), "--format", "onnx", "-o", str(onnx)]) == 0
    assert onnx.is_file() and "parity passed" in capsys.readouterr().out
    # a bad import path is one line and exit 2
    assert main(["compress", "tests.nope:Net", "--input-size", "28", "-o", str(tmp_path / "x.edc")]) == 2
    err = capsys.readouterr().err
    assert "cannot import tests.nope" in err and len(err.strip().splitlines()) == 1
