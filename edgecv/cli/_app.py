"""The click group and what every command shares: consoles, number formatting, JSON output, progress."""
from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click
from rich.console import Console


def _make_console(stderr: bool = False) -> Console:
    c = Console(stderr=stderr)
    # piped output (CI logs, files) gets a wide page instead of rich's 80-column default
    return c if c.is_terminal else Console(stderr=stderr, width=160)


console = _make_console()
err_console = _make_console(stderr=True)


def fmt_count(n: int | float) -> str:
    n = float(n)
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def emit_json(obj: Any, dest: str | None) -> None:
    """Write ``obj`` as JSON to a file (atomically) or, for "-", to stdout."""
    if dest is None:
        return
    if dest == "-":
        click.echo(json.dumps(obj, indent=2, default=str))
    else:
        from edgecv.checkpoint import write_json

        write_json(dest, obj)
        err_console.print(f"[dim]wrote {dest}[/dim]")


def make_progress():
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
