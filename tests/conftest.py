from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _shared() -> Path | None:
    from edgecv.data.sources import shared_root

    root = shared_root(required=False)
    return root if root is not None and (root / "data").is_dir() else None


SHARED = _shared()
needs_shared = pytest.mark.skipif(SHARED is None, reason="shared data not found: set EDGECV_SHARED to the shared/ folder")


@pytest.fixture(scope="session")
def shared() -> Path:
    if SHARED is None:
        pytest.skip("shared data not found: set EDGECV_SHARED to the shared/ folder")
    return SHARED


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def run_recipe_agreement(tmp_path: Path, variants: dict[str, str], *, train_limit: int,
                         model_name: str = "mobilenet_v1_025") -> tuple[dict[str, float], dict[str, dict]]:
    """Run each recipe text of ``variants`` on the real ImageNet ``model_name`` (fitted on Tiny ImageNet
    photos) and measure its top-1 agreement with the original on 300 ImageNet samples; returns
    ({variant: agreement}, {variant: the run's stage report})."""
    import copy

    from edgecv.compress import Context, load_recipe
    from edgecv.workflows import data_args, data_for_model, resolve_weights

    model, cfg = resolve_weights(model_name, "imagenet", num_classes=1000, seed=0)
    ev, _ = data_for_model(model_name, "imagenet-samples", "test", train=False, limit=300, **data_args(cfg))
    tr, _ = data_for_model(model_name, "tiny-imagenet", "train", train=False, limit=train_limit, **data_args(cfg))
    x = torch.stack([ev[i][0] for i in range(len(ev))])
    with torch.no_grad():
        ref = model.eval()(x).argmax(1)
    agree, reports = {}, {}
    for name, text in variants.items():
        p = tmp_path / f"{name}.yaml"
        p.write_text(text)
        ctx = Context(model_name=model_name, train_data=tr)
        m = load_recipe(str(p)).run(copy.deepcopy(model), ctx)
        with torch.no_grad():
            agree[name] = float((m.eval()(x).argmax(1) == ref).float().mean())
        reports[name] = {"report": ctx.report, "shared": ctx.shared, "model": m}
    return agree, reports
