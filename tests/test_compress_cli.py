"""`edgecv compress / inspect / decompress`: a real Deep-Compression file, its bytes, its fidelity."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from edgecv.cli import main

MIB = 1 << 20  # the SqueezeNet paper's MB: 1.248M params x 4 B = 4.99e6 B is its "4.8 MB"


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def squeezenet8(tmp_path_factory):
    d = tmp_path_factory.mktemp("sq8")
    code = main(["compress", "squeezenet", "--bits", "8", "-o", str(d / "sq8.edc"), "--json", str(d / "sq8.json")])
    assert code == 0
    return d / "sq8.edc", json.loads((d / "sq8.json").read_text())


def test_squeezenet_8bit_file_is_at_most_0_66_mb(squeezenet8):
    path, rep = squeezenet8
    assert rep["compressed_bytes"] == path.stat().st_size  # the size reported is the file's, byte for byte
    assert path.stat().st_size <= 0.66 * MIB
    assert rep["original_bytes"] == 4 * 1_248_424  # SqueezeNet 1.0 float32: 4.8 MB
    assert rep["ratio"] == pytest.approx(rep["original_bytes"] / path.stat().st_size)
    for key in ("model", "recipe", "original_bytes", "compressed_bytes", "ratio", "layers"):
        assert key in rep
    conv = [r for r in rep["layers"] if r["kind"] == "sparse"]
    assert len(conv) == 26 and all(abs(r["kept_pct"] - 33.0) < 0.1 for r in conv)
    assert all(r["bits"] == 8 and r["codebook_size"] <= 256 for r in conv)
    assert any("--data" in u for u in rep["unmeasured"]) and any("--weights" in u for u in rep["unmeasured"])


def test_squeezenet_6bit_file_is_at_most_0_47_mb(tmp_path, capsys):
    code, out, _ = run(capsys, "compress", "squeezenet", "--bits", "6", "-o", tmp_path / "sq6.edc")
    assert code == 0 and "not measured" in out
    assert (tmp_path / "sq6.edc").stat().st_size <= 0.47 * MIB


def test_same_seed_gives_byte_identical_file(squeezenet8, tmp_path):
    path, _ = squeezenet8
    assert main(["compress", "squeezenet", "--bits", "8", "-o", str(tmp_path / "again.edc")]) == 0
    assert (tmp_path / "again.edc").read_bytes() == path.read_bytes()


def test_inspect_rows_add_up_to_the_file_size(squeezenet8, capsys):
    path, rep = squeezenet8
    code, out, _ = run(capsys, "inspect", path, "--json")
    d = json.loads(out)
    assert code == 0
    assert d["totals"]["header_bytes"] + sum(r["total_bytes"] for r in d["rows"]) == path.stat().st_size
    assert d["meta"]["model"] == "squeezenet1_0"


def test_decompress_rebuilds_the_compressed_weights(squeezenet8, tmp_path, capsys):
    from edgecv.codec import read_file

    path, _ = squeezenet8
    code, _, err = run(capsys, "decompress", path, "-o", tmp_path / "sq.safetensors")
    assert code == 0, err
    sd = load_file(tmp_path / "sq.safetensors")
    decoded, _ = read_file(path)
    assert sd.keys() == decoded.keys()
    for k in sd:
        assert torch.equal(sd[k], decoded[k])
    w = sd["features.0.weight"]
    assert abs((w != 0).float().mean().item() - 0.33) < 0.005  # pruned positions decode to exact zeros
    assert torch.unique(w[w != 0]).numel() <= 255  # and kept ones to at most 2**8 - 1 shared values


def test_bits_out_of_range_is_a_clear_error(capsys, tmp_path):
    code, _, err = run(capsys, "compress", "squeezenet", "--bits", "0", "-o", tmp_path / "x.edc")
    assert code == 2 and "--bits" in err and "1<=x<=16" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.edc").exists()


def test_truncated_file_is_rejected_cleanly(squeezenet8, tmp_path, capsys):
    path, _ = squeezenet8
    bad = tmp_path / "trunc.edc"
    bad.write_bytes(path.read_bytes()[:1000])
    code, _, err = run(capsys, "inspect", bad)
    assert code == 2 and "Traceback" not in err


def test_unknown_recipe_target_is_an_error_with_line(capsys, tmp_path):
    r = tmp_path / "r.yaml"
    r.write_text("stages:\n  - prune:\n      keep: {nosuchlayer: 0.5}\n")
    code, _, err = run(capsys, "compress", "lenet5_caffe", "--recipe", r, "-o", tmp_path / "x.edc")
    assert code == 2 and "r.yaml:3" in err and "nosuchlayer" in err


@pytest.mark.parametrize("max_drop,code_expected", [(1.0, 3), (100.0, 0)])
def test_accuracy_gate_exit_code(capsys, tmp_path, shared, max_drop, code_expected):
    from tests.conftest import REPO

    # a deliberately destructive recipe (0.5% kept, 2-bit codes, no retraining): top-1 collapses
    r = tmp_path / "crush.yaml"
    r.write_text("stages:\n  - prune:\n      keep: 0.005\n      finetune_epochs: 0\n"
                 "  - share:\n      bits: 2\n      finetune_epochs: 0\n")
    code, out, err = run(capsys, "compress", "lenet_300_100", "--recipe", r, "--weights",
                         REPO / "weights" / "lenet_300_100-mnist.safetensors", "--data", "mnist",
                         "--eval-limit", "500", "--train-limit", "256", "--max-drop", max_drop,
                         "-o", tmp_path / "x.edc", "--json", tmp_path / "x.json")
    assert code == code_expected, err
    rep = json.loads((tmp_path / "x.json").read_text())  # the report is written either way
    assert rep["accuracy"]["before"] > 95.0 and rep["accuracy"]["drop"] > 20.0
    assert rep["gate"] == {"max_drop": max_drop, "passed": code_expected == 0}
