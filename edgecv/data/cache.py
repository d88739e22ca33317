"""On-disk cache of decoded datasets: .npy arrays + a meta.json commit marker, written atomically.

A cache entry is a folder ``<cache_root>/datasets/<stem>-<key>/``; ``key`` hashes the source
file's resolved path, size and mtime (see :func:`edgecv.data.sources.file_key`), so a changed
archive gets a new entry. Every file is written to a temporary name and moved into place with
``os.replace``; ``meta.json`` is written last, so a half-written entry is never read. Arrays are
loaded with ``allow_pickle=False``.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

META = "meta.json"


def _atomic_write(path: Path, write: Any) -> None:
    from edgecv.fsutil import locked_temp

    # flock-held temp file: a build killed here leaves a temp file the next build removes
    with locked_temp(path) as tmp:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)


def build_lock(folder: Path) -> Any:
    """Held while an entry is looked up and built: a second process waits, then reads the cache."""
    from edgecv.fsutil import file_lock

    return file_lock(folder.parent / f".{folder.name}.lock")


def save_entry(folder: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> bool:
    """Write ``arrays`` as ``<name>.npy`` and then ``meta.json``; False (logged) if not writable."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, arr in arrays.items():
            _atomic_write(folder / f"{name}.npy",
                          lambda f, a=arr: np.save(f, np.ascontiguousarray(a), allow_pickle=False))
        meta = {**meta, "arrays": sorted(arrays)}
        _atomic_write(folder / META, lambda f: f.write(json.dumps(meta).encode()))
    except OSError as e:
        log.warning("could not write dataset cache in %s (%s); set EDGECV_CACHE to a writable "
                    "folder to avoid decoding again next time", folder, e)
        return False
    return True


def load_entry(folder: Path, version: int) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The arrays and meta of a complete cache entry, or None when absent/stale/unreadable."""
    try:
        meta = json.loads((folder / META).read_text())
        if meta.get("version") != version:
            return None
        arrays = {n: np.load(folder / f"{n}.npy", allow_pickle=False) for n in meta["arrays"]}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("ignoring unreadable dataset cache %s (%s)", folder, e)
        return None
    from edgecv.fsutil import clean_stale_files

    clean_stale_files(folder, ".*.tmp")  # what a build killed before this entry was committed left
    return arrays, meta
