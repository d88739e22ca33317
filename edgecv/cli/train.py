"""`edgecv train` and `edgecv eval` on real data."""
from __future__ import annotations


import click
from rich.table import Table

from edgecv.cli import _types as T
from edgecv.cli._app import emit_json, make_progress, cli, console


@cli.command("train")
@click.argument("model")
@click.option("--data", required=True, help="mnist | fashion-mnist | cifar10 | imagenet-samples | PATH")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Output .safetensors")
@click.option("--epochs", type=T.count(), default=10, show_default=True)
@click.option("--batch-size", type=T.count(), default=128, show_default=True)
@click.option("--lr", type=T.positive(), default=0.05, show_default=True)
@click.option("--optimizer", type=click.Choice(["sgd", "adam", "adamw"]), default="sgd", show_default=True)
@click.option("--weight-decay", type=T.non_negative(), default=5e-4, show_default=True)
@click.option("--schedule", type=click.Choice(["cosine", "constant", "step"]), default="cosine", show_default=True)
@click.option("--warmup-epochs", type=T.Float(0.0, 1000.0), default=0.0, show_default=True,
              help="Ramp the learning rate linearly from 0 over this many epochs (fractions allowed).")
@click.option("--label-smoothing", type=T.Float(0.0, 1.0, max_open=True), default=0.0)
@click.option("--seed", type=T.SEED, default=0, show_default=True)
@click.option("--weights", default=None, help="Weights: a file (.safetensors + JSON sidecar, or weights-only .pth), or 'imagenet' (alias 'pretrained', or 'imagenet-tf') from edgecv's pretrained table (see `edgecv models --pretrained`).")
@click.option("--new-head", is_flag=True,
              help="Start from --weights with a fresh classifier for --data's classes (transfer learning).")
@click.option("--input-size", type=T.SIZE, default=None, help="Square input size (default: the model's for its dataset).")
@click.option("--limit", type=T.count(), default=None, help="Use only the first N training images.")
@click.option("--max-steps", type=T.count(), default=None, help="Stop after N optimizer steps (smoke runs).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "json_out", default=None, help="Also write the report as JSON to FILE ('-' = stdout).")
@click.option("--resume", is_flag=True,
              help="Checkpoint every epoch (.OUT.resume.safetensors) and continue an interrupted run from it; same weights as an uninterrupted run.")
def train_cmd(model: str, data: str, out: str, epochs: int, batch_size: int, lr: float, optimizer: str,
              weight_decay: float, schedule: str, warmup_epochs: float, label_smoothing: float, seed: int,
              weights: str | None, new_head: bool, input_size: int | None, limit: int | None,
              max_steps: int | None, device: str, json_out: str | None, resume: bool = False) -> None:
    """Train MODEL on --data and save safetensors (+ a JSON of metadata). Works under torchrun."""
    from edgecv import distributed as D
    from edgecv.engine import TrainConfig
    from edgecv.workflows import train_model

    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, weight_decay=weight_decay,
                      schedule=schedule, warmup_epochs=warmup_epochs, label_smoothing=label_smoothing, seed=seed,
                      device=device, max_steps=max_steps)
    D.maybe_init()
    rep = train_model(model, data, out, cfg, weights=weights, input_size=input_size, limit=limit,
                      progress=make_progress(), resume=resume, new_head=new_head)
    if not D.is_main():
        return
    t = Table(title=f"train {rep['model']} on {data}")
    for col in ("epoch", "loss", "train top-1", "seconds"):
        t.add_column(col, justify="right")
    for h in rep["history"]:
        t.add_row(str(h["epoch"]), f"{h['loss']:.4f}", f"{h['train_top1']:.2f}%", f"{h['seconds']:.1f}")
    console.print(t)
    te = rep["test"]
    console.print(f"test top-1 {te['top1']:.2f}%  top-5 {te['top5']:.2f}%  ({te['n']} images)  -> {out}")
    emit_json(rep, json_out)


@cli.command("eval")
@click.argument("model")
@click.option("--weights", default=None, help="Weights: a file (.safetensors + JSON sidecar, or weights-only .pth), or 'imagenet' (alias 'pretrained', or 'imagenet-tf') from edgecv's pretrained table (see `edgecv models --pretrained`).")
@click.option("--data", required=True, help="mnist | fashion-mnist | cifar10 | imagenet-samples | PATH")
@click.option("--split", type=click.Choice(["train", "test"]), default="test", show_default=True)
@click.option("--limit", type=T.count(), default=None, help="Only the first N images.")
@click.option("--batch-size", type=T.count(), default=256, show_default=True)
@click.option("--input-size", type=T.SIZE, default=None)
@click.option("--mean", type=T.finite(), nargs=3, default=None, help="Override normalisation mean.")
@click.option("--std", type=T.positive(), nargs=3, default=None, help="Override normalisation std.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "json_out", default=None, help="Also write the result as JSON to FILE ('-' = stdout).")
def eval_cmd(model: str, weights: str | None, data: str, split: str, limit: int | None, batch_size: int,
             input_size: int | None, mean, std, device: str, json_out: str | None) -> None:
    """Top-1 / top-5 / images per second of MODEL on --data."""
    from edgecv.workflows import evaluate_model

    res = evaluate_model(model, weights, data, split=split, input_size=input_size, limit=limit,
                         batch_size=batch_size, mean=mean, std=std, device=device, progress=make_progress())
    t = Table(title=f"eval {res['model']} on {data} ({split})")
    for col in ("images", "top-1", "top-5", "images/s"):
        t.add_column(col, justify="right")
    t.add_row(str(res["n"]), f"{res['top1']:.2f}%", f"{res['top5']:.2f}%", f"{res['images_per_s']:.0f}")
    console.print(t)
    emit_json(res, json_out)
