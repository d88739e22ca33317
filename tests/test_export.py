"""`edgecv export`: files run in their runtime and match PyTorch; bad requests fail early, failures write nothing."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgecv.cli import main
from edgecv.errors import UserError
from tests.conftest import needs_shared

pytest.importorskip("onnxruntime", reason="onnxruntime not installed: pip install 'edgecv[onnx]'")

R20 = "weights/resnet-cifar10/resnet20-12fca82f.th"


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _torch_out(model_name: str, x: np.ndarray, state=None) -> np.ndarray:
    from edgecv.models import create_model

    torch.manual_seed(0)  # export builds random-weight models with seed 0 (edgecv.workflows.build)
    m = create_model(model_name).eval()
    if state is not None:
        m.load_state_dict(state)
    with torch.no_grad():
        return m(torch.from_numpy(x)).numpy()


# the smallest model of every family of the zoo, at its small input size (the test below keeps the
# list complete); scripts/export_matrix.py runs every model at both sizes
ONE_PER_FAMILY = [("alexnet", (63, 63)), ("convnext_tiny", (32, 32)), ("densenet121", (32, 32)),
                  ("efficientnet_b0", (32, 32)), ("efficientnet_lite0", (32, 32)), ("efficientnet_v2_s", (32, 32)),
                  ("googlenet", (16, 16)), ("inception_v3", (75, 75)), ("lenet5", (32, 32)), ("mnasnet0_5", (32, 32)),
                  ("mobilenet_v1_025", (32, 32)), ("mobilenet_v2_035", (32, 32)),
                  ("mobilenet_v3_small_075", (32, 32)), ("pyramidnet110_a48", (32, 32)), ("resnet18", (32, 32)),
                  ("resnet20", (32, 32)), ("resnext50_32x4d", (32, 32)), ("shufflenet_v1_g1", (32, 32)),
                  ("shufflenet_v2_x0_5", (32, 32)), ("squeezenet1_1", (32, 32)), ("vgg11", (32, 32)),
                  ("wide_resnet50_2", (32, 32)), ("xception", (16, 16))]
# onnx2tf spends minutes on the 60-130M-parameter models' constants on 2 cores: their TFLite rows
# are in docs/export_matrix.md, not in CI
TFLITE_HEAVY = {"alexnet", "vgg11", "wide_resnet50_2"}


def test_one_per_family_lists_every_family_at_its_small_size():
    from edgecv.models import get_spec, list_models

    assert sorted(get_spec(n).family for n, _ in ONE_PER_FAMILY) == sorted({get_spec(n).family for n in list_models("*")})
    assert all(get_spec(n).small_input[1:] == size for n, size in ONE_PER_FAMILY)


@pytest.mark.parametrize("name,size", ONE_PER_FAMILY)
def test_onnx_fp32_matches_torch_independently(tmp_path, name, size):
    from edgecv.export import export, onnx as ox

    out = tmp_path / f"{name}.onnx"
    rep = export(name, "onnx", out=out, input_size=size)
    assert rep["parity"]["passed"] and rep["parity"]["rel"] <= 1e-4
    assert rep["input_shape"][2:] == list(size) and rep["bytes"] == out.stat().st_size
    ox.check(out)  # onnx.checker (full) + opset >= 17
    md = ox.metadata(out)
    assert md["model"] == name and json.loads(md["input_size"])[1:] == list(size) and "mean" in md
    # an oracle independent of export(): a fresh onnxruntime session vs a fresh PyTorch model
    c = rep["input_shape"][1]
    x = np.random.default_rng(1).standard_normal((2, c, *size)).astype(np.float32)
    ref = _torch_out(name, x)
    got = ox.Runner(out)(x)
    assert np.abs(got - ref).max() <= 1e-4 * (ref.max() - ref.min())


@pytest.mark.parametrize("name,size", [p for p in ONE_PER_FAMILY if p[0] not in TFLITE_HEAVY])
def test_tflite_fp32_nhwc_matches_torch(tmp_path, name, size):
    pytest.importorskip("onnx2tf", reason="onnx2tf not installed")
    from edgecv.export import export, tflite as tl

    out = tmp_path / f"{name}.tflite"
    rep = export(name, "tflite", out=out, input_size=size)
    c = 1 if name == "lenet5" else 3
    assert rep["parity"]["passed"] and rep["parity"]["rel"] <= 1e-4
    assert rep["input_shape"] == [1, *size, c] and rep["input_layout"] == "NHWC"
    it = tl.interpreter(out)
    assert list(it.get_input_details()[0]["shape"]) == [1, *size, c]
    assert tl.read_metadata(out)["model"] == name
    x = np.random.default_rng(2).standard_normal((2, c, *size)).astype(np.float32)
    ref = _torch_out(name, x)
    assert np.abs(tl.Runner(out)(x) - ref).max() <= 1e-4 * (ref.max() - ref.min())


@needs_shared
def test_resnet20_int8_agreement_on_cifar10_tflite_and_onnx(tmp_path, shared, capsys):
    """Shared-weight CIFAR ResNet-20 (option-A shortcuts: the export rewrite is exercised) int8 vs float."""
    pytest.importorskip("onnx2tf", reason="onnx2tf not installed")
    weights = shared / R20
    out = tmp_path / "r20.tflite"
    code, stdout, err = run(capsys, "export", "resnet20", "--weights", weights, "--format", "tflite",
                            "--precision", "int8", "-o", out, "--json", tmp_path / "r.json")
    assert code == 0, err
    rep = json.loads((tmp_path / "r.json").read_text())
    p = rep["parity"]
    assert p["n_images"] == 1000 and p["agreement_pct"] >= 97.5  # measured 98.7 (peers: 95.95-97.89)
    assert p["top1_export_pct"] >= p["top1_float_pct"] - 1.5 and p["top1_float_pct"] > 75
    cal = rep["calibration"]
    assert (cal["data"], cal["n_images"], cal["per_channel"]) == ("cifar10", 300, True)
    assert cal["bias_correction"]["layers"] == 20  # 19 BNs + the classifier
    assert cal["weight_grid"]["layers"] == 0  # float-trained weights lie on no 8-bit grid: left to the converter
    from edgecv.export import tflite as tl

    assert tl.interpreter(out).get_input_details()[0]["dtype"] == np.int8
    assert "agreement" in stdout
    from edgecv.export import export

    rep = export("resnet20", "onnx", out=tmp_path / "r20.onnx", precision="int8", weights=str(weights))
    assert rep["parity"]["agreement_pct"] >= 97.5  # measured 98.4


@needs_shared
def test_compressed_edc_exports_its_decoded_weights(tmp_path, shared):
    from edgecv.codec import read_file
    from edgecv.export import export, onnx as ox
    from edgecv.pipeline import compress

    edc = tmp_path / "lenet300.edc"
    compress("lenet_300_100", out=edc, recipe=None)
    state, meta = read_file(edc)
    out = tmp_path / "l.onnx"
    rep = export(edc, "onnx", out=out)
    assert rep["source"] == "compressed" and rep["parity"]["passed"]
    assert ox.metadata(out)["recipe"] == meta["recipe"]
    x = np.random.default_rng(3).standard_normal((4, 1, 28, 28)).astype(np.float32)
    ref = _torch_out("lenet_300_100", x, state)  # the decoded (pruned, shared) weights
    got = ox.Runner(out)(x)
    assert np.abs(got - ref).max() <= 1e-4 * (ref.max() - ref.min())
    # the runtime file holds the decoded weights: the pruned zeros are in the initializers
    import onnx
    from onnx import numpy_helper

    inits = [numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer if t.dims and len(t.dims) == 2]
    big = max(inits, key=lambda a: a.size)
    assert (big == 0).mean() > 0.5 and len(np.unique(big)) <= 2 ** 8 + 1


@pytest.mark.parametrize("args,msg", [
    (["--format", "onnx", "--precision", "fp16"], "onnx does not support --precision fp16"),
    (["--format", "tflite", "--calib", "cifar10"], "--calib applies to tflite dynamic/int8 only"),
    (["--format", "onnx", "--precision", "int8", "--min-agreement", "120"], "--min-agreement"),
    (["--format", "tflite", "--precision", "fp16", "--no-bias-correction"], "--no-bias-correction applies to int8"),
])
def test_unsupported_combinations_rejected_up_front(capsys, tmp_path, args, msg):
    out = tmp_path / ("x.onnx" if "onnx" in args else "x.tflite")
    code, _, err = run(capsys, "export", "lenet5", *args, "-o", out)
    assert code == 2 and msg in err and "Traceback" not in err and not out.exists()


def test_bad_input_is_a_user_error(tmp_path):
    from edgecv.export import export

    with pytest.raises(UserError, match="must end in .tflite"):
        export("lenet5", "tflite", out=tmp_path / "x.onnx")
    with pytest.raises(UserError, match="unknown export format"):
        export("lenet5", "coreml", out=tmp_path / "x.ml")
    with pytest.raises(UserError, match="unknown model"):
        export("lenet55", "onnx", out=tmp_path / "x.onnx")
    with pytest.raises(UserError, match="cannot tell which model"):
        bare = tmp_path / "bare.pth"
        torch.save({"w": torch.zeros(1)}, bare)
        export(bare, "onnx", out=tmp_path / "x.onnx")
    with pytest.raises(UserError, match="no imagenet weights for lenet5 in edgecv.s pretrained table"):
        export("lenet5", "onnx", out=tmp_path / "x.onnx", weights="pretrained")
    with pytest.raises(UserError, match="--input-size"):
        export("lenet5", "onnx", out=tmp_path / "x.onnx", input_size=(0, 32))
    assert list(tmp_path.glob("x.*")) == []


def test_failed_parity_leaves_no_output(tmp_path, capsys, monkeypatch):
    """A tolerance no file can meet (negative): exit 3, no output file, no JSON, nothing left behind."""
    from edgecv.export import parity

    monkeypatch.setitem(parity.REL_TOL, "fp32", -1.0)
    out, out_json = tmp_path / "l.onnx", tmp_path / "r.json"
    code, _, err = run(capsys, "export", "lenet5", "--format", "onnx", "-o", out, "--json", out_json)
    assert code == 3 and "failed the parity check" in err and "no file written" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("h,w,out", [(1, 1, (6, 6)), (5, 7, (3, 2)), (13, 13, (6, 6)), (2, 3, (7, 7))])
def test_adaptive_pool_rewrite_is_the_same_function(h, w, out):
    from edgecv.export.rewrite import MatmulAdaptiveAvgPool

    x = torch.randn(2, 4, h, w)
    ref = torch.nn.AdaptiveAvgPool2d(out)(x)
    assert torch.allclose(MatmulAdaptiveAvgPool(torch.nn.AdaptiveAvgPool2d(out))(x), ref, atol=1e-6)


def test_cifar_shortcut_rewrite_is_the_same_function():
    from edgecv.export.rewrite import for_export
    from edgecv.models import create_model

    m = create_model("resnet20").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(for_export(m)(x), m(x))
    assert for_export(m) is not m and type(m.layer2[0].shortcut).__name__ == "PadShortcut"


def test_formats_table_lists_options():
    from edgecv.export import FORMATS

    assert FORMATS.get("onnx").precisions == ("fp32", "int8")
    assert FORMATS.get("tflite").precisions == ("fp32", "fp16", "dynamic", "int8")
    assert FORMATS.get("tflite").layout == "NHWC"


def test_hard_activation_rewrites_are_the_same_function():
    from edgecv.export.rewrite import Relu6Hardsigmoid, Relu6Hardswish, for_export
    from edgecv.models import create_model

    x = torch.cat([torch.linspace(-8, 8, 4001), torch.tensor([-3.0, 3.0, 0.0])])
    assert torch.allclose(Relu6Hardswish()(x), torch.nn.Hardswish()(x), atol=1e-6)
    assert torch.allclose(Relu6Hardsigmoid()(x), torch.nn.Hardsigmoid()(x), atol=1e-6)
    m = create_model("mobilenet_v3_small").eval()
    kinds = {fp: {type(mod).__name__ for mod in for_export(m, fmt=fp[0], precision=fp[1]).modules()}
             for fp in [("onnx", "int8"), ("tflite", "fp32"), ("tflite", "int8")]}
    assert {"Hardswish", "Hardsigmoid"} <= kinds[("onnx", "int8")]  # onnxruntime: untouched
    assert "Hardswish" in kinds[("tflite", "fp32")] and "Hardsigmoid" not in kinds[("tflite", "fp32")]
    assert not {"Hardswish", "Hardsigmoid"} & kinds[("tflite", "int8")]
    xi = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(for_export(m, fmt="tflite", precision="int8")(xi), m(xi), atol=1e-5)
    assert any(type(mod).__name__ == "Hardswish" for mod in m.modules())  # the input model is untouched


def test_recalibrate_bn_normalises_a_random_init():
    from edgecv.export.calib import recalibrate_bn
    from edgecv.models import create_model

    torch.manual_seed(0)
    m = create_model("mobilenet_v3_small").eval()
    x = torch.randn(16, 3, 64, 64)
    momenta = [b.momentum for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        before = m.features(x).std().item()
    assert recalibrate_bn(m, x.numpy()) == sum(isinstance(b, torch.nn.BatchNorm2d) for b in m.modules())
    assert not m.training and momenta == [b.momentum for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        after = m.features(x).std().item()
    assert before < 1e-3 < 0.1 < after  # random init: activations vanish; re-estimated: normalised


def _int8_tflite_with(body, path: Path) -> Path:
    """A tiny full-int8 TFLite file conv -> body -> conv made by TensorFlow's own converter."""
    tf = pytest.importorskip("tensorflow")
    inp = tf.keras.Input((8, 8, 4), batch_size=1)
    x = tf.keras.layers.Conv2D(4, 1)(inp)
    x = tf.keras.layers.Conv2D(4, 1)(tf.keras.layers.Lambda(body)(x))
    conv = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inp, x))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    conv.representative_dataset = lambda: ([rng.standard_normal((1, 8, 8, 4)).astype(np.float32)] for _ in range(8))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    path.write_bytes(conv.convert())
    return path


def test_delegation_names_the_ops_xnnpack_declines(tmp_path):
    tf = pytest.importorskip("tensorflow")
    from edgecv.bench.litert_runner import delegation
    from edgecv.export import tflite as tl

    # the converter fuses this into HARD_SWISH, which XNNPACK does not take in int8
    fused = _int8_tflite_with(lambda t: t * tf.nn.relu6(t + 3) / 6, tmp_path / "fused.tflite")
    assert delegation(tl.interpreter(fused)) == {"delegate_partitions": 2, "undelegated_ops": {"HARD_SWISH": 1}}
    # edgecv's int8 rewrite order: ADD(+RELU6), MUL, MUL, all delegated
    split = _int8_tflite_with(lambda t: (t * (1 / 6)) * tf.nn.relu6(t + 3), tmp_path / "split.tflite")
    assert delegation(tl.interpreter(split)) == {"delegate_partitions": 1, "undelegated_ops": {}}


@needs_shared
def test_mobilenet_v3_int8_tflite_runs_as_one_xnnpack_partition(tmp_path, shared):
    """hard-swish, hard-sigmoid and SE in full int8: the whole graph on XNNPACK's int8 kernels."""
    pytest.importorskip("onnx2tf", reason="onnx2tf not installed")
    from edgecv.export import export

    rep = export("mobilenet_v3_small", "tflite", out=tmp_path / "v3s.tflite", precision="int8",
                 input_size=(64, 64), min_agreement=0.0)
    assert rep["bn_recalibrated_layers"] > 30  # random weights: statistics from the calibration photos
    assert rep["delegation"] == {"delegate_partitions": 1, "undelegated_ops": {}}


@pytest.mark.parametrize("k,s,p,ceil,incl", [(3, 1, 1, False, True), (3, 2, 1, False, True), (3, 2, 1, True, True),
                                            (3, 1, 1, False, False), (2, 2, 0, True, True), (3, 2, 0, True, False)])
@pytest.mark.parametrize("size", [1, 2, 3, 5, 8])
def test_conv_avg_pool_rewrite_is_the_same_function(k, s, p, ceil, incl, size):
    from edgecv.export.rewrite import ConvAvgPool

    pool = torch.nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=incl)
    x = torch.randn(2, 4, size, size)
    try:
        ref = pool(x)
    except RuntimeError:  # PyTorch itself refuses (output size 0)
        return
    assert torch.allclose(ConvAvgPool(pool)(x), ref, atol=1e-6)


def test_tflite_average_pooling_over_padding_on_tiny_maps(tmp_path):
    """onnx2tf alone gets these wrong (off by up to 2.1); the TFLite rewrite makes them exact."""
    pytest.importorskip("onnx2tf", reason="onnx2tf not installed")
    from edgecv.export import onnx as ox, tflite as tl
    from edgecv.export.rewrite import for_export

    net = torch.nn.Sequential(torch.nn.AvgPool2d(3, 1, 1), torch.nn.Conv2d(8, 8, 1),
                              torch.nn.AvgPool2d(3, 2, 1, ceil_mode=True)).eval()
    x = np.random.default_rng(0).standard_normal((2, 8, 2, 2)).astype(np.float32)
    f = ox.export_fp32(for_export(net, fmt="tflite"), tmp_path / "m.onnx", (8, 2, 2), {"model": "probe"})
    out = tl.convert(f, tmp_path / "m.tflite", "fp32", workdir=tmp_path / "w")
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1).reshape(2, -1)  # the file is NHWC
    assert np.abs(tl.Runner(out)(x) - ref).max() < 1e-5


def test_tflite_rewrites_keep_convnext_bninception_shufflenet_the_same_function():
    from edgecv.export.rewrite import PolyErfGELU, for_export
    from edgecv.models import create_model

    x = torch.linspace(-12, 12, 100001)
    assert (PolyErfGELU()(x) - torch.nn.GELU()(x)).abs().max() < 2e-6
    for name in ("convnext_tiny", "bn_inception", "shufflenet_v1_g2"):
        torch.manual_seed(0)
        m = create_model(name).eval()
        r = for_export(m, fmt="tflite")
        kinds = {type(mod).__name__ for mod in r.modules()}
        assert not {"CNBlock", "LayerNorm", "GELU"} & kinds
        assert not any(isinstance(mod, torch.nn.AvgPool2d) and mod.padding for mod in r.modules())
        assert not any(isinstance(mod, torch.nn.Conv2d) and 1 < mod.groups < mod.in_channels
                       and mod.kernel_size == (1, 1) for mod in r.modules())
        xi = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            ref, got = m(xi), r(xi)
        assert (got - ref).abs().max() <= 1e-5 * (ref.max() - ref.min())


@needs_shared
def test_bias_correction_is_on_for_int8_and_can_be_turned_off(tmp_path, capsys):
    w = Path(__file__).resolve().parents[1] / "weights" / "lenet5-mnist.safetensors"
    reports = {}
    for flag in ([], ["--no-bias-correction"]):
        out, js = tmp_path / f"l{len(flag)}.onnx", tmp_path / f"l{len(flag)}.json"
        code, stdout, err = run(capsys, "export", "lenet5", "--weights", w, "--format", "onnx", "--precision", "int8",
                                *flag, "-o", out, "--json", js)
        assert code == 0, err
        reports[bool(flag)] = json.loads(js.read_text())
        assert ("bias correction:" in stdout) == (not flag)
    assert reports[False]["calibration"]["bias_correction"]["layers"] == 5  # 2 convs + 3 linears, no BN
    assert reports[True]["calibration"]["bias_correction"] is None
