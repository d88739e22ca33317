"""Weights on disk: safetensors (plus a small JSON of metadata) out, safe formats in.

Never unpickles: ``.pth``/``.pt``/``.th`` files are read with ``torch.load(weights_only=True)``.
Writes go to a temporary file in the target folder and are renamed into place.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from edgecv.errors import UserError

log = logging.getLogger(__name__)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], *, nbytes: int | None = None,
                 at_least: bool = False) -> Path:
    """Call ``write(tmp_path)`` then rename tmp -> ``path``; nothing half-written on failure.

    The temp file is flock-held while written, so a run killed here leaves a ``.NAME.*.tmp`` that
    the next write of ``path`` removes (edgecv.fsutil). A full disk or file-size limit raises a
    one-line DiskFullError naming ``path`` and ``nbytes`` (the size to be written, when known;
    ``at_least``: a lower bound).
    """
    from edgecv.errors import disk_full, disk_full_errno
    from edgecv.fsutil import locked_temp

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with locked_temp(path) as tmp:
            write(tmp)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
            os.replace(tmp, path)
    except Exception as e:  # OSError, or a library's wrapper of one (safetensors: "... (os error 27)")
        code = disk_full_errno(e)
        if code is None:
            raise
        raise disk_full(OSError(code, os.strerror(code)), path, nbytes, at_least=at_least) from None
    return path


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text), nbytes=len(text.encode()))


def meta_path(weights: str | os.PathLike) -> Path:
    """``model.safetensors`` -> ``model.json`` (the metadata sidecar)."""
    return Path(weights).with_suffix(".json")


def save_checkpoint(model: nn.Module | dict[str, torch.Tensor], path: str | os.PathLike,
                    meta: dict[str, Any] | None = None) -> Path:
    """Save weights as safetensors (buffers included) and ``meta`` as a JSON sidecar."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise UserError(f"checkpoint path {path} must end in .safetensors")
    state = model.state_dict() if isinstance(model, nn.Module) else model
    # safetensors refuses shared storage and non-contiguous tensors: store private copies.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    meta = dict(meta or {})
    if isinstance(model, nn.Module) and "model" not in meta and hasattr(model, "edgecv_name"):
        meta["model"] = model.edgecv_name
    header = {k: str(v) for k, v in meta.items() if isinstance(v, (str, int, float))}
    tensor_bytes = sum(v.numel() * v.element_size() for v in state.values())  # + a small JSON header

    def write(tmp: str) -> None:  # weights to their temp file, then the sidecar (renamed), then the weights renamed:
        save_file(state, tmp, metadata=header)  # a full disk commits neither; a kill leaves no weights without
        write_json(meta_path(path), meta)  # their sidecar (scripts/kill_harness.py checks the pair)

    atomic_write(path, write, nbytes=tensor_bytes, at_least=True)
    log.info("saved %s (%d tensors)", path, len(state))
    return path


def load_meta(path: str | os.PathLike) -> dict[str, Any]:
    p = meta_path(path)
    if p.exists():
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"metadata file {p} is not valid JSON ({e}); fix or delete it") from None
    return {}


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state_dict from .safetensors or a (weights-only) torch file.

    Accepts torch files holding a bare state_dict or a dict with ``state_dict``/``model``;
    strips a leading ``module.`` (DataParallel/DDP) from every key.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} not found; pass an existing --weights path")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
                obj = obj["state_dict"]
            elif isinstance(obj, dict) and isinstance(obj.get("model"), dict):
                obj = obj["model"]
            if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
                raise UserError(f"{path} holds no state_dict of tensors; save one with torch.save(model.state_dict())")
            state = obj
    except UserError:
        raise
    except Exception as e:  # corrupt file, pickle with code, wrong format
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot read weights {path}: {first[:200]} "
                        "(expected .safetensors or a weights-only torch state_dict)") from None
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_weights(model: nn.Module, path: str | os.PathLike,
                 state: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Load ``path`` (or its already-read ``state``) into ``model`` strictly; mismatches raise a
    one-line UserError."""
    from edgecv.models import check_state_dict

    state = dict(load_state_dict(path) if state is None else state)
    # checkpoints written before PyTorch 0.4.1 have no BN step counters; they are not weights
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = torch.zeros_like(v)
    check_state_dict(model, state, source=str(path))
    model.load_state_dict(state, strict=True)
    return model
