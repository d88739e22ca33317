"""IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed.

Format: two zero bytes, a dtype code, the number of dimensions, then one big-endian uint32 per
dimension, then the data in C order.
"""
from __future__ import annotations

import gzip
import logging
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from edgecv.errors import UserError

log = logging.getLogger(__name__)

_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
           0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
#: file-name prefixes of each split in the canonical distribution
SPLIT_PREFIXES = {"train": ("train",), "test": ("t10k", "test")}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file into a native-endian, writable numpy array."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"cannot read IDX file {path}: {e}; re-download it") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise UserError(f"{path} is not an IDX file (bad magic number); re-download it")
    dtype, ndim = _DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"IDX file {path} is truncated; re-download it")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - header != expected:
        raise UserError(f"IDX file {path} holds {len(data) - header} data bytes but its header "
                        f"{dims} says {expected}; re-download it")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def find_idx_files(root: Path, split: str) -> tuple[Path, Path] | None:
    """(images, labels) files of ``split`` ("train"/"test") in ``root``, or None if absent."""
    files = sorted(p for p in root.iterdir() if p.is_file())
    for prefix in SPLIT_PREFIXES[split]:
        images = [p for p in files if p.name.startswith(prefix) and "idx3" in p.name]
        labels = [p for p in files if p.name.startswith(prefix) and "idx1" in p.name]
        if images and labels:  # prefer the uncompressed file when both exist (sorted: no .gz first)
            return images[0], labels[0]
    return None


def idx_splits(root: Path) -> list[str]:
    return [s for s in SPLIT_PREFIXES if find_idx_files(root, s) is not None]


def load_idx(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) uint8 and labels (N,) int64 of one split of an IDX directory."""
    found = find_idx_files(root, split)
    if found is None:
        raise UserError(f"no {split} IDX files in {root}: expected "
                        f"{SPLIT_PREFIXES[split][0]}-images-idx3-ubyte[.gz] and "
                        f"{SPLIT_PREFIXES[split][0]}-labels-idx1-ubyte[.gz]")
    images_path, labels_path = found
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise UserError(f"{images_path} holds {images.dtype} data of shape {images.shape}; "
                        "expected uint8 images (N, H, W)")
    if labels.ndim != 1 or len(labels) != len(images):
        raise UserError(f"{labels_path} has {labels.shape} labels for {len(images)} images in "
                        f"{images_path}; the two files do not belong together")
    log.debug("read %d %s images %s from %s", len(images), split, images.shape[1:], root)
    return images, labels.astype(np.int64)
