"""`edgecv compress`, `inspect`, `decompress`: the Deep Compression file."""
from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from edgecv.cli import _types as T
from edgecv.cli._app import cli, console, emit_json, err_console, make_progress
from edgecv.errors import UserError


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
@click.argument("model", metavar="MODEL|PKG.MODULE:FN")
@click.option("--recipe", default=None, help="Recipe YAML (default: the model's recipe in recipes/, else the generic one).")
@click.option("--bits", type=T.BITS, default=None, help="Bit width of the recipe's share/quantize stages (e.g. 8 or 6).")
@click.option("--weights", default=None,
              help="Weights: a file (.safetensors + JSON sidecar, or weights-only .pth), or 'imagenet' (alias 'pretrained', or 'imagenet-tf') from edgecv's pretrained table (see `edgecv models --pretrained`).")
@click.option("--data", default=None, help="Fine-tune and measure accuracy on this dataset.")
@click.option("--eval-data", default=None,
              help="Measure accuracy on this dataset instead of --data's test split (e.g. --data tiny-imagenet --eval-data imagenet-samples).")
@click.option("--train-size", type=T.SIZE, default=None,
              help="Fine-tune at this image side (default: the model's input size; e.g. 160 for a 224 model, ~3x faster on a CPU).")
@click.option("-o", "--out", default=None, type=click.Path(dir_okay=False), help="Output file (default MODEL.edc).")
@click.option("--json", "json_out", default=None, help="Write the report as JSON to FILE ('-' = stdout).")
@click.option("--seed", type=T.SEED, default=0, show_default=True)
@click.option("--eval-limit", type=T.count(), default=None, help="Measure accuracy on the first N test images only.")
@click.option("--train-limit", type=T.count(), default=None, help="Fine-tune on the first N training images only.")
@click.option("--input-size", type=T.SIZE, default=None)
@click.option("--max-drop", type=T.percent(), default=None,
              help="Accuracy gate: after writing the file and --json, exit 3 when top-1 drops by more than PP points.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run from its per-epoch checkpoints (.OUT.resume/ beside -o); same file as an uninterrupted run.")
@click.option("--device", default="cpu", show_default=True,
              help="Where the fine-tuning steps run: cpu, cuda or cuda:N (encoding and accuracy stay on the CPU).")
@click.option("--workers", type=T.count(0, 64), default=0, show_default=True,
              help="Data-loader processes feeding the fine-tuning (e.g. 8 with --device cuda).")
def compress_cmd(model: str, recipe: str | None, bits: int | None, weights: str | None, data: str | None,
                 out: str | None, json_out: str | None, seed: int, eval_limit: int | None, train_limit: int | None,
                 input_size: int | None, max_drop: float | None, resume: bool = False, eval_data: str | None = None,
                 train_size: int | None = None, device: str = "cpu", workers: int = 0) -> None:
    """Compress MODEL with a recipe (Deep Compression, int8 quantization...) into a real file; report its bytes.

    MODEL is a zoo name or your own model by import path (mypkg.nets:build_net: a class, or a
    function returning an nn.Module, called without arguments; --weights .safetensors/.pth).

    Exit codes: 0 done, 2 bad input, 3 (with --max-drop) the top-1 drop exceeded PP.
    """
    from edgecv.models import get_spec
    from edgecv.pipeline import compress

    if max_drop is not None and data is None:
        raise UserError("--max-drop needs --data to measure the accuracy before and after")
    if (eval_data or train_size) and data is None:
        raise UserError("--eval-data and --train-size need --data (the images to fine-tune on)")
    from edgecv.usermodel import is_import_path

    out = out or f"{model.split(':')[-1] if is_import_path(model) else get_spec(model).name}.edc"
    rep = compress(model, out=out, recipe=recipe, bits=bits, weights=weights, data=data, seed=seed,
                   eval_limit=eval_limit, train_limit=train_limit, input_size=input_size, progress=make_progress(),
                   resume=resume, eval_data=eval_data, train_size=train_size, device=device, workers=workers)
    console.print(_size_table(f"{rep['model']} — recipe {rep['recipe']}" + (f", --bits {bits}" if bits else ""),
                              _raw_rows_collapsed(rep["layers"]), rep["totals"]))
    mb = 1 << 20
    console.print(f"float32 {rep['original_bytes']:,} B ({rep['original_bytes'] / mb:.2f} MB) -> "
                  f"file {rep['compressed_bytes']:,} B ({rep['compressed_bytes'] / mb:.3f} MB): "
                  f"[bold]{rep['ratio']:.1f}x[/bold]  -> {rep['file']}")
    if "accuracy" in rep:
        a = rep["accuracy"]
        console.print(f"top-1 before {a['before']:.2f}%  after {a['after']:.2f}%  drop {a['drop']:+.2f} pp; "
                      f"top-5 {a['top5_before']:.2f}% -> {a['top5_after']:.2f}%; "
                      f"agreement {a['agreement']:.2f}% ({a['n']} test images)")
    for what in rep["unmeasured"]:
        console.print(f"[yellow]not measured:[/yellow] {what}")
    if max_drop is not None:
        from edgecv.pipeline import check_gate

        rep["gate"] = check_gate(rep, max_drop)
    emit_json(rep, json_out)
    if max_drop is not None:
        _gate_exit(rep["gate"], rep["accuracy"]["drop"])


def _gate_exit(gate: dict, drop: float) -> None:
    from edgecv.pipeline import EXIT_ACCURACY_DROP

    if gate["passed"]:
        console.print(f"[green]gate passed:[/green] top-1 drop {drop:.2f} pp <= --max-drop {gate['max_drop']}")
        return
    err_console.print(f"[bold red]gate failed:[/bold red] top-1 dropped {drop:.2f} pp "
                      f"> --max-drop {gate['max_drop']}")
    raise click.exceptions.Exit(EXIT_ACCURACY_DROP)


@cli.command("gate")
@click.argument("report", type=click.Path(exists=True, dir_okay=False))
@click.option("--max-drop", type=T.percent(), required=True, help="Largest allowed top-1 drop in percentage points.")
def gate_cmd(report: str, max_drop: float) -> None:
    """Re-check a saved `edgecv compress --json` REPORT against --max-drop (exit 3 when the drop exceeds it)."""
    from edgecv.pipeline import check_gate

    try:
        rep = json.loads(Path(report).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"cannot read report {report}: {e}; pass the JSON written by `edgecv compress --json`") from None
    g = check_gate(rep, max_drop)
    a = rep["accuracy"]
    console.print(f"{rep.get('model', '?')} ({rep.get('recipe', '?')}): top-1 {a.get('before', float('nan')):.2f}% -> "
                  f"{a.get('after', float('nan')):.2f}% on {a.get('n', '?')} images")
    _gate_exit(g, a["drop"])


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
