"""The zoo's facts without importing torch: what ``edgecv models`` and ``edgecv info`` print.

``edgecv/models/zoo_index.json`` (shipped in the package) holds, per model, what
:func:`edgecv.models.model_info` and :func:`edgecv.inspect_model.describe` return at the default
input size, keyed by a hash of the model sources (``edgecv/models/*.py``). When the sources
changed since it was written, the index is not used: the facts are computed with torch (slow,
correct) and kept in ``$EDGECV_CACHE/zoo_index/<hash>.json`` for the next call. Regenerate the
shipped file with ``python -m edgecv.zoo_index --write`` (``--check`` exits 1 when it is stale).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.resources
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_MODELS_DIR = Path(str(importlib.resources.files("edgecv") / "models"))
SHIPPED = _MODELS_DIR / "zoo_index.json"


def source_hash() -> str:
    """sha256 of every model source file (the families import each other's blocks)."""
    h = hashlib.sha256()
    for f in sorted(_MODELS_DIR.glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _cache_path(digest: str) -> Path:
    root = Path(os.environ.get("EDGECV_CACHE", Path.home() / ".cache" / "edgecv"))
    return root / "zoo_index" / f"{digest[:24]}.json"


def _read(path: Path, digest: str) -> dict[str, Any] | None:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) and d.get("source_hash") == digest else None


def load() -> dict[str, Any] | None:
    """The current index (shipped, else the user cache), or None when neither matches the sources."""
    digest = source_hash()
    for p in (SHIPPED, _cache_path(digest)):
        d = _read(p, digest)
        if d is not None:
            return d
    return None


def _entry(name: str, *, layers: bool) -> dict[str, Any]:
    from edgecv.inspect_model import layer_table
    from edgecv.models import model_info

    e = model_info(name)
    if layers:  # rows as lists (the file is half the size): see _LAYER_KEYS
        e["layers"] = [[r[k] for k in _LAYER_KEYS] for r in layer_table(name)]
    return e


_LAYER_KEYS = ("layer", "type", "output", "params", "macs")


def build(*, layers: bool = True) -> dict[str, Any]:
    """The whole index, computed with torch (meta-device models: no weights)."""
    from edgecv.models import MODELS, list_models

    names = list_models()
    return {"source_hash": source_hash(), "models": {n: _entry(n, layers=layers) for n in names},
            "aliases": dict(MODELS._aliases)}


def _remember(update: dict[str, Any]) -> None:
    """Merge computed entries into the user cache (an unwritable cache only costs time)."""
    digest = source_hash()
    path = _cache_path(digest)
    d = _read(path, digest) or {"source_hash": digest, "models": {}, "aliases": {}}
    for k, v in update.get("models", {}).items():
        d["models"].setdefault(k, {}).update(v)
    d["aliases"].update(update.get("aliases", {}))
    d["complete"] = d.get("complete") or update.get("complete", False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(d), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def model_rows() -> list[dict[str, Any]]:
    """``model_info`` of every model, in name order (without the layer tables)."""
    d = load()
    if d is not None and (d.get("complete", True)):
        return [{k: v for k, v in d["models"][n].items() if k != "layers"} for n in sorted(d["models"])]
    from edgecv.models import MODELS, list_models, model_info

    rows = [model_info(n) for n in list_models()]
    _remember({"models": {r["name"]: r for r in rows}, "aliases": dict(MODELS._aliases), "complete": True})
    return rows


def describe(name: str) -> dict[str, Any]:
    """``describe(name)`` at the default input size; unknown names: the registry's error (close matches)."""
    d = load()
    if d is not None:
        key = d.get("aliases", {}).get(name, name)
        e = d["models"].get(key)
        if e is not None and "layers" in e:
            return {**e, "layers": [dict(zip(_LAYER_KEYS, r)) for r in e["layers"]]}
    from edgecv.inspect_model import describe as live
    from edgecv.models import get_spec

    e = live(get_spec(name).name)
    _remember({"models": {e["name"]: {**e, "layers": [[r[k] for k in _LAYER_KEYS] for r in e["layers"]]}}})
    return e


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgecv.zoo_index", description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true", help=f"regenerate {SHIPPED}")
    ap.add_argument("--check", action="store_true", help="exit 1 when the shipped index is stale")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if a.check:
        ok = _read(SHIPPED, source_hash()) is not None
        log.info("%s: %s", SHIPPED, "current" if ok else "stale: run python -m edgecv.zoo_index --write")
        return 0 if ok else 1
    if a.write:
        d = build()
        SHIPPED.write_text(json.dumps(d, separators=(",", ":")), encoding="utf-8")
        log.info("wrote %s (%d models, %s bytes)", SHIPPED, len(d["models"]), f"{SHIPPED.stat().st_size:,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
