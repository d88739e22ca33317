"""Ranged click types for every numeric option: a bad value is refused while parsing (exit 2, one
line naming the option and its range) before anything runs or is written.

``tests/test_reliability_options.py`` walks the whole command tree and fails for any int/float
option that is not declared with one of these (or another click range type).
"""
from __future__ import annotations

import math
from typing import Any

import click

SEED_MAX = 2**32 - 1  # numpy's seed range (torch accepts more)
SIZE_MAX = 8192  # input height/width


class Float(click.FloatRange):
    """A FloatRange that also refuses nan and +-inf (which compare False against any bound)."""

    name = "float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if rv is not None and not math.isfinite(rv):
            where = f"({self._describe_range()})" if self.min is None and self.max is None \
                else f"in the range {self._describe_range()}"
            self.fail(f"{value!r} is not a finite number {where}", param, ctx)
        return rv

    def _describe_range(self) -> str:
        if self.min is None and self.max is None:
            return "any finite value"
        return super()._describe_range()


def count(minimum: int = 1, maximum: int | None = None) -> click.IntRange:
    """A whole number >= ``minimum`` (epochs, runs, images, batch size...)."""
    return click.IntRange(minimum, maximum)


def positive() -> Float:
    """A finite number > 0 (learning rate, timeout, std)."""
    return Float(0.0, min_open=True)


def non_negative() -> Float:
    return Float(0.0)


def percent() -> Float:
    """0..100 percentage points."""
    return Float(0.0, 100.0)


def finite() -> Float:
    return Float()


SEED = click.IntRange(0, SEED_MAX)
PORT = click.IntRange(1, 65535)
SIZE = click.IntRange(1, SIZE_MAX)
BITS = click.IntRange(1, 16)
