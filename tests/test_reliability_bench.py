"""Broken and hostile model files given to `edgecv bench`, and a measuring process that crashes or
never returns: one `error:` line, exit 2, no traceback, no process left running, temp folder gone."""
from __future__ import annotations

import os
import tempfile
import time

import pytest


@pytest.fixture()
def clean_tmp(tmp_path, monkeypatch):
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    yield d
    assert list(d.iterdir()) == [], "bench left its temp folder behind"


def _bench(args, capsys) -> tuple[int, str]:
    from edgecv.cli import main

    capsys.readouterr()
    code = main(["bench", *args, "--runs", "2", "--warmup", "0"])
    return code, capsys.readouterr().err


def _one_error(code: int, err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _real_onnx(tmp_path):
    from edgecv.export import export

    out = tmp_path / "lenet5.onnx"
    export("lenet5", "onnx", out=out)
    return out.read_bytes()


def test_broken_model_files_are_one_line(tmp_path, capsys, clean_tmp):
    onnx = _real_onnx(tmp_path)
    cases = {
        "random.onnx": os.urandom(5000),
        "random.tflite": os.urandom(5000),
        "truncated.onnx": onnx[: len(onnx) // 2],
        "onnx_named.tflite": onnx,
        "empty.onnx": b"",
        # a TFLite flatbuffer header (root offset, "TFL3") whose root table points far past the end
        "header_only.tflite": (0x7FFFFFF0).to_bytes(4, "little") + b"TFL3" + b"\0" * 24,
    }
    for name, data in cases.items():
        f = tmp_path / name
        f.write_bytes(data)
        line = _one_error(*_bench([str(f)], capsys))
        assert name in line and "benchmark process" in line, line


def _fake_python(tmp_path, monkeypatch, body: str):
    """Make measure_isolated start this shell script instead of python (a worker that misbehaves)."""
    import edgecv.bench.harness as H

    script = tmp_path / "fake-python"
    script.write_text(f"#!/bin/sh\necho $$ > {tmp_path / 'worker.pid'}\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setattr(H.sys, "executable", str(script))
    return tmp_path / "worker.pid"


def _gone(pid_file) -> bool:
    pid = int(pid_file.read_text())
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_measuring_process_crash_is_one_line(tmp_path, monkeypatch, capsys, clean_tmp):
    f = tmp_path / "m.onnx"
    f.write_bytes(b"not read: the fake worker crashes first")
    pid = _fake_python(tmp_path, monkeypatch, "echo 'Fatal Python error: Segmentation fault' >&2\nkill -SEGV $$")
    line = _one_error(*_bench([str(f)], capsys))
    assert "killed by signal SIGSEGV" in line and "Segmentation fault" in line, line
    assert _gone(pid)


def test_measuring_process_that_never_returns_is_killed(tmp_path, monkeypatch, capsys, clean_tmp):
    f = tmp_path / "m.onnx"
    f.write_bytes(b"not read: the fake worker hangs first")
    pid = _fake_python(tmp_path, monkeypatch, "exec sleep 600")
    line = _one_error(*_bench([str(f), "--timeout", "2"], capsys))
    assert "did not finish in 2 s" in line, line
    assert _gone(pid), "the hung measuring process is still running"
