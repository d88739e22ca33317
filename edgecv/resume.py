"""Per-epoch training checkpoints, so that an interrupted fine-tuning continues where it stopped and
ends in the same weights as an uninterrupted run.

One safetensors file per training run holds, after each finished epoch: the model's state_dict,
the optimizer's tensors, the data order (the DataLoader generator's state) and the random states
(torch's and the augmentation's numpy generators, :class:`edgecv.data.transforms.RandomState`);
the non-tensor parts (epoch, step, history, optimizer settings) are JSON in the file's metadata.
Nothing is pickled, so a checkpoint is safe to read. Written with a temp file + rename: a kill
during the write leaves the previous epoch's checkpoint.

torch's own ``torch.save`` checkpoints would pickle the optimizer and RNG objects; safetensors +
JSON keeps the "never unpickle" rule for files on disk.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from edgecv.errors import UserError

log = logging.getLogger(__name__)


def random_states(ds: Any, depth: int = 4) -> list[Any]:
    """The augmentation RandomStates reachable from a dataset (Subset.dataset, .transform, Compose)."""
    from edgecv.data.transforms import RandomState

    found: list[Any] = []

    def walk(obj: Any, d: int) -> None:
        if d < 0 or obj is None:
            return
        if isinstance(obj, RandomState):
            if not any(obj is f for f in found):
                found.append(obj)
            return
        if isinstance(obj, (list, tuple)):
            for o in obj:
                walk(o, d - 1)
            return
        for attr in ("dataset", "datasets", "transform", "transforms", "rng"):
            if hasattr(obj, attr) and not isinstance(obj, (str, bytes)):
                walk(getattr(obj, attr), d - 1)

    walk(ds, depth)
    return found


def save(path: str | os.PathLike, *, model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator,
         rngs: list[Any], epoch: int, step: int, history: list[dict[str, Any]], key: str) -> None:
    from safetensors.torch import save_file

    from edgecv.checkpoint import atomic_write

    tensors: dict[str, torch.Tensor] = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    sd = opt.state_dict()
    opt_meta: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"opt.{idx}.{name}"] = v.detach().cpu().contiguous()
            else:
                opt_meta.setdefault(str(idx), {})[name] = v
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.loader"] = gen.get_state()
    meta = {"key": key, "epoch": epoch, "step": step, "history": history, "param_groups": sd["param_groups"],
            "opt_scalars": opt_meta, "aug": [r.get_state() for r in rngs]}
    text = {"edgecv_resume": json.dumps(meta, default=str)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=text))


def load(path: str | os.PathLike, *, model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator,
         rngs: list[Any], key: str) -> tuple[int, int, list[dict[str, Any]]]:
    """Restore what :func:`save` wrote; returns (epochs done, steps done, history)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["edgecv_resume"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # a foreign or damaged file: start over rather than trust it
        raise UserError(f"resume checkpoint {path} is unreadable ({type(e).__name__}); delete it to start over") from None
    if meta.get("key") != key or len(meta.get("aug", [])) != len(rngs):
        raise UserError(f"resume checkpoint {path} was made by another training run; delete it or run without --resume")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for idx, scalars in meta["opt_scalars"].items():
        state.setdefault(int(idx), {}).update(scalars)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    gen.set_state(tensors["rng.loader"])
    for r, st in zip(rngs, meta["aug"]):
        r.set_state(st)
    log.info("resumed %s after epoch %d (step %d) from %s", key, meta["epoch"], meta["step"], path)
    return int(meta["epoch"]), int(meta["step"]), list(meta["history"])


def run_dir(out: str | os.PathLike) -> Path:
    """Where ``edgecv compress -o OUT`` keeps its training checkpoints: ``.OUT.resume/`` beside OUT."""
    out = Path(out)
    return out.with_name(f".{out.name}.resume")


def output_lock(out: str | os.PathLike) -> Path:
    """The lock file that serialises runs writing ``out``: in edgecv's cache (``$EDGECV_CACHE/locks``),
    named by the output's absolute path, so nothing extra appears beside the output."""
    import hashlib

    from edgecv.data.sources import cache_root

    key = hashlib.sha256(str(Path(out).resolve()).encode()).hexdigest()[:24]
    return cache_root() / "locks" / f"compress-{key}.lock"


def prepare_run_dir(out: Path, run: dict[str, Any], resume: bool) -> Path:
    """The checkpoint folder of this run; with ``resume`` it must have been made by the same inputs."""
    from edgecv.checkpoint import write_json

    rdir = run_dir(out)
    stamp = rdir / "run.json"
    if rdir.exists():
        same = stamp.is_file() and json.loads(stamp.read_text() or "{}") == json.loads(json.dumps(run))
        if resume and not same:
            raise UserError(f"--resume: {rdir} holds checkpoints of a run with other inputs (model, recipe, weights, "
                            f"data, seed or limits); rerun with those, or without --resume to start over")
        if not resume:
            shutil.rmtree(rdir)
    elif resume:
        log.warning("--resume: no checkpoints in %s, starting from the beginning", rdir)
    rdir.mkdir(parents=True, exist_ok=True)
    if not stamp.is_file():
        write_json(stamp, run)
    return rdir
