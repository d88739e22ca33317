"""Fuzzing in CI: a few hundred .edc and recipe cases (scripts/fuzz_edc.py, scripts/fuzz_recipe.py run
>= 10,000 each; figures in docs/reliability.md), each in a child process under RLIMIT_AS = 2 GiB,
plus the findings those runs made, kept as regression cases."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO


def _fuzz(script: str, cases: int, structured: int, tmp_path) -> dict:
    out = tmp_path / "report.json"
    p = subprocess.run([sys.executable, str(REPO / "scripts" / script), "--cases", str(cases), "--structured",
                        str(structured), "--seed", "7", "--out", str(tmp_path / "findings"), "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert out.exists(), p.stdout[-2000:] + p.stderr[-2000:]
    rep = json.loads(out.read_text())
    assert rep["failures"] == 0, rep["failure_examples"]
    assert p.returncode == 0
    return rep


def test_fuzz_edc_decoder_ci(tmp_path):
    rep = _fuzz("fuzz_edc.py", 400, 100, tmp_path)
    assert rep["mutated"] == 400 and rep["structured"] == 100
    assert rep["rejected"] > 100 and rep["ok"] > 0  # both paths exercised, not all thrown out at the CRC


def test_fuzz_recipes_ci(tmp_path):
    rep = _fuzz("fuzz_recipe.py", 250, 80, tmp_path)
    assert rep["mutated"] == 250 and rep["structured"] == 80 and rep["ok"] > 0 and rep["rejected"] > 0


def test_edc_empty_tensor_with_overflowing_strides_is_a_codec_error():
    """Found by scripts/fuzz_edc.py: shape (0, 0, 1810304, 7003, ...) made torch raise
    'Stride calculation overflowed' (a RuntimeError traceback)."""
    from edgecv.codec import CodecError, decode_model, encode_model
    from edgecv.codec.bitpack import varint

    good = encode_model({"w": torch.zeros(0, dtype=torch.int8)}, {})
    i = good.index(b"\x01w") + 2  # name, then tag, ndim, dims
    dims = [0, 0, 1810304, 7003, 1792959, 614235, 73, 18]
    bad = good[:i] + bytes([good[i], len(dims)]) + b"".join(varint(d) for d in dims)
    with pytest.raises(CodecError, match="impossible shape"):
        decode_model(_fix_crc(bad))


def test_recipe_with_nul_byte_is_a_one_line_error():
    """Found by scripts/fuzz_recipe.py: PyYAML's ReaderError has no mark and a two-line message."""
    from edgecv.compress.recipe import parse_recipe
    from edgecv.errors import UserError

    with pytest.raises(UserError) as e:
        parse_recipe("stages:\n  - prune: {keep: 0.5}\x00\n", source="r.yaml")
    assert "\n" not in str(e.value) and "not valid YAML" in str(e.value)


@pytest.mark.parametrize("text,msg", [
    ('stages:\n  - prune: {keep: !!binary "not base64!"}\n', "r.yaml:2: cannot read this value"),
    ("stages:\n  - prune: {[a, b]: 0.5}\n", "r.yaml:2: a key must be a plain name"),
    ("[x]: 1\nstages: []\n", "r.yaml:1: a key must be a plain name"),
])
def test_recipe_fuzz_findings_are_one_line_errors(text, msg):
    """Cases the recipe fuzzer led to: a !!binary value with bad base64 (PyYAML's ConstructorError
    escaped as a traceback) and non-scalar mapping keys (now refused by name, never hashed)."""
    from edgecv.compress.recipe import parse_recipe
    from edgecv.errors import UserError

    with pytest.raises(UserError) as e:
        parse_recipe(text, source="r.yaml")
    assert str(e.value).startswith(msg) and "\n" not in str(e.value), str(e.value)


def _fix_crc(data: bytes) -> bytes:
    import importlib.util

    spec = importlib.util.spec_from_file_location("fuzz_edc", REPO / "scripts" / "fuzz_edc.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.fix_crc(data)
