"""Compression stages: pruning masks, k-means weight sharing, centroid fine-tuning, structured
pruning, targets and the hand-off to the codec (tiny synthetic data; no accuracy claims)."""
from __future__ import annotations

import logging

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from edgecv.compress import (STAGES, Context, Finetune, FinetuneConfig, Huffman, HuffmanConfig, MaskedTraining,
                             Prune, PruneConfig, Share, ShareConfig, StructuredPrune, StructuredPruneConfig,
                             allocate, centroid_gradient, keep_count, kmeans_1d, magnitude_mask, share_weight,
                             to_layer_codes)
from edgecv.compress.share import _init_centroids
from edgecv.errors import UserError
from edgecv.models import count_macs, count_params, create_model


def synthetic(n: int = 256, shape=(1, 28, 28), classes: int = 10, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *shape), generator=g)
    y = (x.reshape(n, -1)[:, :classes].argmax(1)) % classes  # learnable labels
    return TensorDataset(x, y)


def lenet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("lenet_300_100")


def params(m: nn.Module) -> dict[str, torch.Tensor]:
    return dict(m.named_parameters())


KEEP = {"ip1": 0.08, "ip2": 0.09, "ip3": 0.26}


# --------------------------------------------------------------------------- pruning
def test_magnitude_mask_exact_count_and_deterministic_ties():
    w = torch.tensor([0.5, -0.2, 0.2, 0.2, -0.9, 0.0, 0.2, 0.1])
    m = magnitude_mask(w, 3)
    # 0.9 and 0.5 kept; among the four |w| == 0.2 ties the lowest flat index (1) wins
    assert m.tolist() == [True, True, False, False, True, False, False, False]
    assert int(magnitude_mask(w, 5).sum()) == 5
    assert magnitude_mask(w, 8).all()
    # weights already pruned are never revived, even when asked to keep more
    prev = m.clone()
    assert torch.equal(magnitude_mask(w, 6, prev), prev)
    assert keep_count(0.5, 3) == 2 and keep_count(0.001, 10) == 1 and keep_count(0.08, 235200) == 18816


def test_prune_exact_counts_and_pruned_stay_zero_through_training():
    m = lenet()
    before = {k: v.detach().clone() for k, v in params(m).items()}
    ctx = Context(model_name="lenet_300_100", train_data=synthetic(), seed=0)
    cfg = PruneConfig(keep=KEEP, finetune_epochs=2, lr=0.05, batch_size=32, weight_decay=1e-3, momentum=0.9)
    Prune(cfg).apply(m, ctx)
    p = params(m)
    for layer, keep in KEEP.items():
        name = f"{layer}.weight"
        mask = ctx.masks[name]
        assert int(mask.sum()) == keep_count(keep, mask.numel())
        assert (p[name][~mask] == 0).all()                      # exactly zero after real SGD steps
        assert not torch.equal(p[name][mask], (before[name] * mask)[mask])  # the kept ones trained
    rep = ctx.report["prune"]
    assert rep["retrained"] and rep["layers"]["ip1"]["kept"] == 18816 and "prune" in ctx.timings
    # later fine-tuning (momentum + weight decay) still cannot revive pruned weights
    Finetune(FinetuneConfig(epochs=1, lr=0.1, batch_size=32, weight_decay=1e-2, optimizer="adam")).apply(m, ctx)
    for name, mask in ctx.masks.items():
        assert (params(m)[name][~mask] == 0).all()
    assert "finetune" in ctx.report


def test_prune_without_data_only_prunes(caplog):
    m = lenet()
    ctx = Context()
    with caplog.at_level(logging.WARNING):
        Prune(PruneConfig(keep=0.1, finetune_epochs=3)).apply(m, ctx)
    assert "retraining skipped" in caplog.text
    assert set(ctx.masks) == {"ip1.weight", "ip2.weight", "ip3.weight"}  # "conv" selects nothing here
    assert ctx.report["prune"]["retrained"] is False


def test_iterative_pruning_nested_masks():
    m = lenet()
    ctx = Context(train_data=synthetic(64))
    seen = []
    cfg = PruneConfig(keep={"ip1": 0.1}, iterations=2, finetune_epochs=1, batch_size=32, max_steps=1)
    stage = Prune(cfg)
    orig = stage.plan
    stage.plan = lambda model, c: (seen.append(1), orig(model, c))[1]
    stage.apply(m, ctx)
    mask = ctx.masks["ip1.weight"]
    assert int(mask.sum()) == keep_count(0.1, mask.numel()) and seen == [1]
    assert cfg.rounds() == [0.5, 1.0]
    with pytest.raises(UserError, match="end at 1"):
        PruneConfig(keep=0.1, schedule=[0.5, 0.8])


def test_allocate_prefers_insensitive_layers_and_hits_budget():
    grid = [0.5, 0.25, 0.1]
    sizes = {"a": 1000, "b": 1000}
    sens = {"a": [0.0, 0.0, 0.1], "b": [1.0, 5.0, 9.0]}
    keep = allocate(sizes, sens, grid, budget=0.4 * 2000)
    assert keep["a"] <= 0.25 and keep["b"] >= 0.5
    assert abs(sum(sizes[n] * keep[n] for n in sizes) - 800) < 1
    with pytest.raises(UserError, match="cannot be reached"):
        allocate(sizes, sens, grid, budget=0.01 * 2000, min_keep=0.1)


@pytest.mark.parametrize("with_data", [False, True])
def test_target_keep_global_fraction(with_data):
    m = lenet()
    ds = synthetic(64) if with_data else None
    ctx = Context(eval_data=ds)
    Prune(PruneConfig(target_keep=0.1, keep={"ip3": 0.5}, scan_keep=[0.5, 0.2, 0.1, 0.05],
                      scan_samples=64, finetune_epochs=0)).apply(m, ctx)
    rep = ctx.report["prune"]
    assert abs(rep["keep"] - 0.1) < 1e-3
    assert rep["layers"]["ip3"]["keep"] == pytest.approx(0.5, abs=1e-3)
    assert set(rep["sensitivity"]) == {"ip1", "ip2"}


def test_dropout_scaled_by_sqrt_keep():
    m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 4))
    Prune(PruneConfig(keep={"3": 0.25}, finetune_epochs=0)).apply(m, Context())
    assert m[2].p == pytest.approx(0.25)


# --------------------------------------------------------------------------- k-means sharing
def test_linear_init_spans_min_max_and_other_inits():
    x = torch.randn(1000).double().sort().values
    c = _init_centroids(x, 8, "linear", float(x.min()), float(x.max()), torch.Generator())
    assert c[0] == x.min() and c[-1] == x.max() and torch.allclose(c.diff(), c.diff()[0].expand(7))
    for init in ("linear", "density", "random"):
        cb = kmeans_1d(torch.randn(5000), 16, init=init, seed=1)
        assert cb.numel() == 16 and torch.equal(cb, cb.sort().values)


def test_kmeans_is_lloyd_fixed_point():
    x = torch.cat([torch.randn(3000) * 0.1 - 1, torch.randn(2000) * 0.2 + 1])
    cb = kmeans_1d(x, 4, reseed_empty=False)
    a = ((x[:, None] - cb[None, :].double()).abs()).argmin(1)
    means = torch.stack([x[a == k].double().mean() for k in range(4)]).float()
    assert torch.allclose(cb, means, atol=1e-5)  # each centroid is the mean of its members


@pytest.mark.parametrize("bits", [1, 3, 6])
def test_share_dense_and_sparse(bits):
    torch.manual_seed(0)
    w = torch.randn(64, 50)
    sw = share_weight(w, bits)
    assert torch.equal(sw.codebook, sw.codebook.sort().values) and sw.codebook.numel() == 2 ** bits
    assert sw.decode().unique().numel() <= 2 ** bits and not sw.sparse
    # each weight is mapped to its nearest centroid
    d = (w.reshape(-1, 1) - sw.codebook[None]).abs()
    assert torch.allclose(d.gather(1, sw.assign.reshape(-1, 1)).squeeze(1), d.min(1).values)
    mask = magnitude_mask(w, 500)
    ss = share_weight(w, bits, mask)
    assert ss.sparse and ss.codebook[0].item() == 0.0 and torch.equal(ss.codebook[1:], ss.codebook[1:].sort().values)
    assert (ss.assign[~mask] == 0).all() and (ss.assign[mask] > 0).all()
    dec = ss.decode()
    assert (dec[~mask] == 0).all() and dec.unique().numel() <= 2 ** bits


def test_share_stage_writes_codebook_values_and_subsample_path():
    m = lenet()
    ctx = Context()
    Prune(PruneConfig(keep={"ip1": 0.1}, finetune_epochs=0)).apply(m, ctx)
    Share(ShareConfig(bits={"fc": 5, "ip1": 4}, max_fit=500, finetune_epochs=0)).apply(m, ctx)
    p = params(m)
    assert ctx.shared["ip1.weight"].bits == 4 and ctx.shared["ip2.weight"].bits == 5
    assert ctx.shared["ip1.weight"].sparse and not ctx.shared["ip2.weight"].sparse
    for name, sw in ctx.shared.items():
        assert torch.equal(p[name].detach(), sw.codebook[sw.assign])  # every weight IS its centroid
        assert p[name].unique().numel() <= 2 ** sw.bits
    assert (p["ip1.weight"][~ctx.masks["ip1.weight"]] == 0).all()
    assert ctx.report["share"]["layers"]["ip2"]["centroids"] == 32


def test_centroid_gradient_is_sum_of_member_gradients():
    torch.manual_seed(0)
    lin = nn.Linear(6, 4)
    mask = magnitude_mask(lin.weight, 12)
    with torch.no_grad():
        lin.weight.mul_(mask)
    sw = share_weight(lin.weight, 2, mask)
    with torch.no_grad():
        lin.weight.copy_(sw.decode())
    x, y = torch.randn(5, 6), torch.randint(0, 4, (5,))
    F.cross_entropy(lin(x), y).backward()
    g = lin.weight.grad.clone()
    manual = torch.zeros(4, dtype=torch.float64)
    for i in range(g.numel()):  # the slow, obvious way
        k = int(sw.assign.reshape(-1)[i])
        if k != 0:
            manual[k] += float(g.reshape(-1)[i])
    assert torch.allclose(centroid_gradient(g, sw.assign, 4, sparse=True), manual)

    # one plain SGD step through MaskedTraining == centroid SGD with that gradient (Eq. 3)
    model = nn.Sequential(lin)
    ctx = Context(masks={"0.weight": mask}, shared={"0.weight": sw})
    lin.weight.grad = None
    old = sw.codebook.clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with MaskedTraining(model, ctx) as mt:
        F.cross_entropy(model(x), y).backward()
        opt.step()
        mt.step_hook(model)
    expect = (old.double() - 0.1 * manual).float()
    assert torch.allclose(sw.codebook, expect, atol=1e-6) and sw.codebook[0] == 0
    assert torch.equal(lin.weight.detach(), sw.codebook[sw.assign])


def test_centroid_finetune_keeps_sharing_with_momentum():
    m = lenet()
    ctx = Context(train_data=synthetic(128))
    Prune(PruneConfig(keep=KEEP, finetune_epochs=0)).apply(m, ctx)
    Share(ShareConfig(bits=4, finetune_epochs=2, lr=0.01, batch_size=32, weight_decay=1e-3)).apply(m, ctx)
    assert ctx.report["share"]["retrained"]
    p = params(m)
    for name, sw in ctx.shared.items():
        assert torch.equal(p[name].detach(), sw.codebook[sw.assign])
        assert sw.codebook[0] == 0 and (p[name][~ctx.masks[name]] == 0).all()
        assert p[name].unique().numel() <= 16


def _pipeline(seed: int) -> tuple[nn.Module, Context]:
    m = lenet(seed)
    ctx = Context(train_data=synthetic(96), seed=seed)
    Prune(PruneConfig(keep=KEEP, finetune_epochs=1, batch_size=32)).apply(m, ctx)
    Share(ShareConfig(bits=5, init="random", max_fit=2000, finetune_epochs=1, batch_size=32)).apply(m, ctx)
    return m, ctx


def test_same_seed_identical_results():
    (m1, c1), (m2, c2) = _pipeline(3), _pipeline(3)
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    for k in c1.shared:
        assert torch.equal(c1.shared[k].codebook, c2.shared[k].codebook)
        assert torch.equal(c1.shared[k].assign, c2.shared[k].assign)


# --------------------------------------------------------------------------- structured pruning
@pytest.mark.parametrize("name,size", [("lenet5_caffe", (1, 28, 28)), ("resnet18", (3, 32, 32)),
                                       ("mobilenet_v2", (3, 32, 32))])
def test_structured_prune_shrinks_and_runs(name, size):
    torch.manual_seed(0)
    m = create_model(name, num_classes=10)
    p0, c0 = count_params(m), count_macs(m, size)
    ctx = Context(model_name=name, input_size=size)
    m = StructuredPrune(StructuredPruneConfig(ratio=0.5, finetune_epochs=0)).apply(m, ctx)
    rep = ctx.report["structured_prune"]
    assert rep["params_after"] == count_params(m) < p0 and rep["macs_after"] < c0 == rep["macs_before"]
    assert m.eval()(torch.zeros(2, *size)).shape == (2, 10)  # classifier untouched
    assert rep["channels"]


def test_structured_prune_must_precede_masks():
    m = lenet()
    ctx = Context(model_name="lenet_300_100")
    Prune(PruneConfig(keep=0.5, finetune_epochs=0)).apply(m, ctx)
    with pytest.raises(UserError, match="before prune"):
        StructuredPrune(StructuredPruneConfig()).apply(m, ctx)


# --------------------------------------------------------------------------- targets, huffman, codec
def test_unmatched_target_names_pattern_and_valid_layers():
    with pytest.raises(UserError, match=r"'fc9'.*valid names: ip1, ip2, ip3"):
        Prune(PruneConfig(keep={"fc9": 0.1})).apply(lenet(), Context())
    with pytest.raises(UserError, match="no conv/fc weight"):
        Prune(PruneConfig(keep={"act_ip1": 0.1})).apply(lenet(), Context())
    m = create_model("lenet5_caffe")
    ctx = Context()
    Prune(PruneConfig(keep={"conv": 0.5, "conv2": 0.2, "ip*": 0.1})).apply(m, ctx)  # later entries win
    assert ctx.report["prune"]["layers"]["conv2"]["keep"] == pytest.approx(0.2, abs=1e-3)
    assert ctx.report["prune"]["layers"]["conv1"]["keep"] == pytest.approx(0.5, abs=0.01)


def test_registry_and_huffman_encoding():
    assert {"prune", "structured_prune", "share", "huffman", "finetune"} <= set(STAGES.names())
    m = lenet()
    ctx = Context()
    Prune(PruneConfig(keep=KEEP, finetune_epochs=0)).apply(m, ctx)
    Huffman(HuffmanConfig(index_bits={"fc": 4, "ip3": 6})).apply(m, ctx)
    assert ctx.encoding == {"ip1.weight": (4, True), "ip2.weight": (4, True), "ip3.weight": (6, True)}


def test_to_layer_codes_and_codec_roundtrip():
    pytest.importorskip("edgecv.codec")
    from edgecv.codec import LayerCode

    m = lenet()
    ctx = Context()
    Prune(PruneConfig(keep={"ip1": 0.05, "ip2": 0.09}, finetune_epochs=0)).apply(m, ctx)
    Share(ShareConfig(bits={"ip1": 5, "ip3": 3}, finetune_epochs=0)).apply(m, ctx)  # ip2: masked, unshared
    Huffman(HuffmanConfig(index_bits=4)).apply(m, ctx)
    codes = to_layer_codes(m, ctx)
    sd = m.state_dict()
    assert set(codes) == set(sd) and isinstance(codes["ip1.bias"], torch.Tensor)
    for name in ("ip1.weight", "ip2.weight", "ip3.weight"):
        lc = codes[name]
        assert isinstance(lc, LayerCode)
        cb = torch.from_numpy(lc.codebook)[torch.from_numpy(lc.codes.astype("int64"))]
        if lc.positions is None:  # dense shared layer
            dec = cb.reshape(lc.shape)
        else:
            assert lc.codebook[0] == 0.0 and lc.huffman and lc.index_bits == 4
            dec = torch.zeros(lc.shape).reshape(-1)
            dec[torch.from_numpy(lc.positions)] = cb
        assert torch.equal(dec.reshape(lc.shape), sd[name]), name
    assert codes["ip1.weight"].bits == 5 and codes["ip3.weight"].positions is None and codes["ip3.weight"].bits == 3
    assert codes["ip3.weight"].huffman is True
    ctx.encoding.clear()  # no huffman stage: fixed-width codes, 5-bit gaps ("P+Q")
    plain = to_layer_codes(m, ctx)["ip1.weight"]
    assert plain.huffman is False and plain.index_bits == 5
    try:
        from edgecv.codec import decode_model, encode_model
    except ImportError:
        pytest.skip("codec container not available yet")
    back, _ = decode_model(encode_model(codes))
    for k, v in sd.items():
        assert torch.equal(back[k].reshape(v.shape).to(v.dtype), v), k


def test_to_layer_codes_stores_many_distinct_values_raw():
    m = lenet()
    ctx = Context()
    Prune(PruneConfig(keep={"ip1": 0.5}, finetune_epochs=0)).apply(m, ctx)  # 117,600 distinct kept values
    codes = to_layer_codes(m, ctx) if _has_codec() else pytest.skip("no codec")
    assert isinstance(codes["ip1.weight"], torch.Tensor) and codes["ip1.weight"].shape == (300, 784)


def _has_codec() -> bool:
    try:
        from edgecv.codec import LayerCode  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("density,bits,shape", [(0.01, 5, None), (0.08, 6, None), (0.5, 4, None),
                                                (0.08, 6, (200, 200)), (0.3, 5, (100, 400))])
def test_auto_index_bits_picks_the_width_with_the_smallest_encoded_tensor(density, bits, shape):
    """Oracle: encode the tensor with every width in AUTO_RANGE and compare file sizes (2-D shapes
    have dead rows and columns, so the codec may pick the live-lines layout)."""
    import numpy as np

    from edgecv.codec import LayerCode, encode_model
    from edgecv.compress.huffman_stage import AUTO_RANGE, choose_index_bits

    rng = np.random.default_rng(1)
    n = 40_000
    pos = np.nonzero(rng.random(n) < density)[0]
    pos = pos[(pos < 15_000) | (pos > 25_000)]  # a long empty run, as dead inputs leave
    if shape is not None:  # dead columns too (every 3rd, and a block), as MNIST's border pixels leave
        col = pos % shape[1]
        pos = pos[(col % 3 != 0) & ((col < 20) | (col > 60))]
    codes = np.minimum(rng.geometric(0.25, pos.size), (1 << bits) - 1)  # peaked, like trained weights
    book = np.r_[0.0, np.linspace(-1, 1, (1 << bits) - 1)].astype(np.float32)

    def size(width: int) -> int:
        lc = LayerCode(shape=shape or (n,), codebook=book, bits=bits, codes=codes.astype(np.uint16), positions=pos,
                       index_bits=width, huffman=True)
        return len(encode_model({"w": lc}))

    sizes = {w: size(w) for w in AUTO_RANGE}
    assert sizes[choose_index_bits(pos, codes, bits, True, shape)] == min(sizes.values())


def test_huffman_stage_auto_index_bits_in_layer_codes():
    m = lenet()
    ctx = Context()
    Prune(PruneConfig(keep=KEEP, finetune_epochs=0)).apply(m, ctx)
    Huffman(HuffmanConfig(index_bits={"fc": "auto", "ip3": 3})).apply(m, ctx)
    assert ctx.encoding["ip3.weight"] == (3, True) and ctx.encoding["ip1.weight"][0] == 0  # 0 = auto
    codes = to_layer_codes(m, ctx)
    assert codes["ip3.weight"].index_bits == 3 and 2 <= codes["ip1.weight"].index_bits <= 12
    with pytest.raises(UserError):
        HuffmanConfig(index_bits="wide")


def test_layer_codes_drop_unused_centroids_and_decode_identically():
    from edgecv.codec import decode_model, encode_model

    m = lenet()
    ctx = Context()
    Prune(PruneConfig(keep={"ip1": 0.05}, finetune_epochs=0)).apply(m, ctx)
    # linear init without re-seeding strands centroids in the gap that pruning leaves around zero
    Share(ShareConfig(bits={"ip1": 8}, reseed_empty=False, finetune_epochs=0)).apply(m, ctx)
    sw = ctx.shared["ip1.weight"]
    used = int(torch.unique(sw.assign).numel())
    assert used < sw.codebook.numel()
    lc = to_layer_codes(m, ctx)["ip1.weight"]
    assert lc.codebook.size == used and lc.codebook[0] == 0.0 and lc.bits == 8
    back, _ = decode_model(encode_model(to_layer_codes(m, ctx)))
    assert torch.equal(back["ip1.weight"], m.state_dict()["ip1.weight"])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_raw_dtype_halves_the_biases_and_decodes_to_the_rounded_model(dtype):
    import copy

    from edgecv.codec import decode_model, encode_model

    m = lenet()
    with torch.no_grad():
        m.ip1.bias.add_(torch.linspace(-0.3, 0.3, 300) + 1e-3)  # values float16 cannot hold exactly
    ctx = Context()
    Prune(PruneConfig(keep=KEEP, finetune_epochs=0)).apply(m, ctx)
    Share(ShareConfig(bits=6, finetune_epochs=0)).apply(m, ctx)
    m32, ctx32 = copy.deepcopy(m), copy.deepcopy(ctx)
    Huffman(HuffmanConfig(index_bits="auto")).apply(m32, ctx32)
    size32 = len(encode_model(to_layer_codes(m32, ctx32)))
    bias_before = m.ip1.bias.detach().clone()
    Huffman(HuffmanConfig(index_bits="auto", raw_dtype=dtype)).apply(m, ctx)
    dt = getattr(torch, dtype)
    assert torch.equal(m.ip1.weight, m32.ip1.weight)  # coded weights untouched
    assert not torch.equal(m.ip1.bias, bias_before) and torch.equal(m.ip1.bias, bias_before.to(dt).float())
    codes = to_layer_codes(m, ctx)
    assert codes["ip1.bias"].dtype == dt and codes["ip1.weight"].codes.size > 0
    blob = encode_model(to_layer_codes(m, ctx))
    n_bias = sum(p.numel() for n, p in m.named_parameters() if n.endswith("bias"))
    assert size32 - len(blob) == 2 * n_bias  # exactly two bytes saved per bias value
    back, _ = decode_model(blob)
    for k, v in m.state_dict().items():
        assert torch.equal(back[k].to(v.dtype), v), k
    assert ctx.report["huffman"]["raw_dtype"] == {"dtype": dtype, "rounded_values": n_bias}


def test_raw_dtype_is_validated():
    from edgecv.compress.recipe import parse_recipe

    with pytest.raises(UserError, match="raw_dtype"):
        parse_recipe("stages:\n  - huffman:\n      raw_dtype: float8\n")


def test_batchnorm_scale_shift_keeps_the_function_and_stores_the_statistics_as_fills():
    import copy

    from edgecv.codec import decode_model, encode_model

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 48, 3, bias=False), nn.BatchNorm2d(48), nn.ReLU(), nn.Conv2d(48, 40, 1, bias=False),
                      nn.BatchNorm2d(40), nn.Flatten(), nn.LazyLinear(10))
    x = torch.randn(4, 3, 8, 8)
    m(x)
    with torch.no_grad():
        for bn in (m[1], m[4]):  # statistics and affine parameters far from the identity
            bn.running_mean.normal_(0, 2), bn.running_var.uniform_(0.05, 5), bn.weight.uniform_(0.3, 3), bn.bias.normal_()
    m.eval()
    ctx = Context()
    Share(ShareConfig(bits=6, finetune_epochs=0)).apply(m, ctx)
    as_is, as_is_ctx = copy.deepcopy(m), copy.deepcopy(ctx)
    Huffman(HuffmanConfig(raw_dtype="float16")).apply(as_is, as_is_ctx)
    want = m(x)
    Huffman(HuffmanConfig(raw_dtype="float16", batchnorm="scale_shift")).apply(m, ctx)
    assert ctx.report["huffman"]["batchnorm_scale_shift"] == 2
    got = m(x)
    assert (got - want).abs().max() <= 2e-3 * want.abs().max()  # only the float16 rounding of scale and shift
    assert torch.equal(m[1].running_mean, torch.zeros(48)) and torch.equal(m[4].running_var, torch.ones(40))
    blob, plain = encode_model(to_layer_codes(m, ctx)), encode_model(to_layer_codes(as_is, as_is_ctx))
    assert len(plain) - len(blob) >= 2 * 2 * (48 + 40) - 2 * 2 * 2  # two float16 vectors per BN, less one value each
    back, _ = decode_model(blob)
    for k, v in m.state_dict().items():
        assert torch.equal(back[k].to(v.dtype), v), k


def test_batchnorm_option_is_validated():
    from edgecv.compress.recipe import parse_recipe

    with pytest.raises(UserError, match="batchnorm"):
        parse_recipe("stages:\n  - huffman:\n      batchnorm: fold\n")
