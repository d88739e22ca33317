"""Shared pieces of the compression stages: the ``Context`` carried between stages, the
``Stage`` base class and its registry, and ``MaskedTraining`` (retraining that keeps pruned
weights at zero and shared weights shared).

Deep Compression (Han, Mao, Dally, ICLR 2016, arXiv:1510.00149) is a pipeline of stages:
pruning (Section 2, after Han et al. NIPS 2015), weight sharing by k-means with centroid
fine-tuning (Section 3, Eq. 3) and Huffman coding (Section 4). Each stage reads and extends
the ``Context``: pruning masks, shared codebooks, encoding choices, timings and a report.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from edgecv.errors import UserError
from edgecv.progress import NullProgress, Progress
from edgecv.registry import Registry

log = logging.getLogger(__name__)


@dataclass
class SharedWeight:
    """One weight tensor under weight sharing: ``weight == codebook[assign]`` exactly.

    ``codebook`` float32 [K] (K <= 2**bits); ``assign`` long, the weight's shape. In a pruned
    (sparse) layer ``codebook[0]`` is exactly 0.0 and reserved: pruned positions have
    ``assign == 0``, kept weights use 1..K-1 (the codec's filler entries decode to 0).
    """

    codebook: torch.Tensor
    assign: torch.Tensor
    bits: int
    sparse: bool = False

    def decode(self) -> torch.Tensor:
        return self.codebook[self.assign]


@dataclass
class Context:
    """State carried from stage to stage (see the module docstring)."""

    model_name: str | None = None
    train_data: Dataset | None = None
    eval_data: Dataset | None = None
    seed: int = 0
    device: str = "cpu"
    progress: Progress | None = None
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    shared: dict[str, SharedWeight] = field(default_factory=dict)
    encoding: dict[str, tuple[int, bool]] = field(default_factory=dict)
    raw_dtype: str = "float32"  # how float tensors without a code are stored (huffman stage)
    timings: dict[str, float] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    input_size: tuple[int, ...] | None = None  # (C, H, W); default: the zoo spec of model_name
    workers: int = 0
    original: nn.Module | None = None  # the frozen uncompressed model (teacher of `distill_from: original`)
    resume_dir: str | None = None  # per-epoch training checkpoints (`edgecv compress --resume`)
    train_runs: int = 0  # retraining runs so far (names their checkpoints)

    def __post_init__(self) -> None:
        if self.progress is None:
            self.progress = NullProgress()

    def unique_key(self, name: str) -> str:
        """``name``, or ``name#2``, ``name#3``... when a stage runs more than once."""
        key, i = name, 1
        while key in self.report or key in self.timings:
            i += 1
            key = f"{name}#{i}"
        return key

    def resolved_input_size(self) -> tuple[int, ...] | None:
        if self.input_size is not None:
            return tuple(self.input_size)
        if self.model_name:
            from edgecv.models import MODELS

            if self.model_name in MODELS:
                return tuple(MODELS.get(self.model_name).input_size)
        return None


@dataclass
class Origin:
    """Where a stage came from in a recipe file: file name, line of the item, and the line of
    each field (``"keep"``) and of each layer pattern (``("keep", "ip1")``)."""

    file: str
    line: int
    lines: dict[Any, int] = field(default_factory=dict)

    def at(self, key: Any = None) -> str:
        return f"{self.file}:{self.lines.get(key, self.line)}"


class Stage:
    """One compression step. Subclasses set ``name`` and ``Config`` (a dataclass) and implement
    ``_apply``; ``apply`` wraps it with the per-stage report entry and wall-time record."""

    name: ClassVar[str] = "stage"
    Config: ClassVar[type] = object

    def __init__(self, config: Any = None, *, origin: Origin | None = None) -> None:
        self.config = config if config is not None else self.Config()
        if not isinstance(self.config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}")
        self.origin = origin

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    def apply(self, model: nn.Module, ctx: Context) -> nn.Module:
        key = ctx.unique_key(self.name)
        entry: dict[str, Any] = {}
        ctx.report[key] = entry
        t0 = time.perf_counter()
        model = self._apply(model, ctx, entry)
        ctx.timings[key] = time.perf_counter() - t0
        log.info("%s done in %.2fs", key, ctx.timings[key])
        return model

    def _apply(self, model: nn.Module, ctx: Context, report: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    def patterns(self) -> dict[str, list[str]]:
        """Layer patterns this stage's config names, per field (fields marked ``targets``)."""
        out: dict[str, list[str]] = {}
        for f in fields(self.config):
            if not f.metadata.get("targets"):
                continue
            v = getattr(self.config, f.name)
            if isinstance(v, dict):
                out[f.name] = list(v)
            elif isinstance(v, (list, tuple)):
                out[f.name] = [str(x) for x in v]
            elif isinstance(v, str) and v not in _literal_words(type(self.config), f.name):
                out[f.name] = [v]  # a bare string is one pattern, unless it is a keyword such as "auto"
        return out

    def with_bits(self, bits: int) -> Stage:
        """A copy with its weight bit width set to ``bits`` (stages without one return self)."""
        return self


STAGES: Registry[type[Stage]] = Registry("stage")


def register_stage(cls: type[Stage]) -> type[Stage]:
    STAGES.add(cls.name, cls)
    return cls


def targets(*, meta: bool = True) -> dict[str, Any]:
    """``field(metadata=...)`` marker: the field holds layer patterns (dict keys or list items)."""
    return {"targets": meta}


def _literal_words(cls: type, name: str) -> set[str]:
    """The string ``Literal`` choices anywhere in the annotation of field ``name`` of ``cls``."""
    import typing

    words: set[str] = set()
    todo = [typing.get_type_hints(cls)[name]]
    while todo:
        tp = todo.pop()
        if typing.get_origin(tp) is typing.Literal:
            words.update(a for a in typing.get_args(tp) if isinstance(a, str))
        else:
            todo.extend(typing.get_args(tp))
    return words


# --------------------------------------------------------------------------- retraining
@dataclass
class TrainOptions:
    """Retraining settings shared by the stages (passed to ``edgecv.engine.train``).

    ``distill_from: original`` fine-tunes by distillation from the uncompressed model (the model
    the recipe started from, frozen): the loss is ``alpha * T^2 * H(teacher, student) + (1 - alpha)
    * CE(labels)`` (:mod:`edgecv.compress.distill`) with ``distill_temperature`` T and
    ``distill_alpha``; the default alpha 1.0 uses no labels at all, so any images of the right kind
    (Tiny ImageNet for an ImageNet model, a user's own photos) recover the compressed model.
    ``freeze_bn``: BatchNorm layers stay in eval mode while retraining (their affine parameters still
    learn): the running statistics then stay those of the original model instead of drifting to the
    fine-tuning images' (64-px Tiny ImageNet photos upsampled are blurrier than the deployment
    images), and small batches cannot disturb them."""

    lr: float = 0.001
    batch_size: int = 128
    weight_decay: float = 1e-4
    momentum: float = 0.9
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr_schedule: Literal["cosine", "constant", "step"] = "cosine"
    max_steps: int | None = None
    distill_from: Literal["none", "original"] = "none"
    distill_temperature: float = 4.0
    distill_alpha: float = 1.0
    freeze_bn: bool = False


class MaskedTraining:
    """Retraining that keeps pruned weights at zero and shared weights shared.

    Pruned weights: a gradient hook zeroes their gradient before the optimizer step and the
    step hook multiplies the weight by its mask after it, so neither momentum nor weight decay
    can revive them (Han et al. 2015, Section 3.3).

    Shared weights (Deep Compression Eq. 3, dL/dC_k = sum_{i: I_i = k} dL/dW_i): a gradient hook
    replaces the gradient of every member of cluster k by the SUM of the members' gradients.
    Members of a cluster then hold equal values, equal gradients and hence equal optimizer state,
    so any element-wise optimizer (SGD with momentum / weight decay, Adam) moves them together:
    each member moves exactly as its centroid would under centroid SGD with the optimizer's own
    learning-rate schedule. The hook is linear, so it commutes with DDP's gradient averaging.
    After each step, the step hook reads each centroid back from one member, pins
    ``codebook[0] = 0`` in sparse layers, and rewrites ``weight = codebook[assign]`` (removing any
    drift). ``centroid_reduce="mean"`` uses the members' mean gradient instead (a smaller step).

    Use as a context manager around ``engine.train(..., step_hooks=[mt.step_hook])``.
    """

    def __init__(self, model: nn.Module, ctx: Context, *, centroid_reduce: str = "sum") -> None:
        if centroid_reduce not in ("sum", "mean"):
            raise ValueError(f"centroid_reduce must be sum or mean, got {centroid_reduce!r}")
        self.model, self.ctx, self.reduce = model, ctx, centroid_reduce
        named = dict(model.named_parameters())
        missing = [n for n in (*ctx.masks, *ctx.shared) if n not in named]
        if missing:
            raise UserError(f"masks/shared weights name parameters the model lacks: {missing[:5]}; "
                            "was the model changed after pruning?")
        self._params = named
        self._handles: list[Any] = []
        self._dev_masks: dict[str, torch.Tensor] = {}
        self._dev_assign: dict[str, torch.Tensor] = {}
        self._reps: dict[str, torch.Tensor] = {}
        self._counts: dict[str, torch.Tensor] = {}

    def __enter__(self) -> MaskedTraining:
        for name, mask in self.ctx.masks.items():
            if name in self.ctx.shared:
                continue  # assign == 0 already encodes the mask
            p = self._params[name]
            m = mask.to(p.device)
            self._dev_masks[name] = m
            self._handles.append(p.register_hook(lambda g, m=m: g * m))
        for name, sw in self.ctx.shared.items():
            p = self._params[name]
            a = sw.assign.to(p.device).reshape(-1)
            k = sw.codebook.numel()
            self._dev_assign[name] = a
            self._counts[name] = torch.bincount(a, minlength=k)
            # one representative member (the first, in flat order) per non-empty cluster
            rep = torch.full((k,), a.numel(), dtype=torch.long, device=a.device)
            rep.scatter_reduce_(0, a, torch.arange(a.numel(), device=a.device), reduce="amin")
            self._reps[name] = rep
            self._handles.append(p.register_hook(lambda g, n=name: self._shared_grad(n, g)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _shared_grad(self, name: str, g: torch.Tensor) -> torch.Tensor:
        sw, a = self.ctx.shared[name], self._dev_assign[name]
        cg = centroid_gradient(g, a, sw.codebook.numel(), sparse=sw.sparse)
        if self.reduce == "mean":
            cg = cg / self._counts[name].clamp(min=1).to(cg.dtype)
        return cg.to(g.dtype)[a].reshape(g.shape)

    def params(self) -> list[nn.Parameter]:
        """The parameters to optimise (all trainable ones; shared weights move as clusters)."""
        return [p for p in self.model.parameters() if p.requires_grad]

    @torch.no_grad()
    def step_hook(self, model: nn.Module) -> None:
        for name, m in self._dev_masks.items():
            self._params[name].mul_(m)
        for name, sw in self.ctx.shared.items():
            p, a, rep = self._params[name], self._dev_assign[name], self._reps[name]
            flat = p.reshape(-1)
            nonempty = rep < flat.numel()
            cb = sw.codebook.to(p.device).clone()
            cb[nonempty] = flat[rep[nonempty]].to(cb.dtype)
            if sw.sparse:
                cb[0] = 0.0
            p.copy_(cb[a].reshape(p.shape).to(p.dtype))
            sw.codebook = cb.to(sw.codebook.device)


def centroid_gradient(grad: torch.Tensor, assign: torch.Tensor, k: int, *, sparse: bool = False) -> torch.Tensor:
    """Deep Compression Eq. 3: the gradient of centroid k is the sum of the gradients of the
    weights assigned to it (float64 accumulation). In sparse layers centroid 0 (the pruned
    zero) gets no gradient."""
    cg = torch.bincount(assign.reshape(-1), weights=grad.reshape(-1).double(), minlength=k)
    if sparse:
        cg[0] = 0.0
    return cg


def retrain(model: nn.Module, ctx: Context, opts: TrainOptions, epochs: int, *, what: str,
            centroid_reduce: str = "sum", loss_fn: Any = None) -> list[dict[str, Any]]:
    """Retrain ``model`` on ``ctx.train_data`` for ``epochs`` keeping masks and sharing.

    ``loss_fn``: ``engine.train``'s loss hook (default: cross-entropy; ``distill`` passes its own).
    Without training data (or with 0 epochs) nothing is trained and that is logged.
    """
    if epochs <= 0:
        return []
    if ctx.train_data is None:
        log.warning("%s: no training data, retraining skipped (pass a dataset to retrain)", what)
        return []
    from edgecv.engine import TrainConfig, train

    if loss_fn is None and opts.distill_from == "original":
        loss_fn = _original_teacher_loss(ctx, opts, what)
    if (loss_fn is None or getattr(loss_fn, "alpha", 0.0) < 1) and is_unlabeled(ctx.train_data):
        raise UserError(f"{what}: the training images have no labels (a folder of unlabeled photos) and this "
                        "stage trains on labels; set distill_from: original with distill_alpha: 1 (soft targets "
                        "of the uncompressed model only), or give labeled <class>/ folders")

    cfg = TrainConfig(epochs=epochs, batch_size=opts.batch_size, lr=opts.lr, optimizer=opts.optimizer,
                      momentum=opts.momentum, weight_decay=opts.weight_decay, schedule=opts.lr_schedule,
                      seed=ctx.seed, device=ctx.device, max_steps=opts.max_steps, workers=ctx.workers,
                      freeze_bn=opts.freeze_bn)
    model.to(ctx.device)
    ctx.train_runs += 1
    checkpoint = None
    if ctx.resume_dir is not None:  # the same recipe and seed give the same run numbers, so a rerun finds them
        import re
        from pathlib import Path

        slug = re.sub(r"[^a-z0-9]+", "-", what.lower()).strip("-")
        checkpoint = Path(ctx.resume_dir) / f"train{ctx.train_runs:02d}-{slug}.safetensors"
    with MaskedTraining(model, ctx, centroid_reduce=centroid_reduce) as mt:
        mt.step_hook(model)  # start from exactly masked / shared weights
        hist = train(model, ctx.train_data, cfg, step_hooks=[mt.step_hook], params=mt.params(),
                     progress=ctx.progress, loss_fn=loss_fn, checkpoint=checkpoint)
    log.info("%s: retrained %d epoch(s): %s", what, epochs, hist[-1] if hist else {})
    return hist


def _original_teacher_loss(ctx: Context, opts: TrainOptions, what: str) -> Any:
    from edgecv.compress.distill import DistillLoss

    if not opts.distill_temperature > 0 or not 0 <= opts.distill_alpha <= 1:
        raise UserError(f"{what}: distill_temperature must be > 0 and distill_alpha in [0, 1], got "
                        f"{opts.distill_temperature} and {opts.distill_alpha}")
    if ctx.original is None:
        raise UserError(f"{what}: distill_from: original needs the uncompressed model; run the stage through a "
                        "recipe (Recipe.run keeps a frozen copy) or set ctx.original")
    log.info("%s: distilling from the uncompressed model (T=%g, alpha=%g)", what, opts.distill_temperature,
             opts.distill_alpha)
    return DistillLoss(ctx.original.to(ctx.device), temperature=opts.distill_temperature, alpha=opts.distill_alpha)


def is_unlabeled(data: Any) -> bool:
    """True for a dataset whose labels are all -1 (an unlabeled photo folder; through Subsets too)."""
    while isinstance(data, torch.utils.data.Subset):
        data = data.dataset
    labels = getattr(data, "labels", None)
    return isinstance(labels, np.ndarray) and len(labels) > 0 and bool((labels < 0).all())


def check_unit(name: str, value: float, *, low_open: bool = True) -> None:
    """Raise UserError unless 0 < value <= 1 (or 0 <= value <= 1 with ``low_open=False``)."""
    ok = (0 < value <= 1) if low_open else (0 <= value <= 1)
    if not ok:
        rng = "(0, 1]" if low_open else "[0, 1]"
        raise UserError(f"{name} must be in {rng}, got {value}")


def unlabeled_images(ctx: Context, n: int) -> torch.Tensor | None:
    """Up to ``n`` images (labels dropped) spread evenly over the training data, else the calibration
    data, so every class of a class-sorted folder is seen; None when the context has neither."""
    data = ctx.train_data if ctx.train_data is not None else getattr(ctx, "calib_data", None)
    if data is None or n <= 0:
        return None
    from edgecv.export.calib import spread

    return torch.stack([data[int(i)][0] for i in spread(len(data), min(n, len(data)))])
