"""The ``edgecv`` command line: each command parses options, calls the library, prints.

User errors (``edgecv.errors.UserError``) print one line to stderr and exit non-zero,
without a traceback.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from edgecv.errors import UserError

console = Console()
err_console = Console(stderr=True)


def _fmt_count(n: int | float) -> str:
    n = float(n)
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def _emit_json(obj: Any, dest: str | None) -> None:
    """Write ``obj`` as JSON to a file (atomically) or, for "-", to stdout."""
    if dest is None:
        return
    if dest == "-":
        click.echo(json.dumps(obj, indent=2, default=str))
    else:
        from edgecv.checkpoint import write_json

        write_json(dest, obj)
        err_console.print(f"[dim]wrote {dest}[/dim]")


def _progress():
    from edgecv.progress import RichProgress

    from edgecv import distributed as D

    return RichProgress(console=err_console, enabled=D.is_main() and err_console.is_terminal or None)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgecv")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """edgecv: classic and lightweight CNNs to small, fast, verified edge artifacts."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


@cli.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--family", default=None, help="Only this family (e.g. mobilenet_v3).")
@click.argument("pattern", required=False)
def models_cmd(as_json: bool, family: str | None, pattern: str | None) -> None:
    """List the model zoo: name, family, params, MACs, input size."""
    from edgecv.models import list_models, model_info

    rows = [model_info(n) for n in list_models(pattern)]
    rows = [r for r in rows if family is None or r["family"] == family]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    t = Table(title=f"edgecv model zoo ({len(rows)} models; tv = loads torchvision checkpoints)")
    for col in ("name", "family", "params", "MACs", "input", "tv"):
        t.add_column(col, justify="right" if col in ("params", "MACs") else "left", no_wrap=True)
    for r in rows:
        t.add_row(r["name"], r["family"], _fmt_count(r["params"]), _fmt_count(r["macs"]),
                  "x".join(map(str, r["input_size"])), "yes" if r["torchvision_compatible"] else "")
    console.print(t)


@cli.command("info")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--input-size", type=int, nargs=2, default=None, metavar="H W", help="Count at this size.")
@click.option("--num-classes", type=int, default=None)
def info_cmd(model: str, as_json: bool, input_size: tuple[int, int] | None, num_classes: int | None) -> None:
    """Per-layer table of MODEL: output shape, params, MACs."""
    from edgecv.inspect_model import describe
    from edgecv.models import get_spec

    spec = get_spec(model)
    size = (spec.input_size[0], *input_size) if input_size else None
    kw = {"num_classes": num_classes} if num_classes else {}
    d = describe(model, input_size=size, **kw)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    t = Table(title=f"{d['name']} ({d['family']}, {d['paper']})")
    for col in ("layer", "type", "output", "params", "MACs"):
        t.add_column(col, justify="right" if col in ("params", "MACs") else "left")
    for r in d["layers"]:
        t.add_row(r["layer"], r["type"], "x".join(map(str, r["output"])), f"{r['params']:,}", f"{r['macs']:,}")
    t.add_section()
    t.add_row("total", "", "x".join(map(str, d["input_size"])) + " in", f"{d['params']:,}", f"{d['macs']:,}")
    console.print(t)


@cli.command("train")
@click.argument("model")
@click.option("--data", required=True, help="mnist | fashion-mnist | cifar10 | imagenet-samples | PATH")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Output .safetensors")
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=0.05, show_default=True)
@click.option("--optimizer", type=click.Choice(["sgd", "adam", "adamw"]), default="sgd", show_default=True)
@click.option("--weight-decay", type=float, default=5e-4, show_default=True)
@click.option("--schedule", type=click.Choice(["cosine", "constant", "step"]), default="cosine", show_default=True)
@click.option("--label-smoothing", type=float, default=0.0)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--weights", default=None, help="Start from these weights.")
@click.option("--input-size", type=int, default=None, help="Square input size (default: the model's for its dataset).")
@click.option("--limit", type=int, default=None, help="Use only the first N training images.")
@click.option("--max-steps", type=int, default=None, help="Stop after N optimizer steps (smoke runs).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "json_out", default=None, help="Also write the report as JSON to FILE ('-' = stdout).")
def train_cmd(model: str, data: str, out: str, epochs: int, batch_size: int, lr: float, optimizer: str,
              weight_decay: float, schedule: str, label_smoothing: float, seed: int, weights: str | None,
              input_size: int | None, limit: int | None, max_steps: int | None, device: str,
              json_out: str | None) -> None:
    """Train MODEL on --data and save safetensors (+ a JSON of metadata). Works under torchrun."""
    from edgecv import distributed as D
    from edgecv.engine import TrainConfig
    from edgecv.workflows import train_model

    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, weight_decay=weight_decay,
                      schedule=schedule, label_smoothing=label_smoothing, seed=seed, device=device,
                      max_steps=max_steps)
    D.maybe_init()
    rep = train_model(model, data, out, cfg, weights=weights, input_size=input_size, limit=limit,
                      progress=_progress())
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
    _emit_json(rep, json_out)


@cli.command("eval")
@click.argument("model")
@click.option("--weights", default=None, help=".safetensors or weights-only .pth/.th (default: random init).")
@click.option("--data", required=True, help="mnist | fashion-mnist | cifar10 | imagenet-samples | PATH")
@click.option("--split", type=click.Choice(["train", "test"]), default="test", show_default=True)
@click.option("--limit", type=int, default=None, help="Only the first N images.")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--input-size", type=int, default=None)
@click.option("--mean", type=float, nargs=3, default=None, help="Override normalisation mean.")
@click.option("--std", type=float, nargs=3, default=None, help="Override normalisation std.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "json_out", default=None, help="Also write the result as JSON to FILE ('-' = stdout).")
def eval_cmd(model: str, weights: str | None, data: str, split: str, limit: int | None, batch_size: int,
             input_size: int | None, mean, std, device: str, json_out: str | None) -> None:
    """Top-1 / top-5 / images per second of MODEL on --data."""
    from edgecv.workflows import evaluate_model

    res = evaluate_model(model, weights, data, split=split, input_size=input_size, limit=limit,
                         batch_size=batch_size, mean=mean, std=std, device=device, progress=_progress())
    t = Table(title=f"eval {res['model']} on {data} ({split})")
    for col in ("images", "top-1", "top-5", "images/s"):
        t.add_column(col, justify="right")
    t.add_row(str(res["n"]), f"{res['top1']:.2f}%", f"{res['top5']:.2f}%", f"{res['images_per_s']:.0f}")
    console.print(t)
    _emit_json(res, json_out)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the click group; user errors become one line and exit code 2."""
    try:
        cli.main(args=argv, prog_name="edgecv", standalone_mode=False)
    except UserError as e:
        err_console.print(f"[bold red]error:[/bold red] {e}", highlight=False, soft_wrap=True)
        return e.exit_code
    except click.exceptions.Abort:
        err_console.print("aborted")
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
