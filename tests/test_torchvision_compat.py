"""State_dict keys, order and shapes equal torchvision's, so torchvision checkpoints load strictly.

The oracle (tests/fixtures/torchvision_state_dicts.json.gz) was written from torchvision's own
model code by scripts/torchvision_reference.py, which also checked that our models loaded with
torchvision's weights give torchvision's outputs (max |diff| = 0).
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

import edgecv
from edgecv.models import create_model, get_spec

FIXTURE = json.loads(gzip.open(Path(__file__).parent / "fixtures" / "torchvision_state_dicts.json.gz", "rt").read())
TV_MODELS = [n for n in edgecv.list_models() if get_spec(n).torchvision]


def test_every_torchvision_model_is_in_the_oracle():
    assert set(TV_MODELS) <= set(FIXTURE), set(TV_MODELS) - set(FIXTURE)
    assert len(TV_MODELS) >= 45


@pytest.mark.parametrize("key", sorted(FIXTURE))
def test_state_dict_matches_torchvision(key):
    ref = FIXTURE[key]
    with torch.device("meta"):
        model = create_model(key.split("+")[0], **ref["ours"])
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert ours == ref["state_dict"]


def test_torchvision_layout_checkpoint_loads_strictly(tmp_path):
    # a torchvision-style checkpoint (plain state_dict in a .pth) goes through edgecv's safe loader
    from edgecv.checkpoint import load_weights

    src = create_model("mobilenet_v3_small")
    torch.save(src.state_dict(), tmp_path / "mobilenet_v3_small-tv.pth")
    dst = load_weights(create_model("mobilenet_v3_small"), tmp_path / "mobilenet_v3_small-tv.pth")
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k
