"""ExecuTorch `.pte` export (fp32, int8 with edgecv's calibration), the parity gate, metadata, `edgecv bench
X.pte` on one thread, and the Android executor_runner flow against the stand-in adb device.

Real weights only: the shared MobileNet v1 0.25 @128 (float weights from Google's QAT file, TF SAME
padding), the smallest real ImageNet model here (its ExecuTorch lowering is a few seconds).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgecv.errors import UserError
from tests.adb_standin import AdbStandin, FakeDevice
from tests.conftest import REPO

pytest.importorskip("executorch", reason="executorch not installed: pip install 'edgecv[executorch]'")
FIX = Path(__file__).parent / "fixtures" / "executor_runner"
needs_adb = pytest.mark.skipif(shutil.which("adb") is None, reason="Debian adb client not installed: apt-get install adb")
RUNNER = "/data/local/tmp/executor_runner"


@pytest.fixture(scope="module")
def v1_fp32(tmp_path_factory, shared):
    from edgecv.export import export

    out = tmp_path_factory.mktemp("et") / "v1.pte"
    rep = export("mobilenet_v1_025", "executorch", out=out, weights="imagenet-tf")
    return out, rep


def test_fp32_pte_parity_metadata_and_delegate(v1_fp32):
    from edgecv.export.executorch import delegation, read_metadata

    out, rep = v1_fp32
    assert out.is_file() and rep["bytes"] == out.stat().st_size and rep["format"] == "executorch"
    assert rep["parity"]["passed"] and rep["parity"]["rel"] <= 1e-4 and rep["parity"]["n_inputs"] == 16
    assert rep["parity"]["inputs"] == "imagenet-samples images"  # real photos, not noise
    md = read_metadata(out)
    assert md["model"] == "mobilenet_v1_025" and md["input_shape"] == [1, 3, 128, 128] and md["precision"] == "fp32"
    assert md["model_kwargs"] == {"act": "RE6", "tf_same_padding": True} and len(md["labels"]) == 1000
    d = delegation(out)  # read off the file: the whole forward graph in one XNNPACK blob
    assert d["delegate_partitions"] == 1 and d["undelegated_ops"] == {} and d["other_delegates"] == []


def test_pte_runner_matches_torch_on_a_real_image(v1_fp32, shared):
    import torch

    from edgecv.export import runner
    from edgecv.export.calib import load_real
    from edgecv.export.source import reference, resolve_source

    out, _ = v1_fp32
    src = resolve_source("mobilenet_v1_025", weights="imagenet-tf")
    x = load_real(src, None, n_calib=1, n_eval=3).eval
    got, ref = runner(out)(x), reference(src.model, torch.from_numpy(x)).numpy()
    assert got.shape == (3, 1000)
    assert np.abs(got - ref).max() <= 1e-4 * (ref.max() - ref.min())
    assert (got.argmax(1) == ref.argmax(1)).all()


def test_int8_pte_agreement_gate_exit_3_and_no_file(tmp_path, shared, capsys):
    from edgecv.cli import main

    out = tmp_path / "v1.int8.pte"
    code = main(["export", "mobilenet_v1_025", "--weights", "imagenet-tf", "--format", "executorch", "--precision",
                 "int8", "--calib-images", "64", "--min-agreement", "99.9", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 3 and not out.exists() and list(tmp_path.iterdir()) == []
    assert "executorch int8 failed the parity check" in err and "no file written" in " ".join(err.split())
    pct = float(err.split("top-1 agreement with the float model ")[1].split("%")[0])
    # the same int8 graph as TFLite's (min/max ranges, fused conv+ReLU6, bias correction): v1-0.25 is a 44%-top-1
    # model whose int8 TFLite file agrees 91.9% with its float model (measured); far below means a broken file
    assert 85.0 <= pct < 99.9


def test_executorch_rejects_other_precisions_before_work(tmp_path):
    from edgecv.cli import main

    assert main(["export", "mobilenet_v1_025", "--format", "executorch", "--precision", "fp16",
                 "-o", str(tmp_path / "m.pte")]) == 2
    assert main(["export", "mobilenet_v1_025", "--format", "executorch", "-o", str(tmp_path / "m.tflite")]) == 2
    assert list(tmp_path.iterdir()) == []


def test_int8_pte_fuses_relu6_and_stock_does_not(shared):
    """edgecv's quantizer annotates conv+ReLU6 as one pattern: no int8 clamp is left on its own inside the
    delegate; the stock XNNPACKQuantizer leaves one per ReLU6 (the unfused ops that make it slower)."""
    from edgecv.export import executorch as et
    from edgecv.export.calib import load_real
    from edgecv.export.rewrite import for_export
    from edgecv.export.source import resolve_source

    src = resolve_source("mobilenet_v1_025", weights="imagenet-tf")
    calib = load_real(src, None, n_calib=8, n_eval=1).calib
    m = for_export(src.model, fmt="executorch", precision="int8")
    stats = {v: et.quantized_stats(et.quantize(m, calib, variant=v)) for v in ("edgecv", "stock")}
    assert stats["edgecv"]["clamp_after_dequantize"] == 0 and stats["edgecv"]["clamp_fused"] == 27
    assert stats["stock"]["clamp_after_dequantize"] == 27  # one per ReLU6 of v1 (27 conv+BN+ReLU6)
    assert stats["edgecv"]["quantize"] < stats["stock"]["quantize"]


def test_int8_pte_gives_tf_same_pads_to_their_convs_with_the_same_outputs(shared, tmp_path):
    """TensorFlow SAME padding's zero pads (5 in MobileNet v1: the stem and the stride-2 depthwise convs):
    edgecv's graph hands each to its conv as an int8 pad; left as convert_pt2e writes them
    (variant edgecv-fp32-pads) each is an fp32 pad between two converts. The function is the same."""
    from edgecv.export import executorch as et
    from edgecv.export.calib import load_real
    from edgecv.export.rewrite import for_export
    from edgecv.export.source import resolve_source

    src = resolve_source("mobilenet_v1_025", weights="imagenet-tf")
    real = load_real(src, None, n_calib=8, n_eval=24)
    m = for_export(src.model, fmt="executorch", precision="int8")
    files = {v: et.convert(m, tmp_path / f"{v}.pte", "int8", input_size=src.input_size, calib=real.calib, variant=v)
             for v in ("edgecv", "edgecv-fp32-pads")}
    inside = {v: et._STATS[str(p)]["delegated_ops"] for v, p in files.items()}
    assert inside["edgecv"]["pad_in_conv"] == 5 and inside["edgecv"].get("pad_fp32", 0) == 0
    assert inside["edgecv-fp32-pads"]["pad_fp32"] == 5 and inside["edgecv-fp32-pads"].get("pad_in_conv", 0) == 0
    a, b = (et.Runner(files[v], 1)(real.eval) for v in ("edgecv", "edgecv-fp32-pads"))
    assert a.std() > 0.5 and np.array_equal(a, b)  # real logits, bit-identical: only the graph's form changed


def test_channel_pads_are_left_to_their_quantizers(shared):
    """ResNet-20's option-A shortcut pads channels into an add, not spatially into a conv: not rewritten."""
    from edgecv.export import executorch as et
    from edgecv.export.calib import load_real
    from edgecv.export.rewrite import for_export
    from edgecv.export.source import resolve_source

    src = resolve_source("resnet20", weights=str(shared / "weights/resnet-cifar10/resnet20-12fca82f.th"))
    m = for_export(src.model, fmt="executorch", precision="int8")
    ep = et.quantize(m, load_real(src, None, n_calib=4, n_eval=1).calib)
    pads = [n for n in ep.graph.nodes if "pad" in str(n.target)]
    assert len(pads) == 2 and all(len(n.args[1]) == 6 for n in pads)
    assert all("quantize_per_tensor" in str(u.target) for n in pads for u in n.users)


def test_bench_pte_one_thread(v1_fp32):
    from edgecv.bench import bench

    out, _ = v1_fp32
    r = bench(str(out), warmup=1, runs=3, threads=1)  # a fresh process, as the CLI measures
    assert r["runtime"] == "executorch" and r["threads"] == 1 and r["p50_ms"] > 0 and len(r["cores"]) == 1
    assert r["info"]["threadpool_threads"] == 1 and r["info"]["inputs"] == [[[1, 3, 128, 128], "float32"]]


# ---------------------------------------------------------------- executor_runner output parsing
def test_parse_per_iteration_drops_warmup():
    from edgecv.bench.android_executorch import parse

    r = parse((FIX / "per_iteration_mobilenet_v2_int8.txt").read_text(), warmup=2)
    assert r["format"] == "per-iteration" and r["executions"] == 8 and r["init_ms"] == pytest.approx(36.90512)
    assert r["first_ms"] == pytest.approx(31.402118) and len(r["samples_ms"]) == 6
    assert r["p50_ms"] == pytest.approx(float(np.median([19.551870, 19.420761, 19.388452, 19.617033, 19.502114,
                                                          19.366790])))


def test_parse_total_only_and_failures():
    from edgecv.bench.android_executorch import parse

    r = parse((FIX / "total_only_add.txt").read_text())
    assert r["format"] == "total-only" and r["mean_ms"] == pytest.approx(0.691078) and r["first_ms"] is None
    with pytest.raises(UserError, match="prints no execution time"):
        parse((FIX / "oldest_no_time.txt").read_text())
    with pytest.raises(UserError, match="XnnpackBackend is not registered"):
        parse((FIX / "failure_missing_delegate.txt").read_text())
    with pytest.raises(UserError, match="not more than the 10 warm-up"):
        parse((FIX / "per_iteration_mobilenet_v2_int8.txt").read_text(), warmup=10)


# ---------------------------------------------------------------- Android over the stand-in adb device
def _profile(**kw):
    from edgecv.bench.devices import load_profiles

    return {**load_profiles(REPO / "devices")["pixel4"], **kw}


@pytest.fixture()
def pte(tmp_path):
    p = tmp_path / "net.pte"
    p.write_bytes(bytes(range(256)) * 300)
    return p


@needs_adb
def test_android_pte_runs_profile_runner_pinned_and_cleans(pte):
    from edgecv.bench.android_executorch import run_android_pte

    dev = FakeDevice("R58M123", benchmark_output=(FIX / "per_iteration_mobilenet_v2_int8.txt").read_text(),
                     executables={RUNNER})
    with AdbStandin([dev]) as s:
        r = run_android_pte(str(pte), _profile(), warmup=2, runs=6, adb_port=s.port)
    cmd = next(c for c in dev.commands if c.startswith("taskset"))
    assert cmd == (f"taskset 80 {RUNNER} --model_path=/data/local/tmp/edgecv/net.pte --num_executions=8 "
                   "--cpu_threads=1")
    assert r["runtime"] == "executor_runner" and r["n"] == 6 and r["cores"] == [7]
    assert r["p50_ms"] == pytest.approx(19.4617, abs=1e-3) and r["device_facts"]["model"] == "Pixel 4"
    assert dev.files == {}


@needs_adb
def test_android_pte_pushes_given_runner_and_missing_runner_is_clear(pte, tmp_path):
    from edgecv.bench.android_executorch import run_android_pte

    binary = tmp_path / "executor_runner"
    binary.write_bytes(b"\x7fELF" + bytes(70000))
    dev = FakeDevice("R58M123", benchmark_output=(FIX / "per_iteration_mobilenet_v2_int8.txt").read_text())
    seen = {}
    with AdbStandin([dev]) as s:
        real_run = s._server.run_command

        def spy(d, cmd):
            if cmd.startswith("taskset"):
                seen.update(d.files)
            return real_run(d, cmd)

        s._server.run_command = spy
        r = run_android_pte(str(pte), _profile(), runner_binary=str(binary), warmup=1, runs=7, adb_port=s.port)
        assert seen["/data/local/tmp/edgecv/executor_runner"] == binary.read_bytes() and r["n"] == 7
        assert dev.files == {}
        with pytest.raises(UserError, match="executor_runner not found on the device at /data/local/tmp/executor_runner"):
            run_android_pte(str(pte), _profile(), adb_port=s.port, runs=1)


@needs_adb
def test_cli_bench_pte_on_phone_profile(pte, tmp_path):
    from edgecv.cli import main

    ddir = tmp_path / "devices"
    ddir.mkdir()
    shutil.copy(REPO / "devices" / "pixel4.yaml", ddir)
    dev = FakeDevice("R58M123", benchmark_output=(FIX / "per_iteration_mobilenet_v2_int8.txt").read_text(),
                     executables={RUNNER})
    with AdbStandin([dev]) as s:
        code = main(["bench", str(pte), "--device", "pixel4", "--devices-dir", str(ddir), "--adb-port", str(s.port),
                     "--runs", "6", "--warmup", "2", "--json", str(tmp_path / "r.json")])
    assert code == 0
    res = json.loads((tmp_path / "r.json").read_text())["results"][0]
    assert res["runtime"] == "executor_runner" and res["p50_ms"] == pytest.approx(19.4617, abs=1e-3)
