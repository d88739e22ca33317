"""Deep-Compression file codec: layout, Huffman, fillers, size accounting, robustness."""
from __future__ import annotations

import math
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecv.codec import (CodecError, LayerCode, decode_codes, decode_model, encode_model, inspect, read_file,
                          write_file)
from edgecv.codec import huffman, sparse
from edgecv.codec.bitpack import Reader, pack_bits, unpack_fixed, varint
from edgecv.errors import UserError

FUZZ_NUMEL = 1 << 20


def _sparse_code(numel: int, kept: float, bits: int = 5, index_bits: int = 5, huff: bool = True,
                 seed: int = 0, shape: tuple[int, ...] | None = None) -> LayerCode:
    rng = np.random.default_rng(seed)
    pos = np.sort(rng.choice(numel, int(round(numel * kept)), replace=False))
    k = 1 << bits
    p = np.exp(-0.5 * ((np.arange(1, k) - k / 2) / (k / 6)) ** 2)   # peaked, like trained weights
    codes = rng.choice(np.arange(1, k), size=pos.size, p=p / p.sum())
    cb = np.concatenate([[0.0], rng.normal(size=k - 1)]).astype(np.float32)
    return LayerCode(shape or (numel,), cb, bits, codes, pos, index_bits=index_bits, huffman=huff)


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    raw = (lambda t: t.view(torch.int16) if t.dtype == torch.bfloat16 else t)
    return a.dtype == b.dtype and a.shape == b.shape and raw(a).numpy().tobytes() == raw(b).numpy().tobytes()


def _model() -> dict:
    rng = np.random.default_rng(1)
    return {
        "ip1.weight": _sparse_code(300 * 784, 0.08, shape=(300, 784)),
        "ip1.bias": torch.randn(300, generator=torch.Generator().manual_seed(1)),
        "conv.weight": LayerCode((8, 3, 3, 3), rng.normal(size=256).astype(np.float32), 8,
                                 rng.integers(0, 256, 216), None),
        "ip2.weight": _sparse_code(1000, 0.26, bits=6, huff=False, shape=(10, 100)),
        "bn.num_batches_tracked": torch.tensor(7),
    }


# --- LayerCode contract ------------------------------------------------------------------

@pytest.mark.parametrize("kw, msg", [
    (dict(codes=[0, 4]), "codes must lie"),
    (dict(bits=1, codebook=[0.0, 1.0, 2.0]), "codebook must be 1-D"),
    (dict(positions=[3, 3]), "strictly increasing"),
    (dict(positions=[2, 1]), "strictly increasing"),
    (dict(positions=[0, 10]), "positions must lie"),
    (dict(positions=[0]), "differ in length"),
    (dict(codebook=[1.0, 2.0, 3.0, 4.0]), "codebook\\[0\\] == 0.0"),
    (dict(bits=17), "bits must be an int"),
    (dict(index_bits=0), "index_bits must be an int"),
    (dict(shape=(-1, 10)), "non-negative"),
])
def test_layercode_validation(kw, msg):
    args = dict(shape=(10,), codebook=[0.0, 1.0, 2.0, 3.0], bits=2, codes=[1, 2], positions=[0, 5])
    args.update(kw)
    with pytest.raises(ValueError, match=msg):
        LayerCode(**args)
    with pytest.raises(ValueError, match="one code per element"):
        LayerCode((4,), [1.0], 1, [0, 0], None)


def test_codec_error_is_user_error():
    assert issubclass(CodecError, UserError)


# --- sparse layout (Fig. 2) ------------------------------------------------------------

def test_paper_figure2_example():
    gaps, values = sparse.to_entries(np.array([1, 4, 15]), np.array([5, 6, 7]), index_bits=3)
    assert gaps.tolist() == [1, 2, 7, 2] and values.tolist() == [5, 6, 0, 7]
    pos, codes = sparse.from_entries(gaps, values, 16)
    assert pos.tolist() == [1, 4, 15] and codes.tolist() == [5, 6, 7]


@pytest.mark.parametrize("positions, fillers", [
    ([0], 0), ([31], 0), ([32], 1), ([0, 32], 0), ([0, 33], 1), ([0, 64], 1), ([0, 65], 2),
    ([10_000], 10_000 // 32), ([0, 1, 2, 3], 0), ([], 0), ([99_999], 99_999 // 32),
])
def test_fillers(positions, fillers):
    D = 32  # index_bits = 5; one entry advances 1..32 positions (first one from -1)
    pos = np.array(positions, dtype=np.int64)
    gaps, values = sparse.to_entries(pos, np.ones(pos.size, dtype=np.int64), 5)
    assert int((values == 0).sum()) == fillers == gaps.size - pos.size
    assert sparse.count_entries(pos, 5) == gaps.size
    assert gaps.size == 0 or (gaps.min() >= 0 and gaps.max() <= D - 1)
    got, codes = sparse.from_entries(gaps, values, 100_000)
    assert got.tolist() == list(positions) and codes.tolist() == [1] * len(positions)


def test_kept_weights_with_code_zero_are_dropped():
    gaps, values = sparse.to_entries(np.array([2, 5, 9]), np.array([3, 0, 4]), 4)
    pos, codes = sparse.from_entries(gaps, values, 10)
    assert pos.tolist() == [2, 9] and codes.tolist() == [3, 4]


@pytest.mark.parametrize("index_bits", [1, 2, 3, 5, 8, 16])
@pytest.mark.parametrize("huff", [True, False])
def test_sparse_edge_layers_roundtrip(index_bits, huff):
    numel = max(5000, 3 << index_bits)
    cases = {
        "empty": [], "all": list(range(numel)), "first_last": [0, numel - 1],
        "at_D": [(1 << index_bits) - 1, 2 * (1 << index_bits) - 1],    # gaps of exactly D: no filler
        "over_D": [1 << index_bits, 2 * (1 << index_bits) + 1],        # one filler each
        "huge": [numel - 1],
    }
    tensors = {name: LayerCode((numel,), [0.0, 1.5, -2.0], 2, np.ones(len(p), np.int64) + (np.arange(len(p)) % 2),
                               np.array(p, np.int64), index_bits=index_bits, huffman=huff)
               for name, p in cases.items()}
    data = encode_model(tensors, {})
    out, _ = decode_model(data)
    for name, lc in tensors.items():
        assert _bits_equal(out[name], torch.from_numpy(lc.to_numpy())), name
    rows = {r["name"]: r for r in inspect(data)["rows"]}
    D = 1 << index_bits
    assert rows["at_D"]["fillers"] == 0 and rows["over_D"]["fillers"] == 2
    assert rows["empty"]["kept"] == 0 and rows["all"]["kept"] == numel
    assert rows["huge"]["fillers"] == (numel - 1) // D


# --- Huffman ---------------------------------------------------------------------------

def test_huffman_lengths_optimal_and_canonical():
    lengths = huffman.code_lengths(np.array([1, 1, 2, 4, 0]))
    assert lengths.tolist() == [3, 3, 2, 1, 0]
    codes = huffman.canonical_codes(lengths)
    assert codes[:4].tolist() == [0b110, 0b111, 0b10, 0b0]
    rng = np.random.default_rng(0)
    freq = rng.integers(0, 1000, 200)
    ln = huffman.code_lengths(freq)
    cw = huffman.canonical_codes(ln)
    used = np.flatnonzero(ln)
    strs = [format(int(cw[s]), f"0{int(ln[s])}b") for s in used]
    assert sum(2.0 ** -ln[used]) == pytest.approx(1.0)                         # complete
    assert not any(a != b and b.startswith(a) for a in strs for b in strs)   # prefix-free
    order = sorted(used, key=lambda s: (ln[s], s))                            # canonical: codes increase
    assert [int(cw[s]) << (30 - int(ln[s])) for s in order] == sorted(int(cw[s]) << (30 - int(ln[s])) for s in order)
    assert (huffman.code_lengths(freq) == ln).all()                           # deterministic


def test_huffman_ties_by_symbol():
    # equal weights: the lowest symbols merge first, so the highest symbol gets the short code
    assert huffman.code_lengths(np.array([5, 5, 5])).tolist() == [2, 2, 1]
    assert huffman.canonical_codes(np.array([2, 2, 1])).tolist() == [0b10, 0b11, 0b0]


def test_huffman_single_symbol_stream():
    sym = np.full(13, 3)
    ln = huffman.code_lengths(np.bincount(sym, minlength=8))
    assert ln.tolist() == [0, 0, 0, 1, 0, 0, 0, 0]
    buf = huffman.encode(sym, ln)
    assert len(buf) == 2
    assert huffman.decode(buf, ln, 13).tolist() == sym.tolist()


def test_huffman_length_limit():
    fib = [1, 1]
    while len(fib) < 40:
        fib.append(fib[-1] + fib[-2])
    freq = np.array(fib, dtype=np.int64)
    assert huffman.code_lengths(freq, max_len=64).max() == 39
    ln = huffman.code_lengths(freq)
    assert ln.max() <= huffman.MAX_CODE_LEN and sum(2.0 ** -ln) <= 1.0
    ln8 = huffman.code_lengths(freq, max_len=8)
    assert ln8.max() <= 8
    sym = np.repeat(np.arange(40), 3)
    assert huffman.decode(huffman.encode(sym, ln), ln, sym.size).tolist() == sym.tolist()


@settings(max_examples=60, deadline=2000)
@given(st.lists(st.integers(0, 300), min_size=1, max_size=3000))
def test_huffman_roundtrip(symbols):
    sym = np.array(symbols)
    freq = np.bincount(sym, minlength=301)
    ln = huffman.code_lengths(freq)
    buf = huffman.encode(sym, ln)
    assert len(buf) == (huffman.stream_bits(freq, ln) + 7) // 8
    assert huffman.decode(buf, ln, sym.size).tolist() == symbols
    r = Reader(huffman.table_bytes(ln))
    assert (huffman.read_table(r, 301, "t") == ln).all() and r.remaining == 0


def test_pack_bits_matches_naive():
    rng = np.random.default_rng(3)
    lens = rng.integers(1, 25, 5000)
    vals = rng.integers(0, 1 << 24, 5000) & ((1 << lens) - 1)
    naive = "".join(format(int(v), f"0{int(n)}b") for v, n in zip(vals, lens))
    naive += "0" * (-len(naive) % 8)
    assert pack_bits(vals, lens) == int(naive, 2).to_bytes(len(naive) // 8, "big")
    for w in (1, 3, 5, 8, 11, 16):
        v = rng.integers(0, 1 << w, 777)
        assert (unpack_fixed(pack_bits(v, w), 777, w) == v).all()


def test_varint():
    for n in (0, 1, 127, 128, 300, 2 ** 31, 2 ** 63 - 1):
        r = Reader(varint(n))
        assert r.varint("x") == n and r.remaining == 0


# --- container ---------------------------------------------------------------------------

def test_model_roundtrip_bit_identical():
    tensors = _model()
    tensors.update({"half": torch.randn(3, 5).half(), "bf16": torch.randn(4).bfloat16(),
                    "i64": torch.arange(-5, 5), "mask": torch.rand(6) > 0.5, "empty": torch.zeros(0, 3),
                    "np64": np.linspace(0, 1, 7), "negzero": torch.tensor([-0.0, float("nan"), float("inf")])})
    data = encode_model(tensors, {"model": "lenet_300_100", "seed": 0, "recipe": {"prune": [0.08]}})
    out, meta = decode_model(data)
    assert meta == {"model": "lenet_300_100", "recipe": {"prune": [0.08]}, "seed": 0}
    assert list(out) == list(tensors)
    for name, t in tensors.items():
        want = torch.from_numpy(t.to_numpy()) if isinstance(t, LayerCode) else torch.as_tensor(t)
        assert _bits_equal(out[name], want), name
    codes, _ = decode_codes(data)
    src = tensors["ip1.weight"]
    assert (codes["ip1.weight"].positions == src.positions).all() and (codes["ip1.weight"].codes == src.codes).all()


def test_dense_codebook_roundtrip_fixed_and_huffman():
    rng = np.random.default_rng(2)
    codes = np.minimum(rng.geometric(0.3, 4096) - 1, 15)
    cb = rng.normal(size=16).astype(np.float32)
    for huff in (True, False):
        lc = LayerCode((64, 64), cb, 4, codes, None, huffman=huff)
        data = encode_model({"w": lc})
        assert _bits_equal(decode_model(data)[0]["w"], torch.from_numpy(lc.to_numpy()))
        row = inspect(data)["rows"][0]
        assert row["kind"] == "dense" and row["huffman"] is huff
    assert row["fixed_width_bytes"] == row["total_bytes"]


def test_inspect_adds_up_and_counts():
    data = encode_model(_model(), {"model": "x"})
    info = inspect(data)
    tot = info["totals"]
    assert tot["file_bytes"] == len(data)
    assert tot["header_bytes"] + sum(r["total_bytes"] for r in info["rows"]) == len(data)
    for r in info["rows"]:
        assert sum(r["bytes"].values()) == r["total_bytes"]
    rows = {r["name"]: r for r in info["rows"]}
    ip1 = rows["ip1.weight"]
    src = _model()["ip1.weight"]
    assert ip1["kept"] == src.codes.size and ip1["fillers"] == sparse.count_entries(src.positions, 5) - src.codes.size
    assert ip1["huffman"] and ip1["fixed_width_bytes"] > ip1["total_bytes"]
    assert rows["ip1.bias"]["bytes"]["raw"] == 1200 and rows["ip1.bias"]["kind"] == "raw"
    assert rows["ip2.weight"]["huffman"] is False
    assert tot["original_bytes"] == 4 * sum(r["numel"] for r in info["rows"])


def test_paper_arithmetic_fixed_width_size():
    """8% of 235,200 weights, 5-bit values, 5-bit index (LeNet-300-100 ip1, Deep Compression
    Table 2): fixed-width cost = entries x (5 + 5) bits + 31 float32 centroids + small header."""
    lc = _sparse_code(235_200, 0.08, huff=False, shape=(300, 784))
    prev, fillers = -1, 0
    for p in lc.positions.tolist():   # first principles: a filler per full 32-step the gap overruns
        fillers += (p - prev - 1) // 32
        prev = p
    entries = lc.codes.size + fillers
    data = encode_model({"ip1.weight": lc})
    expected = math.ceil(entries * 5 / 8) * 2 + 31 * 4
    assert expected <= len(data) <= expected + 64
    assert entries * 10 / 8 / 235_200 / 4 < 0.03      # ~2.7% of float32 before Huffman
    huff = encode_model({"ip1.weight": _sparse_code(235_200, 0.08, shape=(300, 784))})
    assert len(huff) < len(data)


def test_determinism_and_meta_order():
    a = encode_model(_model(), {"b": 1, "a": [1, 2]})
    b = encode_model(_model(), {"a": [1, 2], "b": 1})
    assert a == b


def test_write_read_file(tmp_path):
    path = write_file(tmp_path / "sub" / "m.dc", _model(), {"model": "x"})
    out, meta = read_file(path)
    assert meta == {"model": "x"} and set(out) == set(_model())
    assert list(tmp_path.glob("sub/.*tmp")) == []
    with pytest.raises(CodecError, match="cannot read"):
        read_file(tmp_path / "missing.dc")


@pytest.mark.parametrize("bad, msg", [
    ({"x": [1, 2]}, "expected LayerCode"), ({"": torch.ones(1)}, "non-empty"),
    ({"c": torch.ones(2, dtype=torch.complex64)}, "cannot be stored"),
])
def test_encode_rejects(bad, msg):
    with pytest.raises(CodecError, match=msg):
        encode_model(bad)
    with pytest.raises(CodecError, match="JSON"):
        encode_model({}, {"x": object()})


# --- robustness --------------------------------------------------------------------------

def _fix_crc(data: bytes | bytearray) -> bytes:
    data = bytes(data)
    return data[:9] + struct.pack("<I", zlib.crc32(data[13:])) + data[13:]


def _dead_lines_code(seed: int = 0, shape: tuple[int, ...] = (30, 8, 5), kept: float = 0.3,
                     dead_rows: int = 6, dead_cols: int = 15, huff: bool = True) -> LayerCode:
    """A pruned matrix whose kept weights avoid some whole rows and (flattened) columns."""
    rng = np.random.default_rng(seed)
    r, c = shape[0], int(np.prod(shape[1:]))
    m = rng.random((r, c)) < kept
    m[rng.choice(r, dead_rows, replace=False)] = False
    m[:, rng.choice(c, dead_cols, replace=False)] = False
    pos = np.flatnonzero(m)
    codes = rng.integers(1, 16, size=pos.size)
    cb = np.concatenate([[0.0], rng.normal(size=15)]).astype(np.float32)
    return LayerCode(shape, cb, 4, codes, pos, index_bits=3, huffman=huff)


_SMALL = encode_model({
    "s": _sparse_code(2000, 0.1, bits=4, index_bits=3, seed=5, shape=(20, 100)),
    "l": _dead_lines_code(seed=7, shape=(12, 3, 3), dead_rows=3, dead_cols=2),
    "f": _sparse_code(300, 0.3, bits=3, huff=False, seed=6),
    "d": LayerCode((4, 4), np.arange(4, dtype=np.float32), 2, np.arange(16) % 4, None),
    "b": torch.arange(6, dtype=torch.float16), "n": torch.tensor(3),
}, {"model": "tiny"})


def _decode_or_codec_error(data: bytes) -> None:
    try:
        decode_model(data, max_numel=FUZZ_NUMEL)
        inspect(data, max_numel=FUZZ_NUMEL)
    except CodecError:
        pass


def test_checksum_truncation_and_magic():
    for cut in (0, 5, 12, 13, len(_SMALL) // 2, len(_SMALL) - 1):
        with pytest.raises(CodecError):
            decode_model(_SMALL[:cut])
    with pytest.raises(CodecError, match="checksum"):
        decode_model(_SMALL[:-1] + bytes([_SMALL[-1] ^ 1]))
    with pytest.raises(CodecError, match="magic"):
        decode_model(b"PK\x03\x04" + _SMALL[4:])
    with pytest.raises(CodecError, match="version"):
        decode_model(_SMALL[:8] + b"\x09" + _SMALL[9:])
    with pytest.raises(CodecError, match="unexpected bytes"):
        decode_model(_fix_crc(_SMALL + b"\x00"))


def test_hostile_sizes_fail_before_allocating():
    big = encode_model({"w": LayerCode((2 ** 31,), [0.0, 1.0], 1, [1], [5])})   # legal, tiny file
    assert len(big) < 64
    with pytest.raises(CodecError, match="max_numel"):
        decode_model(big, max_numel=FUZZ_NUMEL)
    raw = bytearray(encode_model({"r": torch.arange(4.0)}))  # not constant: a fill record would be 4 bytes
    i = raw.index(b"r") + 3                      # the dim varint: claim 2**28 elements
    hostile = _fix_crc(raw[:i] + varint(2 ** 28) + raw[i + 1:])
    with pytest.raises(CodecError, match="truncated"):
        decode_model(hostile)
    with pytest.raises(CodecError, match="tensor count"):
        decode_model(_fix_crc(_SMALL[:13] + _SMALL[13:14] + _SMALL[14:14 + _SMALL[13]] + varint(10 ** 9)))


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutations_with_valid_checksum(data):
    buf = bytearray(_SMALL)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(13, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    _decode_or_codec_error(_fix_crc(buf))


@settings(max_examples=200, deadline=2000)
@given(st.integers(13, len(_SMALL) - 1), st.binary(min_size=0, max_size=40))
def test_fuzz_splice_truncate(at, junk):
    _decode_or_codec_error(_fix_crc(_SMALL[:at] + junk))
    _decode_or_codec_error(_fix_crc(_SMALL[:at] + junk + _SMALL[at + len(junk):]))


@settings(max_examples=200, deadline=2000)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(blob):
    with pytest.raises(CodecError):
        decode_model(blob)
    _decode_or_codec_error(_fix_crc(b"EDGECVDC\x01" + b"\0" * 4 + blob))


@pytest.mark.parametrize("huff", [True, False])
def test_dead_lines_layout_roundtrips_and_is_smaller(huff):
    from edgecv.codec.container import LINES, _encode_record

    code = _dead_lines_code(seed=1, huff=huff)
    blob = encode_model({"w": code})
    back = decode_codes(blob)[0]["w"]
    assert np.array_equal(back.positions, code.positions) and np.array_equal(back.codes, code.codes)
    assert torch.equal(decode_model(blob)[0]["w"], torch.from_numpy(code.to_numpy()))
    rec = _encode_record("w", code)
    assert rec[2] & LINES  # the tag byte after the 1-byte name length and the name
    # the same weights without dead lines: each bitmap is paid for only when it saves bytes
    full = LayerCode(code.shape, code.codebook, 4, code.codes, code.positions, index_bits=3, huffman=huff)
    assert len(rec) < len(_plain_record("w", full))
    row = inspect(blob)["rows"][0]
    assert row["total_bytes"] == len(rec) and 0 < row["lines_bytes"] < row["bytes"]["index"]
    assert row["lines_bytes"] == (30 + 7) // 8 + (40 + 7) // 8


def _plain_record(name: str, code: LayerCode) -> bytes:
    from edgecv.codec.container import _encode_code

    return _encode_code(name.encode(), code, code.positions, code.codes, b"", 0)


def test_dead_lines_not_used_when_every_line_is_live_or_for_vectors():
    from edgecv.codec.container import LINES, _encode_record

    dense_rows = _dead_lines_code(seed=2, dead_rows=0, dead_cols=0, kept=0.9)
    assert not _encode_record("w", dense_rows)[2] & LINES
    vec = _sparse_code(500, 0.05, seed=3)  # 1-D: no rows and columns
    assert not _encode_record("w", vec)[2] & LINES


def test_dead_lines_bitmap_padding_and_counts_are_checked():
    from edgecv.codec.container import LINES, _encode_record

    code = _dead_lines_code(seed=4, shape=(10, 60), dead_rows=3, dead_cols=30, kept=0.2)
    rec = bytearray(_encode_record("w", code))
    assert rec[2] & LINES
    blob = bytearray(encode_model({"w": code}))
    at = blob.index(bytes(rec))
    # the live-row bitmap is the first byte after: name, tag, ndim, dims, widths, k, count
    i = at + 2 + 1 + 1 + 2 + 1 + 1 + len(varint(int(code.codes.size)))
    blob[i + 1] |= 0x80  # 10 rows: bits 10..15 of the second byte are padding
    with pytest.raises(CodecError, match="past its 10 lines"):
        decode_model(_fix_crc(bytes(blob)))
    blob = bytearray(encode_model({"w": code}))
    blob[i] ^= blob[i] & -blob[i]  # clear the first live row: the last entries land beyond the sub-matrix
    with pytest.raises(CodecError):
        decode_model(_fix_crc(bytes(blob)))


def test_constant_raw_tensors_are_stored_as_one_value():
    from edgecv.codec.container import FILL, FILL_MAX, _encode_record

    consts = {"mean": torch.zeros(960, dtype=torch.float16), "var": torch.ones(3, 4), "nan": torch.full((5,), float("nan")),
              "flags": torch.ones(7, dtype=torch.bool), "i64": torch.full((2, 2), -3, dtype=torch.int64)}
    plain = {"signed_zeros": torch.tensor([0.0, -0.0]), "one": torch.ones(1), "scalar": torch.tensor(2.0),
             "varied": torch.arange(6.0), "huge": torch.zeros(FILL_MAX + 1, dtype=torch.int8)}
    data = encode_model({**consts, **plain})
    out, _ = decode_model(data)
    for name, t in {**consts, **plain}.items():
        assert _bits_equal(out[name], t), name
    rows = {r["name"]: r for r in inspect(data)["rows"]}
    for name, t in consts.items():
        rec = _encode_record(name, t)
        assert rec[len(name) + 1] & FILL and rows[name]["fill"] and rows[name]["bytes"]["raw"] == t.element_size()
        assert rows[name]["bits"] < 8 * t.element_size()
    for name, t in plain.items():  # one element, bit patterns that differ (0.0 / -0.0), or too many to fill
        assert not rows[name]["fill"] and rows[name]["bytes"]["raw"] == t.numel() * t.element_size(), name


def test_fill_flag_on_one_element_or_beyond_the_limit_is_corrupt():
    from edgecv.codec.container import FILL, FILL_MAX

    for shape in ((1,), ()):
        blob = bytearray(encode_model({"r": torch.ones(shape)}))
        i = blob.index(b"r") + 1
        blob[i] |= FILL
        with pytest.raises(CodecError, match="marked as a fill"):
            decode_model(_fix_crc(bytes(blob)))
    blob = bytearray(encode_model({"r": torch.zeros(4)}))  # a fill record: claim FILL_MAX + 1 elements
    i = blob.index(b"r") + 3
    assert blob[i - 2] & FILL and blob[i] == 4
    hostile = _fix_crc(blob[:i] + varint(FILL_MAX + 1) + blob[i + 1:])
    with pytest.raises(CodecError, match="marked as a fill"):
        decode_model(hostile)
