"""The library side of ``edgecv train`` / ``edgecv eval``: resolve model + data, run, report.

The CLI only parses options, calls these, and prints.
"""
from __future__ import annotations

import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from edgecv import distributed as D
from edgecv.checkpoint import load_meta, load_weights, save_checkpoint
from edgecv.engine import TrainConfig, evaluate, train
from edgecv.errors import UserError
from edgecv.models import create_model, get_spec
from edgecv.progress import Progress

log = logging.getLogger(__name__)

_KIND = {"mnist": "mnist", "fashion-mnist": "mnist", "cifar10": "cifar10", "imagenet-samples": "imagenet"}


def data_for_model(model_name: str, data: str, split: str, *, train: bool | None = None,
                   input_size: int | None = None, limit: int | None = None,
                   mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                   resize: int | None = None, interpolation: str = "bilinear"):
    """Load ``data`` with the input size the model wants when the model was designed for it.

    A model made for the dataset's kind (LeNet-5 for MNIST: 32x32) gets its own input size;
    otherwise the dataset's native size is kept (e.g. SqueezeNet on CIFAR-10 at 32x32)
    unless ``input_size`` says otherwise. ``mean``/``std``/``resize``/``interpolation``: the
    preprocessing the weights need (see :func:`data_args`).
    """
    from edgecv.data import load_dataset

    spec = get_spec(model_name)
    if input_size is None and _KIND.get(str(data)) == spec.dataset:
        input_size = spec.input_size[-1]
    ds, info = load_dataset(data, split, train_transform=train, input_size=input_size, mean=mean, std=std, limit=limit,
                            resize=resize, interpolation=interpolation)
    in_ch = info.image_size[0]
    if in_ch != spec.input_size[0]:
        raise UserError(f"{spec.name} takes {spec.input_size[0]}-channel images but {data} has {in_ch}; "
                        f"pick a model made for it (e.g. {'lenet5' if in_ch == 1 else 'resnet20'})")
    return ds, info


def data_args(cfg: dict[str, Any], input_size: int | None = None) -> dict[str, Any]:
    """Keyword arguments of :func:`data_for_model` from a weights configuration (sidecar or table row):
    its input size (unless ``input_size`` is given), mean/std, resize and interpolation."""
    size = cfg.get("input_size")
    if input_size is None and size:
        input_size = int(size[-1]) if isinstance(size, (list, tuple)) else int(size)
    out: dict[str, Any] = {"input_size": input_size}
    if cfg.get("mean") and cfg.get("std"):
        out["mean"], out["std"] = tuple(float(v) for v in cfg["mean"]), tuple(float(v) for v in cfg["std"])
    if isinstance(cfg.get("resize"), int):  # sidecars may describe the resize in words: not used then
        out["resize"] = int(cfg["resize"]) if input_size is None or size is None or \
            int(size[-1] if isinstance(size, (list, tuple)) else size) == input_size else None
    if cfg.get("interpolation") in ("bilinear", "bicubic"):
        out["interpolation"] = cfg["interpolation"]
    return out


# create_model options a weights file's sidecar (``model_kwargs``) may set; anything else is refused
MODEL_KWARGS = frozenset({"tf_same_padding", "act", "width_mult", "stride_in_1x1", "branch5x5_kernel", "bn_eps"})
# the preprocessing a weights sidecar or the pretrained table may carry
PREPROCESSING = ("num_classes", "input_size", "resize", "interpolation", "mean", "std", "model_kwargs")


def model_kwargs_of(meta: dict[str, Any], source: str) -> dict[str, Any]:
    kw = meta.get("model_kwargs") or {}
    if not isinstance(kw, dict):
        raise UserError(f"{source}: model_kwargs must be a JSON object, got {type(kw).__name__}")
    bad = sorted(set(kw) - MODEL_KWARGS)
    if bad:
        raise UserError(f"{source}: model_kwargs {bad} are not options edgecv passes on "
                        f"(allowed: {', '.join(sorted(MODEL_KWARGS))}); fix the sidecar JSON")
    return dict(kw)


def head_keys(model_name: str, **kwargs: Any) -> tuple[dict[str, torch.Tensor], list[str]] | None:
    """(the model's state_dict on the meta device, the keys of its head: the tensors whose first
    dimension follows num_classes, found by building the model twice); None for a builder that
    cannot run on meta tensors."""
    spec = get_spec(model_name)
    try:
        with torch.device("meta"):
            a = create_model(spec.name, **kwargs).state_dict()
            b = create_model(spec.name, num_classes=spec.num_classes + 1, **kwargs).state_dict()
    except Exception:  # a builder that cannot run on meta tensors: no guess
        return None
    return a, [k for k in a if k in b and a[k].shape != b[k].shape and a[k].dim() >= 1]


def infer_num_classes(model_name: str, state: dict[str, torch.Tensor], **kwargs: Any) -> int | None:
    """The class count of a state_dict, read from the head's shape (see :func:`head_keys`)."""
    found_head = head_keys(model_name, **kwargs)
    if found_head is None:
        return None
    a, head = found_head
    if set(a) - {k for k in a if k.endswith("num_batches_tracked")} - set(state) or set(state) - set(a):
        return None  # not this model's keys: check_state_dict names the difference
    found = {int(state[k].shape[0]) for k in head if k in state and state[k].dim() >= 1}
    return found.pop() if len(found) == 1 else None


def resolve_weights(model_name: str, weights: str | os.PathLike | None, *, num_classes: int | None = None,
                    seed: int = 0, **kwargs: Any) -> tuple[nn.Module, dict[str, Any]]:
    """The model ``weights`` stand for and the configuration they carry.

    ``weights``: None (a seeded random init), a table tag (``imagenet``, ``imagenet-tf``, ``pretrained``:
    see :mod:`edgecv.pretrained`), or a file (safetensors / weights-only .pth) whose JSON sidecar may give
    ``num_classes``, ``model_kwargs``, ``mean``, ``std``, ``input_size``, ``resize``; without one, the
    class count is read from the head's shape. Returns (model in train mode as built, cfg) where cfg
    holds the sidecar's preprocessing keys that were present plus ``weights`` (what was loaded).
    """
    from edgecv import pretrained

    spec = get_spec(model_name)
    torch.manual_seed(seed)
    if weights is not None and pretrained.is_tag(weights):
        model, row = pretrained.load_pretrained(spec.name, str(weights), num_classes=num_classes)
        model.train()
        return model, {**row.preprocessing(), "weights": f"{spec.name}:{row.tag} ({row.where})"}
    if weights is None:
        model = create_model(spec.name, num_classes=num_classes, **kwargs)
        return model, {}
    from edgecv.checkpoint import load_state_dict

    meta = load_meta(weights)
    cfg = {k: meta[k] for k in PREPROCESSING if k in meta}
    kw = {**model_kwargs_of(meta, str(weights)), **kwargs}
    if kw:
        cfg["model_kwargs"] = kw
    state = load_state_dict(weights)
    n_file = meta.get("num_classes") or infer_num_classes(spec.name, state, **kw)
    if num_classes is None:
        num_classes = n_file
    elif n_file is not None and int(n_file) != int(num_classes):
        raise UserError(f"{weights} holds a {n_file}-class {spec.name}, the data has {num_classes} classes; "
                        f"use data with {n_file} classes, or weights trained for these {num_classes}")
    try:
        model = create_model(spec.name, num_classes=num_classes, **kw)
    except TypeError as e:
        raise UserError(f"{weights}: {spec.name} does not take the options {kw} ({e})") from None
    if meta.get("pruned_shapes"):  # decompressed from a channel-pruned .edc: its tensors give the widths
        from edgecv.models.reshape import fit_shapes

        fit_shapes(model, state)
    load_weights(model, weights, state=state)
    cfg["num_classes"] = int(num_classes or spec.num_classes)
    cfg["weights"] = str(weights)
    return model, cfg


def transfer_weights(model_name: str, weights: str | os.PathLike, *, num_classes: int,
                     seed: int = 0) -> tuple[nn.Module, dict[str, Any]]:
    """Transfer learning: the model ``weights`` stand for (any class count) with a freshly initialised
    head (seeded, the builder's init) for ``num_classes`` classes; every other tensor is loaded."""
    src, cfg = resolve_weights(model_name, weights, seed=seed)
    kw = cfg.get("model_kwargs", {})
    found = head_keys(model_name, **kw)
    if found is None or not found[1]:
        raise UserError(f"cannot find the classifier of {model_name} to re-initialise; train without --new-head")
    torch.manual_seed(seed)
    model = create_model(get_spec(model_name).name, num_classes=num_classes, **kw)
    state, kept = model.state_dict(), {k: v for k, v in src.state_dict().items() if k not in found[1]}
    resized = [k for k, v in kept.items() if k in state and v.shape != state[k].shape]
    if resized:  # a channel-pruned file: its widths are not the zoo's
        raise UserError(f"{weights}: {len(resized)} tensors (e.g. {resized[0]}) do not have {model_name}'s shapes "
                        f"(channel-pruned weights?); --new-head starts from the zoo's layer widths only")
    state.update(kept)
    model.load_state_dict(state)
    model.train()
    return model, {**cfg, "num_classes": int(num_classes), "new_head": found[1]}


def build(model_name: str, *, num_classes: int | None, weights: str | os.PathLike | None = None,
          seed: int = 0, **kwargs: Any) -> nn.Module:
    """create_model (seeded init) and, when given, strict loading of ``weights`` (a file or a table tag)."""
    return resolve_weights(model_name, weights, num_classes=num_classes, seed=seed, **kwargs)[0]


def environment() -> dict[str, Any]:
    return {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "threads": torch.get_num_threads()}


def weights_cfg(model_name: str, weights: str | os.PathLike | None) -> dict[str, Any]:
    """The configuration ``weights`` carry, without loading them: the table row's preprocessing for a
    tag, the sidecar's keys for a file, nothing for a random init."""
    from edgecv import pretrained

    if weights is None:
        return {}
    if pretrained.is_tag(weights):
        return pretrained.get(get_spec(model_name).name, str(weights)).preprocessing()
    meta = load_meta(weights)
    cfg = {k: meta[k] for k in PREPROCESSING if k in meta}
    if "model_kwargs" in cfg:
        cfg["model_kwargs"] = model_kwargs_of(meta, str(weights))
    return cfg


def _carry(cfg: dict[str, Any]) -> dict[str, Any]:
    """What a file made from these weights must carry so that it is read the same way again."""
    return {k: cfg[k] for k in ("model_kwargs", "resize", "interpolation") if cfg.get(k)}


def train_model(model_name: str, data: str, out: str | os.PathLike, cfg: TrainConfig, *,
                weights: str | None = None, input_size: int | None = None, limit: int | None = None,
                progress: Progress | None = None, resume: bool = False, new_head: bool = False) -> dict[str, Any]:
    """Train a zoo model on ``data``; save safetensors + JSON metadata (rank 0); return a report.

    With ``weights`` (a file or a table tag) training starts from them, with the model options and
    preprocessing they carry; ``new_head`` replaces their classifier by a fresh one for the data's
    classes (transfer learning, e.g. from a CIFAR-10 model to Tiny ImageNet). ``resume``: one process
    only; a checkpoint is written after every epoch (``.OUT.resume.safetensors`` beside ``out``,
    removed at the end) and an interrupted run continues from it to the same weights (without
    ``resume`` an old one is discarded)."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise UserError(f"output {out} must end in .safetensors")
    if new_head and weights is None:
        raise UserError("--new-head needs --weights to start from (a file or a table tag)")
    if weights is not None and Path(weights).resolve() == out.resolve():
        raise UserError(f"output {out} is the input weights file; choose another -o path")
    wcfg = weights_cfg(model_name, weights)
    dargs = data_args(wcfg, input_size)
    train_ds, info = data_for_model(model_name, data, "train", train=True, limit=limit, **dargs)
    if info.num_classes == 0:
        raise UserError(f"{data} holds unlabeled photos (no class folders): edgecv train needs labels; put them "
                        "in <class>/ folders, or recover a compressed model from them by distillation "
                        "(edgecv compress ... --data DIR --eval-data LABELED, a recipe with distill_from: original)")
    test_ds, _ = data_for_model(model_name, data, "test", train=False, **dargs)
    if new_head:
        model, wcfg = transfer_weights(model_name, weights, num_classes=info.num_classes, seed=cfg.seed)
    else:
        model, wcfg = resolve_weights(model_name, weights, num_classes=info.num_classes, seed=cfg.seed)
    ckpt = out.with_name(f".{out.name}.resume.safetensors") if resume else None
    if not resume:
        out.with_name(f".{out.name}.resume.safetensors").unlink(missing_ok=True)
    t0 = time.perf_counter()
    history = train(model, train_ds, cfg, progress=progress, checkpoint=ckpt)
    seconds = time.perf_counter() - t0
    report: dict[str, Any] = {"model": get_spec(model_name).name, "data": str(data), "num_classes": info.num_classes,
                              "input_size": list(next(iter(train_ds))[0].shape), "mean": list(info.mean),
                              "std": list(info.std), **_carry(wcfg), "train": {**vars(cfg)}, "history": history,
                              "train_seconds": seconds, "world_size": D.world_size(), "env": environment()}
    if weights is not None:
        report["init_weights"] = wcfg.get("weights", str(weights))
        if new_head:
            report["new_head"] = wcfg["new_head"]
    if D.is_main():
        report["test"] = evaluate(model, test_ds, progress=progress)
        save_checkpoint(model, out, report)
        report["weights"] = str(out)
        if ckpt is not None:
            ckpt.unlink(missing_ok=True)
    D.barrier()
    return report


def evaluate_model(model_name: str, weights: str | None, data: str, *, split: str = "test",
                   input_size: int | None = None, limit: int | None = None, batch_size: int = 256,
                   mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                   device: str = "cpu", progress: Progress | None = None) -> dict[str, Any]:
    """Top-1/top-5/images-per-second of a model (with ``weights``: a file or a table tag) on ``data``,
    preprocessed as the weights say (explicit ``mean``/``std``/``input_size`` win). ``model_name`` may
    also be a compressed ``.edc`` file or a checkpoint whose metadata names its model."""
    compressed, model_name, weights = _eval_source(model_name, weights)
    cfg = compressed[1] if compressed else weights_cfg(model_name, weights)
    dargs = data_args(cfg, input_size)
    if mean is not None and std is not None:
        dargs["mean"], dargs["std"] = mean, std
    ds, info = data_for_model(model_name, data, split, train=False, limit=limit, **dargs)
    if compressed:
        model, wcfg = compressed[0], {"weights": str(compressed[2])}
        n = int(cfg.get("num_classes", get_spec(model_name).num_classes))
        if n != info.num_classes:
            raise UserError(f"{compressed[2]} holds a {n}-class {model_name}, {data} has {info.num_classes} classes")
    else:
        model, wcfg = resolve_weights(model_name, weights, num_classes=info.num_classes)
    res = evaluate(model, ds, batch_size=batch_size, device=device, progress=progress)
    return {"model": get_spec(model_name).name, "weights": wcfg.get("weights", str(weights) if weights else None),
            "data": str(data), "split": split, "input_size": list(info.input_shape), "mean": list(info.mean),
            "std": list(info.std), **res, "env": environment()}


def _eval_source(source: str, weights: str | None) -> tuple[tuple[nn.Module, dict[str, Any], Path] | None, str, str | None]:
    """(decoded model, its metadata, path) for an .edc file, else None; the model name; the weights."""
    path = Path(str(source))
    if path.suffix == ".edc" or (path.is_file() and path.read_bytes()[:8] == b"EDGECVDC"):
        if weights is not None:
            raise UserError(f"{path} already holds its weights; drop --weights")
        if not path.is_file():
            raise UserError(f"compressed file {path} not found")
        from edgecv.pipeline import load_compressed

        model, meta = load_compressed(path)
        return (model, meta, path), str(meta["model"]), None
    if path.suffix in (".safetensors", ".pth", ".pt", ".th") and path.is_file():
        if weights is not None:
            raise UserError(f"{path} is already a checkpoint; pass MODEL --weights FILE or the checkpoint alone")
        name = load_meta(path).get("model")
        if not name:
            raise UserError(f"cannot tell which model {path} holds (no 'model' in its metadata); "
                            f"pass the model name: edgecv eval MODEL --weights {path}")
        return None, str(name), str(path)
    return None, source, weights


def compress_data(spec: Any, data: str, *, calib_n: int, input_size: int | None, train_limit: int | None,
          eval_limit: int | None, dargs: dict[str, Any], eval_data: str | None = None,
          train_size: int | None = None) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
    """(train, eval, calibration, info, notes). Calibration images never overlap the evaluation set:
    a train slice (evaluation transforms), or for a single image set (imagenet-samples) the first
    ``calib_n`` of a stratified order with the evaluation on the rest (no train set then).
    ``eval_data``: measure on this dataset instead of ``data``'s test split (fine-tune on Tiny
    ImageNet, measure on the ImageNet samples); ``train_size``: fine-tuning image side."""
    from edgecv.data import calibration_split

    dargs = {**dargs, "input_size": input_size or dargs.get("input_size")}
    train_ds = calib_ds = None
    notes: dict[str, Any] = {}
    try:
        tr_args = {**dargs, "input_size": train_size} if train_size else dargs
        train_ds, tinfo = data_for_model(spec.name, data, "train", train=True, limit=train_limit, **tr_args)
    except UserError as e:
        if "single image set" not in str(e):  # pick_split's refusal: no train split to draw from
            raise
        notes["train"] = "none: a single image set"
    if train_ds is not None and train_size:
        notes["train_size"] = f"fine-tuned at {train_size} px"
    eval_ds, info = data_for_model(spec.name, eval_data or data, "test", train=False, limit=eval_limit, **dargs)
    if eval_data is not None:
        if train_ds is None:
            raise UserError(f"--eval-data {eval_data} needs a --data with a training split to fine-tune on; "
                            f"{data} has none")
        if tinfo.num_classes not in (0, info.num_classes):  # 0: unlabeled photos (distillation only)
            raise UserError(f"--data {data} has {tinfo.num_classes} classes but --eval-data {eval_data} "
                            f"has {info.num_classes}; pick datasets with the same labels (e.g. tiny-imagenet "
                            "with imagenet-samples)")
        notes["evaluation"] = f"{len(eval_ds)} images of {eval_data} (fine-tuning on {data})"
        if tinfo.num_classes == 0:
            notes["train"] = f"{len(train_ds)} unlabeled photos (distillation from the uncompressed model only)"
    if calib_n and train_ds is not None:
        calib_ds, _ = data_for_model(spec.name, data, "train", train=False, limit=calib_n, **dargs)
        notes["calibration"] = f"{len(calib_ds)} training images (stratified slice), evaluation transforms"
    elif calib_n:
        calib_ds, eval_ds, info = calibration_split(data, calib_n, input_size=info.input_shape[-1], mean=info.mean,
                                                    std=info.std, resize=dargs.get("resize"),
                                                    interpolation=dargs.get("interpolation", "bilinear"))
        if eval_limit is not None and eval_limit < len(eval_ds):
            eval_ds = torch.utils.data.Subset(eval_ds, range(eval_limit))
        notes["calibration"] = (f"{len(calib_ds)} images held out of the single image set; "
                                f"evaluation on the other {len(eval_ds)}")
    return train_ds, eval_ds, calib_ds, info, notes
