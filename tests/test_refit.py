"""Least-squares refit of magnitude-pruned layers (``prune: {refit_images: N}``) on real weights:
Google's MobileNet v1-0.25 (shared/weights/imagenet-float), its 1x1 convs and classifier pruned to
half, unlabeled Tiny ImageNet photos for the statistics, agreement measured on ImageNet samples."""
from __future__ import annotations


import pytest
import torch
import torch.nn as nn

from edgecv.compress.refit import refit_layer, refittable
from edgecv.models import create_model
from tests.conftest import run_recipe_agreement


def test_refit_layer_recovers_a_linear_map_exactly():
    torch.manual_seed(0)
    lin = nn.Linear(16, 8)
    dense_w, dense_b = lin.weight.detach().clone(), lin.bias.detach().clone()
    mask = (torch.rand(8, 16) > 0.5).float()
    x = (torch.randn(512, 16) @ (torch.eye(16) + 0.5 * torch.randn(16, 16))).double()  # correlated inputs
    with torch.no_grad():
        lin.weight.mul_(mask)
    ratio = refit_layer(lin, mask, dense_w, dense_b, x, x, damp=1e-9)
    assert ratio < 0.8  # better than the magnitude-pruned weights (with correlated inputs there is much to gain)
    assert bool((lin.weight[mask == 0] == 0).all())  # pruned weights stay zero
    # the kept weights are the least-squares solution: the residual is orthogonal to every kept input
    resid = x @ (dense_w.double().T) + dense_b.double() - (x @ lin.weight.double().T + lin.bias.double())
    grad = resid.T @ x  # (out, in)
    assert grad[mask.bool()].abs().max() < 1e-6 * resid.abs().max() * len(x)


def test_refittable_layers():
    m = create_model("mobilenet_v2", tf_same_padding=True)
    mods = dict(m.named_modules())
    assert refittable(mods["features.2.conv.0.0"]) and refittable(mods["classifier.1"])
    assert not refittable(mods["features.2.conv.1.0"])  # depthwise 3x3
    assert not refittable(mods["features.0.0"])  # 3x3 with TF padding


def test_refit_beats_magnitude_pruning_on_real_weights(shared, tmp_path):
    variants = {name: "stages:\n  - equalize: {bn_images: 256}\n  - prune:\n"
                      "      keep: {'*.pw.0': 0.5, fc: 0.5}\n      layers: ['*.pw.0', fc]\n"
                      "      finetune_epochs: 0" + extra + "\n"
                for name, extra in (("magnitude", ""), ("refit", "\n      refit_images: 256"))}
    agree, _ = run_recipe_agreement(tmp_path, variants, train_limit=2000)
    assert agree["refit"] > agree["magnitude"] + 0.10, agree
