"""Where datasets live: the shared folder, the cache folder, and name -> source resolution.

A dataset is named either by one of the known names (``mnist``, ``fashion-mnist``,
``cifar10``, ``imagenet-samples``; looked up in the shared folder) or by a path:

* a directory of IDX files (``train-images-idx3-ubyte[.gz]`` ...)           -> ``idx``
* a CIFAR python-batch directory (``data_batch_1..5``, ``test_batch``)       -> ``cifar-batches``
* an image-folder directory (``<root>/<split>/<class>/*`` or ``<root>/<class>/*``) -> ``image-dir``
* a ``.tar``/``.tar.gz``/``.tar.xz`` archive holding an image-folder or an ImageNet
  flat ``<wnid>_<name>.JPEG`` layout, read straight from the archive      -> ``archive``

Known names win over same-named relative paths; write ``./mnist`` to mean the directory.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgecv.errors import UserError

log = logging.getLogger(__name__)

SHARED_ENV = "EDGECV_SHARED"
CACHE_ENV = "EDGECV_CACHE"

#: known dataset name -> candidate locations relative to the shared root, first found wins
KNOWN: dict[str, tuple[str, ...]] = {
    "mnist": ("data/mnist",),
    "fashion-mnist": ("data/fashion-mnist",),
    "cifar10": ("data/cifar10-jpeg.tar.xz", "data/cifar10", "data/cifar-10-batches-py"),
    "imagenet-samples": ("data/imagenet-samples.tar.xz", "data/imagenet-samples"),
    "tiny-imagenet": ("data/tiny-imagenet-train100.tar.xz", "data/tiny-imagenet-200"),  # ImageNet-1k labels
    "tiny-imagenet-200": ("data/tiny-imagenet-train100.tar.xz", "data/tiny-imagenet-200"),  # its 200 classes
}
ALIASES = {"fashion": "fashion-mnist", "fmnist": "fashion-mnist", "cifar-10": "cifar10",
           "imagenet-sample": "imagenet-samples", "tinyimagenet": "tiny-imagenet", "tiny-imagenet-1k": "tiny-imagenet"}
ARCHIVE_SUFFIXES = (".tar.xz", ".txz", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar")
SPLIT_NAMES = {"train": ("train", "training"), "test": ("test", "val", "validation", "valid")}
SINGLE_SPLIT = "all"
UNLABELED_SPLIT = "unlabeled"  # a flat folder of photos without labels (folder.plan_layout)


@dataclass(frozen=True)
class Source:
    """A resolved dataset location. ``preset`` is the known name, or None for a user path."""

    name: str
    path: Path
    format: str  # "idx" | "cifar-batches" | "image-dir" | "archive"
    preset: str | None = None


def repo_root() -> Path:
    import edgecv

    return Path(edgecv.__file__).resolve().parents[1]


def _shared_candidates() -> list[tuple[str, Path]]:
    env = os.environ.get(SHARED_ENV)
    if env:  # an explicit setting is the only place looked at
        return [(f"${SHARED_ENV}", Path(env).expanduser())]
    return [("../shared from the current directory", Path.cwd() / ".." / "shared"),
            ("../shared next to the repository", repo_root().parent / "shared")]


def shared_root(required: bool = True) -> Path | None:
    """The shared data folder: ``$EDGECV_SHARED``, else ``./../shared``, else ``<repo>/../shared``.

    Raises UserError naming every place looked at when ``required`` and none exists.
    """
    candidates = _shared_candidates()
    for _, path in candidates:
        if path.is_dir():
            return path.resolve()
    if not required:
        return None
    looked = "; ".join(f"{why}: {path.resolve()}" for why, path in candidates)
    raise UserError(f"shared data folder not found (looked at {looked}); "
                    f"set {SHARED_ENV}=/path/to/shared")


def cache_root() -> Path:
    """Folder for decoded-dataset caches: ``$EDGECV_CACHE`` or ``~/.cache/edgecv``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edgecv"


def file_key(path: Path, version: int) -> str:
    """Short hash of a file's resolved path, size and mtime (and the cache format version)."""
    st = path.stat()
    text = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|v{version}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _idx_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if "idx" in p.name and "ubyte" in p.name)


def detect_format(path: Path) -> str:
    """Which reader understands ``path`` (see module docstring); UserError when none does."""
    if path.is_file():
        if is_archive(path):
            return "archive"
        raise UserError(f"cannot read dataset file {path}: expected a .tar, .tar.gz or .tar.xz "
                        "archive of an image folder, or a directory")
    if not path.is_dir():
        raise UserError(f"dataset path {path} is neither a file nor a directory")
    names = {p.name for p in path.iterdir()}
    if _idx_files(path):
        return "idx"
    cifar10 = {"data_batch_1", "test_batch"} <= names
    cifar100 = {"train", "test", "meta"} <= names and (path / "meta").is_file()
    if cifar10 or cifar100:
        return "cifar-batches"
    return "image-dir"


def canonical_name(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    return ALIASES.get(key, key)


def resolve(name_or_path: str | os.PathLike[str]) -> Source:
    """Resolve a known dataset name or a path to a :class:`Source`; UserError names where it looked."""
    if not isinstance(name_or_path, os.PathLike):
        key = canonical_name(str(name_or_path))
        if key in KNOWN:
            root = shared_root(required=True)
            assert root is not None
            candidates = [root / rel for rel in KNOWN[key]]
            for path in candidates:
                if path.exists():
                    return Source(key, path, detect_format(path), preset=key)
            looked = ", ".join(str(p) for p in candidates)
            raise UserError(f"dataset {key!r} not found: looked at {looked}; "
                            f"put it there or set {SHARED_ENV} to the folder holding data/")
    path = Path(name_or_path).expanduser()
    if not path.exists():
        known = ", ".join(KNOWN)
        raise UserError(f"dataset {str(name_or_path)!r} not found: no such file or directory "
                        f"{path.resolve()}; use one of {known} or a path to an IDX/CIFAR/"
                        "image-folder directory or a .tar[.gz|.xz] archive")
    path = path.resolve()
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return Source(name, path, detect_format(path))


def pick_split(available: Sequence[str], requested: str, dataset: str, count: int | None = None
               ) -> str:
    """Map a requested split ("train"/"test", or an exact folder name) onto an available one.

    A single-split source (one image set, no train/test folders) has the split ``"all"``; it
    answers ``"test"`` and ``"all"`` but refuses ``"train"``, so that a train slice (used for
    calibration) can never silently overlap the evaluation set. An unlabeled folder (split
    ``"unlabeled"``) answers ``"train"`` and refuses evaluation.
    """
    req = requested.strip().lower()
    if req in available:
        return req
    if list(available) == [UNLABELED_SPLIT]:
        if req in SPLIT_NAMES["train"]:
            return UNLABELED_SPLIT
        raise UserError(f"dataset {dataset!r} holds unlabeled photos only (no class folders), so nothing can be "
                        "measured on it; use it to fine-tune by distillation or to calibrate, and measure on a labeled set "
                        "(compress: --eval-data imagenet-samples)")
    if list(available) == [SINGLE_SPLIT]:
        if req in SPLIT_NAMES["test"]:
            return SINGLE_SPLIT
        if req in SPLIT_NAMES["train"]:
            size = f" ({count} images)" if count is not None else ""
            raise UserError(f"dataset {dataset!r} has a single image set{size} and no train split; "
                            "use split='test' to evaluate, calibration_split() to hold "
                            "calibration images out of it, or lay it out as <root>/train/<class>/ "
                            "and <root>/test/<class>/")
    for alias in SPLIT_NAMES.get(req, ()):
        if alias in available:
            return alias
    raise UserError(f"dataset {dataset!r} has no split {requested!r}; "
                    f"choose one of {', '.join(available)}")
