"""The quantize stage (nncf PTQ / QAT, weights baked to integers) and the codec's affine integer kind."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecv.codec import (
    AffineCode,
    CodecError,
    LayerCode,
    decode_codes,
    decode_model,
    encode_model,
    inspect,
)
from edgecv.compress import Context, parse_recipe
from edgecv.errors import UserError

FUZZ_NUMEL = 1 << 20


def _affine(shape=(8, 3, 3, 3), bits=8, per_channel_zp=False, huff=True, seed=0) -> AffineCode:
    rng = np.random.default_rng(seed)
    c, n = shape[0], int(np.prod(shape))
    zp = rng.integers(0, 1 << bits, c) if per_channel_zp else [(1 << bits) // 2 - 1]
    codes = np.clip(rng.normal((1 << bits) / 2, (1 << bits) / 10, n).round(), 0, (1 << bits) - 1).astype(np.int64)
    return AffineCode(shape, bits, (rng.random(c) * 0.01 + 1e-4).astype(np.float32), zp, codes, huffman=huff)


# --- codec: the affine integer kind ---------------------------------------------------------

def test_affine_roundtrip_is_bit_exact_and_sizes_add_up():
    tensors = {"a": _affine(), "b": _affine((10, 40), bits=6, per_channel_zp=True, huff=False, seed=1),
               "c": _affine((4, 2), bits=3, seed=2), "bias": torch.randn(8)}
    data = encode_model(tensors, {"m": 1})
    out, _ = decode_model(data)
    for k in ("a", "b", "c"):
        ref = tensors[k].to_numpy()
        assert out[k].dtype == torch.float32 and out[k].numpy().tobytes() == ref.tobytes()
    codes, _ = decode_codes(data)
    assert np.array_equal(codes["b"].zero_points, tensors["b"].zero_points)
    assert np.array_equal(codes["a"].codes, tensors["a"].codes)
    table = inspect(data)
    assert table["totals"]["file_bytes"] == len(data)
    rows = {r["name"]: r for r in table["rows"]}
    assert rows["a"]["kind"] == "affine" and rows["a"]["scales"] == 8 and rows["b"]["bits"] == 6
    # 10 x 40 six-bit values = 300 bytes fixed width; 10 scales + 10 zero points
    assert rows["b"]["bytes"]["values"] == 300 and rows["b"]["bytes"]["codebook"] == 40 + 10
    assert rows["a"]["bytes"]["values"] <= (216 * 8 + 7) // 8  # Huffman only when smaller


def test_affine_decode_formula_float32():
    code = AffineCode((2, 2), 8, np.array([0.5, 0.1], np.float32), [127], [127, 128, 0, 254])
    want = np.array([[0.0, 0.5], [np.float32(-127) * np.float32(0.1), np.float32(127) * np.float32(0.1)]], np.float32)
    assert code.to_numpy().tobytes() == want.tobytes()


@pytest.mark.parametrize("kw, msg", [
    ({"codes": [0, 1, 2, 256]}, "codes must lie"),
    ({"codes": [0, 1, 2]}, "one code per element"),
    ({"scales": np.ones(3, np.float32)}, "1 or shape"),
    ({"zero_points": [300]}, "zero_points must lie"),
    ({"zero_points": [1, 2, 3]}, "zero_points must have"),
    ({"bits": 17}, "bits must be an int"),
    ({"shape": ()}, "1..8"),
])
def test_affine_validation(kw, msg):
    args = {"shape": (2, 2), "bits": 8, "scales": np.ones(2, np.float32), "zero_points": [127], "codes": [0, 1, 2, 3]}
    args.update(kw)
    with pytest.raises(ValueError, match=msg):
        AffineCode(**args)


def _fix_crc(data: bytes | bytearray) -> bytes:
    data = bytes(data)
    return data[:9] + struct.pack("<I", zlib.crc32(data[13:])) + data[13:]


_SMALL = encode_model({"q": _affine((4, 3, 2, 2), bits=5, seed=3), "p": _affine((6, 5), bits=8, per_channel_zp=True,
                                                                                   huff=False, seed=4),
                       "h": _affine((3, 100), bits=8, seed=5),
                       "d": LayerCode((2, 2), np.arange(4, dtype=np.float32), 2, np.arange(4), None)}, {"x": 1})


def _decode_or_codec_error(data: bytes) -> None:
    try:
        decode_model(data, max_numel=FUZZ_NUMEL)
        inspect(data, max_numel=FUZZ_NUMEL)
    except CodecError:
        pass


def test_affine_hostile_fields_rejected():
    rec = bytearray(encode_model({"w": _affine((4, 2), bits=4, huff=False)}))
    i = rec.index(b"w") + 1                           # tag, ndim, dims 4 2, widths, scale count
    assert rec[i] & 3 == 3 and rec[i + 1] == 2
    for j, value, msg in [(i + 5, 3, "scales"), (i + 5, 5, "exceeds"), (i + 4, 0x31, "index width"),
                          (i + 1, 0, "invalid tag")]:
        bad = rec.copy()
        bad[j] = value
        with pytest.raises(CodecError, match=msg):
            decode_model(_fix_crc(bad))
    bad = rec.copy()
    bad[i + 6 + 16] = 0x7F                            # zero point 127 > 2**4 - 1
    with pytest.raises(CodecError, match="zero point"):
        decode_model(_fix_crc(bad))


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_affine_mutations_with_valid_checksum(data):
    buf = bytearray(_SMALL)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(13, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    _decode_or_codec_error(_fix_crc(buf))


@settings(max_examples=150, deadline=2000)
@given(st.integers(13, len(_SMALL) - 1), st.binary(min_size=0, max_size=40))
def test_fuzz_affine_splice_truncate(at, junk):
    _decode_or_codec_error(_fix_crc(_SMALL[:at] + junk))
    _decode_or_codec_error(_fix_crc(_SMALL[:at] + junk + _SMALL[at + len(junk):]))


# --- the stage's config in recipes ---------------------------------------------------------

def test_quantize_recipe_validation_names_file_and_line():
    rec = parse_recipe("stages:\n  - quantize: {bits: 6, mode: qat, epochs: 2}\n")
    assert rec.stages[0].config.bits == 6 and rec.with_bits(4).stages[0].config.bits == 4
    for text, line, match in [
        ("stages:\n  - quantize:\n      bitz: 8\n", 3, "unknown key 'bitz'.*did you mean 'bits'"),
        ("stages:\n  - quantize:\n      mode: int8\n", 3, "one of 'ptq', 'qat'"),
        ("stages:\n  - quantize:\n      bits: 12\n", 2, "bits must be 2..8"),
        ("stages:\n  - quantize:\n      calib_size: many\n", 3, "an integer"),
    ]:
        with pytest.raises(UserError, match=match) as e:
            parse_recipe(text, "r.yaml")
        assert f"r.yaml:{line}:" in str(e.value)
    with pytest.raises(UserError, match="r.yaml:3.*nosuch"):
        parse_recipe("stages:\n  - quantize:\n      ignored: [nosuch]\n", "r.yaml").dry_run("resnet20")
    with pytest.raises(UserError, match="2..8"):
        parse_recipe("stages:\n  - quantize: {}\n").with_bits(16)


# --- the stage on the hard cases of MobileNetV3 -------------------------------------------------

def test_mobilenet_v3_small_quantizes_and_the_file_rebuilds_the_same_fake_quant_model():
    """Depthwise convs (per-channel), hard-swish, SE blocks (Mul) and residual Adds: nncf quantizes the
    model, every conv/fc weight becomes per-channel 8-bit integers, the fake-quant model runs, and the
    model rebuilt from the file's bytes computes the very same outputs."""
    from edgecv.compress import (
        Quantize,
        QuantizeConfig,
        quant_codes,
        quantizer_meta,
        to_layer_codes,
    )
    from edgecv.compress.targets import compressible
    from edgecv.models import create_model
    from edgecv.pipeline import build_decoded

    torch.manual_seed(0)
    model = create_model("mobilenet_v3_small").eval()
    size = 96  # small inputs keep this quick; the layer structure is what is under test
    g = torch.Generator().manual_seed(1)
    calib = torch.utils.data.TensorDataset(torch.randn(8, 3, size, size, generator=g), torch.zeros(8, dtype=torch.long))
    ctx = Context(model_name="mobilenet_v3_small", input_size=(3, size, size))
    ctx.calib_data = calib
    x = torch.randn(2, 3, size, size, generator=g)
    with torch.no_grad():
        ref = model(x)
    q = Quantize(QuantizeConfig(calib_size=8, calib_batch=4)).apply(model, ctx)
    rep = ctx.report["quantize"]
    layers = compressible(create_model("mobilenet_v3_small"))
    codes = quant_codes(ctx)
    se = {n for n in layers if n.rsplit(".", 1)[-1] in ("fc1", "fc2")}  # the SE blocks' 1x1 convs
    assert len(se) == 18
    # every conv and fc weight, except the SE convs: nncf's SE-block rule leaves them in float
    assert set(codes) == {f"{n}.weight" for n in layers if n not in se}
    dw = [n for n, m in layers.items() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert dw and all(codes[f"{n}.weight"].scales.size == layers[n].out_channels for n in dw)  # per-channel
    assert all(c.bits == 8 and c.zero_points.tolist() == [127] for c in codes.values())
    assert rep["activation_quantizers"] >= 20
    with torch.no_grad():
        out = q(x)
    assert torch.isfinite(out).all() and not torch.equal(out, ref)  # the fake-quant model runs, and differs
    state = q.state_dict()
    for name, code in codes.items():  # weights sit exactly on their integer grid
        assert state[name].numpy().tobytes() == code.to_numpy().tobytes()
    tensors = to_layer_codes(q, ctx)
    tensors.update(codes)
    meta = {"model": "mobilenet_v3_small", "num_classes": 1000, "quantizers": quantizer_meta(q)}
    decoded, meta2 = decode_model(encode_model(tensors, meta))
    rebuilt = build_decoded(decoded, meta2)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), out)
        plain = build_decoded(decoded, meta2, fake_quant=False)
        assert not any("nncf" in k for k in plain.state_dict()) and torch.isfinite(plain(x)).all()


def test_quantize_without_calibration_data_is_a_user_error():
    from edgecv.compress import Quantize, QuantizeConfig
    from edgecv.models import create_model

    with pytest.raises(UserError, match="calibration"):
        Quantize(QuantizeConfig()).apply(create_model("lenet5"), Context(model_name="lenet5"))


def test_qat_trains_the_fake_quant_model_and_keeps_integer_weights(shared):
    """QAT: PTQ, then training steps through the fake-quantizers (LeNet-5, MNIST); the result is
    baked to integers again and still classifies real digits."""
    from edgecv.compress import Quantize, QuantizeConfig, quant_codes
    from edgecv.engine import evaluate
    from edgecv.workflows import build, data_for_model
    from tests.conftest import REPO

    train, _ = data_for_model("lenet5", "mnist", "train", train=True, limit=2000)
    calib, _ = data_for_model("lenet5", "mnist", "train", train=False, limit=100)
    test, _ = data_for_model("lenet5", "mnist", "test", train=False, limit=1000)
    model = build("lenet5", num_classes=10, weights=REPO / "weights" / "lenet5-mnist.safetensors")
    ctx = Context(model_name="lenet5", train_data=train)
    ctx.calib_data = calib
    import copy

    ptq_ctx = Context(model_name="lenet5")
    ptq_ctx.calib_data = calib
    Quantize(QuantizeConfig(calib_size=100)).apply(copy.deepcopy(model), ptq_ctx)
    q = Quantize(QuantizeConfig(mode="qat", epochs=1, max_steps=15, batch_size=64, calib_size=100, lr=0.01)).apply(model, ctx)
    rep = ctx.report["quantize"]
    assert rep["retrained"] and rep["mode"] == "qat"
    state, codes, ptq = q.state_dict(), quant_codes(ctx), quant_codes(ptq_ctx)
    for name, code in codes.items():
        assert state[name].numpy().tobytes() == code.to_numpy().tobytes()
    changed = sum(int((codes[k].codes != ptq[k].codes).sum()) for k in codes)
    assert changed > 0, "QAT left every integer weight where PTQ put it"
    assert evaluate(q, test)["top1"] > 97.0
