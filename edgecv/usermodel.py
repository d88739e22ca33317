"""A user's own model: by import path (``mypkg.nets:build_net``) or as an ``nn.Module``.

An import path names code the user chose to run: ``module:attr`` where ``attr`` is an
``nn.Module`` instance, a class, or a function that returns a module when called without
arguments. Weights are read without unpickling: safetensors, weights-only ``.pth`` or a
compressed ``.edc`` file. The model's input size comes from the caller, the weights' metadata,
or the data; the channel count from its first convolution.
"""
from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgecv.errors import UserError

log = logging.getLogger(__name__)

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_import_path(text: Any) -> bool:
    """True for ``package.module:attr`` (and not an existing file)."""
    return isinstance(text, str) and bool(_IMPORT_PATH.match(text)) and not Path(text).exists()


def architecture(model: nn.Module) -> str:
    """``module.Class`` of a model (recorded in files; never imported back)."""
    cls = type(model)
    return f"{cls.__module__}.{cls.__qualname__}"


def import_model(path: str) -> nn.Module:
    """The module ``path`` (``pkg.mod:attr``) stands for; the current folder is importable, as with ``python -m``."""
    if not is_import_path(path):
        raise UserError(f"{path!r} is not an import path; write package.module:function (e.g. mypkg.nets:build_net)")
    mod_name, attr = path.split(":", 1)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(mod_name)
    except ImportError as e:
        raise UserError(f"cannot import {mod_name} for {path} ({e}); run from the folder that holds it, "
                        "add it to PYTHONPATH, or install the package") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UserError(f"{mod_name} has no {attr!r} (from {path}); name a model class, a function "
                            "returning an nn.Module, or a module instance") from None
    if not isinstance(obj, nn.Module):
        if not callable(obj):
            raise UserError(f"{path} is a {type(obj).__name__}, not an nn.Module, class or function")
        try:
            obj = obj()
        except TypeError as e:
            raise UserError(f"{path}() could not be called without arguments ({e}); point to a function "
                            "that builds the model with its defaults") from None
    if not isinstance(obj, nn.Module):
        raise UserError(f"{path} gave a {type(obj).__name__}, not a torch.nn.Module")
    return obj


def input_channels(model: nn.Module) -> int | None:
    """The channel count the model's first convolution takes (None for a model without one)."""
    from torch.nn.modules.conv import _ConvNd

    for m in model.modules():
        if isinstance(m, _ConvNd):
            return int(m.in_channels)
    return None


def fill(model: nn.Module, weights: str | os.PathLike, *, fake_quant: bool = False) -> dict[str, Any]:
    """Load ``weights`` into ``model`` strictly; returns what the file's metadata says (input_size,
    mean, std, num_classes, ...). ``.edc``: the decoded weights (``fake_quant``: with the file's
    activation quantizers; the module is then replaced, so use the returned ``cfg["model"]``)."""
    from edgecv.checkpoint import load_meta, load_state_dict
    from edgecv.models import check_state_dict

    p = Path(weights)
    if not p.is_file():
        raise UserError(f"weights {p} not found; pass an existing .safetensors, .pth or .edc file")
    if p.suffix == ".edc":
        from edgecv.codec import read_file
        from edgecv.pipeline import build_decoded

        state, meta = read_file(p)
        built = build_decoded(state, meta, fake_quant=fake_quant, model=model)
        return {**{k: meta[k] for k in ("input_size", "mean", "std", "num_classes", "resize", "interpolation",
                                        "architecture", "recipe", "data") if k in meta}, "model": built,
                "weights": str(p), "compressed": True}
    meta = load_meta(p)
    state = load_state_dict(p)
    check_state_dict(model, state, source=str(p))
    model.load_state_dict(state, strict=True)
    return {**{k: meta[k] for k in ("input_size", "mean", "std", "num_classes") if k in meta},
            "model": model, "weights": str(p)}


def load_user_model(path: str, weights: str | os.PathLike | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, cfg) for an import path and optional weights file."""
    model = import_model(path)
    cfg: dict[str, Any] = {"import_path": path}
    if weights is not None:
        from edgecv.pretrained import is_tag

        if is_tag(weights):
            raise UserError(f"--weights {weights} names edgecv's table of zoo weights; {path} is your own "
                            "model: pass a .safetensors, .pth or .edc file")
        cfg.update(fill(model, weights))
        model = cfg.pop("model")
    return model.eval(), cfg


def size_of(model: nn.Module, example_input: Any = None, *, cfg: dict[str, Any] | None = None,
            input_size: tuple[int, int] | int | None = None, data: Any = None, name: str = "the model"
            ) -> tuple[int, int, int]:
    """(C, H, W) from, in order: ``example_input`` (tensor or shape), ``input_size`` (H W) with the
    channels of the first conv, the weights' metadata, the first sample of ``data``."""
    if isinstance(example_input, torch.Tensor):
        shape = tuple(example_input.shape)
        return tuple(int(v) for v in (shape[1:] if len(shape) == 4 else shape))  # type: ignore[return-value]
    if example_input is not None:
        shape = tuple(int(v) for v in example_input)
        if len(shape) in (3, 4):
            return shape[-3:]  # type: ignore[return-value]
        raise UserError(f"example_input {shape} is not (C, H, W) or (N, C, H, W)")
    c = input_channels(model)
    if input_size is not None and c is not None:
        h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
        return (c, int(h), int(w))
    meta_size = (cfg or {}).get("input_size")
    if isinstance(meta_size, (list, tuple)) and len(meta_size) == 3:
        return tuple(int(v) for v in meta_size)  # type: ignore[return-value]
    if data is not None:
        x = data[0][0]
        return tuple(int(v) for v in x.shape)  # type: ignore[return-value]
    raise UserError(f"edgecv cannot tell the input size of {name}: pass example_input=torch.randn(1, C, H, W) "
                    "(Python) or --input-size / --data (command line)")


def export_source(model: nn.Module, *, input_size: tuple[int, int, int], name: str | None = None,
                  mean: Any = None, std: Any = None, data: str | None = None, meta: dict[str, Any] | None = None):
    """An :class:`edgecv.export.source.ExportSource` for a user's module (treated as trained: it is
    never re-initialised or changed). ``data``: the dataset whose real images check the export
    (and calibrate int8); without it fp32 is checked on seeded noise and int8 is refused."""
    from edgecv.export.source import _IMAGENET, ExportSource

    c = int(input_size[0])
    if mean is None or std is None:
        if data is not None:
            from edgecv.data import load_dataset

            _, info = load_dataset(data, "test", limit=1)
            mean, std = info.mean, info.std
        else:
            mean, std = _IMAGENET if c == 3 else ((0.5,), (0.5,))
    mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    if len(mean) == 1:
        mean, std = mean * c, std * c
    with torch.no_grad():
        was = model.training
        model.eval()
        out = model(torch.zeros(1, *input_size))
        out = out[0] if isinstance(out, tuple) else out
    model.train(was)
    extra = {k: v for k, v in (meta or {}).items() if k in ("recipe", "bits", "data", "weights", "import_path")}
    src = ExportSource(model.eval(), name or type(model).__name__, tuple(int(v) for v in input_size),
                       mean, std, int(out.shape[-1]), "user", True, "module", None,
                       {"architecture": architecture(model), **extra})
    src.data = data
    return src
