"""Two at once: real processes compressing / exporting to one output, building one dataset cache and
downloading one weights file at the same time. Both must succeed with identical results (or one fail
with a clear message); never a mixed or truncated file. RACE_ROUNDS=N repeats each race N times (the
figures in docs/reliability.md)."""
from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

ROUNDS = int(os.environ.get("RACE_ROUNDS", "1"))


@contextlib.contextmanager
def loopback_site(files: dict[str, bytes], pause: float = 0.0, counter: list | None = None) -> Iterator[str]:
    """Serve ``files`` on 127.0.0.1 (64 KiB chunks, ``pause`` s between them); yields the base URL."""

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if counter is not None:
                counter.append(self.path)
            body = files.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for i in range(0, len(body), 1 << 16):
                    self.wfile.write(body[i:i + (1 << 16)])
                    time.sleep(pause)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def _env(tmp: Path) -> dict[str, str]:
    (tmp / "tmp").mkdir(exist_ok=True)
    return dict(os.environ, TMPDIR=str(tmp / "tmp"), EDGECV_CACHE=str(tmp / "cache"), PYTHONPATH=str(REPO),
                OMP_NUM_THREADS="1")


def _together(cmds: list[list[str]], tmp: Path) -> list[subprocess.CompletedProcess]:
    env = _env(tmp)
    procs = [subprocess.Popen(c, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in cmds]
    out = []
    for p, c in zip(procs, cmds):
        so, se = p.communicate(timeout=600)
        out.append(subprocess.CompletedProcess(c, p.returncode, so, se))
    return out


def _cli(*a: str) -> list[str]:
    return [sys.executable, "-m", "edgecv.cli", *a]


def _no_temp_left(folder: Path) -> None:
    left = [p.name for p in folder.rglob(".*") if p.name.endswith((".tmp", ".part"))]
    assert left == [], left


@pytest.mark.parametrize("round_", range(ROUNDS))
@pytest.mark.parametrize("what", ["compress", "export"])
def test_two_writers_one_output_and_a_reference(what, round_, tmp_path):
    suffix = {"compress": "edc", "export": "onnx"}[what]
    extra = ["--format", "onnx"] if what == "export" else []
    shared, ref = tmp_path / f"shared.{suffix}", tmp_path / f"ref.{suffix}"
    res = _together([_cli(what, "lenet5", *extra, "-o", str(shared)), _cli(what, "lenet5", *extra, "-o", str(shared)),
                     _cli(what, "lenet5", *extra, "-o", str(ref))], tmp_path)
    for r in res:
        assert r.returncode == 0, r.stderr  # nothing forces a failure here: both must succeed
    assert shared.read_bytes() == ref.read_bytes()  # one complete file, not a mix of two
    _no_temp_left(tmp_path)
    # no edgecv-export-* working folder left; .ses is onnxruntime's telemetry session id, written at import
    assert [p.name for p in (tmp_path / "tmp").iterdir() if p.name != ".ses"] == []


def _toy_archive(path: Path, n: int = 600) -> None:
    from tests.test_reliability_hostile import tar_of
    from PIL import Image

    rng = np.random.default_rng(3)
    members = {}
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
        members[f"toy/{'train' if i % 4 else 'test'}/c{i % 3}/{i:04d}.png"] = buf.getvalue()
    path.write_bytes(tar_of(members))


LOAD = ("import sys, hashlib, pathlib; from edgecv.data.folder import read_archive; "
        "d = read_archive(pathlib.Path(sys.argv[1])); h = hashlib.sha256()\n"
        "for s in sorted(d.splits): h.update(d.splits[s].images.tobytes()); h.update(d.splits[s].labels.tobytes())\n"
        "print(h.hexdigest())")


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_processes_build_one_dataset_cache(round_, tmp_path):
    arch = tmp_path / "toy.tar"
    _toy_archive(arch)
    res = _together([[sys.executable, "-c", LOAD, str(arch)]] * 2, tmp_path)
    assert [r.returncode for r in res] == [0, 0], [r.stderr for r in res]
    assert res[0].stdout == res[1].stdout and len(res[0].stdout.strip()) == 64
    again = _together([[sys.executable, "-c", LOAD, str(arch)]], tmp_path)[0]  # from the cache now
    assert again.returncode == 0 and again.stdout == res[0].stdout
    entries = [e for e in (tmp_path / "cache" / "datasets").iterdir() if e.is_dir()]
    assert len(entries) == 1 and (entries[0] / "meta.json").is_file()
    _no_temp_left(tmp_path / "cache")


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_processes_download_one_weights_file(round_, tmp_path):
    blob = os.urandom(3 << 20)
    sha = hashlib.sha256(blob).hexdigest()
    gets: list[str] = []
    code = "import sys; from edgecv.hub import fetch; fetch(sys.argv[1], sys.argv[2], sha256=sys.argv[3])"
    dest = tmp_path / "w" / "net.safetensors"
    with loopback_site({"net.safetensors": blob}, pause=0.01, counter=gets) as url:
        res = _together([[sys.executable, "-c", code, f"{url}/net.safetensors", str(dest), sha]] * 2, tmp_path)
    assert [r.returncode for r in res] == [0, 0], [r.stderr for r in res]
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == sha
    assert len(gets) == 1, gets  # the second waited on the lock and found the verified file
    _no_temp_left(tmp_path / "w")
