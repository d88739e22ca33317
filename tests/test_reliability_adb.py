"""Devices that misbehave, through `edgecv bench --device pixel4` and Debian's real adb client against
the stand-in adb server (tests/adb_standin.py): the phone vanishing or going offline mid-run, the adb
server dying, a benchmark that never returns, full device storage. Each is one `error:` line (exit 2),
pushed files are removed when the device is still there, and nothing is left hanging."""
from __future__ import annotations

import shutil
import subprocess
import threading
import time

import pytest

from tests.adb_standin import AdbStandin
from tests.conftest import REPO
from tests.test_adb import BIN, _device, needs_adb

pytestmark = needs_adb


@pytest.fixture()
def ddir(tmp_path):
    d = tmp_path / "devices"
    d.mkdir()
    shutil.copy(REPO / "devices" / "pixel4.yaml", d)
    return d


@pytest.fixture()
def model(tmp_path):
    p = tmp_path / "net.tflite"
    p.write_bytes(bytes(range(256)) * 300)
    return p


def _bench(model, ddir, port, capsys, *extra) -> tuple[str, float]:
    from edgecv.cli import main

    capsys.readouterr()
    t0 = time.monotonic()
    code = main(["bench", str(model), "--device", "pixel4", "--devices-dir", str(ddir), "--adb-port", str(port),
                 "--runs", "5", "--warmup", "1", *extra])
    took = time.monotonic() - t0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0], took


def _on_benchmark(s: AdbStandin, action):
    """Run ``action(device)`` when benchmark_model is started, then drop that connection unanswered."""
    real = s._server.run_command

    def spy(dev, cmd):
        if cmd.startswith("taskset"):
            action(dev)
            raise ConnectionError("gone")  # the handler closes the socket without an exit status
        return real(dev, cmd)

    s._server.run_command = spy


def test_device_unplugged_during_benchmark(model, ddir, capsys):
    dev = _device(executables={BIN})
    with AdbStandin([dev]) as s:
        _on_benchmark(s, lambda d: s.devices.remove(d))
        line, took = _bench(model, ddir, s.port, capsys)
    assert "R58M123 went away during the benchmark" in line and "not found" in line, line
    assert took < 60


def test_device_goes_offline_during_benchmark(model, ddir, capsys):
    dev = _device(executables={BIN})
    with AdbStandin([dev]) as s:
        _on_benchmark(s, lambda d: setattr(d, "state", "offline"))
        line, _ = _bench(model, ddir, s.port, capsys)
    assert "went away during the benchmark" in line and "offline" in line, line


def test_adb_server_dies_during_benchmark(model, ddir, capsys):
    dev = _device(executables={BIN})
    s = AdbStandin([dev])
    port = s.port
    try:
        with s:
            def die(_dev):
                threading.Thread(target=lambda: (s._server.shutdown(), s._server.server_close())).start()
                time.sleep(0.5)

            _on_benchmark(s, die)
            line, took = _bench(model, ddir, port, capsys)
        assert "adb server stopped during the run" in line, line
        assert took < 60
    finally:  # the real client started its own server on that port when ours died: stop it
        subprocess.run(["adb", "-P", str(port), "kill-server"], capture_output=True, timeout=30)


def test_benchmark_that_never_returns_times_out_and_cleans(model, ddir, capsys):
    hung = _device(executables={BIN}, hang=True)
    with AdbStandin([hung]) as s:
        line, took = _bench(model, ddir, s.port, capsys, "--timeout", "2")
    assert "timed out after 2 s" in line, line
    assert took < 30 and hung.files == {}  # the pushed model was removed, the adb client did not hang


def test_full_device_storage_is_one_line_and_removes_what_was_pushed(model, ddir, tmp_path, capsys):
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF" + b"\0" * 2000)  # fits; the 76,800-byte model then does not
    dev = _device(storage_free=10_000)
    with AdbStandin([dev]) as s:
        line, _ = _bench(model, ddir, s.port, capsys, "--benchmark-binary", str(binary))
    assert "no storage space left" in line and "R58M123" in line, line
    assert dev.files == {}  # the binary pushed before the failing push was removed
    assert any(c.startswith("rm -f") and "benchmark_model" in c for c in dev.commands)
