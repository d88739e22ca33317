"""Error-compensating weight sharing (``share: {compensate_images: N}``, edgecv/compress/gptq.py):
the exact properties on a toy layer, then on real weights (Google's MobileNet v1-0.25 at 4 bits,
unlabeled Tiny ImageNet photos for the statistics, agreement measured on ImageNet samples)."""
from __future__ import annotations


import pytest
import torch

from edgecv.compress import load_recipe
from edgecv.compress.gptq import gptq_columns, gptq_share
from edgecv.compress.share import kmeans_1d
from edgecv.errors import UserError
from tests.conftest import run_recipe_agreement


def _layer(rows: int = 12, feats: int = 24, n: int = 600):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(n, feats, generator=g, dtype=torch.float64)
         @ (torch.eye(feats, dtype=torch.float64) + 0.6 * torch.randn(feats, feats, generator=g, dtype=torch.float64)))
    w = torch.randn(rows, feats, generator=g, dtype=torch.float64)
    return w, x


def _err(q: torch.Tensor, w: torch.Tensor, x: torch.Tensor) -> float:
    return float((x @ (q - w).T).square().sum())


def test_every_weight_lands_on_the_codebook_and_the_output_error_drops():
    w, x = _layer()
    cb = torch.linspace(-2, 2, 8, dtype=torch.float64)
    q, idx = gptq_columns(w, x.T @ x, cb, None, damp=1e-6)
    assert torch.equal(q, cb[idx])  # only codebook values
    rounded = cb[(w[..., None] - cb).abs().argmin(-1)]
    assert _err(q, w, x) < 0.7 * _err(rounded, w, x)  # correlated inputs: compensation pays


def test_pruned_positions_become_exact_zeros_and_the_bias_column_absorbs_error():
    w, x = _layer()
    x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    w1 = torch.cat([w, torch.randn(len(w), 1, dtype=w.dtype)], 1)
    mask = torch.rand(w.shape, generator=torch.Generator().manual_seed(1)) > 0.5
    sw, bias, rel = gptq_share(w1, x1.T @ x1, 3, mask, float_cols=1, damp=1e-6)
    dec = sw.decode().double()
    assert sw.sparse and float(sw.codebook[0]) == 0.0 and len(sw.codebook) == 8
    assert bool((dec[~mask] == 0).all()) and bool((sw.assign[~mask] == 0).all())
    assert bool((sw.assign[mask] > 0).all())
    assert bool((sw.codebook[1:].diff() >= 0).all())  # sorted, as the codec and `nearest` need
    assert rel < 1.0  # below nearest-centroid rounding of the same codebook (with its own bias)
    # the returned ratio is the true output error over that of rounding to the k-means codebook
    q = torch.cat([dec, bias], 1)
    fit = kmeans_1d(w[mask].float(), 7, seed=0).double()
    plain = torch.where(mask, fit[(w[..., None] - fit).abs().argmin(-1)], torch.zeros_like(w))
    base = _err(torch.cat([plain, w1[:, -1:]], 1), w1, x1)
    assert abs(_err(q, w1, x1) / base - rel) < 1e-4


def test_options_are_range_checked(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("stages:\n  - share: {bits: 4, compensate_images: -1}\n")
    with pytest.raises(UserError, match="compensate_images must be in"):
        load_recipe(str(p))


def test_compensation_beats_rounding_on_real_weights(shared, tmp_path):
    variants = {name: "stages:\n  - equalize: {bn_images: 256}\n"
                      "  - share: {bits: {conv: 8, '*.pw.0': 4, fc: 4}, finetune_epochs: 0" + extra + "}\n"
                for name, extra in (("rounding", ""), ("compensated", ", compensate_images: 256"))}
    agree, runs = run_recipe_agreement(tmp_path, variants, train_limit=600)
    reports = {name: run["report"] for name, run in runs.items()}
    for run in runs.values():  # the model holds exactly the shared values
        mods = dict(run["model"].named_modules())
        for pname, sw in run["shared"].items():
            mod = mods[pname.rsplit(".", 1)[0]]
            assert torch.equal(mod.weight.detach(), sw.decode().to(mod.weight.dtype))
    assert agree["compensated"] > agree["rounding"] + 0.10, agree
    layers = next(v for k, v in reports["compensated"].items() if k.startswith("share"))["layers"]
    assert "output_error_vs_rounding" in layers["classifier.1"]  # the classifier drew 2 x 256 + 64 images
    assert all(d["output_error_vs_rounding"] <= 1.0 for d in layers.values() if "output_error_vs_rounding" in d)
