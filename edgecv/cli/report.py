"""`edgecv report`: the JSON reports of compress, export, bench and eval side by side."""
from __future__ import annotations

import click

from edgecv.cli._app import cli, console, emit_json, err_console


def _num(v: object, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


@cli.command("report")
@click.argument("reports", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False), metavar="A.json...")
@click.option("--plot", "plot_out", default=None, metavar="FILE.png", help="Bar charts of size, latency and top-1.")
@click.option("--json", "json_out", default=None, metavar="FILE", help="Write the rows as JSON ('-' = stdout).")
def report_cmd(reports: tuple[str, ...], plot_out: str | None, json_out: str | None) -> None:
    """One table (and --plot charts) of size, latency and accuracy from `--json` reports of compress,
    export, bench and eval, so runs compare without a script."""
    from rich.table import Table

    from edgecv.reports import collect, plot

    rows = collect(reports)
    t = Table(title=f"edgecv report ({len(rows)} rows from {len(reports)} files)")
    for col in ("report", "kind", "model", "what", "bytes", "ratio", "mean ms", "p50 ms", "top-1 %", "agree %", "detail"):
        t.add_column(col, justify="right" if col in ("bytes", "ratio", "mean ms", "p50 ms", "top-1 %", "agree %")
                     else "left", no_wrap=col != "detail")
    for r in rows:
        t.add_row(r["report"], r["kind"], str(r["model"]), str(r["what"] or ""), _num(r["bytes"], ","),
                  _num(r["ratio"], ".1f"), _num(r["mean_ms"], ".3f"), _num(r["p50_ms"], ".3f"),
                  _num(r["top1"], ".2f"), _num(r["agreement"], ".2f"), str(r["detail"] or ""))
    console.print(t)
    if plot_out:
        plot(rows, plot_out)
        err_console.print(f"[dim]wrote {plot_out}[/dim]")
    emit_json(rows, json_out)
