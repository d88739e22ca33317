"""Weights already on an 8-bit grid keep it in the int8 files (edgecv.export.weight_grid)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgecv.export.weight_grid import fake_quant_on_grid, grid_step, model_grids
from tests.conftest import needs_shared


def _on_grid(shape: tuple[int, ...], step: float, zero: int, seed: int) -> torch.Tensor:
    """``step * (q - zero)`` with q uniform in 0..255: one uint8 grid per tensor, as a QAT file holds."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(0, 256, shape, generator=g).double()
    return (step * (q - zero)).float()


def _net() -> nn.Sequential:
    """conv+BN+ReLU6, depthwise+BN+ReLU6, pool, linear; every weight on its own grid, BN not identity."""
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
                        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).eval()
    with torch.no_grad():
        for i, (m, s) in enumerate([(net[0], 0.002), (net[3], 0.01), (net[8], 0.004)]):
            m.weight.copy_(_on_grid(tuple(m.weight.shape), s, 120 + i, i))
        for bn in (net[1], net[4]):
            bn.weight.copy_(torch.linspace(0.5, 2.0, 8))
            bn.running_var.copy_(torch.linspace(0.5, 3.0, 8))
            bn.running_mean.copy_(torch.linspace(-0.1, 0.1, 8))
    return net


def test_grid_step_finds_an_8_bit_grid_and_nothing_else():
    w = _on_grid((16, 8, 3, 3), 0.0123, 128, 0)
    assert grid_step(w) == pytest.approx(0.0123, rel=1e-5)
    assert grid_step(torch.randn(16, 8, 3, 3)) is None  # float-trained weights
    fine = torch.arange(-600, 600, dtype=torch.float32).reshape(40, 30) * 1e-3  # 1,200 levels: not 8 bit
    assert grid_step(fine) is None
    assert grid_step(w + 0.3 * 0.0123) is None  # shifted off the grid


def test_fake_quant_keeps_fitting_channels_exact_and_rounds_the_others():
    w = _on_grid((6, 4, 1, 1), 0.05, 128, 1)
    w[0, 0, 0, 0] = -128 * 0.05  # channel 0 needs -128 steps: does not fit [-127, 127]
    w[1] = torch.tensor([-100, 3, 0, 50]).reshape(4, 1, 1) * 0.05  # on the grid, max 100 steps
    out = fake_quant_on_grid(w)
    fits = (w.reshape(6, -1) / 0.05).round().abs().amax(1) <= 127
    assert not fits[0] and fits[1]
    assert torch.equal(out[fits], w[fits])
    scale = w[0].abs().max() / 127
    assert torch.allclose(out[0], torch.round(w[0] / scale) * scale)
    assert fake_quant_on_grid(torch.randn(6, 4, 1, 1)) is None


def test_model_grids_fold_the_batchnorm_into_the_steps():
    net = _net()
    grids = {g.name: g for g in model_grids(net)}
    assert set(grids) == {"0", "3", "8"}
    bn = net[1]
    factor = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double().numpy()
    np.testing.assert_allclose(grids["0"].steps, 0.002 * factor, rtol=1e-5)
    np.testing.assert_allclose(grids["0"].folded, grids["0"].steps[:, None, None, None] * grids["0"].ints, rtol=1e-5)


def _int8_files(tmp_path, net: nn.Module):
    """The net as onnxruntime QDQ and TFLite full-int8 files, calibrated on 32 seeded images."""
    from edgecv.export import onnx as ox
    from edgecv.export import tflite as tl

    calib = np.random.default_rng(0).standard_normal((32, 3, 12, 12)).astype(np.float32)
    fp32 = ox.export_fp32(net, tmp_path / "m.onnx", (3, 12, 12))
    q = ox.quantize_int8(fp32, tmp_path / "m.int8.onnx", calib)
    t = tl.convert(fp32, tmp_path / "m.tflite", "int8", calib=calib, workdir=tmp_path / "w")
    return q, t, calib


def _tflite_weights(path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(op, int8 weights in torch layout, per-channel scales) of every conv / fc in the file."""
    from tensorflow.lite.python import schema_py_generated as S
    from tensorflow.lite.tools import flatbuffer_utils as fu

    m = fu.read_model_from_bytearray(bytearray(path.read_bytes()))
    names = {S.BuiltinOperator.CONV_2D: ("conv", (0, 3, 1, 2)), S.BuiltinOperator.DEPTHWISE_CONV_2D: ("dw", (3, 0, 1, 2)),
             S.BuiltinOperator.FULLY_CONNECTED: ("fc", None)}
    out = []
    for op in m.subgraphs[0].operators:
        c = m.operatorCodes[op.opcodeIndex]
        code = max(c.builtinCode, c.deprecatedBuiltinCode)
        if code in names:
            t = m.subgraphs[0].tensors[op.inputs[1]]
            q = np.frombuffer(bytes(m.buffers[t.buffer].data), np.int8).reshape(t.shape)
            kind, perm = names[code]
            out.append((kind, q.transpose(perm) if perm else q, np.asarray(t.quantization.scale)))
    return out


def test_tflite_and_onnx_int8_weights_are_the_grid_integers(tmp_path):
    pytest.importorskip("onnx2tf", reason="onnx2tf not installed")
    pytest.importorskip("onnxruntime", reason="pip install edgecv[onnx]")
    from onnx import numpy_helper
    import onnx

    from edgecv.export.onnx import Runner as OnnxRunner
    from edgecv.export.tflite import Runner as TfliteRunner
    from edgecv.export.weight_grid import snap_onnx, snap_tflite

    net = _net()
    grids = {g.ints.shape: g for g in model_grids(net)}
    q_onnx, q_tfl, calib = _int8_files(tmp_path, net)
    before = {"onnx": OnnxRunner(q_onnx)(calib), "tflite": TfliteRunner(q_tfl)(calib)}
    with torch.no_grad():
        ref = net(torch.from_numpy(calib)).numpy()
    # the converters' own per-channel scales (max|w| / 127) put the weights off the grid
    assert any(not np.array_equal(q, grids[q.shape].ints) for _, q, _ in _tflite_weights(q_tfl) if q.shape in grids)

    rep_t = snap_tflite(q_tfl, net)
    rep_o = snap_onnx(q_onnx, net)
    assert rep_t["layers"] == 3 and rep_o["layers"] == 3
    for kind, q, scale in _tflite_weights(q_tfl):
        gr = grids[q.shape]
        fits = gr.fits()
        if len(scale) == 1:  # fully connected per tensor: one step for all
            assert fits.all() and np.array_equal(q, gr.ints), kind
            np.testing.assert_allclose(scale, gr.steps[:1], rtol=1e-6)
        else:
            assert np.array_equal(q[fits], gr.ints[fits]), kind
            np.testing.assert_allclose(scale[fits], gr.steps[fits], rtol=1e-6)
    m = onnx.load(str(q_onnx))
    ints = [numpy_helper.to_array(t) for t in m.graph.initializer if numpy_helper.to_array(t).dtype == np.int8]
    for q in ints:
        if q.shape in grids:
            gr = grids[q.shape]
            assert np.array_equal(q[gr.fits()], gr.ints[gr.fits()])
    # the files still compute the model (biases rescaled with the weights): as close as before or closer
    for fmt, run in (("onnx", OnnxRunner(q_onnx)), ("tflite", TfliteRunner(q_tfl))):
        err_after = np.abs(run(calib) - ref).mean()
        err_before = np.abs(before[fmt] - ref).mean()
        assert err_after <= 1.05 * err_before, (fmt, err_before, err_after)


def test_float_trained_weights_are_left_alone(tmp_path):
    pytest.importorskip("onnx2tf", reason="onnx2tf not installed")
    from edgecv.export.weight_grid import snap_tflite

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()
    _, q_tfl, _ = _int8_files(tmp_path, net)
    blob = q_tfl.read_bytes()
    assert snap_tflite(q_tfl, net) == {"layers": 0, "channels": 0, "channels_not_fitting": 0}
    assert q_tfl.read_bytes() == blob


@needs_shared
def test_real_mobilenet_v1_int8_agrees_more_with_the_grid_kept(tmp_path, shared):
    """MobileNet v1-0.25 (Google's QAT weights dequantized), ONNX QDQ int8, 800 held-out ImageNet samples."""
    pytest.importorskip("onnxruntime", reason="pip install edgecv[onnx]")
    from edgecv.export import export
    from edgecv.export import onnx as ox

    agree = {}
    seven_bit = ox.saturating_cpu()  # AVX2 without VNNI: the ONNX file gets 7-bit weights, no 8-bit grid
    for keep in (True, False):
        rep = export("mobilenet_v1_025", "onnx", out=tmp_path / f"k{keep}.onnx", precision="int8", weights="imagenet",
                     calib="imagenet-samples", min_agreement=0.0, keep_grid=keep)
        agree[keep] = rep["parity"]["agreement_pct"]
        assert (rep["calibration"]["weight_grid"] is not None) == (keep and not seven_bit)
        assert ox.metadata(tmp_path / f"k{keep}.onnx")["weight_bits"] in ((7, "7") if seven_bit else (8, "8"))
    if seven_bit:
        pytest.skip("this CPU (AVX2 without VNNI) exports 7-bit ONNX weights, where no 8-bit grid can be kept: "
                    "checked above that it is not, and that the file has 7-bit weights")
    assert rep["parity"]["n_images"] == 800
    assert agree[True] >= agree[False] + 1.0, agree


def test_executorch_weight_observer_gives_the_grid_step_as_scale():
    pytest.importorskip("executorch", reason="pip install edgecv[executorch]")
    from edgecv.export.executorch import _grid_observer

    w = _on_grid((6, 4, 3, 3), 0.02, 128, 3).clamp(-127 * 0.02, 127 * 0.02)
    w[0, 0, 0, 0] = -128 * 0.02  # channel 0 does not fit [-127, 127] steps
    obs = _grid_observer()(ch_axis=0, dtype=torch.int8, qscheme=torch.per_channel_symmetric, quant_min=-127,
                           quant_max=127, eps=2 ** -12)
    obs(w)
    scale, zp = obs.calculate_qparams()
    assert torch.allclose(scale[1:], torch.full((5,), 0.02), rtol=1e-5)
    assert scale[0] == pytest.approx(float(w[0].abs().max()) / 127, rel=1e-5)  # min/max scale where it does not fit
    assert torch.equal(zp, torch.zeros_like(zp))
    ints = torch.round(w[1:] / scale[1:, None, None, None])
    assert torch.allclose(ints * scale[1:, None, None, None], w[1:], atol=1e-7)  # exact on the grid
    float_obs = _grid_observer()(ch_axis=0, dtype=torch.int8, qscheme=torch.per_channel_symmetric, quant_min=-127,
                                 quant_max=127, eps=2 ** -12)
    v = torch.randn(6, 4, 3, 3)
    float_obs(v)
    assert torch.allclose(float_obs.calculate_qparams()[0], v.reshape(6, -1).abs().amax(1) / 127, rtol=1e-5)
