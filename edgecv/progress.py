"""Progress reporting that library code can call without printing.

Library functions take an optional ``progress`` object; the CLI passes a rich-backed one.
"""
from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, description: str, total: int | None) -> None: ...
    def advance(self, n: int = 1, **fields: object) -> None: ...
    def stop(self) -> None: ...


class NullProgress:
    def start(self, description: str, total: int | None) -> None:
        pass

    def advance(self, n: int = 1, **fields: object) -> None:
        pass

    def stop(self) -> None:
        pass


class RichProgress:
    """One rich progress bar per ``start``/``stop`` pair (used by the CLI)."""

    def __init__(self, console=None, enabled: bool = True) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as _P, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self._p = _P(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                     TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                     console=console, transient=False, disable=not enabled)
        self._task = None

    def start(self, description: str, total: int | None) -> None:
        if self._task is None:
            self._p.start()
        else:
            self._p.remove_task(self._task)
        self._task = self._p.add_task(description, total=total, info="")

    def advance(self, n: int = 1, **fields: object) -> None:
        if self._task is not None:
            info = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
            self._p.update(self._task, advance=n, info=info)

    def stop(self) -> None:
        if self._task is not None:
            self._p.stop()
            self._task = None
