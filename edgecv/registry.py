"""One small name -> object registry.

Registration is explicit (a module imports what it registers); registering the same
name twice raises, and an unknown name raises with the closest matches.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Generic, TypeVar

from edgecv.errors import UserError

T = TypeVar("T")


class UnknownNameError(UserError, KeyError):
    """Lookup of a name that is not registered (a user error: clear one-line message)."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def add(self, name: str, item: T) -> T:
        if name in self._items or name in self._aliases:
            raise ValueError(f"duplicate {self.kind} name {name!r}")
        self._items[name] = item
        return item

    def alias(self, alias: str, target: str) -> None:
        if alias in self._items or alias in self._aliases:
            raise ValueError(f"duplicate {self.kind} name {alias!r}")
        if target not in self._items:
            raise ValueError(f"alias {alias!r} points to unknown {self.kind} {target!r}")
        self._aliases[alias] = target

    def resolve(self, name: str) -> str:
        """Canonical key for ``name`` (an alias resolves to its target)."""
        if name in self._items:
            return name
        if name in self._aliases:
            return self._aliases[name]
        candidates = list(self._items) + list(self._aliases)
        close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
        if not close:  # prefix matches help for e.g. "resnet" -> resnet18 ...
            close = [c for c in candidates if c.startswith(name)][:5]
        hint = f"; did you mean: {', '.join(close)}?" if close else f"; see `edgecv {self.kind}s`"
        raise UnknownNameError(f"unknown {self.kind} {name!r}{hint}")

    def get(self, name: str) -> T:
        return self._items[self.resolve(name)]

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return list(self._items)

    def aliases(self) -> dict[str, str]:
        return dict(self._aliases)
