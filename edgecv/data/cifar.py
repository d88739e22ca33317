"""CIFAR-10/100 "python version" batches, read with a restricted unpickler.

Why restricted: the batches are Python pickles, and unpickling runs whatever callable the file
names (``__reduce__`` -> ``os.system`` ...). A dataset path comes from the user, so the file
must be treated as untrusted data, never as code. :class:`SafeUnpickler` lets through only the
pickle's native containers (dict, list, tuple, bytes, str, int, float, bool, None - these need
no lookup) and answers ``find_class`` with a short allow-list of names the genuine files use,
each mapped to an inert stand-in defined here (never the real numpy callable):

* ``numpy[._]core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype`` and
  ``numpy[._]core.numeric._frombuffer`` - how numpy pickles the ``data`` array; the stand-ins
  only record shape, dtype code and raw bytes, and accept plain numeric dtypes only;
* ``_codecs.encode`` - how Python 3 protocol-2 pickles spell bytes; only ``(str, "latin1")``.

Every other global raises UserError before anything is called.
"""
from __future__ import annotations

import io
import logging
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np

from edgecv.errors import UserError

log = logging.getLogger(__name__)

_NUMERIC_DTYPE = re.compile(r"^[<>|=]?[biuf][1248]$")


class _NDArrayClass:
    """Stands for ``numpy.ndarray`` as the first argument of ``_reconstruct``."""


class _DType:
    def __init__(self, code: Any, align: Any = False, copy: Any = True) -> None:
        code = code.decode("latin1") if isinstance(code, bytes) else code
        if not isinstance(code, str) or not _NUMERIC_DTYPE.match(code):
            raise UserError(f"pickle asks for numpy dtype {code!r}; only plain numeric arrays "
                            "are accepted in a CIFAR batch")
        self.code, self.byteorder = code, "="

    def __setstate__(self, state: Any) -> None:
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else None
        order = order.decode("latin1") if isinstance(order, bytes) else order  # Python 2 str
        if order in ("<", ">", "|", "="):
            self.byteorder = order

    def numpy(self) -> np.dtype:
        dt = np.dtype(self.code)
        return dt if self.byteorder in ("|", "=") else dt.newbyteorder(self.byteorder)


class _Array:
    """Inert stand-in for an ndarray under construction; :func:`_materialize` converts it."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        try:
            _version, shape, dtype, fortran, raw = state
        except (TypeError, ValueError):
            raise UserError("malformed numpy array in pickle") from None
        self.array = _to_array(raw, dtype, shape, "F" if fortran else "C")


def _to_array(raw: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    if isinstance(raw, str):
        raw = raw.encode("latin1")
    if not isinstance(dtype, _DType) or not isinstance(raw, (bytes, bytearray)) or \
            not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
        raise UserError("malformed numpy array in pickle")
    dt = dtype.numpy()
    count = int(np.prod(shape, dtype=np.int64))
    if count * dt.itemsize != len(raw):
        raise UserError(f"numpy array in pickle has {len(raw)} bytes for shape {shape} of {dt}")
    flat = np.frombuffer(bytes(raw), dtype=dt, count=count)
    return flat.reshape(shape, order="F" if order == "F" else "C").astype(dt.newbyteorder("="))


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> _Array:
    if cls is not _NDArrayClass:
        raise UserError("pickle reconstructs something other than a numpy array")
    return _Array()


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> _Array:
    out = _Array()
    out.array = _to_array(bytes(buf), dtype, shape, order)
    return out


def _latin1_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding != "latin1":
        raise UserError("pickle calls _codecs.encode with unexpected arguments")
    return text.encode("latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NDArrayClass,
    ("numpy", "dtype"): _DType,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _latin1_encode,
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that never resolves a real global (see the module docstring for why)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UserError(f"refusing to unpickle {module}.{name}: a CIFAR batch holds only "
                            "dicts, lists, strings, numbers and uint8 arrays (the file is "
                            "corrupt or not a CIFAR batch)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UserError("refusing pickle persistent ids in a CIFAR batch")


def _materialize(obj: Any) -> Any:
    if isinstance(obj, _Array):
        if obj.array is None:
            raise UserError("numpy array in pickle has no data")
        return obj.array
    if isinstance(obj, dict):
        return {_key(k): _materialize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def _key(k: Any) -> Any:
    return k.decode("latin1") if isinstance(k, bytes) else k


def safe_load(path: Path) -> Any:
    """Unpickle ``path`` with :class:`SafeUnpickler`; bytes keys become str keys."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e}") from e
    try:
        # encoding="bytes" keeps Python 2 str (the original CIFAR files) as bytes
        obj = SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    except Exception as e:  # any other unpickling failure means a broken file
        raise UserError(f"cannot read CIFAR batch {path}: {type(e).__name__}: {e}; "
                        "re-download it") from None
    return _materialize(obj)


def _layout(root: Path) -> dict[str, list[str]]:
    if (root / "data_batch_1").is_file():
        train = sorted((p.name for p in root.glob("data_batch_*")), key=lambda n: int(n[11:] or 0))
        return {"train": train, "test": ["test_batch"], "meta": ["batches.meta"]}
    return {"train": ["train"], "test": ["test"], "meta": ["meta"]}


def cifar_splits(root: Path) -> list[str]:
    layout = _layout(root)
    return [s for s in ("train", "test") if all((root / f).is_file() for f in layout[s])]


def load_cifar_batches(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images (N, 3, 32, 32) uint8, labels (N,) int64 and class names of a CIFAR split."""
    layout = _layout(root)
    images, labels = [], []
    for name in layout[split]:
        path = root / name
        if not path.is_file():
            raise UserError(f"CIFAR batch {path} is missing")
        batch = safe_load(path)
        if not isinstance(batch, dict) or "data" not in batch:
            raise UserError(f"{path} is not a CIFAR batch (no 'data' entry)")
        data = np.asarray(batch["data"])
        lab = batch.get("labels", batch.get("fine_labels"))
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or \
                lab is None or len(lab) != len(data):
            raise UserError(f"{path}: expected 'data' uint8 (N, 3072) and N labels")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(lab, dtype=np.int64))
    classes = _class_names(root / layout["meta"][0], int(max(l.max() for l in labels)) + 1)
    return np.concatenate(images), np.concatenate(labels), classes


def _class_names(meta_path: Path, num_classes: int) -> list[str]:
    if meta_path.is_file():
        meta = safe_load(meta_path)
        if isinstance(meta, dict):
            names = meta.get("label_names", meta.get("fine_label_names"))
            if isinstance(names, list):
                return [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    log.warning("no class names in %s; using numbers", meta_path)
    return [str(i) for i in range(num_classes)]
