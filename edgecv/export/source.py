"""What is being exported: a zoo model name, a checkpoint, or a Deep-Compression ``.edc`` file.

Every source becomes an :class:`ExportSource`: the PyTorch model in eval mode (the parity
reference), its name, input size and the preprocessing (mean/std) the runtime file expects.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgecv.errors import UserError

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".th")

# preprocessing the zoo's default heads expect (edgecv.data defaults: the shared CIFAR ResNets
# were trained with the ImageNet statistics)
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
DATASET_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": _IMAGENET, "cifar10": _IMAGENET, "mnist": ((0.1307,), (0.3081,))}
DATASET_DATA = {"imagenet": "imagenet-samples", "cifar10": "cifar10", "mnist": "mnist"}


@dataclass
class ExportSource:
    model: nn.Module  # eval mode, CPU, float32
    name: str  # zoo model name
    input_size: tuple[int, int, int]  # (C, H, W) of the exported file
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    dataset: str  # the zoo spec's dataset kind: imagenet | cifar10 | mnist
    trained: bool  # weights are trained (pretrained, checkpoint, .edc) rather than a random init
    kind: str  # "model" | "checkpoint" | "compressed"
    path: Path | None = None  # the input file, never overwritten
    meta: dict[str, Any] = field(default_factory=dict)  # recipe etc. (from .edc/checkpoint metadata)
    data: str | None = None  # real images for the check (a user's model: the caller names them)

    @property
    def default_data(self) -> str | None:
        """The dataset whose images check (and calibrate) the export; None: a user's model without one."""
        if self.data is not None:
            return self.data
        return None if self.dataset == "user" else DATASET_DATA.get(self.dataset, "imagenet-samples")


def _input_size(spec_size: tuple[int, int, int], input_size: tuple[int, int] | None) -> tuple[int, int, int]:
    if input_size is None:
        return tuple(int(v) for v in spec_size)  # type: ignore[return-value]
    h, w = (int(v) for v in input_size)
    if h < 1 or w < 1:
        raise UserError(f"--input-size must be two positive numbers of pixels (H W), got {h} {w}")
    return (int(spec_size[0]), h, w)


def _stats(meta: dict[str, Any], dataset: str, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean, std = DATASET_STATS.get(dataset, _IMAGENET)
    if "mean" in meta and "std" in meta:
        mean, std = tuple(float(v) for v in meta["mean"]), tuple(float(v) for v in meta["std"])
    if len(mean) == 1:
        mean, std = mean * channels, std * channels
    return mean, std


def _checkpoint_model_name(path: Path) -> tuple[str | None, dict[str, Any]]:
    from edgecv.checkpoint import load_meta

    meta = load_meta(path)
    name = meta.get("model")
    if name is None and path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as f:
                name = (f.metadata() or {}).get("model")
        except Exception:  # unreadable header: load_weights reports it properly below
            name = None
    return name, meta


def resolve_source(source: str | os.PathLike, *, weights: str | None = None,
                   input_size: tuple[int, int] | None = None) -> ExportSource:
    """Build the model behind ``source`` (MODEL | CHECKPOINT | COMPRESSED_FILE | IMPORT_PATH)."""
    from edgecv.models import get_spec
    from edgecv.workflows import resolve_weights

    from edgecv.usermodel import is_import_path

    text = str(source)
    path = Path(text)
    if is_import_path(text):  # a user's model: mypkg.nets:build_net [--weights w.pth | m.edc]
        from edgecv.usermodel import export_source, load_user_model, size_of

        model, cfg = load_user_model(text, weights)
        size = size_of(model, cfg=cfg, input_size=input_size, name=text)
        src = export_source(model, input_size=size, name=text, mean=cfg.get("mean"),
                            std=cfg.get("std"), data=cfg.get("data"), meta=cfg)
        src.kind, src.trained = ("compressed" if cfg.get("compressed") else "checkpoint") if weights else "module", \
            weights is not None
        return src
    if path.suffix == ".edc" or (path.is_file() and path.read_bytes()[:8] == b"EDGECVDC"):
        if weights is not None:
            raise UserError(f"{path} already holds the weights; drop --weights")
        from edgecv.pipeline import load_compressed

        if not path.is_file():
            raise UserError(f"compressed model {path} not found; pass an existing .edc file")
        # the plain float model with the decoded (integer-grid) weights and the file's create_model options;
        # a quantized file's activation quantizers are left out (the converter quantizes again)
        model, meta = load_compressed(path, fake_quant=False)
        spec = get_spec(meta["model"])
        size = tuple(meta.get("input_size") or spec.input_size)
        mean, std = _stats(meta, spec.dataset, spec.input_size[0])
        return ExportSource(model.eval(), spec.name, _input_size(size, input_size), mean, std,
                            int(meta.get("num_classes", spec.num_classes)), spec.dataset, True, "compressed",
                            path, {k: meta[k] for k in ("recipe", "bits", "data", "weights", "model_kwargs", "resize",
                                                        "interpolation") if k in meta})
    if path.suffix in CHECKPOINT_SUFFIXES:
        if not path.is_file():
            raise UserError(f"checkpoint {path} not found; pass an existing file or a model name")
        if weights is not None:
            raise UserError(f"{path} is already a checkpoint; pass MODEL --weights FILE or the checkpoint alone")
        name, meta = _checkpoint_model_name(path)
        if name is None:
            raise UserError(f"cannot tell which model {path} holds (no 'model' in its metadata); "
                            f"pass the model name and the file: edgecv export MODEL --weights {path}")
        spec = get_spec(name)
        model, cfg = resolve_weights(spec.name, path)
        mean, std = _stats(meta, spec.dataset, spec.input_size[0])
        return ExportSource(model.eval(), spec.name, _input_size(_size(cfg, spec), input_size), mean, std,
                            int(cfg.get("num_classes") or spec.num_classes), spec.dataset, True, "checkpoint", path,
                            _carried(cfg, input_size))
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} is not a model name, a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}) "
                        "or a compressed .edc file")
    spec = get_spec(text)  # unknown names: UserError with close matches
    model, cfg = resolve_weights(spec.name, weights)
    mean, std = _stats(cfg, spec.dataset, spec.input_size[0])
    return ExportSource(model.eval(), spec.name, _input_size(_size(cfg, spec), input_size), mean, std,
                        int(cfg.get("num_classes") or spec.num_classes), spec.dataset, weights is not None, "model",
                        None, _carried(cfg, input_size))


def _size(cfg: dict[str, Any], spec: Any) -> tuple[int, int, int]:
    """The input size the weights were made for (their sidecar / table row), else the zoo's default."""
    size = cfg.get("input_size")
    if isinstance(size, (list, tuple)) and len(size) == 3:
        return tuple(int(v) for v in size)  # type: ignore[return-value]
    if isinstance(size, int):
        return (int(spec.input_size[0]), size, size)
    return tuple(int(v) for v in spec.input_size)  # type: ignore[return-value]


def _carried(cfg: dict[str, Any], input_size: tuple[int, int] | None) -> dict[str, Any]:
    """Export metadata from the weights: where they came from and the options/preprocessing they need
    (the resize belongs to the weights' own input size: dropped when --input-size changes it)."""
    keys = ("model_kwargs", "interpolation") if input_size is not None else ("model_kwargs", "resize", "interpolation")
    out = {k: cfg[k] for k in keys if cfg.get(k)}
    if cfg.get("weights"):
        out["weights"] = Path(str(cfg["weights"])).name if Path(str(cfg["weights"])).is_file() else cfg["weights"]
    return out


def example_input(src: ExportSource, batch: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch, *src.input_size), generator=g)


@torch.no_grad()
def reference(model: nn.Module, x: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Float PyTorch outputs (the parity oracle), in batches."""
    return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])
