"""The Python API: compress, load, export and benchmark any ``nn.Module`` (or a zoo model by name).

>>> import edgecv                                                                    # doctest: +SKIP
>>> res = edgecv.compress(net, "deep_compression_generic", train=train_loader, eval=test_loader)
>>> res.save("net.edc"); net2 = edgecv.load("net.edc", model=Net())
>>> edgecv.export(net2, "tflite", out="net.tflite", example_input=torch.randn(1, 1, 28, 28))
>>> edgecv.bench("net.tflite")["mean_ms"]

Wherever a model is taken, it may be an ``nn.Module``, a zoo name (``"resnet20"``) or an import
path (``"mypkg.nets:build_net"``). ``train``/``eval`` take a ``DataLoader`` (its dataset is used;
batch sizes come from the recipe), a ``Dataset`` of ``(image, label)`` pairs, or a dataset name
(``"mnist"``, ``"cifar10"``, a folder...). Recipe targets select layers by module-name pattern
(``"features.*"``) or type (``conv``, ``fc``); a pattern that selects no Conv/Linear layer is an
error naming the modules it did match and why they cannot be compressed.
"""
from __future__ import annotations

import copy
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from edgecv.errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Dataset

    from edgecv.compress import Recipe

    ModelLike = Union[nn.Module, str]
    DataLike = Union[DataLoader, Dataset, str, None]

log = logging.getLogger(__name__)

__all__ = ["Result", "compress", "load", "export", "bench"]


@dataclass
class Result:
    """What :func:`compress` returns: ``model`` (the compressed ``nn.Module``: its weights are exactly
    what the file decodes to), ``report`` (sizes per tensor, stages, accuracy before/after when
    ``eval`` was given) and :meth:`save` to write the ``.edc`` file."""

    model: nn.Module
    report: dict[str, Any]
    blob: bytes = field(repr=False)
    meta: dict[str, Any] = field(default_factory=dict, repr=False)
    template: nn.Module | None = field(default=None, repr=False)  # the untouched architecture (user models)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the compressed file (atomically); returns its path. Read it back with :func:`load`."""
        from edgecv.checkpoint import atomic_write

        out = Path(path)
        if out.suffix != ".edc":
            raise UserError(f"{out}: a compressed model file ends in .edc")
        atomic_write(out, lambda tmp: Path(tmp).write_bytes(self.blob), nbytes=len(self.blob))
        self.report["file"] = str(out)
        return out

    def float_model(self) -> nn.Module:
        """The compressed weights in a plain float model (no activation quantizers): what is exported."""
        if not self.meta.get("quantizers"):
            return self.model
        from edgecv.codec import decode_model
        from edgecv.pipeline import build_decoded

        state, meta = decode_model(self.blob)
        return build_decoded(state, meta, fake_quant=False,
                             model=copy.deepcopy(self.template) if self.template is not None else None)


def _resolve_model(model: ModelLike, weights: str | os.PathLike | None = None, *,
                   num_classes: int | None = None, seed: int = 0) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(module, zoo spec or None, cfg) for a module, a zoo name or an import path."""
    from torch import nn

    from edgecv.usermodel import is_import_path, load_user_model

    if isinstance(model, nn.Module):
        if weights is not None:
            from edgecv.usermodel import fill

            cfg = fill(model, weights)
            return cfg.pop("model"), None, cfg
        return model, None, {}
    if not isinstance(model, str):
        raise UserError(f"expected an nn.Module, a zoo model name or an import path, got {type(model).__name__}")
    if is_import_path(model):
        m, cfg = load_user_model(model, weights)
        return m.train(), None, cfg
    from edgecv.models import get_spec
    from edgecv.workflows import resolve_weights

    spec = get_spec(model)
    m, cfg = resolve_weights(spec.name, weights, num_classes=num_classes, seed=seed)
    return m, spec, cfg


def _dataset(data: DataLike, split: str, *, spec: Any, size: tuple[int, int, int] | None,
             limit: int | None = None, train: bool = False) -> tuple[Any, Any]:
    """(Dataset, DatasetInfo or None) from a DataLoader, a Dataset or a dataset name."""
    from torch.utils.data import DataLoader, Dataset, Subset

    if data is None:
        return None, None
    if isinstance(data, DataLoader):
        data = data.dataset
    if isinstance(data, Dataset):
        if limit is not None and limit < len(data):  # type: ignore[arg-type]
            data = Subset(data, range(limit))
        return data, None
    if not isinstance(data, (str, os.PathLike)):
        raise UserError(f"train/eval take a DataLoader, a Dataset or a dataset name, got {type(data).__name__}")
    if spec is not None:
        from edgecv.workflows import data_for_model

        return data_for_model(spec.name, str(data), split, train=train, limit=limit,
                              input_size=size[-1] if size else None)
    from edgecv.data import load_dataset

    return load_dataset(data, split, train_transform=train, limit=limit, input_size=size[-1] if size else None)


def compress(model: ModelLike, recipe: str | os.PathLike | Recipe, *, train: DataLike = None, eval: DataLike = None,
             example_input: torch.Tensor | tuple[int, ...] | None = None, teacher: ModelLike | None = None,
             weights: str | os.PathLike | None = None, bits: int | None = None, seed: int = 0,
             input_size: int | None = None, train_limit: int | None = None, eval_limit: int | None = None,
             progress: Any = None) -> Result:
    """Run ``recipe`` (a Recipe, a YAML file, a shipped recipe name such as ``"deep_compression_generic"``,
    or YAML text) on ``model`` and encode it as a Deep Compression file.

    ``train``: retraining data for the stages that fine-tune (pruning, sharing, distillation) and
    the calibration images of ``quantize``; ``eval``: accuracy before/after (``report["accuracy"]``).
    ``example_input``: a tensor or shape (N, C, H, W); needed when edgecv cannot tell the input size
    from the model (zoo), ``input_size`` or the data. ``teacher``: the model the recipe's ``distill``
    stages learn from. ``weights``: a file to load first (zoo names: also a table tag such as
    ``imagenet``). The model passed in is changed in place (its weights are the compressed ones).
    """
    import time

    import torch

    from edgecv import __version__
    from edgecv.compress import Recipe, load_recipe
    from edgecv.pipeline import compress_module
    from edgecv.usermodel import architecture, size_of
    from edgecv.workflows import environment

    if bits is not None and not 1 <= bits <= 16:
        raise UserError(f"bits must be between 1 and 16 (8 and 6 are the papers' settings), got {bits}")
    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe if isinstance(recipe, str) else Path(recipe))
    if bits is not None:
        rec = rec.with_bits(bits)
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    spec = None
    if isinstance(model, str):
        from edgecv.usermodel import is_import_path

        if not is_import_path(model):
            from edgecv.models import get_spec

            spec = get_spec(model)
    size0 = (0, input_size, input_size) if input_size else \
        (size_of(torch.nn.Identity(), example_input) if example_input is not None else None)
    calib_n = max((st.config.calib_size for st in rec.stages if st.name == "quantize"), default=0)
    train_ds, tinfo = _dataset(train, "train", spec=spec, size=size0, limit=train_limit, train=True)
    eval_ds, einfo = _dataset(eval, "test", spec=spec, size=size0, limit=eval_limit)
    info = einfo or tinfo
    net, spec, cfg = _resolve_model(model, weights, num_classes=info.num_classes if info else None, seed=seed)
    name = spec.name if spec is not None else (model if isinstance(model, str) else type(net).__name__)
    sample = eval_ds if eval_ds is not None else train_ds
    if spec is not None and example_input is None:  # a zoo model: the data's size, else its own
        size = tuple(int(v) for v in sample[0][0].shape) if sample is not None else \
            (spec.input_size[0], input_size, input_size) if input_size else tuple(spec.input_size)
    else:
        size = size_of(net, example_input, cfg=cfg, input_size=input_size, data=sample, name=name)
    calib_ds = None
    if calib_n:
        pool = train_ds if train_ds is not None else None
        if pool is None:
            raise UserError("the recipe quantizes, which needs calibration images: pass train= (a slice of it "
                            "calibrates; eval stays disjoint)")
        if isinstance(train, (str, os.PathLike)):  # the training images with evaluation transforms
            pool, _ = _dataset(train, "train", spec=spec, size=size, limit=calib_n, train=False)
        calib_ds = torch.utils.data.Subset(pool, range(min(calib_n, len(pool))))
    template = copy.deepcopy(net) if spec is None else None
    meta: dict[str, Any] = {"architecture": architecture(net), "recipe": Path(rec.source).stem
                            if rec.source != "<recipe>" else "inline", "bits": bits, "seed": seed,
                            "input_size": list(size), "edgecv": __version__}
    if spec is not None:
        meta["model"] = spec.name
        if cfg.get("model_kwargs"):
            meta["model_kwargs"] = dict(cfg["model_kwargs"])
    if cfg.get("import_path"):
        meta["import_path"] = cfg["import_path"]
    if info is not None:
        meta.update({"mean": list(info.mean), "std": list(info.std), "num_classes": int(info.num_classes)})
        for d in (eval, train):
            if isinstance(d, (str, os.PathLike)):
                meta["data"] = str(d)
                break
    with torch.no_grad():
        was = net.training
        out = net.eval()(torch.zeros(1, *size))
        net.train(was)
    meta.setdefault("num_classes", int((out[0] if isinstance(out, tuple) else out).shape[-1]))
    teacher_m = None
    if teacher is not None:
        teacher_m = _resolve_model(teacher, num_classes=meta["num_classes"])[0]
    res = compress_module(net, rec, meta=meta, train_ds=train_ds, eval_ds=eval_ds, calib_ds=calib_ds, seed=seed,
                          input_size=tuple(size), model_name=spec.name if spec else None, teacher=teacher_m,
                          template=template, progress=progress)
    unmeasured = [] if eval_ds is not None else ["accuracy (no eval data: pass eval= to measure before/after)"]
    report = {"model": name, "architecture": meta["architecture"], "recipe": meta["recipe"],
              "recipe_path": rec.source, "bits": bits, "weights": cfg.get("weights", str(weights) if weights else None),
              "data": meta.get("data"), "file": None, **res.report, "unmeasured": unmeasured, "seed": seed,
              "env": environment()}
    report["timings_s"]["total"] = time.perf_counter() - t0
    return Result(res.model, report, res.blob, res.meta, template)


def load(path: str | os.PathLike, model: ModelLike | None = None, *, fake_quant: bool = True) -> nn.Module:
    """The model a ``.edc`` file holds, in eval mode: a zoo model is rebuilt from the file's metadata;
    a user's model is filled in: pass ``model`` (an instance of the same architecture, or an import
    path). ``fake_quant=False``: a quantized file as a plain float model (integer-grid weights)."""
    from edgecv.codec import read_file
    from edgecv.pipeline import build_decoded

    state, meta = read_file(path)
    if model is not None:
        model = _resolve_model(model)[0]
    return build_decoded(state, meta, fake_quant=fake_quant, model=model)


def export(model_or_file: ModelLike | Result | str | os.PathLike, fmt: str, *, out: str | os.PathLike,
           precision: str = "fp32", example_input: torch.Tensor | tuple[int, ...] | None = None,
           data: str | None = None, weights: str | None = None, mean: tuple[float, ...] | None = None,
           std: tuple[float, ...] | None = None, input_size: tuple[int, int] | None = None,
           **options: Any) -> dict[str, Any]:
    """Export to ``fmt`` (``"onnx"``, ``"tflite"`` or ``"executorch"``) and check the file against
    PyTorch in its runtime (:func:`edgecv.export.export`; a failed check raises ``ParityError`` and
    writes nothing). ``model_or_file``: an ``nn.Module``, a :class:`Result`, a zoo name, an import path,
    a checkpoint or a ``.edc`` file. ``data``: real images (a dataset name) that check the export and
    calibrate int8; ``mean``/``std``: the normalisation the file expects (metadata; default: ``data``'s).
    ``options``: ``min_agreement``, ``per_channel``, ``calib_images``, ``bias_correction``, ``keep_grid``,
    ``progress``.
    """
    from torch import nn

    from edgecv.export import FORMATS
    from edgecv.export import export as _export

    FORMATS.get(fmt)  # unknown formats: one line listing the known ones
    calib = data if precision in FORMATS.get(fmt).calib_precisions else None
    src: Any = model_or_file
    meta: dict[str, Any] = {}
    if isinstance(src, Result):
        meta, src = src.meta, src.float_model()
    if isinstance(src, nn.Module):
        from edgecv.usermodel import export_source, size_of

        size = size_of(src, example_input, cfg=meta, input_size=input_size, name=type(src).__name__)
        src = export_source(src, input_size=size, mean=mean or meta.get("mean"), std=std or meta.get("std"),
                            data=data or meta.get("data"), meta=meta)
        if meta:
            src.kind = "compressed"
        return _export(src, fmt, out=out, precision=precision, calib=calib, **options)
    return _export(src, fmt, out=out, precision=precision, calib=calib, weights=weights, input_size=input_size,
                   **options)


def bench(file: ModelLike | Result | str | os.PathLike, fmt: str | None = None, **options: Any) -> dict[str, Any]:
    """Latency of an exported file (``.onnx``, ``.tflite``, ``.pte``), a zoo model or an import path
    (:func:`edgecv.bench.bench`: one pinned thread by default, a fresh process per measurement).
    An ``nn.Module`` or :class:`Result` is exported first to ``fmt`` (default ``onnx``; pass
    ``example_input``). ``options``: ``device``, ``threads``, ``warmup``, ``runs``, ``precision``..."""
    from torch import nn

    from edgecv.bench import bench as _bench

    if isinstance(file, (nn.Module, Result)):
        fmt = fmt or "onnx"
        if fmt == "torch":
            raise UserError("an in-memory module is benchmarked through an export: use fmt onnx, tflite or "
                            "executorch (or save it and bench its import path)")
        ex_kw = {k: options.pop(k) for k in ("example_input", "data", "mean", "std", "precision") if k in options}
        with tempfile.TemporaryDirectory(prefix="edgecv-api-bench-") as tmp:
            from edgecv.export import FORMATS

            out = Path(tmp) / f"model{FORMATS.get(fmt).suffix}"
            rep = export(file, fmt, out=out, **ex_kw)
            res = _bench(str(out), fmt, precision=ex_kw.get("precision", "fp32"), **options)
            res["export"] = {k: rep[k] for k in ("bytes", "parity", "precision")}
            return res
    return _bench(str(file), fmt, **options)
