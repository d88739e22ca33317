"""Contract tests over every registered model (a new model is tested the moment it registers)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import edgecv
from edgecv.errors import UserError
from edgecv.models import MODELS, count_params, create_model, get_spec, model_info

ALL = edgecv.list_models()
PINNED = json.loads((Path(__file__).parent / "fixtures" / "model_counts.json").read_text())


def test_zoo_has_every_seed_family():
    families = {get_spec(n).family for n in ALL}
    for fam in ("lenet", "alexnet", "vgg", "googlenet", "inception", "xception", "resnet", "resnet_cifar",
                "resnext", "wide_resnet", "pyramidnet", "densenet", "squeezenet", "shufflenet_v1", "shufflenet_v2",
                "mobilenet_v1", "mobilenet_v2", "mobilenet_v3", "mnasnet", "efficientnet", "efficientnet_lite",
                "efficientnet_v2", "convnext"):
        assert fam in families, fam


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_contract(name):
    spec = get_spec(name)
    model = create_model(name).train()
    x = torch.randn(2, *spec.small_input)
    out = model(x)
    logits = out[0] if isinstance(out, tuple) else out
    assert logits.shape == (2, spec.num_classes)
    assert torch.isfinite(logits).all()
    logits.float().pow(2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad[:5]}"
    model.eval()
    with torch.no_grad():
        y = model(x[:1])
    assert y.shape == (1, spec.num_classes) and torch.isfinite(y).all()


@pytest.mark.parametrize("name", ALL)
def test_custom_num_classes(name):
    # shapes only: built and run on the meta device (no memory, no compute)
    spec = get_spec(name)
    with torch.device("meta"):
        model = create_model(name, num_classes=7).eval()
        y = model(torch.empty(1, *spec.small_input))
    assert y.shape == (1, 7)


@pytest.mark.parametrize("name", ALL)
def test_counts_equal_pinned_reference(name):
    info = model_info(name)
    assert name in PINNED, f"{name} not pinned: run scripts/pin_model_counts.py and review the diff"
    assert (info["params"], info["macs"]) == (PINNED[name]["params"], PINNED[name]["macs"])
    assert info["input_size"] == PINNED[name]["input_size"]


def test_pinned_reference_has_no_stale_models():
    assert sorted(PINNED) == sorted(ALL)


def test_meta_device_count_equals_real_count():
    for name in ("resnet18", "mobilenet_v3_small", "lenet5"):
        assert count_params(create_model(name)) == model_info(name)["params"]


def test_unknown_model_lists_close_matches():
    with pytest.raises(UserError, match="did you mean.*mobilenet_v3_large"):
        create_model("mobilenet_v3_lage")


def test_registry_rejects_duplicates():
    with pytest.raises(ValueError, match="duplicate"):
        MODELS.add("resnet18", MODELS.get("resnet18"))


def test_alias_resolves():
    assert get_spec("squeezenet").name == "squeezenet1_0"
