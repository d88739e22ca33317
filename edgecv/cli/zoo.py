"""`edgecv models` and `edgecv info`: the zoo and one model's per-layer table."""
from __future__ import annotations

import json

import click
from rich.table import Table

from edgecv.cli import _types as T
from edgecv.cli._app import fmt_count, cli, console


@cli.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--family", default=None, help="Only this family (e.g. mobilenet_v3).")
@click.option("--pretrained", "only_pretrained", is_flag=True,
              help="Only models with ImageNet weights in edgecv's table: where they come from, sha256, preprocessing.")
@click.argument("pattern", required=False)
def models_cmd(as_json: bool, family: str | None, only_pretrained: bool, pattern: str | None) -> None:
    """List the model zoo: name, family, params, MACs, input size, published weights."""
    import fnmatch

    from edgecv import pretrained
    from edgecv.zoo_index import model_rows  # no torch import when the shipped index is current

    if only_pretrained:
        _pretrained_table(pattern, family, as_json)
        return
    rows = [r for r in model_rows() if pattern is None or fnmatch.fnmatch(r["name"], pattern)]
    rows = [r for r in rows if family is None or r["family"] == family]
    for r in rows:
        r["pretrained"] = [f"{p.tag} ({p.source})" for p in pretrained.tags_for(r["name"])]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    t = Table(title=f"edgecv model zoo ({len(rows)} models; tv = loads torchvision checkpoints; "
                    "weights: --weights TAG (source), see `edgecv models --pretrained`)")
    for col in ("name", "family", "params", "MACs", "input", "tv", "weights"):
        t.add_column(col, justify="right" if col in ("params", "MACs") else "left", no_wrap=True)
    for r in rows:
        t.add_row(r["name"], r["family"], fmt_count(r["params"]), fmt_count(r["macs"]),
                  "x".join(map(str, r["input_size"])), "yes" if r["torchvision_compatible"] else "",
                  ", ".join(r["pretrained"]))
    console.print(t)


def _pretrained_table(pattern: str | None, family: str | None, as_json: bool) -> None:
    import fnmatch

    from edgecv import pretrained

    rows = [r for r in pretrained.table_rows() if pattern is None or fnmatch.fnmatch(r["model"], pattern)]
    if family is not None:
        rows = [r for r in rows if r["model"].startswith(family)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    t = Table(title=f"ImageNet weights in edgecv's table ({len(rows)}; --weights TAG; --json for URLs and licences)")
    for col in ("model", "tag", "source", "file", "input/resize", "mean", "top-1 pub.", "top-1 samples", "sha256"):
        t.add_column(col, no_wrap=True)
    for r in rows:
        digest = (r["sha256"] or "")[:10] or (f"{r['hash_prefix']}.." if r["hash_prefix"] else "")
        t.add_row(r["model"], r["tag"], r["source"], r["file"], f"{r['input_size'][-1]}/{r['resize']}"
                  + ("" if r["interpolation"] == "bilinear" else " bicubic"), f"{r['mean'][0]:.3g}",
                  f"{r['top1']:.1f}" if r["top1"] else "", f"{r['top1_samples']:.1f}" if r["top1_samples"] else "",
                  digest)
    console.print(t)


@cli.command("info")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--input-size", type=T.SIZE, nargs=2, default=None, metavar="H W", help="Count at this size.")
@click.option("--num-classes", type=T.count(), default=None)
def info_cmd(model: str, as_json: bool, input_size: tuple[int, int] | None, num_classes: int | None) -> None:
    """Per-layer table of MODEL: output shape, params, MACs."""
    if input_size or num_classes:  # counted now, with torch
        from edgecv.inspect_model import describe
        from edgecv.models import get_spec

        spec = get_spec(model)
        size = (spec.input_size[0], *input_size) if input_size else None
        kw = {"num_classes": num_classes} if num_classes else {}
        d = describe(model, input_size=size, **kw)
    else:  # the default size: the zoo index (no torch import when it is current)
        from edgecv.zoo_index import describe as indexed

        d = indexed(model)
    from edgecv import pretrained

    d["pretrained"] = [r for r in pretrained.table_rows() if r["model"] == d["name"]]
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
    for r in d["pretrained"]:
        console.print(f"--weights {r['tag']}: {r['where']} ({r['licence']}); input {r['input_size'][-1]} px, "
                      f"resize {r['resize']}, mean {r['mean'][0]:.3g} std {r['std'][0]:.3g}"
                      + (f"; published top-1 {r['top1']:.1f}%" if r["top1"] else ""))
    if not d["pretrained"]:
        console.print("no ImageNet weights in edgecv's table for this model (--weights FILE)")
