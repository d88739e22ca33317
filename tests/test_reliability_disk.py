"""Full disk: real edgecv processes under a file-size limit (RLIMIT_FSIZE; Python ignores SIGXFSZ, so
writes fail with EFBIG) and, where mount works (root), on a tiny tmpfs (ENOSPC). Each must fail with
one `error:` line naming the path (and the bytes when known), exit non-zero, no traceback, and leave
nothing behind: no output, no temp file, no working folder, no committed cache entry."""
from __future__ import annotations

import hashlib
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def _run(argv: list[str], tmp: Path, limit: int | None, py: bool = False) -> subprocess.CompletedProcess[str]:
    def pre() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    (tmp / "tmp").mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(tmp / "tmp"), EDGECV_CACHE=str(tmp / "cache"), PYTHONPATH=str(REPO))
    cmd = [sys.executable, *(["-c"] if py else ["-m", "edgecv.cli"]), *argv]
    return subprocess.run(cmd, preexec_fn=pre, capture_output=True, text=True, env=env, timeout=600, cwd=tmp)


def _one_error_line(p: subprocess.CompletedProcess[str]) -> str:
    assert p.returncode != 0, p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, p.stderr
    return errors[0]


def _left(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _left_but_resume(folder: Path) -> list[str]:
    """What is left besides compress's `.OUT.resume/` folder (kept on failure for `--resume`; it may
    hold only complete files: its run.json must parse)."""
    import json

    left = _left(folder)
    for n in left:
        if n.endswith(".resume/run.json"):
            json.loads((folder / n).read_text())
    return [n for n in left if ".resume/" not in n or n.endswith(".tmp")]


@pytest.fixture(scope="module")
def edc(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("src")
    p = _run(["compress", "lenet5", "-o", str(d / "l.edc")], d, None)
    assert p.returncode == 0, p.stderr
    return d / "l.edc"


def test_compress_over_file_size_limit(tmp_path):
    out = tmp_path / "out" / "l.edc"
    line = _one_error_line(_run(["compress", "lenet5", "-o", str(out)], tmp_path, 10_000))
    assert str(out) in line and re.search(r"needs [\d,]+ bytes", line) and "ulimit -f" in line, line
    assert _left_but_resume(tmp_path / "out") == [] and _left(tmp_path / "tmp") == []


def test_decompress_over_file_size_limit(tmp_path, edc):
    out = tmp_path / "out" / "w.safetensors"
    line = _one_error_line(_run(["decompress", str(edc), "-o", str(out)], tmp_path, 100_000))
    assert str(out) in line and "needs at least 246,824 bytes" in line and "nothing was written" in line, line
    assert _left(tmp_path / "out") == []  # neither the weights nor their sidecar


def test_export_over_file_size_limit_cleans_working_folder(tmp_path):
    out = tmp_path / "out" / "l.onnx"
    line = _one_error_line(_run(["export", "lenet5", "--format", "onnx", "-o", str(out)], tmp_path, 50_000))
    # the working file in TMPDIR is what did not fit; LeNet-5's 61,706 float32 weights are the lower bound
    assert re.search(r"cannot write \S+/edgecv-export-\w+/model\.onnx: needs at least 246,824 bytes", line), line
    assert "ulimit -f" in line and "TMPDIR" in line, line
    assert not out.exists() and _left(tmp_path / "tmp") == []  # the edgecv-export-* folder went too


def test_download_over_file_size_limit(tmp_path):
    from tests.test_reliability_race import loopback_site

    blob = os.urandom(300_000)
    with loopback_site({"w.bin": blob}) as url:
        dest = tmp_path / "out" / "w.bin"
        code = ("import sys; from edgecv.cli import _one_line; from edgecv.hub import fetch\n"
                "from edgecv.errors import UserError\n"
                "try: fetch(sys.argv[1], sys.argv[2], sha256=sys.argv[3])\n"
                "except UserError as e: _one_line(str(e)); sys.exit(2)")
        p = _run([code, f"{url}/w.bin", str(dest), hashlib.sha256(blob).hexdigest()], tmp_path, 100_000, py=True)
    line = _one_error_line(p)
    assert str(dest) in line and "needs 300,000 bytes" in line, line
    assert [n for n in _left(tmp_path / "out") if not n.endswith(".lock")] == []


def test_train_over_file_size_limit(tmp_path):
    import numpy as np
    from PIL import Image

    import edgecv

    for i in range(24):  # a 2-class image folder: train/ and test/ (no shared data needed)
        d = tmp_path / "toy" / ("train" if i % 3 else "test") / f"c{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((32, 32, 3), i * 9, np.uint8)).save(d / f"{i}.png")
    out = tmp_path / "out" / "t.safetensors"
    argv = ["train", "resnet20", "--data", str(tmp_path / "toy"), "--epochs", "1", "--max-steps", "1", "-o", str(out)]
    line = _one_error_line(_run(argv, tmp_path, 400_000))
    weights = sum(v.numel() * v.element_size() for v in edgecv.create_model("resnet20", num_classes=2).state_dict().values())
    assert str(out) in line and f"needs at least {weights:,} bytes" in line and "ulimit -f" in line, line
    assert _left(tmp_path / "out") == []


def test_cache_build_over_limit_still_loads_and_commits_nothing(tmp_path):
    from tests.test_reliability_hostile import tar_of

    import io

    import numpy as np
    from PIL import Image

    members = {}
    for i in range(40):
        buf = io.BytesIO()
        Image.fromarray(np.full((64, 64, 3), i, np.uint8)).save(buf, "PNG")  # 40x64x64x3: 491 kB decoded
        members[f"toy/train/c{i % 2}/{i}.png"] = buf.getvalue()
    arch = tmp_path / "toy.tar"
    arch.write_bytes(tar_of(members))
    p = _run(["import logging, sys, pathlib; from edgecv.data.folder import read_archive; "
              "logging.basicConfig(level=logging.WARNING); "
              "d = read_archive(pathlib.Path(sys.argv[1])); print(len(d.splits['train']))", str(arch)],
             tmp_path, 200_000, py=True)
    assert p.returncode == 0 and p.stdout.strip() == "40", p.stderr
    assert "could not write dataset cache" in p.stderr
    entries = list((tmp_path / "cache" / "datasets").glob("toy-*"))
    assert entries and not any((e / "meta.json").exists() for e in entries)
    assert not [n for n in _left(tmp_path / "cache") if n.endswith(".tmp")]


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_compress_onto_full_tmpfs(tmp_path):
    mnt = tmp_path / "small"
    if os.geteuid() != 0 or not _tmpfs(mnt, "16k"):
        pytest.skip("mounting a tmpfs needs root (the RLIMIT_FSIZE tests above cover the same paths)")
    try:
        out = mnt / "l.edc"
        line = _one_error_line(_run(["compress", "lenet5", "-o", str(out)], tmp_path, None))
        assert str(out) in line and "No space left on device" in line and "needs 27," in line, line
        assert _left_but_resume(mnt) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
