"""`edgecv models` and `edgecv info`: the zoo and one model's per-layer table."""
from __future__ import annotations

import json

import click
from rich.table import Table

from edgecv.cli._app import fmt_count, cli, console


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
        t.add_row(r["name"], r["family"], fmt_count(r["params"]), fmt_count(r["macs"]),
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
