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
    rep = kh.run(["compress", "download", "cache"], kills=2, seed=1, work=tmp_path, log=lambda *_: None)
    assert rep["problems"] == []
    assert rep["total_kill_points"] == 6, rep["jobs"]  # six SIGKILLs of a live process
    for name, s in rep["jobs"].items():
        assert s["temp_files_after_next_run"] == 0, (name, s)


def _age(p, seconds=3600):
    old = time.time() - seconds
    os.utime(p, (old, old))


def test_stale_temp_removed_live_one_kept(tmp_path):
    from edgecv.fsutil import clean_stale_files, locked_temp

    target = tmp_path / "model.edc"
    dead = tmp_path / ".model.edc.abc123.tmp"  # what a SIGKILLed writer leaves: no one holds its lock
    dead.write_bytes(b"half")
    _age(dead)
    young = tmp_path / ".model.edc.young.tmp"  # may be a writer that has not locked it yet
    young.write_bytes(b"x")
    other = tmp_path / ".other.edc.abc.tmp"  # another target's temp file is not ours to clean
    other.write_bytes(b"x")
    _age(other)
    with locked_temp(target) as live:
        assert not dead.exists() and young.exists() and other.exists()
        _age(live)
        assert clean_stale_files(tmp_path, ".model.edc.*.tmp") == 0  # a live writer's file stays
        assert os.path.exists(live)
    assert not os.path.exists(live)  # not renamed: removed on exit


def test_atomic_write_failure_leaves_nothing_and_keeps_old_file(tmp_path):
    from edgecv.checkpoint import atomic_write

    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def boom(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_private_tempdir_of_dead_run_is_removed(tmp_path, monkeypatch):
    import tempfile

    from edgecv.fsutil import LOCK_NAME, private_tempdir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = tmp_path / "edgecv-export-dead"
    dead.mkdir()
    (dead / LOCK_NAME).write_bytes(b"")
    (dead / "model.onnx").write_bytes(b"x" * 100)
    _age(dead / LOCK_NAME)
    live = tmp_path / "edgecv-export-live"
    live.mkdir()
    (live / LOCK_NAME).write_bytes(b"")
    _age(live / LOCK_NAME)
    fd = os.open(live / LOCK_NAME, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a run in progress
    try:
        with private_tempdir("edgecv-export-") as d:
            assert os.path.isdir(d) and not dead.exists() and live.exists()
        assert not os.path.exists(d)
    finally:
        os.close(fd)
