"""Killed at any moment: SIGKILL real edgecv processes mid-run (scripts/kill_harness.py, a few seeded
kill points here; the full run is `python scripts/kill_harness.py`, docs/reliability.md), and the
temp-file bookkeeping that lets a later run clean what a killed one left."""
from __future__ import annotations

import fcntl
import importlib.util
import os
import sys
import time

import pytest

from tests.conftest import REPO, needs_shared

_spec = importlib.util.spec_from_file_location("kill_harness", REPO / "scripts" / "kill_harness.py")
kh = importlib.util.module_from_spec(_spec)
sys.modules["kill_harness"] = kh  # dataclasses look their module up there
_spec.loader.exec_module(kh)


@needs_shared
def test_killed_compress_download_and_cache_build_leave_nothing_half_written(tmp_path):
    rep = kh.run(["compress", "download", "cache"], kills=2, seed=1, work=tmp_path, log=lambda *_: None, warm=False)
    assert rep["problems"] == []
    assert rep["total_kill_points"] == 6, rep["jobs"]  # six SIGKILLs of a live process
    for name, s in rep["jobs"].items():
        assert s["temp_files_after_next_run"] == 0, (name, s)


def test_checkpoint_check_catches_weights_without_sidecar(tmp_path):
    """The harness's own check can fail: a complete .safetensors whose sidecar is missing is reported."""
    job = kh.Job("train", [], [tmp_path / "t.safetensors", tmp_path / "t.json"])
    job.ref = {"t.safetensors": b"weights", "t.json": b"{}"}
    (tmp_path / "t.safetensors").write_bytes(b"weights")
    problems: list[str] = []
    kh._check(job, tmp_path, problems, "test")
    assert problems and "without its metadata sidecar" in problems[0]
    (tmp_path / "t.json").write_bytes(b'{"x": 1}')  # present but not the reference: also reported
    problems.clear()
    kh._check(job, tmp_path, problems, "test")
    assert problems and "differs from the reference" in problems[0]


def test_killed_checkpoint_writer_never_leaves_weights_without_sidecar(tmp_path, monkeypatch):
    """save_checkpoint writes the weights to a temp file, then the sidecar (renamed), then renames the
    weights: a writer dying after the weights are written, before the renames, commits neither."""
    import torch

    import edgecv.checkpoint as C

    def die(*a, **kw):
        raise KeyboardInterrupt  # stands in for the process dying here

    out = tmp_path / "m.safetensors"
    monkeypatch.setattr(C, "write_json", die)
    with pytest.raises(KeyboardInterrupt):
        C.save_checkpoint({"w": torch.ones(3)}, out, {"model": "x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no weights, no temp file
    monkeypatch.undo()
    C.save_checkpoint({"w": torch.ones(3)}, out, {"model": "x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]
