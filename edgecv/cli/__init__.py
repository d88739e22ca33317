"""The ``edgecv`` command line: each command parses options, calls the library, prints.

Commands live one module per area and register on the click group by explicit import below.
User errors (``edgecv.errors.UserError``) print one line to stderr and exit non-zero
(``UserError.exit_code``, 2), without a traceback.
"""
from __future__ import annotations



import click

from edgecv.cli._app import cli, err_console
from edgecv.errors import UserError

# explicit registration of the commands (import order = order in `edgecv --help`). A command module
# imports only click/rich at the top and everything else inside its command: `edgecv --help`, `models`,
# `info`, `inspect` and `devices --no-check` must start in <= 0.5 s (benchmarks/cli_startup.py).
from edgecv.cli import zoo, train, compress, export, bench, report  # noqa: E402,F401  isort: skip
from edgecv.cli import arm  # noqa: E402,F401  isort: skip  (edgecv verify-arm)


def _one_line(msg: str) -> None:
    from rich.markup import escape

    msg = " ".join(msg.split())  # one line, whatever the message held
    err_console.print(f"[bold red]error:[/bold red] {escape(msg)}", highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the click group; user errors become one line and exit code 2."""
    try:
        rv = cli.main(args=argv, prog_name="edgecv", standalone_mode=False)
        if isinstance(rv, int) and rv:  # click returns Exit codes instead of raising when not standalone
            return rv
    except UserError as e:
        _one_line(str(e))
        return e.exit_code
    except click.exceptions.Abort:
        err_console.print("aborted")
        return 130
    except click.UsageError as e:  # bad option value, missing option...: one line, not the usage block
        where = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
        _one_line(e.format_message() + where)
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except Exception as e:  # a full disk / file-size limit hit outside the writers that name their file
        from edgecv.errors import disk_full, disk_full_errno

        code = disk_full_errno(e)
        if code is None:
            raise
        err = disk_full(OSError(code, ""), getattr(e, "filename", None) or "a file")
        _one_line(str(err))
        return err.exit_code
    return 0

