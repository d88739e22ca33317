"""``edgecv compress``: model -> recipe stages -> a Deep-Compression file, verified and measured.

The size reported is the file's size on disk, byte for byte. The file is decoded again before
anything is reported: the decoded weights must equal the compressed model's bit for bit, and
accuracy "after" is measured on the decoded model.
"""
from __future__ import annotations

import copy
import importlib.resources
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgecv.errors import UserError
from edgecv.models import create_model, get_spec
from edgecv.progress import Progress

log = logging.getLogger(__name__)

RECIPE_DIR = Path(str(importlib.resources.files("edgecv") / "recipes"))  # shipped in the package (wheel too)
GENERIC_RECIPE = "deep_compression_generic"
EXIT_ACCURACY_DROP = 3  # distinct exit code of `edgecv compress/gate` when the drop exceeds --max-drop


def default_recipe(model_name: str) -> str:
    """The recipe in recipes/ whose ``model:`` is this model, else the generic Deep Compression one."""
    import yaml

    name = get_spec(model_name).name
    for p in sorted(RECIPE_DIR.glob("*.yaml")):
        try:
            top = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError:
            continue
        if isinstance(top, dict) and top.get("model") == name:  # first in name order: squeezenet_dc before squeezenet_dc_cifar10
            return str(p)
    return str(RECIPE_DIR / f"{GENERIC_RECIPE}.yaml")


def float32_bytes(state: dict[str, torch.Tensor]) -> int:
    """Size of the model's floating-point tensors stored as float32 (the papers' "original size")."""
    return sum(4 * t.numel() for t in state.values() if t.is_floating_point())




@torch.no_grad()
def _measure(model: nn.Module, ds: Any, progress: Progress | None) -> tuple[dict[str, float], torch.Tensor]:
    """Top-1 / top-5 (%) and the top-1 predictions (engine.evaluate gives no predictions, and the
    before/after agreement needs them)."""
    from edgecv.progress import NullProgress

    progress = progress or NullProgress()
    model.eval()
    loader = torch.utils.data.DataLoader(ds, batch_size=256, shuffle=False)
    preds, c1, c5, n = [], 0, 0, 0
    progress.start("evaluate", len(loader))
    for x, y in loader:
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        top = out.topk(min(5, out.shape[1]), dim=1).indices
        preds.append(top[:, 0])
        c1 += int((top[:, 0] == y).sum())
        c5 += int((top == y[:, None]).any(1).sum())
        n += len(y)
        progress.advance(1, top1=100.0 * c1 / n)
    progress.stop()
    return {"top1": 100.0 * c1 / max(1, n), "top5": 100.0 * c5 / max(1, n), "n": n}, torch.cat(preds)


def build_decoded(state: dict[str, torch.Tensor], meta: dict[str, Any], *, fake_quant: bool = True,
                  model: nn.Module | None = None) -> nn.Module:
    """The model a compressed file stands for: ``model`` (a user's module of the same architecture,
    filled in place) or else the zoo model (with the create_model options in its meta), its
    quantizers re-inserted when the file holds a quantized model, the decoded weights loaded
    strictly. ``fake_quant=False``: the plain float model with the integer-grid weights and
    without activation quantizers."""
    from edgecv.compress.quantize import HOOK_PREFIX, restore_fake_quant
    from edgecv.models import check_state_dict
    from edgecv.workflows import model_kwargs_of

    if model is None:
        if "model" not in meta:
            what = meta.get("architecture") or "a model outside the zoo"
            raise UserError(f"the compressed file holds {what}, not a zoo model: pass the model to fill, "
                            "edgecv.load(FILE, model=MyNet()), or its import path on the command line")
        spec = get_spec(meta["model"])
        kwargs = model_kwargs_of(meta, "the compressed file's metadata")
        model = create_model(spec.name, num_classes=int(meta.get("num_classes", spec.num_classes)), **kwargs)
    if meta.get("pruned_shapes"):  # channel-pruned: the tensors' shapes are the model's new widths
        from edgecv.models.reshape import fit_shapes

        fit_shapes(model, state)
    if fake_quant and meta.get("quantizers"):
        model = restore_fake_quant(model, meta["quantizers"])
    elif not fake_quant or not meta.get("quantizers"):
        state = {k: v for k, v in state.items() if not k.startswith(HOOK_PREFIX)}
    check_state_dict(model, state, source="the compressed file")
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_compressed(path: str | os.PathLike, *, fake_quant: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """Read a compressed file and rebuild its model (see ``build_decoded``)."""
    from edgecv.codec import read_file

    state, meta = read_file(path)
    return build_decoded(state, meta, fake_quant=fake_quant), meta


def check_gate(report: dict[str, Any], max_drop: float) -> dict[str, Any]:
    """The accuracy gate: passed when the top-1 drop (percentage points) is at most ``max_drop``."""
    acc = report.get("accuracy") if isinstance(report, dict) else None
    if not isinstance(acc, dict) or not isinstance(acc.get("drop"), (int, float)):
        raise UserError("the report holds no accuracy (was it made with --data?); the gate needs top-1 before/after")
    return {"max_drop": max_drop, "passed": acc["drop"] <= max_drop}


@dataclass
class Compressed:
    """What :func:`compress_module` made: the compressed model, the file's bytes (decoded and checked
    bit for bit against the model), its metadata and the report (sizes, stages, accuracy)."""

    model: nn.Module
    blob: bytes
    meta: dict[str, Any]
    report: dict[str, Any]


def compress_module(model: nn.Module, rec: Any, *, meta: dict[str, Any], train_ds: Any = None, eval_ds: Any = None,
                    calib_ds: Any = None, seed: int = 0, input_size: tuple[int, int, int] | None = None,
                    model_name: str | None = None, teacher: nn.Module | None = None,
                    template: nn.Module | None = None, progress: Progress | None = None,
                    resume_dir: str | os.PathLike | None = None, device: str = "cpu", workers: int = 0) -> Compressed:
    """Run the recipe ``rec`` on ``model`` (any ``nn.Module``; recipe targets are module-name patterns
    and the selectors conv / fc), encode the result and check the encoding.

    ``meta``: what the file records (``model`` for a zoo model, ``architecture``, preprocessing...);
    ``input_size`` (C, H, W) for the stages that trace the model; ``teacher``: the module the recipe's
    ``distill`` stages learn from; ``template``: an untouched copy of a user's model (the "after"
    accuracy is measured on it filled with the decoded weights; default: a zoo model from ``meta``).
    ``device`` / ``workers``: where the retraining steps run (e.g. ``cuda``) and their data-loader
    processes; every other step, the encoding and the accuracy measurement run on the CPU.
    """
    from edgecv.codec import decode_model, encode_model, inspect
    from edgecv.compress import Context, quant_codes, quantizer_meta, to_layer_codes

    timings: dict[str, float] = {}
    original = float32_bytes(model.state_dict())
    acc_before = preds_before = None
    if eval_ds is not None:
        t0 = time.perf_counter()
        acc_before, preds_before = _measure(model, eval_ds, progress)
        timings["eval_before"] = time.perf_counter() - t0
    _attach_teacher(rec, teacher)
    ctx = Context(model_name=model_name, train_data=train_ds, eval_data=eval_ds, seed=seed, progress=progress,
                  input_size=input_size, resume_dir=None if resume_dir is None else str(resume_dir),
                  device=device, workers=workers)
    ctx.calib_data = calib_ds  # type: ignore[attr-defined]  # read by the quantize stage
    shapes0 = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    t0 = time.perf_counter()
    model = rec.run(model, ctx)
    timings["stages"] = time.perf_counter() - t0
    timings.update({f"stage.{k}": v for k, v in ctx.timings.items()})

    t0 = time.perf_counter()
    meta = dict(meta)
    reshaped = sum(1 for k, v in model.state_dict().items() if k in shapes0 and tuple(v.shape) != shapes0[k])
    if reshaped:  # structured pruning: decoding rebuilds the widths from the stored shapes
        meta["pruned_shapes"] = reshaped
    qmeta = quantizer_meta(model)
    if qmeta:
        meta["quantizers"] = qmeta
    codes = to_layer_codes(model, ctx)
    state = model.state_dict()
    for name, code in quant_codes(ctx).items():
        if name in ctx.masks or name in ctx.shared:
            continue  # the pruned / shared layout stores these grid values already
        if not torch.equal(torch.from_numpy(code.to_numpy()), state[name].detach().cpu()):
            raise UserError(f"{name} changed after the quantize stage; put quantize after every training stage")
        codes[name] = code
    blob = encode_model(codes, meta)
    timings["encode"] = time.perf_counter() - t0

    # verify: decode what will be written and compare bit for bit with the compressed model
    t0 = time.perf_counter()
    decoded, _ = decode_model(blob)
    bad = [k for k, v in state.items()  # a float16/bfloat16 raw tensor widens back exactly
           if k not in decoded or not torch.equal(decoded[k].to(v.dtype), v.detach().cpu())]
    if bad or set(decoded) != set(state):
        raise RuntimeError(f"decoded weights differ from the compressed model: {bad[:3]}")
    timings["decode_verify"] = time.perf_counter() - t0
    table = inspect(blob)

    acc_after = preds_after = None
    if eval_ds is not None:
        t0 = time.perf_counter()
        fresh = build_decoded(decoded, meta, model=copy.deepcopy(template) if template is not None else None)
        acc_after, preds_after = _measure(fresh, eval_ds, progress)
        timings["eval_after"] = time.perf_counter() - t0

    report: dict[str, Any] = {
        "original_bytes": original, "compressed_bytes": len(blob), "ratio": original / len(blob),
        "header_bytes": table["totals"].get("header_bytes"), "layers": table["rows"], "totals": table["totals"],
        "stages": ctx.report, "timings_s": timings, "file_holds": _file_holds(codes, qmeta),
    }
    if acc_before is not None and acc_after is not None:
        report["accuracy"] = {"before": acc_before["top1"], "after": acc_after["top1"],
                              "drop": acc_before["top1"] - acc_after["top1"],
                              "top5_before": acc_before["top5"], "top5_after": acc_after["top5"],
                              "top5_drop": acc_before["top5"] - acc_after["top5"],
                              "agreement": 100.0 * float((preds_before == preds_after).float().mean()),
                              "n": acc_after["n"]}
    return Compressed(model, blob, meta, report)


def _attach_teacher(rec: Any, teacher: nn.Module | None) -> None:
    """Give ``teacher`` to the recipe's distill stages; a distill stage without any teacher is refused."""
    distills = [st for st in rec.stages if st.name == "distill"]
    if teacher is not None and not distills:
        raise UserError("a teacher was given but the recipe has no distill stage; add `- distill: {epochs: 1}` "
                        "to the recipe or drop the teacher")
    for st in distills:
        if teacher is not None:
            st.teacher_model = teacher
        elif st.teacher_model is None and not st.config.teacher:
            where = f"{st.origin.at()}: " if st.origin else ""
            raise UserError(f"{where}distill has no teacher: name a zoo model (`teacher: resnet56`, "
                            "`teacher_weights: FILE`) or pass teacher= to edgecv.compress")


def compress(
    model_name: str,
    *,
    out: str | os.PathLike,
    recipe: str | None = None,
    bits: int | None = None,
    weights: str | os.PathLike | None = None,
    data: str | None = None,
    seed: int = 0,
    eval_limit: int | None = None,
    train_limit: int | None = None,
    input_size: int | None = None,
    progress: Progress | None = None,
    resume: bool = False,
    eval_data: str | None = None,
    train_size: int | None = None,
    device: str = "cpu",
    workers: int = 0,
) -> dict[str, Any]:
    """Run ``recipe`` on ``model_name`` and write the compressed file to ``out``.

    Training stages checkpoint every epoch in ``.OUT.resume/`` beside ``out`` (removed when the file
    is written); ``resume=True`` continues an interrupted run from there, to the same file as an
    uninterrupted run with the same inputs and seed (without it, old checkpoints are discarded).

    ``model_name``: a zoo name, or a user's model by import path (``mypkg.nets:build_net``, see
    :func:`edgecv.compress`). ``weights``: a weights file, or a tag of :mod:`edgecv.pretrained`
    (``imagenet``, ``pretrained``). Returns the report (also the content of ``--json``): model, recipe,
    original_bytes, compressed_bytes (= file size), ratio, layers, per-stage timings, and with ``data``
    the accuracy before/after (top-1, top-5, drop, agreement of the top-1 predictions, n).
    ``eval_data``: measure on this dataset instead of ``data``'s test split; ``train_size``: fine-tune
    at this image side (e.g. 160 for a 224 model: ~3x faster on a CPU; FixRes, Touvron et al. 2019,
    shows training below the test resolution costs little). ``device`` (``cpu``, ``cuda``, ``cuda:N``)
    and ``workers``: where the fine-tuning steps run and how many data-loader processes feed them.
    """
    from edgecv.checkpoint import atomic_write
    from edgecv.compress import load_recipe
    from edgecv.pretrained import is_tag
    from edgecv.usermodel import is_import_path
    from edgecv.resume import prepare_run_dir
    from edgecv.workflows import compress_data, data_args, environment, resolve_weights, weights_cfg

    if bits is not None and not 1 <= bits <= 16:
        raise UserError(f"--bits must be between 1 and 16 (8 and 6 are the papers' settings), got {bits}")
    check_device(device)
    if not 0 <= workers <= 64:
        raise UserError(f"--workers must be between 0 and 64 (data-loader processes), got {workers}")
    out = Path(out)
    if weights is not None and not is_tag(weights) and Path(weights).resolve() == out.resolve():
        raise UserError(f"output {out} is the input weights file; choose another -o path")
    if is_import_path(model_name):
        from edgecv.api import compress as api_compress

        if train_size:
            raise UserError("--train-size works with zoo models; for your own model pass a DataLoader at that size "
                            "to edgecv.compress(train=...)")
        res = api_compress(model_name, recipe or GENERIC_RECIPE, train=data, eval=eval_data or data, weights=weights, bits=bits,
                           seed=seed, input_size=input_size, eval_limit=eval_limit, train_limit=train_limit,
                           progress=progress)
        res.save(out)
        return res.report
    spec = get_spec(model_name)
    wcfg = weights_cfg(spec.name, weights)  # the preprocessing and model options the weights carry
    recipe_path = recipe or default_recipe(spec.name)
    rec = load_recipe(recipe_path)
    if bits is not None:
        rec = rec.with_bits(bits)
    _attach_teacher(rec, None)  # a distill stage without a teacher fails now, not after the other stages
    calib_n = max((st.config.calib_size for st in rec.stages if st.name == "quantize"), default=0)
    torch.manual_seed(seed)
    timings: dict[str, float] = {}
    unmeasured: list[str] = []

    train_ds = eval_ds = calib_ds = None
    num_classes = None
    notes: dict[str, Any] = {}
    if data is not None:
        t0 = time.perf_counter()
        train_ds, eval_ds, calib_ds, info, notes = compress_data(
            spec, data, calib_n=calib_n, input_size=input_size, train_limit=train_limit, eval_limit=eval_limit,
            dargs=data_args(wcfg), eval_data=eval_data, train_size=train_size)
        num_classes = info.num_classes
        timings["load_data"] = time.perf_counter() - t0
    else:
        unmeasured.append("accuracy (no --data: pass --data mnist|cifar10|imagenet-samples|PATH to fine-tune and measure)")
        if calib_n:
            raise UserError("the recipe quantizes, which needs calibration images: pass --data")
    if weights is None:
        unmeasured.append("trained weights (no --weights: a randomly initialised model was compressed; "
                          "the sizes are real, pass --weights FILE for a trained model)")
    model, wcfg = resolve_weights(spec.name, weights, num_classes=num_classes, seed=seed)
    model_kwargs = dict(wcfg.get("model_kwargs") or {})
    size = (spec.input_size[0], input_size, input_size) if input_size else tuple(spec.input_size)

    meta = {"model": spec.name, "recipe": Path(recipe_path).stem if Path(recipe_path).exists() else "inline",
            "bits": bits, "seed": seed, "num_classes": int(num_classes or spec.num_classes),
            "input_size": list(size), "edgecv": "0.1.0"}
    if data is not None:
        meta.update({"mean": list(info.mean), "std": list(info.std), "data": str(data)})
        if eval_data is not None:
            meta["eval_data"] = str(eval_data)
    elif wcfg.get("mean") and wcfg.get("std"):
        meta.update({"mean": list(wcfg["mean"]), "std": list(wcfg["std"])})
    for key in ("resize", "interpolation"):
        if wcfg.get(key):
            meta[key] = wcfg[key]
    if "input_size" in wcfg and not input_size:
        meta["input_size"] = list(wcfg["input_size"])
    if wcfg.get("weights"):
        meta["weights"] = str(wcfg["weights"])
    if model_kwargs:
        meta["model_kwargs"] = model_kwargs
    run = {"model": spec.name, "recipe": Path(recipe_path).read_text() if Path(recipe_path).is_file() else str(recipe_path),
           "bits": bits, "weights": str(weights), "data": data, "seed": seed, "eval_limit": eval_limit,
           "train_limit": train_limit, "input_size": input_size, "eval_data": eval_data, "train_size": train_size}
    from edgecv.fsutil import file_lock
    from edgecv.resume import output_lock

    with file_lock(output_lock(out)):  # two compresses to one output take turns (checkpoints and file)
        rdir = prepare_run_dir(out, run, resume)
        try:
            res = compress_module(model, rec, meta=meta, train_ds=train_ds, eval_ds=eval_ds, calib_ds=calib_ds,
                                  seed=seed, input_size=(spec.input_size[0], input_size, input_size) if input_size else None,
                                  model_name=spec.name, progress=progress, resume_dir=rdir, device=device,
                                  workers=workers)
            atomic_write(out, lambda tmp: Path(tmp).write_bytes(res.blob), nbytes=len(res.blob))
        except BaseException:
            if not any(rdir.glob("train*.safetensors")):  # nothing to resume from: leave nothing behind
                shutil.rmtree(rdir, ignore_errors=True)
            raise
        shutil.rmtree(rdir, ignore_errors=True)
    timings.update(res.report.pop("timings_s"))
    size_b = out.stat().st_size
    report: dict[str, Any] = {
        "model": spec.name, "recipe": meta["recipe"], "recipe_path": str(recipe_path), "bits": bits,
        "weights": wcfg.get("weights", str(weights) if weights else None), "data": data, "eval_data": eval_data,
        "train_size": train_size, "file": str(out),
        **res.report, "compressed_bytes": size_b, "ratio": res.report["original_bytes"] / size_b,
        "timings_s": timings, "unmeasured": unmeasured, "seed": seed, "env": environment(),
    }
    if notes:
        report["data_notes"] = notes
    return report


def check_device(device: str) -> None:
    """Refuse a training device torch cannot use here, in one line."""
    import re

    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise UserError(f"--device must be cpu, cuda or cuda:N, got {device!r}")
    if device.startswith("cuda"):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        idx = int(device.split(":")[1]) if ":" in device else 0
        if idx >= n:
            raise UserError(f"--device {device}: this machine's torch sees {n} CUDA device(s) "
                            f"(torch {torch.__version__}); use --device cpu or a CUDA build of torch")


def _file_holds(codes: dict[str, Any], qmeta: dict[str, Any] | None) -> dict[str, int]:
    """How many tensors of each kind the file stores (and whether it rebuilds a fake-quant model)."""
    from edgecv.codec import AffineCode, LayerCode

    out = {"affine_int": 0, "codebook": 0, "raw": 0}
    for v in codes.values():
        out["affine_int" if isinstance(v, AffineCode) else "codebook" if isinstance(v, LayerCode) else "raw"] += 1
    out["activation_quantizers"] = sum(len(names) for _, names in qmeta["hooks"]) if qmeta else 0
    return out


def decompress(path: str | os.PathLike, out: str | os.PathLike) -> dict[str, Any]:
    """Decode a compressed file into a safetensors checkpoint (+ JSON metadata)."""
    from edgecv.checkpoint import save_checkpoint
    from edgecv.codec import read_file

    path, out = Path(path), Path(out)
    if path.resolve() == out.resolve():
        raise UserError(f"output {out} is the input file; choose another -o path")
    tensors, meta = read_file(path)
    save_checkpoint(tensors, out, {**meta, "decompressed_from": str(path)})
    return {"file": str(path), "out": str(out), "tensors": len(tensors), "meta": meta}

