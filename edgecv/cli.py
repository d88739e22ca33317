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

def _make_console(stderr: bool = False) -> Console:
    c = Console(stderr=stderr)
    # piped output (CI logs, files) gets a wide page instead of rich's 80-column default
    return c if c.is_terminal else Console(stderr=stderr, width=160)


console = _make_console()
err_console = _make_console(stderr=True)


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

    return RichProgress(console=err_console, enabled=D.is_main() and err_console.is_terminal)


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


def _size_table(title: str, rows: list[dict], totals: dict) -> Table:
    """Per-tensor bytes (values / relative indices / codebook+Huffman tables) adding up to the file size."""
    t = Table(title=title)
    for col in ("tensor", "kept", "bits", "values", "index", "book+tab", "bytes", "Huff."):
        t.add_column(col, justify="left" if col == "tensor" else "right", no_wrap=True)
    for r in rows:
        b, comp, sparse = r["bytes"], r["kind"] != "raw", r["kind"] == "sparse"
        bits = (f"{r['bits']}/{r['index_bits']}" if sparse else str(r["bits"])) if comp else "raw"
        gain = r.get("huffman_gain_pct")
        t.add_row(r["name"], f"{r['kept_pct']:.1f}%" if comp else "", bits, f"{b['values']:,}" if comp else "",
                  f"{b['index']:,}" if sparse else "", f"{b['codebook'] + b['tables']:,}" if comp else "",
                  f"{r['total_bytes']:,}", f"{gain:.0f}%" if comp and gain is not None else "")
    t.add_section()
    t.add_row("header + meta", "", "", "", "", "", f"{totals['header_bytes']:,}", "")
    t.add_row("[bold]file size[/bold]", "", "", "", "", "", f"[bold]{totals['file_bytes']:,}[/bold]", "")
    return t


def _raw_rows_collapsed(rows: list[dict]) -> list[dict]:
    """Show compressed tensors one per row and fold raw tensors (biases, BN) into one line."""
    comp = [r for r in rows if r["kind"] != "raw"]
    raw = [r for r in rows if r["kind"] == "raw"]
    if raw:
        total = sum(r["total_bytes"] for r in raw)
        comp.append({"name": f"{len(raw)} raw tensors (biases, BN)", "kind": "raw", "kept_pct": 100.0, "bits": None,
                     "index_bits": None, "bytes": {}, "total_bytes": total})
    return comp


@cli.command("compress")
@click.argument("model")
@click.option("--recipe", default=None, help="Recipe YAML (default: the model's recipe in recipes/, else the generic one).")
@click.option("--bits", type=int, default=None, help="Bit width of the recipe's share/quantize stages (e.g. 8 or 6).")
@click.option("--weights", default=None, help="Trained weights (.safetensors or weights-only .pth).")
@click.option("--data", default=None, help="Fine-tune and measure accuracy on this dataset.")
@click.option("-o", "--out", default=None, type=click.Path(dir_okay=False), help="Output file (default MODEL.edc).")
@click.option("--json", "json_out", default=None, help="Write the report as JSON to FILE ('-' = stdout).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--eval-limit", type=int, default=None, help="Measure accuracy on the first N test images only.")
@click.option("--train-limit", type=int, default=None, help="Fine-tune on the first N training images only.")
@click.option("--input-size", type=int, default=None)
@click.option("--max-drop", type=float, default=None, help="Fail (exit 3) when top-1 drops by more than PP points.")
def compress_cmd(model: str, recipe: str | None, bits: int | None, weights: str | None, data: str | None,
                 out: str | None, json_out: str | None, seed: int, eval_limit: int | None, train_limit: int | None,
                 input_size: int | None, max_drop: float | None) -> None:
    """Compress MODEL with a Deep Compression recipe into a real compressed file; report its bytes."""
    from edgecv.models import get_spec
    from edgecv.pipeline import EXIT_ACCURACY_DROP, compress

    if max_drop is not None and data is None:
        raise UserError("--max-drop needs --data to measure the accuracy before and after")
    out = out or f"{get_spec(model).name}.edc"
    rep = compress(model, out=out, recipe=recipe, bits=bits, weights=weights, data=data, seed=seed,
                   eval_limit=eval_limit, train_limit=train_limit, input_size=input_size, progress=_progress())
    console.print(_size_table(f"{rep['model']} — recipe {rep['recipe']}" + (f", --bits {bits}" if bits else ""),
                              _raw_rows_collapsed(rep["layers"]), rep["totals"]))
    mb = 1 << 20
    console.print(f"float32 {rep['original_bytes']:,} B ({rep['original_bytes'] / mb:.2f} MB) -> "
                  f"file {rep['compressed_bytes']:,} B ({rep['compressed_bytes'] / mb:.3f} MB): "
                  f"[bold]{rep['ratio']:.1f}x[/bold]  -> {rep['file']}")
    if "accuracy" in rep:
        a = rep["accuracy"]
        console.print(f"top-1 before {a['before']:.2f}%  after {a['after']:.2f}%  drop {a['drop']:+.2f} pp "
                      f"({a['n']} test images)")
    for what in rep["unmeasured"]:
        console.print(f"[yellow]not measured:[/yellow] {what}")
    if max_drop is not None:
        rep["gate"] = {"max_drop": max_drop, "passed": rep["accuracy"]["drop"] <= max_drop}
    _emit_json(rep, json_out)
    if max_drop is not None and not rep["gate"]["passed"]:
        err_console.print(f"[bold red]gate failed:[/bold red] top-1 dropped {rep['accuracy']['drop']:.2f} pp "
                          f"> --max-drop {max_drop}")
        raise click.exceptions.Exit(EXIT_ACCURACY_DROP)


@cli.command("inspect")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--all-tensors", is_flag=True, help="List raw tensors one by one too.")
def inspect_cmd(file: str, as_json: bool, all_tensors: bool) -> None:
    """Per-layer table of a compressed file: kept %, bits, bytes of indices / codes / codebook, Huffman gain."""
    from edgecv.codec import inspect

    d = inspect(Path(file).read_bytes())
    if as_json:
        click.echo(json.dumps(d, indent=2, default=str))
        return
    rows = d["rows"] if all_tensors else _raw_rows_collapsed(d["rows"])
    console.print(_size_table(f"{file} ({d['meta'].get('model', '?')}, format v{d['format_version']})", rows, d["totals"]))
    tot = d["totals"]
    console.print(f"float32 {tot['original_bytes']:,} B -> {tot['file_bytes']:,} B: {tot['ratio']:.1f}x")


@cli.command("decompress")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Output .safetensors")
def decompress_cmd(file: str, out: str) -> None:
    """Rebuild the weights of a compressed file as safetensors (bit-identical to the compressed model)."""
    from edgecv.pipeline import decompress

    rep = decompress(file, out)
    console.print(f"{rep['tensors']} tensors of {rep['meta'].get('model', '?')} -> {rep['out']}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the click group; user errors become one line and exit code 2."""
    try:
        rv = cli.main(args=argv, prog_name="edgecv", standalone_mode=False)
        if isinstance(rv, int) and rv:  # click returns Exit codes instead of raising when not standalone
            return rv
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
