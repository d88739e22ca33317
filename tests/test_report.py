"""`edgecv report` on real reports written by compress, export and bench in this test."""
from __future__ import annotations

import json

import pytest

from edgecv.cli import main

RECIPE = """
stages:
  - prune: {keep: {conv: 0.5, fc: 0.2}, finetune_epochs: 0}
  - share: {bits: {conv: 6, fc: 4}, finetune_epochs: 0}
  - huffman: {index_bits: 4}
"""


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    d = tmp_path_factory.mktemp("reports")
    (d / "r.yaml").write_text(RECIPE)
    c, e, b = d / "compress.json", d / "export.json", d / "bench.json"
    assert main(["compress", "lenet5", "--recipe", str(d / "r.yaml"), "-o", str(d / "l5.edc"), "--json", str(c)]) == 0
    assert main(["export", str(d / "l5.edc"), "--format", "onnx", "-o", str(d / "l5.onnx"), "--json", str(e)]) == 0
    assert main(["bench", str(d / "l5.onnx"), "--runs", "5", "--warmup", "1", "--in-process", "--json", str(b)]) == 0
    return d, c, e, b


def test_report_table_plot_and_json(reports, capsys):
    d, c, e, b = reports
    capsys.readouterr()
    png, rows_json = d / "cmp.png", d / "rows.json"
    assert main(["report", str(c), str(e), str(b), "--plot", str(png), "--json", str(rows_json)]) == 0
    out = capsys.readouterr().out
    for word in ("compress.json", "export.json", "bench.json", "onnx fp32", "lenet5"):
        assert word in out
    rows = json.loads(rows_json.read_text())
    assert [r["kind"] for r in rows] == ["compress", "export", "bench"]
    comp, exp, ben = rows
    src = json.loads(c.read_text())
    assert comp["bytes"] == src["compressed_bytes"] == (d / "l5.edc").stat().st_size and comp["ratio"] > 5
    assert exp["bytes"] == (d / "l5.onnx").stat().st_size and exp["mean_ms"] is None
    assert ben["mean_ms"] > 0 and ben["bytes"] == exp["bytes"] and ben["top1"] is None
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_report_refuses_other_json(reports, tmp_path, capsys):
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"hello": 1}))
    assert main(["report", str(reports[1]), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not a report of edgecv" in err and len(err.strip().splitlines()) == 1
