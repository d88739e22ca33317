"""Android flow: benchmark_model output parsing (real captured outputs) and the adb runner driving
Debian's real `adb` client against a stand-in adb server on loopback (tests/adb_standin.py)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgecv.bench.benchmark_model import parse
from edgecv.errors import UserError
from tests.adb_standin import AdbStandin, FakeDevice
from tests.conftest import REPO

FIX = Path(__file__).parent / "fixtures" / "benchmark_model"
needs_adb = pytest.mark.skipif(shutil.which("adb") is None, reason="Debian adb client not installed: apt-get install adb")
BIN = "/data/local/tmp/benchmark_model"


# ---------------------------------------------------------------- parser on real outputs
def test_parse_old_format_uses_measured_phase_not_op_profile():
    r = parse((FIX / "old_format_riscv_mobilenet_v1.txt").read_text())
    assert r["format"] == "old" and r["n"] == 50
    assert r["init_ms"] == pytest.approx(17.187) and r["first_ms"] == pytest.approx(3512.391)
    assert r["mean_ms"] == pytest.approx(2950.34)  # "2.95034e+06" us
    assert r["min_ms"] == pytest.approx(2727.568)  # not the op profiler's min=2727203
    assert r["std_ms"] == pytest.approx(109.798) and "p50_ms" not in r
    assert r["overall_mem_mb"] == pytest.approx(46.0859)


def test_parse_old_format_peak_memory_line():
    r = parse((FIX / "old_format_android_mi11_yolov5.txt").read_text())
    assert r["mean_ms"] == pytest.approx(249.684) and r["max_ms"] == pytest.approx(254.474)
    assert r["init_mem_mb"] == pytest.approx(4.92969) and r["overall_mem_mb"] == pytest.approx(138.809)


@pytest.mark.parametrize("name,n,p50,p95,mean", [
    ("new_format_android_logcat_int8.txt", 25, 141.253, 187.533, 145.528),
    ("new_format_android_fp32_small.txt", 41, 23.757, 26.457, 24.3477),
])
def test_parse_new_format_percentiles_with_logcat_prefix(name, n, p50, p95, mean):
    r = parse((FIX / name).read_text())
    assert r["format"] == "percentiles" and r["n"] == n
    assert r["p50_ms"] == pytest.approx(p50) and r["p95_ms"] == pytest.approx(p95) and r["mean_ms"] == pytest.approx(mean)
    assert r["p5_ms"] <= r["p50_ms"] <= r["p95_ms"]


def test_parse_failure_quotes_the_tool_error():
    with pytest.raises(UserError, match="Could not open 'x.tflite'"):
        parse("STARTING!\nERROR: Could not open 'x.tflite'.\nERROR: Benchmarking failed.\n")


# ---------------------------------------------------------------- real adb client, stand-in server
def _profile(**kw):
    from edgecv.bench.devices import load_profiles

    return {**load_profiles(REPO / "devices")["pixel4"], **kw}


@pytest.fixture()
def model(tmp_path):
    p = tmp_path / "net.tflite"
    p.write_bytes(bytes(range(256)) * 300)  # content is opaque to the stand-in; size exercises DATA chunks
    return p


def _device(serial="R58M123", **kw):
    return FakeDevice(serial, benchmark_output=(FIX / "new_format_android_logcat_int8.txt").read_text(), **kw)


@needs_adb
def test_android_run_pushes_pins_parses_and_cleans(model):
    from edgecv.bench.android import run_android

    dev = _device(executables={BIN})
    with AdbStandin([dev]) as s:
        r = run_android(str(model), _profile(), warmup=3, runs=25, adb_port=s.port)
    bm = next(c for c in dev.commands if "benchmark_model" in c and c.startswith("taskset"))
    assert bm == (f"taskset 80 {BIN} --graph=/data/local/tmp/edgecv/net.tflite --num_threads=1 "
                  "--warmup_runs=3 --num_runs=25 --use_xnnpack=true")
    assert r["mean_ms"] == pytest.approx(145.528) and r["p50_ms"] == pytest.approx(141.253)
    assert r["device_facts"]["model"] == "Pixel 4" and r["device_facts"]["governor"] == "schedutil"
    assert r["device_facts"]["soc"] == "SM8150" and r["cores"] == [7] and r["serial"] == "R58M123"
    assert dev.files == {}  # the pushed model was removed afterwards
    assert any(req.startswith("host:tport:serial:R58M123") for req in s.requests)


@needs_adb
def test_android_pushes_given_benchmark_binary_byte_exact(model, tmp_path):
    from edgecv.bench.android import run_android

    binary = tmp_path / "benchmark_model"
    payload = bytes(range(256)) * 1200  # > 64 KiB: several DATA packets
    binary.write_bytes(payload)
    dev = _device()
    seen = {}

    with AdbStandin([dev]) as s:
        real_run = s._server.run_command

        def spy(d, cmd):  # snapshot the device's files at the moment benchmark_model runs
            if cmd.startswith("taskset"):
                seen.update(d.files)
            return real_run(d, cmd)

        s._server.run_command = spy
        r = run_android(str(model), _profile(), benchmark_binary=str(binary), warmup=1, runs=25, adb_port=s.port)
    assert seen["/data/local/tmp/edgecv/benchmark_model"] == payload
    assert seen["/data/local/tmp/edgecv/net.tflite"] == model.read_bytes()
    assert any(c == "chmod 755 /data/local/tmp/edgecv/benchmark_model" for c in dev.commands)
    assert r["n"] == 25 and dev.files == {}


@needs_adb
@pytest.mark.parametrize("devices,serial,message", [
    ([], None, "no Android device attached"),
    ([_device("AAA"), _device("BBB")], None, r"several Android devices attached \(AAA, BBB\).*--serial"),
    ([_device("AAA", state="unauthorized")], None, "AAA is unauthorized: unlock it and accept"),
    ([_device("AAA")], "ZZZ", r"device ZZZ not found \(attached: AAA\)"),
])
def test_android_device_problems_are_one_clear_message(model, devices, serial, message):
    from edgecv.bench.android import run_android

    with AdbStandin(devices) as s:
        with pytest.raises(UserError, match=message):
            run_android(str(model), _profile(), serial=serial, adb_port=s.port, runs=1)


@needs_adb
def test_android_picks_serial_among_two(model):
    from edgecv.bench.android import run_android

    a, b = _device("AAA"), _device("BBB", executables={BIN})
    with AdbStandin([a, b]) as s:
        r = run_android(str(model), _profile(), serial="BBB", adb_port=s.port, runs=25)
    assert r["serial"] == "BBB" and a.commands == [] and any("taskset" in c for c in b.commands)


@needs_adb
def test_android_missing_binary_and_timeout(model):
    from edgecv.bench.android import run_android

    dev = _device()  # no benchmark_model on the device, none given
    with AdbStandin([dev]) as s:
        with pytest.raises(UserError, match="benchmark_model not found on the device.*--benchmark-binary"):
            run_android(str(model), _profile(), adb_port=s.port, runs=1)
    hung = _device(executables={BIN}, hang=True)
    with AdbStandin([hung]) as s:
        with pytest.raises(UserError, match="timed out after 2 s"):
            run_android(str(model), _profile(), adb_port=s.port, runs=1, timeout=2)
    assert hung.files == {}  # cleaned up after the timeout too


@needs_adb
def test_adb_honours_server_port_env(monkeypatch):
    from edgecv.bench.adb import Adb

    with AdbStandin([_device("ENV1")]) as s:
        monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(s.port))
        assert [(d.serial, d.state) for d in Adb().devices()] == [("ENV1", "device")]
        assert Adb().devices()[0].props["model"] == "Pixel_4"


def test_adb_missing_binary_is_clear(monkeypatch):
    from edgecv.bench.adb import Adb

    monkeypatch.setenv("EDGECV_ADB", "/nonexistent/adb")
    with pytest.raises(UserError, match="cannot run /nonexistent/adb"):
        Adb(port=1).devices()


@needs_adb
def test_cli_bench_and_devices_over_adb(model, tmp_path, capsys):
    from edgecv.cli import main

    ddir = tmp_path / "devices"
    ddir.mkdir()
    for name in ("pixel4", "desktop-cpu"):
        shutil.copy(REPO / "devices" / f"{name}.yaml", ddir)
    dev = _device(executables={BIN})
    with AdbStandin([dev]) as s:
        code = main(["bench", str(model), "--device", "pixel4", "--devices-dir", str(ddir), "--adb-port", str(s.port),
                     "--runs", "25", "--warmup", "2", "--json", str(tmp_path / "r.json")])
        assert code == 0
        res = json.loads((tmp_path / "r.json").read_text())["results"][0]
        assert res["runtime"] == "benchmark_model" and res["p50_ms"] == pytest.approx(141.253)
        assert res["p90_ms"] is None and res["peak_mem_mb"] == pytest.approx(73.4102)
        capsys.readouterr()
        assert main(["devices", "--devices-dir", str(ddir), "--adb-port", str(s.port), "--json", "-"]) == 0
        rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["pixel4"]["reachable"] is True and "R58M123" in rows["pixel4"]["detail"]
    assert rows["desktop-cpu"]["reachable"] is True
    with AdbStandin([]) as s:
        assert main(["devices", "--devices-dir", str(ddir), "--adb-port", str(s.port), "--json", "-"]) == 0
        rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["pixel4"]["reachable"] is False and "no Android device" in rows["pixel4"]["detail"]
