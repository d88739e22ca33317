"""`edgecv export`: ONNX and TFLite files checked against PyTorch."""
from __future__ import annotations

import click
from rich.table import Table

from edgecv.cli import _types as T
from edgecv.cli._app import cli, console, emit_json, make_progress


@cli.command("export")
@click.argument("source")
@click.option("--format", "fmt", required=True, type=click.Choice(["onnx", "tflite", "executorch"]), help="Output format (executorch: .pte, XNNPACK).")
@click.option("--precision", default="fp32", show_default=True,
              type=click.Choice(["fp32", "fp16", "int8", "dynamic"]),
              help="onnx, executorch: fp32|int8; tflite: fp32|fp16|dynamic|int8.")
@click.option("--weights", default=None, help="Weights: a file (.safetensors + JSON sidecar, or weights-only .pth), or 'imagenet' (alias 'pretrained', or 'imagenet-tf') from edgecv's pretrained table (see `edgecv models --pretrained`).")
@click.option("--calib", default=None, help="Real images for int8/dynamic calibration and agreement "
                                            "(dataset name, folder or archive; default: the model's dataset).")
@click.option("--input-size", nargs=2, type=T.SIZE, default=None, metavar="H W", help="Input size (default: the model's).")
@click.option("--min-agreement", type=T.percent(), default=95.0, show_default=True,
              help="int8/dynamic: fail (exit 3, no file) below this top-1 agreement with the float model (%).")
@click.option("--per-tensor", is_flag=True, help="int8: one weight scale per tensor (default: per output channel).")
@click.option("--calib-images", type=T.count(), default=None,
              help="int8/dynamic: calibration images (default 200 ImageNet samples / 300 CIFAR-10 or MNIST).")
@click.option("--no-bias-correction", is_flag=True,
              help="int8: skip the bias correction (biases moved so int8 outputs keep the float means per channel).")
@click.option("--no-keep-grid", is_flag=True,
              help="int8: round weights that already lie on an 8-bit grid (dequantized from a QAT file) onto the "
                   "converter's scale instead of keeping their grid exactly.")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Output .onnx / .tflite / .pte file.")
@click.option("--json", "json_out", default=None, help="Write the report as JSON to FILE ('-' = stdout).")
def export_cmd(source: str, fmt: str, precision: str, weights: str | None, calib: str | None,
               input_size: tuple[int, int] | None, min_agreement: float, per_tensor: bool, calib_images: int | None,
               no_bias_correction: bool, no_keep_grid: bool, out: str, json_out: str | None) -> None:
    """Export SOURCE (a model name, checkpoint, .edc file, or your model by import path PKG.MODULE:FN with
    --weights FILE and --input-size H W) and check it against PyTorch in its runtime."""
    from edgecv.export import export

    rep = export(source, fmt, out=out, precision=precision, input_size=tuple(input_size) if input_size else None,
                 weights=weights, calib=calib, min_agreement=min_agreement, per_channel=not per_tensor,
                 calib_images=calib_images, bias_correction=not no_bias_correction, keep_grid=not no_keep_grid,
                 progress=make_progress())
    p = rep["parity"]
    t = Table(title=f"{rep['model']} -> {rep['file']}")
    for col in ("format", "precision", "input", "bytes", "max |Δ|", "rel", "agreement", "top-1 float/export", "s"):
        t.add_column(col, justify="right", no_wrap=True)
    agree = f"{p['agreement_pct']:.2f}% of {p['n_images']}" if "agreement_pct" in p else ""
    top1 = f"{p['top1_float_pct']:.2f}/{p['top1_export_pct']:.2f}%" if "top1_float_pct" in p else ""
    t.add_row(rep["format"], rep["precision"], "x".join(map(str, rep["input_shape"])) + f" {rep['input_layout']}",
              f"{rep['bytes']:,}", f"{p['max_abs']:.3g}", f"{p['rel']:.2e}", agree, top1, f"{rep['seconds']:.1f}")
    console.print(t)
    console.print(f"[green]parity passed:[/green] {p['check']}")
    bc = (rep.get("calibration") or {}).get("bias_correction")
    if bc:
        console.print(f"bias correction: {bc['layers']} layers on {bc['images']} calibration images "
                      f"(largest mean shift corrected: {bc['max_rel_shift']:.3f} std)")
    grid = (rep.get("calibration") or {}).get("weight_grid")
    if grid and grid["layers"]:
        console.print(f"weights kept on their 8-bit grid: {grid['layers']} layers, {grid['channels']:,} channels exact "
                      f"({grid['channels_not_fitting']:,} did not fit [-127, 127] steps)")
    from edgecv.bench.litert_runner import delegation_note

    note = delegation_note(rep.get("delegation"))
    if note:
        console.print(f"[yellow]note:[/yellow] {note}")
    emit_json(rep, json_out)
