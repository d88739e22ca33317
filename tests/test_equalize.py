"""The ``equalize`` stage on real weights with folded BatchNorm (Google's MobileNet v1-0.25,
shared/weights/imagenet-float): the function is unchanged, the BatchNorms then hold the statistics
their inputs really have (so train-mode fine-tuning no longer collapses the model), and per-layer
k-means sharing loses less."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from edgecv.compress import Context, conv_bn_pairs, load_recipe
from edgecv.compress.equalize import equalize_scales, restat_bn
from edgecv.errors import UserError
from edgecv.models import create_model


@pytest.fixture(scope="module")
def v1(shared):
    from edgecv.workflows import data_args, data_for_model, resolve_weights

    model, cfg = resolve_weights("mobilenet_v1_025", "imagenet", num_classes=1000, seed=0)
    ds, _ = data_for_model("mobilenet_v1_025", "imagenet-samples", "test", train=False, limit=300, **data_args(cfg))
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    return model.eval(), images


def _top1(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


def test_pairs_found_through_fx_and_sequential():
    assert len(conv_bn_pairs(create_model("resnet18"))) == 20  # conv1 -> bn1 attributes: needs the fx graph
    assert len(conv_bn_pairs(create_model("mobilenet_v2", tf_same_padding=True))) == 52
    assert conv_bn_pairs(create_model("squeezenet1_0")) == []


def test_stage_refuses_a_model_without_conv_bn(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("stages:\n  - equalize: {bn_images: 0}\n")
    with pytest.raises(UserError, match="no Conv2d feeding only a BatchNorm2d"):
        load_recipe(str(p)).run(create_model("squeezenet1_0"), Context(model_name="squeezenet1_0"))


def test_function_unchanged_and_bn_statistics_real(v1):
    model, x = v1
    bn0 = [bn for _, _, bn in conv_bn_pairs(model)]
    assert all(torch.allclose(bn.running_var + bn.eps, torch.ones_like(bn.running_var)) for bn in bn0)  # folded
    ref = model(x[:64]).detach()
    eq = copy.deepcopy(model)
    pairs = conv_bn_pairs(eq)
    assert equalize_scales(pairs) == len(pairs) == 27
    restat_bn(eq, pairs, x[:128])
    out = eq(x[:64]).detach()
    assert (out - ref).abs().max() <= 1e-4 * ref.abs().max()
    for _, conv, _bn in pairs:  # every output channel's largest |w| is now the layer's median
        a = conv.weight.abs().flatten(1).amax(1)
        assert torch.allclose(a, a.median().expand_as(a), rtol=1e-5)
    # a train-mode forward (batch statistics) now computes what eval mode does; before, it collapses
    def train_agree(m: nn.Module) -> float:
        m.train()
        with torch.no_grad():
            p = m(x[:128]).argmax(1)
        m.eval()
        return float((p == _top1(m, x[:128])).float().mean())

    before, after = train_agree(copy.deepcopy(model)), train_agree(eq)
    assert after >= 0.95 and before <= 0.5, (before, after)  # measured: 1.0 and 0.34


def test_sharing_loses_less_after_equalize(v1, tmp_path):
    model, x = v1
    ref = _top1(model, x)
    agree = {}
    for name, pre in (("plain", ""), ("equalized", "  - equalize: {bn_images: 0}\n")):
        p = tmp_path / f"{name}.yaml"
        p.write_text("stages:\n" + pre + "  - share:\n      bits: {conv: 5, fc: 5, '*.dw.0': 8, features.0.0: 8}\n"
                     "      finetune_epochs: 0\n")
        m = load_recipe(str(p)).run(copy.deepcopy(model), Context(model_name="mobilenet_v1_025"))
        agree[name] = float((_top1(m, x) == ref).float().mean())
    assert agree["equalized"] > agree["plain"] + 0.05, agree
