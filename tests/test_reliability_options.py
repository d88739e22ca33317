"""Every numeric option of every `edgecv` command refuses out-of-range values: exit 2, one line naming
the option and its range, no file written.

The cases are built by walking the click command tree, so an option added later is covered without
editing this file; an int/float option declared without a range fails ``test_every_numeric_option_is_ranged``.
"""
from __future__ import annotations

import math

import click
import pytest

from edgecv.cli import cli, main


def _commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def _numeric(p: click.Parameter) -> bool:
    return isinstance(p.type, (click.types.IntParamType, click.types.FloatParamType)) \
        and not getattr(p, "count", False)


NUMERIC = [(path, cmd, p) for path, cmd in _commands(cli) for p in cmd.params
           if isinstance(p, click.Option) and _numeric(p)]


def _bad_values(t: click.ParamType) -> list[str]:
    """Values just outside the declared range, and non-finite ones for floats."""
    out = []
    is_float = isinstance(t, click.types.FloatParamType)
    step = 0.5 if is_float else 1
    lo, hi = getattr(t, "min", None), getattr(t, "max", None)
    if lo is not None:
        out.append(str(lo if getattr(t, "min_open", False) else lo - step))
    if hi is not None:
        out.append(str(hi if getattr(t, "max_open", False) else hi + step))
    if is_float:
        out += ["nan", "inf", "-inf"]
    return out


def _good_value(t: click.ParamType) -> str:
    lo, hi = getattr(t, "min", None), getattr(t, "max", None)
    if lo is not None and not getattr(t, "min_open", False):
        return str(lo)
    if lo is not None:
        return str(lo + 1 if hi is None else (lo + hi) / 2)
    return "1" if hi is None or hi >= 1 else str(hi - 1)


def _placeholder(p: click.Parameter, tmp) -> list[str]:
    """Valid tokens for a required parameter other than the one under test."""
    n = p.nargs if p.nargs > 0 else 1
    if _numeric(p):
        v = [_good_value(p.type)] * n
    elif isinstance(p.type, click.Choice):
        v = [str(p.type.choices[0])] * n
    elif isinstance(p.type, click.Path) and p.type.exists:
        v = [str(tmp / "input.bin")] * n
    elif isinstance(p.type, click.Path):
        v = [str(tmp / f"out-{p.name}")] * n
    else:
        v = ["lenet5"] * n
    return v if isinstance(p, click.Argument) else [p.opts[-1], *v]


def test_every_numeric_option_is_ranged():
    assert len(NUMERIC) >= 30, f"only {len(NUMERIC)} numeric options found: did the command tree change?"
    unranged = [f"{' '.join(path)} {p.opts[-1]}" for path, _, p in NUMERIC
                if not isinstance(p.type, click.types._NumberRangeBase)
                or (p.type.min is None and p.type.max is None and isinstance(p.type, click.types.IntParamType))]
    assert not unranged, f"numeric options without a range (declare them with edgecv.cli._types): {unranged}"


CASES = [pytest.param(path, p.name, bad, id=f"{'-'.join(path)}{p.opts[-1]}={bad}")
         for path, _, p in NUMERIC for bad in _bad_values(p.type)]


@pytest.mark.parametrize("path,param_name,bad", CASES)
def test_out_of_range_value_is_one_line_exit_2_no_file(path, param_name, bad, tmp_path, monkeypatch, capsys):
    cmd = dict(_commands(cli))[path]
    param = next(p for p in cmd.params if p.name == param_name)
    (tmp_path / "input.bin").write_bytes(b"{}")
    monkeypatch.chdir(tmp_path)
    n = param.nargs if param.nargs > 0 else 1
    argv = [*path, param.opts[-1], bad, *[_good_value(param.type)] * (n - 1)]  # the bad value first
    options = [q for q in cmd.params if q is not param and q.required and isinstance(q, click.Option)]
    for q in options:
        argv += _placeholder(q, tmp_path)
    for q in (q for q in cmd.params if isinstance(q, click.Argument) and q.required):
        argv += _placeholder(q, tmp_path)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, f"edgecv {' '.join(argv)} exited {code}: {err}"
    assert err.count("\n") == 0, f"not one line: {err!r}"
    assert param.opts[-1] in err or any(o in err for o in param.opts), err
    rng = param.type._describe_range() if isinstance(param.type, click.types._NumberRangeBase) else ""
    assert rng and rng in err, f"range {rng!r} not named in {err!r}"
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.bin"], "a file was written"


def test_train_negative_epochs_is_refused_not_trained(tmp_path, capsys):
    """The issue's example: it used to train nothing, save a 14%-accurate model and exit 0."""
    out = tmp_path / "m.safetensors"
    assert main(["train", "lenet5", "--data", "mnist", "--epochs", "-1", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--epochs" in err and "x>=1" in err and not out.exists()


def test_finite_float_type_rejects_nan_but_accepts_bounds():
    from edgecv.cli import _types as T

    assert T.percent().convert("100", None, None) == 100.0
    assert T.percent().convert("0", None, None) == 0.0
    for bad in ("nan", "inf", "100.01", "-1e-9"):
        with pytest.raises(click.BadParameter):
            T.percent().convert(bad, None, None)
    assert math.isfinite(T.finite().convert("-3.5", None, None))
