"""A channel-pruned model through the whole pipeline: compress -> .edc (new widths from the stored
shapes) -> inspect / decompress / eval -> ONNX and TFLite with parity. Real weights: Google's
MobileNet v1-0.25 (shared/weights/imagenet-float)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgecv.models import create_model
from edgecv.models.reshape import fit_shapes

RECIPE = """\
model: mobilenet_v1_025
stages:
  - structured_prune:
      ratio: 0.25
      finetune_epochs: 0
      bn_images: 64
  - share:
      bits: 8
      finetune_epochs: 0
  - huffman: {}
"""


def test_fit_shapes_resizes_depthwise_and_dense_layers():
    torch.manual_seed(0)
    model = create_model("mobilenet_v1_025", act="RE6", tf_same_padding=True)
    state = model.state_dict()
    # as torch-pruning leaves it: features.1's depthwise/pointwise pair and the next dw lose channels
    keep_dw, keep_pw = 6, 12
    small = dict(state)
    for k, v in state.items():
        if k.startswith("features.1.dw."):
            small[k] = v[:keep_dw].clone() if v.dim() else v
        if k.startswith("features.1.pw.0."):
            small[k] = v[:keep_pw, :keep_dw].clone()
        if k.startswith("features.1.pw.1.") and v.dim():
            small[k] = v[:keep_pw].clone()
        if k.startswith("features.2.dw.") and v.dim():
            small[k] = v[:keep_pw].clone()
        if k == "features.2.pw.0.weight":
            small[k] = v[:, :keep_pw].clone()
    small["features.0.0.weight"] = state["features.0.0.weight"][:keep_dw].clone()
    for k in ("weight", "bias", "running_mean", "running_var"):
        small[f"features.0.1.{k}"] = state[f"features.0.1.{k}"][:keep_dw].clone()
    changed = fit_shapes(model, small)
    assert "features.1.dw.0" in changed and "features.2.pw.0" in changed
    dw = model.features[1].dw[0]
    assert (dw.groups, dw.in_channels, dw.out_channels) == (keep_dw, keep_dw, keep_dw)
    assert type(model.features[0][0]).__name__ == "Conv2dSame"  # the class is kept
    assert model.features[1].pw[1].num_features == keep_pw
    model.load_state_dict(small, strict=True)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    with pytest.raises(Exception, match="2-d tensor where the model has 4-d"):  # another architecture, not a narrower one
        fit_shapes(create_model("mobilenet_v1_025"), {"features.0.0.weight": torch.zeros(8, 3)})


def test_channel_pruned_edc_decodes_exports_and_evaluates(tmp_path, shared):
    pytest.importorskip("torch_pruning", reason="pip install edgecv[prune]")
    pytest.importorskip("onnx2tf", reason="onnx2tf not installed")
    from edgecv.export import export, runner
    from edgecv.pipeline import compress, decompress, load_compressed
    from edgecv.workflows import evaluate_model

    recipe = tmp_path / "channel.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "v1-channel.edc"
    # tiny-imagenet: ImageNet-1k labels; its train images (unlabeled use) re-estimate the BN statistics
    rep = compress("mobilenet_v1_025", out=out, recipe=str(recipe), weights="imagenet", data="tiny-imagenet",
                   eval_limit=64, train_limit=64)
    stage = rep["stages"]["structured_prune"]
    assert stage["macs_after"] < 0.8 * stage["macs_before"] and stage["bn_reestimated_layers"] > 20
    model, meta = load_compressed(out, fake_quant=False)
    assert meta["pruned_shapes"] > 0 and meta["model_kwargs"] == {"act": "RE6", "tf_same_padding": True}
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    full = [m.out_channels for m in create_model("mobilenet_v1_025").modules() if isinstance(m, nn.Conv2d)]
    assert len(widths) == len(full) and sum(widths) < 0.9 * sum(full)
    # the "after" accuracy of the report was measured on the decoded file; eval of the file agrees
    ev = evaluate_model(str(out), None, "tiny-imagenet", limit=64)
    assert abs(ev["top1"] - rep["accuracy"]["after"]) < 1e-6

    sft = tmp_path / "v1-channel.safetensors"
    decompress(out, sft)
    ev2 = evaluate_model("mobilenet_v1_025", str(sft), "tiny-imagenet", limit=64)
    assert abs(ev2["top1"] - ev["top1"]) < 1e-6  # the decompressed weights rebuild the same narrow model

    x = np.random.default_rng(0).standard_normal((4, 3, 128, 128)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    for fmt in ("onnx", "tflite"):
        f = tmp_path / f"v1-channel.{fmt}"
        er = export(str(out), fmt, out=f)
        assert er["parity"]["rel"] <= 1e-4, er["parity"]
        got = runner(f)(x)
        assert np.abs(got - ref).max() <= 1e-4 * (ref.max() - ref.min())
        if fmt == "tflite":
            assert er["delegation"] == {"delegate_partitions": 1, "undelegated_ops": {}}
    assert json.loads(json.dumps(stage["channels"]))  # per-layer old -> new widths reported
