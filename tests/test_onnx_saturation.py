"""int8 ONNX on CPUs whose int8 kernels saturate (AVX2 without VNNI): 7-bit weights (edgecv.export.onnx)."""
from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from edgecv.export import onnx as ox


@pytest.mark.parametrize("flags,expected", [
    ({"sse4_2", "avx", "avx2", "fma"}, True),  # AVX2 only: VPMADDUBSW saturates
    ({"avx2", "avx512f", "avx512_vnni"}, False),
    ({"avx2", "avx_vnni"}, False),
    ({"avx2", "amx_int8"}, False),
    ({"sse4_2", "avx"}, False),  # no AVX2: ORT's SSE kernels widen to int16 first
    ({"fp", "asimd", "asimddp"}, False),  # aarch64
])
def test_saturating_cpu_reads_the_isa(flags, expected):
    assert ox.saturating_cpu(flags) is expected


def _int8_weights(path) -> list[np.ndarray]:
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    return [numpy_helper.to_array(t) for t in m.graph.initializer if t.data_type == onnx.TensorProto.INT8 and t.dims
            and len(t.dims) > 1]


def test_reduce_range_gives_7_bit_weights(tmp_path):
    pytest.importorskip("onnxruntime")
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1), nn.Flatten(), nn.Linear(8 * 64, 5))
    calib = np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32)
    fp32 = ox.export_fp32(net.eval(), tmp_path / "m.onnx", (3, 8, 8))
    full = ox.quantize_int8(fp32, tmp_path / "full.onnx", calib)
    seven = ox.quantize_int8(fp32, tmp_path / "seven.onnx", calib, reduce_range=True)
    w8, w7 = _int8_weights(full), _int8_weights(seven)
    assert len(w8) == len(w7) == 3
    assert max(np.abs(w).max() for w in w8) == 127  # per-channel min/max: the largest weight on the last step
    assert max(np.abs(w).max() for w in w7) <= 64
    assert ox.metadata(seven)["weight_bits"] in (7, "7") and ox.metadata(full)["weight_bits"] in (8, "8")
    # the 7-bit file still computes the net (one run on the CPU here)
    x = calib[:1]
    ref = net(__import__("torch").from_numpy(x)).detach().numpy()
    got = ox.session(seven).run(None, {ox.INPUT_NAME: x})[0]
    assert np.abs(got - ref).max() < 0.1 * np.abs(ref).max()
