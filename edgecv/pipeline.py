"""``edgecv compress``: model -> recipe stages -> a Deep-Compression file, verified and measured.

The size reported is the file's size on disk, byte for byte. The file is decoded again before
anything is reported: the decoded weights must equal the compressed model's bit for bit, and
accuracy "after" is measured on the decoded model.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from edgecv.errors import UserError
from edgecv.models import create_model, get_spec
from edgecv.progress import Progress

log = logging.getLogger(__name__)

RECIPE_DIR = Path(__file__).resolve().parents[1] / "recipes"
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
) -> dict[str, Any]:
    """Run ``recipe`` on ``model_name`` and write the compressed file to ``out``.

    Returns the report (also the content of ``--json``): model, recipe, original_bytes,
    compressed_bytes (= file size), ratio, layers, and accuracy before/after when ``data`` is given.
    """
    from edgecv.codec import decode_model, encode_model, inspect
    from edgecv.checkpoint import atomic_write
    from edgecv.compress import Context, load_recipe, to_layer_codes
    from edgecv.workflows import build, data_for_model, environment

    if bits is not None and not 1 <= bits <= 16:
        raise UserError(f"--bits must be between 1 and 16 (8 and 6 are the papers' settings), got {bits}")
    out = Path(out)
    if weights is not None and Path(weights).resolve() == out.resolve():
        raise UserError(f"output {out} is the input weights file; choose another -o path")
    spec = get_spec(model_name)
    recipe_path = recipe or default_recipe(spec.name)
    rec = load_recipe(recipe_path)
    if bits is not None:
        rec = rec.with_bits(bits)
    torch.manual_seed(seed)
    timings: dict[str, float] = {}
    unmeasured: list[str] = []

    train_ds = eval_ds = None
    num_classes = None
    if data is not None:
        t0 = time.perf_counter()
        train_ds, info = data_for_model(spec.name, data, "train", train=True, input_size=input_size, limit=train_limit)
        eval_ds, _ = data_for_model(spec.name, data, "test", train=False, input_size=input_size, limit=eval_limit)
        num_classes = info.num_classes
        timings["load_data"] = time.perf_counter() - t0
    else:
        unmeasured.append("accuracy (no --data: pass --data mnist|cifar10|imagenet-samples|PATH to fine-tune and measure)")
    if weights is None:
        unmeasured.append("trained weights (no --weights: a randomly initialised model was compressed; "
                          "the sizes are real, pass --weights FILE for a trained model)")
    model = build(spec.name, num_classes=num_classes, weights=weights, seed=seed)
    original = float32_bytes(model.state_dict())

    from edgecv.engine import evaluate

    acc_before = None
    if eval_ds is not None:
        t0 = time.perf_counter()
        acc_before = evaluate(model, eval_ds, progress=progress)
        timings["eval_before"] = time.perf_counter() - t0

    ctx = Context(model_name=spec.name, train_data=train_ds, eval_data=eval_ds, seed=seed,
                  progress=progress, input_size=(spec.input_size[0], input_size, input_size) if input_size else None)
    t0 = time.perf_counter()
    model = rec.run(model, ctx)
    timings["stages"] = time.perf_counter() - t0
    timings.update({f"stage.{k}": v for k, v in ctx.timings.items()})

    t0 = time.perf_counter()
    meta = {"model": spec.name, "recipe": Path(recipe_path).stem if Path(recipe_path).exists() else "inline",
            "bits": bits, "seed": seed, "num_classes": int(num_classes or spec.num_classes),
            "input_size": list(ctx.resolved_input_size() or spec.input_size), "edgecv": "0.1.0"}
    if data is not None:
        meta.update({"mean": list(info.mean), "std": list(info.std), "data": str(data)})
    blob = encode_model(to_layer_codes(model, ctx), meta)
    timings["encode"] = time.perf_counter() - t0

    # verify: decode what will be written and compare bit for bit with the compressed model
    t0 = time.perf_counter()
    decoded, _ = decode_model(blob)
    state = model.state_dict()
    bad = [k for k, v in state.items() if k not in decoded or not torch.equal(decoded[k], v.detach().cpu())]
    if bad or set(decoded) != set(state):
        raise RuntimeError(f"decoded weights differ from the compressed model: {bad[:3]}")
    timings["decode_verify"] = time.perf_counter() - t0
    atomic_write(out, lambda tmp: Path(tmp).write_bytes(blob))
    table = inspect(blob)

    acc_after = None
    if eval_ds is not None:
        t0 = time.perf_counter()
        fresh = create_model(spec.name, num_classes=num_classes)
        fresh.load_state_dict(decoded, strict=True)
        acc_after = evaluate(fresh, eval_ds, progress=progress)
        timings["eval_after"] = time.perf_counter() - t0

    size = out.stat().st_size
    report: dict[str, Any] = {
        "model": spec.name, "recipe": meta["recipe"], "recipe_path": str(recipe_path), "bits": bits,
        "weights": str(weights) if weights else None, "data": data, "file": str(out),
        "original_bytes": original, "compressed_bytes": size, "ratio": original / size,
        "header_bytes": table["totals"].get("header_bytes"), "layers": table["rows"], "totals": table["totals"],
        "stages": ctx.report, "timings_s": timings, "unmeasured": unmeasured, "seed": seed, "env": environment(),
    }
    if acc_before is not None and acc_after is not None:
        report["accuracy"] = {"before": acc_before["top1"], "after": acc_after["top1"],
                              "drop": acc_before["top1"] - acc_after["top1"],
                              "top5_before": acc_before["top5"], "top5_after": acc_after["top5"],
                              "n": acc_after["n"]}
    return report


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

