"""The real-ImageNet MobileNetV2 recipes (recipes/mobilenet_v2_imagenet_*.yaml), shortened: fine-tune
on a few hundred Tiny ImageNet photos at a lower side (--train-size), measure on the ImageNet samples
(--eval-data). A shortened run shows what the recipe's structure fixes (file size, MACs removed, the
file decodes and is measured on the right images); the top-1 drop needs the full runs
(docs/results.md gives them and their commands)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgecv.errors import UserError
from edgecv.pipeline import RECIPE_DIR, compress, load_compressed


def test_train_and_eval_data_are_separate_sets_at_their_own_sizes(shared):
    from edgecv.models import get_spec
    from edgecv.workflows import compress_data as _data
    from edgecv.workflows import data_args, weights_cfg

    spec = get_spec("mobilenet_v1_025")
    dargs = data_args(weights_cfg(spec.name, "imagenet"))
    train, ev, calib, info, notes = _data(spec, "tiny-imagenet", calib_n=16, input_size=None, train_limit=32,
                                          eval_limit=40, dargs=dargs, eval_data="imagenet-samples", train_size=96)
    assert train[0][0].shape == (3, 96, 96) and ev[0][0].shape == (3, 128, 128) and calib[0][0].shape == (3, 128, 128)
    assert len(ev) == 40 and info.num_classes == 1000 and "imagenet-samples" in notes["evaluation"]
    with pytest.raises(UserError, match="200 classes but --eval-data imagenet-samples has 1000"):
        _data(spec, "tiny-imagenet-200", calib_n=0, input_size=None, train_limit=8, eval_limit=8, dargs=dargs,
              eval_data="imagenet-samples")
    with pytest.raises(UserError, match="needs a --data with a training split"):
        _data(spec, "imagenet-samples", calib_n=0, input_size=None, train_limit=8, eval_limit=8, dargs=dargs,
              eval_data="imagenet-samples")


def test_cli_refuses_eval_data_without_data(capsys):
    from edgecv.cli import main

    assert main(["compress", "mobilenet_v2", "--eval-data", "imagenet-samples"]) == 2
    assert "--eval-data and --train-size need --data" in capsys.readouterr().err


SHORT = dict(weights="imagenet-tf", data="tiny-imagenet", eval_data="imagenet-samples", train_size=96,
             train_limit=192, eval_limit=100)


def test_deep_compression_recipe_short_run(tmp_path, shared):
    out = tmp_path / "dc.edc"
    rep = compress("mobilenet_v2", out=out, recipe=str(RECIPE_DIR / "mobilenet_v2_imagenet_dc.yaml"), **SHORT)
    assert out.stat().st_size == rep["compressed_bytes"] <= 1_400_000  # the bound: <= 1.40 MB of 14.2 MB
    assert rep["ratio"] >= 10
    assert rep["accuracy"]["n"] == 100 and rep["stages"]["equalize"]["bn_restat"] == 52
    # GPTQ on the 1x1 convs that see >= 2 input rows per weight column: at 96 px three of the 34 (the
    # 960-input project convs on 3x3 maps) and the classifier (2,624 photos needed) are rounded
    assert rep["stages"]["share"]["compensated"]["layers"] == 31
    assert rep["stages"]["prune"]["refit"]["round 1"]["layers"] == 1
    assert rep["stages"]["huffman"]["batchnorm_scale_shift"] == 52  # every BatchNorm: statistics stored as fills
    model, meta = load_compressed(out)
    assert meta["eval_data"] == "imagenet-samples" and meta["model_kwargs"]["tf_same_padding"]
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 52 and all(not m.running_mean.any() and (m.running_var == 1).all() for m in bns)


def test_mobilenet_v1_075_deep_compression_recipe_short_run(tmp_path, shared):
    out = tmp_path / "v1.edc"
    rep = compress("mobilenet_v1_075", out=out, recipe=str(RECIPE_DIR / "mobilenet_v1_075_imagenet_dc.yaml"),
                   **{**SHORT, "weights": "imagenet"})
    assert out.stat().st_size == rep["compressed_bytes"] and rep["ratio"] >= 10  # >= 10x of 10.4 MB
    assert rep["stages"]["share"]["compensated"]["layers"] == 13  # the 13 pointwise convs
    assert rep["stages"]["huffman"]["batchnorm_scale_shift"] == 27
    model, meta = load_compressed(out)
    assert meta["model_kwargs"]["act"] == "RE6"


def test_channel_recipe_short_run_removes_the_macs(tmp_path, shared):
    out = tmp_path / "ch.edc"
    rep = compress("mobilenet_v2", out=out, recipe=str(RECIPE_DIR / "mobilenet_v2_imagenet_channel.yaml"), **SHORT)
    sp = rep["stages"]["structured_prune"]
    assert 1 - sp["macs_after"] / sp["macs_before"] >= 0.40  # the recipe's ratio 0.22 removes 42% of the MACs
    model, meta = load_compressed(out)
    assert meta["pruned_shapes"] > 0
    from edgecv.models import count_macs

    assert count_macs(model, (3, 224, 224)) == sp["macs_after"]  # the file decodes to the pruned widths


@pytest.mark.parametrize("name", ["mobilenet_v1_075", "mobilenet_v2"])
def test_committed_deep_compression_files_measure_what_their_reports_say(name, shared, tmp_path):
    """weights/<model>-imagenet-dc.edc, decoded and evaluated by `edgecv eval` on all 1,000 samples,
    gives the top-1 its committed report (written by the recipe's command) records."""
    import json

    from edgecv.cli import main

    edc = Path(__file__).resolve().parents[1] / "weights" / f"{name}-imagenet-dc.edc"
    rep = json.loads(edc.with_suffix(".json").read_text())
    assert edc.stat().st_size == rep["compressed_bytes"] and rep["ratio"] >= 10
    out = tmp_path / "eval.json"
    assert main(["eval", str(edc), "--data", "imagenet-samples", "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["n"] == rep["accuracy"]["n"] == 1000
    assert abs(got["top1"] - rep["accuracy"]["after"]) < 0.05
