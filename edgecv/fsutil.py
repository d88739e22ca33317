"""Crash-safe file system helpers: temp files that a later run can tell are orphaned, locks.

A writer holds an advisory ``flock`` on its temporary file (or on the ``.lock`` file of its
temporary folder) for as long as it writes. The kernel drops the lock when the process dies, even
by SIGKILL, so a later run can remove exactly the leftovers of dead writers: a temp file nobody
holds locked, and old enough (``GRACE_S``) not to be one another process has just created and not
yet locked. No ages in minutes, no pid files.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

GRACE_S = 5.0  # a temp file this young may be one another process created a moment ago
LOCK_NAME = ".edgecv-lock"


def _unlocked(path: Path) -> bool:
    """True when no process holds ``path``'s flock (we could take it without waiting)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)  # closing drops the lock we may have taken
    return True


def _old(path: Path, now: float) -> bool:
    try:
        return now - path.lstat().st_mtime > GRACE_S
    except OSError:
        return False


def clean_stale_files(folder: Path, pattern: str) -> int:
    """Remove files matching ``pattern`` in ``folder`` that no live writer holds; how many went."""
    n, now = 0, time.time()
    try:
        candidates = list(folder.glob(pattern))
    except OSError:
        return 0
    for p in candidates:
        if p.is_file() and not p.is_symlink() and _old(p, now) and _unlocked(p):
            with contextlib.suppress(OSError):
                p.unlink()
                n += 1
    if n:
        log.info("removed %d temporary file(s) of interrupted writes in %s", n, folder)
    return n


@contextlib.contextmanager
def locked_temp(target: Path, suffix: str = ".tmp") -> Iterator[str]:
    """A fresh temp file beside ``target``, flock-held while the block runs; removed unless renamed."""
    clean_stale_files(target.parent, f".{target.name}.*{suffix}")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.close(fd)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if absent): concurrent holders take turns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def clean_stale_dirs(prefix: str, root: str | None = None) -> int:
    """Remove ``<tmp>/<prefix>*`` folders made by :func:`private_tempdir` whose owner is gone."""
    base, n, now = Path(root or tempfile.gettempdir()), 0, time.time()
    try:
        candidates = [p for p in base.glob(f"{prefix}*") if p.is_dir() and not p.is_symlink()]
    except OSError:
        return 0
    for d in candidates:
        lock = d / LOCK_NAME
        if lock.is_file() and _old(lock, now) and _unlocked(lock):
            shutil.rmtree(d, ignore_errors=True)
            n += 1
    if n:
        log.info("removed %d temporary folder(s) of interrupted runs in %s", n, base)
    return n


@contextlib.contextmanager
def private_tempdir(prefix: str) -> Iterator[str]:
    """Like ``tempfile.TemporaryDirectory``, but a killed run's folder is removed by the next run."""
    clean_stale_dirs(prefix)
    d = tempfile.mkdtemp(prefix=prefix)
    fd = os.open(os.path.join(d, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield d
    finally:
        os.close(fd)
        shutil.rmtree(d, ignore_errors=True)
