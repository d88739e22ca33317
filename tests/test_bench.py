"""Latency harness: statistics on known samples, the three local runners on tiny real models
(outputs checked against the framework that made them), JSON/CSV/PNG from the CLI. No timing asserts."""
from __future__ import annotations

import csv
import io
import json
import os
import statistics

import numpy as np
import pytest
import torch

from edgecv.bench import RESULT_KEYS, RUNNERS, bench
from edgecv.bench.harness import measure, to_csv
from edgecv.bench.stats import summarize
from edgecv.errors import UserError


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    from tests.bench_models import make_onnx

    return make_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="module")
def tflite_file(tmp_path_factory):
    from tests.bench_models import make_tflite

    return make_tflite(tmp_path_factory.mktemp("tflite") / "tiny.tflite")


# ---------------------------------------------------------------- statistics
def test_summarize_known_samples():
    s = summarize(list(range(1, 101)))
    assert s["mean_ms"] == 50.5 and s["p50_ms"] == 50.5
    assert s["p90_ms"] == pytest.approx(90.1) and s["p99_ms"] == pytest.approx(99.01)
    assert s["std_ms"] == pytest.approx(29.011491975882016) and (s["min_ms"], s["max_ms"], s["n"]) == (1, 100, 100)
    assert summarize([4.0])["std_ms"] == 0.0 and summarize([4.0])["p99_ms"] == 4.0
    with pytest.raises(ValueError):
        summarize([])


def test_summarize_matches_statistics_module():
    rng = np.random.default_rng(1)
    x = list(rng.lognormal(1.0, 0.3, 37))
    q = statistics.quantiles(x, n=100, method="inclusive")  # linear interpolation, like numpy's default
    s = summarize(x)
    assert s["p50_ms"] == pytest.approx(statistics.median(x)) and s["p90_ms"] == pytest.approx(q[89])
    assert s["p99_ms"] == pytest.approx(q[98]) and s["std_ms"] == pytest.approx(statistics.stdev(x))
    assert s["mean_ms"] == pytest.approx(statistics.fmean(x))


# ---------------------------------------------------------------- runners on tiny real models
def _runner(name, source, **kw):
    r = RUNNERS.get(name)(source, **kw)
    r.import_runtime()
    r.load()
    r.prepare_inputs()
    return r


def test_ort_runner_output_matches_torch(onnx_file):
    path, model = onnx_file
    r = _runner("ort", str(path))
    (y,) = r.infer()
    x = torch.from_numpy(r.feeds["x"])
    np.testing.assert_allclose(y, model(x).detach().numpy(), rtol=1e-4, atol=1e-5)
    assert r.info()["providers"] == ["CPUExecutionProvider"]


def test_litert_runner_output_matches_tensorflow(tflite_file):
    path, fn = tflite_file
    r = _runner("tflite", str(path))
    r.infer()
    out = r.interp.get_tensor(r.interp.get_output_details()[0]["index"])
    x = r.interp.get_tensor(r.interp.get_input_details()[0]["index"])
    np.testing.assert_allclose(out, fn(x).numpy(), rtol=1e-4, atol=1e-4)


def test_torch_runner_builds_zoo_model_with_seeded_input():
    a, b = _runner("torch", "lenet5"), _runner("torch", "lenet5")
    assert torch.equal(a.x, b.x) and tuple(a.x.shape) == (1, 1, 32, 32)
    torch.testing.assert_close(a.infer(), b.infer())  # same seed -> same weights and input


@pytest.mark.parametrize("runner,src", [("torch", "lenet5"), ("onnxruntime", "onnx"), ("litert", "tflite")])
def test_measure_in_process_pins_and_reports(runner, src, onnx_file, tflite_file):
    source = {"onnx": str(onnx_file[0]), "tflite": str(tflite_file[0])}.get(src, src)
    core = sorted(os.sched_getaffinity(0))[0]
    before = os.sched_getaffinity(0)
    try:
        r = measure(runner, source, warmup=2, runs=9, cores=[core])
        assert os.sched_getaffinity(0) == {core}
    finally:
        os.sched_setaffinity(0, before)
    assert r["cores"] == [core] and r["n"] == 9 and len(r["samples_ms"]) == 9
    assert r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert r["init_ms"] > 0 and r["first_ms"] > 0 and r["peak_mem_mb"] >= r["rss_before_load_mb"] > 0
    assert r["runtime"] == RUNNERS.get(runner).name and r["versions"]


def test_bench_isolated_subprocess_json_keys(onnx_file):
    r = bench(str(onnx_file[0]), warmup=1, runs=5)
    assert set(RESULT_KEYS) <= set(r) and all(r[k] is not None for k in RESULT_KEYS)
    assert r["format"] == "onnx" and r["runtime"] == "onnxruntime" and r["threads"] == 1 and len(r["cores"]) == 1
    assert r["file_bytes"] == onnx_file[0].stat().st_size and "samples_ms" not in r
    assert r["versions"]["onnxruntime"] and r["environment"]["cpu"]
    json.dumps(r)  # serialisable as is


def test_bad_requests_are_user_errors(onnx_file, tmp_path):
    with pytest.raises(UserError, match="is a onnx file but --format tflite"):
        bench(str(onnx_file[0]), "tflite")
    with pytest.raises(UserError, match="unknown device 'pixle4'; did you mean: pixel4"):
        bench(str(onnx_file[0]), device="pixle4")
    with pytest.raises(UserError, match="not found"):
        bench(str(tmp_path / "missing.onnx"))
    with pytest.raises(UserError, match="runs TFLite files"):
        bench(str(onnx_file[0]), device="pixel4")


def test_csv_has_one_row_per_result():
    rows = [{"model": "a", "format": "onnx", "mean_ms": 1.5, "p50_ms": 1.25, "extra": "x"},
            {"model": "b", "format": "tflite", "mean_ms": 2.0}]
    got = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert [r["model"] for r in got] == ["a", "b"] and got[0]["p50_ms"] == "1.2500" and "extra" not in got[0]


def test_cli_compares_formats_json_csv_png(onnx_file, tflite_file, tmp_path, capsys):
    from edgecv.cli import main

    code = main(["bench", str(onnx_file[0]), str(tflite_file[0]), "--runs", "5", "--warmup", "1",
                 "--json", str(tmp_path / "r.json"), "--csv", str(tmp_path / "r.csv"), "--plot", str(tmp_path / "r.png")])
    assert code == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert [r["runtime"] for r in res["results"]] == ["onnxruntime", "litert"]
    assert all(set(RESULT_KEYS) <= set(r) for r in res["results"]) and res["environment"]["python"]
    assert len(list(csv.DictReader((tmp_path / "r.csv").open()))) == 2
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "p99 ms" in out and "tiny" in out
