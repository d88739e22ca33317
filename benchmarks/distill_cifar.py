"""Knowledge distillation on CIFAR-10: ResNet-20 from scratch with and without a teacher.

Two students start from the same seeded initialisation and train on the same images in the
same order with the same optimiser, schedule and number of steps; one with the plain
hard-label loss (stage ``finetune``), one with the pretrained ResNet-56 as teacher (stage
``distill``: alpha * T^2 * soft cross-entropy + (1 - alpha) * hard cross-entropy; Hinton,
Vinyals, Dean 2015, arXiv:1503.02531). Both are evaluated on the full 10,000-image test split
of the shared CIFAR-10 JPEG set; the table and ``--json`` give both accuracies side by side.

    nice -n 10 .venv/bin/python benchmarks/distill_cifar.py --train-limit 3000 --epochs 5 \\
        --json runs/distill_cifar.json

The budget is sized for 2 shared CPU cores (about 20 min for both runs); the teacher scores
83.20% on these JPEG test images (93.39% published on the PNG originals).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

from edgecv.checkpoint import write_json
from edgecv.compress import Context, Distill, DistillConfig, Finetune, FinetuneConfig
from edgecv.compress.distill import resolve_weights
from edgecv.data import load_dataset
from edgecv.engine import evaluate
from edgecv.models import create_model
from edgecv.models.resnet_cifar import load_cifar_resnet_checkpoint
from edgecv.workflows import environment

log = logging.getLogger("distill_cifar")
TEACHER_WEIGHTS = "shared:weights/resnet-cifar10/resnet56-4bfd9763.th"


def student(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("resnet20", num_classes=10)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-limit", type=int, default=3000, help="training images (stratified slice)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.9)
    ap.add_argument("--teacher-weights", default=TEACHER_WEIGHTS)
    ap.add_argument("--eval-teacher", action="store_true", help="also measure the teacher (slow: ~3x a student)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", default="without_teacher,with_teacher",
                    help="comma list of runs (the runs are deterministic: a rerun with other T/alpha may skip the baseline)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)

    train_ds, _ = load_dataset("cifar10", "train", limit=args.train_limit, seed=args.seed)
    test_ds, _ = load_dataset("cifar10", "test")
    teacher = create_model("resnet56", num_classes=10)
    teacher.load_state_dict(load_cifar_resnet_checkpoint(resolve_weights(args.teacher_weights)), strict=True)
    opts = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                lr_schedule="cosine", optimizer="sgd")
    runs = {
        "without_teacher": Finetune(FinetuneConfig(**opts)),
        "with_teacher": Distill(DistillConfig(teacher="resnet56", teacher_weights=args.teacher_weights,
                                              temperature=args.temperature, alpha=args.alpha, **opts),
                                teacher_model=teacher),
    }
    result: dict = {"train_images": len(train_ds), "test_images": len(test_ds), "config": vars(args),
                    "teacher": "resnet56", "student": f"resnet20 (random init, seed {args.seed})",
                    "env": environment(), "runs": {}}
    wanted = [r.strip() for r in args.runs.split(",") if r.strip()]
    if not wanted or any(r not in runs for r in wanted):
        ap.error(f"--runs takes a comma list of {', '.join(runs)}")
    for name, stage in ((n, runs[n]) for n in wanted):
        model = student(args.seed)
        ctx = Context(model_name="resnet20", train_data=train_ds, seed=args.seed)
        t0 = time.perf_counter()
        stage.apply(model, ctx)
        seconds = time.perf_counter() - t0
        acc = evaluate(model, test_ds)
        result["runs"][name] = {"test_top1": acc["top1"], "test_top5": acc["top5"], "test_loss": acc["loss"],
                                "train_seconds": seconds, "train_last_epoch": ctx.report[stage.name].get("train")}
        log.info("%s: top-1 %.2f%% (%.0f s training)", name, acc["top1"], seconds)
    if args.eval_teacher:
        result["teacher_test_top1"] = evaluate(teacher, test_ds)["top1"]
    if len(result["runs"]) == 2:
        result["gain_pp"] = result["runs"]["with_teacher"]["test_top1"] - result["runs"]["without_teacher"]["test_top1"]
    print(f"ResNet-20 from scratch on {len(train_ds):,} CIFAR-10 training images, {args.epochs} epochs, "
          f"batch {args.batch_size}; test = {len(test_ds):,} images")
    print(f"{'run':18s} {'top-1 %':>8s} {'top-5 %':>8s} {'train s':>8s}")
    for name, r in result["runs"].items():
        print(f"{name:18s} {r['test_top1']:8.2f} {r['test_top5']:8.2f} {r['train_seconds']:8.0f}")
    gain = f"distillation gain: {result['gain_pp']:+.2f} pp, " if "gain_pp" in result else ""
    print(f"{gain}teacher resnet56, T={args.temperature}, alpha={args.alpha}"
          + (f"; teacher top-1 {result['teacher_test_top1']:.2f}%" if args.eval_teacher else ""))
    if args.json:
        if args.json == "-":
            print(json.dumps(result, indent=2))
        else:
            write_json(Path(args.json), result)
    return result


if __name__ == "__main__":
    main()
