"""YAML compression recipes: an ordered list of stages, validated with file:line errors.

```yaml
model: lenet_300_100          # optional default model
dataset: mnist                # optional default dataset
description: Deep Compression, Table 1 row 1
stages:
  - prune: {keep: {ip1: 0.08, ip2: 0.09, ip3: 0.26}, finetune_epochs: 10}
  - share: {bits: 6, finetune_epochs: 3}
  - huffman: {index_bits: 5}
```

Each stage body is checked against its config dataclass: unknown keys, wrong types (from the
field annotations: int, float, bool, str, Literal choices, unions / Optional, list[...],
dict[str, ...]) and unknown stage names are ``UserError``s that name the file and line. Layer
patterns are checked against a model by ``Recipe.validate_targets`` (again with file:line).
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import logging
import time
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.nn as nn
import yaml

from edgecv.compress import targets as T
from edgecv.compress.base import STAGES, Context, Origin, Stage
from edgecv.errors import UserError
from edgecv.registry import UnknownNameError

log = logging.getLogger(__name__)

RECIPE_DIR = Path(str(importlib.resources.files("edgecv") / "recipes"))  # shipped in the package (wheel too)
TOP_KEYS = {"model": str | None, "dataset": str | None, "description": str, "stages": list}


@dataclass
class Recipe:
    stages: list[Stage]
    model: str | None = None
    description: str = ""
    dataset: str | None = None
    source: str = "<recipe>"

    def with_bits(self, bits: int) -> Recipe:
        """A copy whose weight-sharing (and quantization) stages use ``bits`` everywhere."""
        return dataclasses.replace(self, stages=[s.with_bits(bits) for s in self.stages])

    def validate_targets(self, model: nn.Module) -> None:
        """Every layer pattern of every stage must select a conv/fc layer of ``model``."""
        for st in self.stages:
            for fname, pats in st.patterns().items():
                for p in pats:
                    if p in T.SELECTORS:
                        continue  # "conv" / "fc" may legitimately select nothing (LeNet-300-100 has no conv)
                    try:
                        T.check_patterns(model, [p])
                    except UserError as e:
                        where = f"{st.origin.at((fname, p))}: " if st.origin else ""
                        raise UserError(f"{where}{st.name}.{fname}: {e}") from None

    def dry_run(self, model_name: str | None = None) -> list[dict[str, Any]]:
        """Validate configs and targets on a meta-device model (no weights, no compute) and return
        the plan: per stage its config and the layers each pattern field selects."""
        from edgecv.models import create_model

        name = model_name or self.model
        if not name:
            raise UserError(f"{self.source}: no model given and the recipe names none; pass a model")
        import torch

        with torch.device("meta"):
            model = create_model(name)
        self.validate_targets(model)
        plan = []
        for st in self.stages:
            layers = {f: T.resolve(model, [p for p in pats if T.match(p, T.compressible(model))])
                      for f, pats in st.patterns().items()}
            plan.append({"stage": st.name, "config": dataclasses.asdict(st.config), "layers": layers})
        return plan

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        """Apply the stages in order (each records its wall time in ``ctx.timings``)."""
        self.validate_targets(model)
        if ctx.model_name is None:
            ctx.model_name = self.model
        if ctx.original is None and any(getattr(st.config, "distill_from", "none") == "original" for st in self.stages):
            import copy

            from edgecv.compress.distill import freeze

            ctx.original = freeze(copy.deepcopy(model))  # the teacher of `distill_from: original`
        t0 = time.perf_counter()
        for st in self.stages:
            model = st.apply(model, ctx)
            if ctx.device != "cpu":  # training ran on ctx.device; every other step (and the codec) is on the CPU
                model.to("cpu")
                if ctx.original is not None:
                    ctx.original.to("cpu")
        log.info("recipe %s: %d stages in %.1fs", self.source, len(self.stages), time.perf_counter() - t0)
        return model


# --------------------------------------------------------------------------- loading
class _Bad(Exception):
    def __init__(self, node: yaml.Node, msg: str) -> None:
        super().__init__(msg)
        self.node, self.msg = node, msg


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return "null"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is list:
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin is dict:
        return f"a mapping of {_describe(args[0])} to {_describe(args[1])}" if args else "a mapping"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(tp, str(tp))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)


class _Coercer:
    def __init__(self, source: str = "<recipe>") -> None:
        self.loader = yaml.SafeLoader("")
        self.lines: dict[Any, int] = {}
        self.source = source

    def value(self, node: yaml.Node) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as e:  # e.g. a !!binary tag with bad base64, found by scripts/fuzz_recipe.py
            why = getattr(e, "problem", None) or " ".join(str(e).split())
            raise UserError(f"{self.source}:{_line(node)}: cannot read this value: {why}") from None

    def key(self, node: yaml.Node) -> Any:
        """A mapping key: a plain scalar (a list or mapping as a key is refused, not hashed)."""
        if not isinstance(node, yaml.ScalarNode):
            raise UserError(f"{self.source}:{_line(node)}: a key must be a plain name, not a list or mapping")
        return self.value(node)

    def coerce(self, node: yaml.Node, tp: Any, path: str, field_name: str | None = None) -> Any:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if tp is Any:
            return self.value(node)
        if origin in (typing.Union, types.UnionType):
            errors: dict[Any, _Bad] = {}
            for arm in args:
                try:
                    return self.coerce(node, arm, path, field_name)
                except _Bad as e:
                    errors[typing.get_origin(arm) or arm] = e
            # a mapping / list that fits the shape of one arm: report that arm's (inner) error
            shaped = dict if isinstance(node, yaml.MappingNode) else list if isinstance(node, yaml.SequenceNode) else None
            if shaped in errors:
                raise errors[shaped]
            raise self._wrong(node, tp, path)
        if origin is list or tp is list:
            if not isinstance(node, yaml.SequenceNode):
                raise self._wrong(node, tp, path)
            out = []
            for i, item in enumerate(node.value):
                v = self.coerce(item, args[0] if args else Any, f"{path}[{i}]")
                if field_name is not None:
                    self.lines[(field_name, str(v))] = item.start_mark.line + 1
                out.append(v)
            return out
        if origin is dict or tp is dict:
            if not isinstance(node, yaml.MappingNode):
                raise self._wrong(node, tp, path)
            out_d: dict[Any, Any] = {}
            for kn, vn in node.value:
                try:
                    k = self.coerce(kn, args[0] if args else Any, f"{path} key")
                except _Bad:
                    k = self.value(kn)
                    if not (args and args[0] is str and isinstance(k, int) and not isinstance(k, bool)):
                        raise
                    k = str(k)  # `{3: 0.25}` names the Sequential child "3"
                out_d[k] = self.coerce(vn, args[1] if args else Any, f"{path}[{k!r}]")
                if field_name is not None:
                    self.lines[(field_name, str(k))] = kn.start_mark.line + 1
            return out_d
        if not isinstance(node, yaml.ScalarNode):
            raise self._wrong(node, tp, path)
        v = self.value(node)
        if origin is typing.Literal:
            if v in args and type(v) is type(args[args.index(v)]):
                return v
            raise _Bad(node, f"{path} must be {_describe(tp)}, got {v!r}")
        if tp is type(None):
            if v is None:
                return None
        elif tp is bool:
            if isinstance(v, bool):
                return v
        elif tp is int:
            if isinstance(v, int) and not isinstance(v, bool):
                return v
        elif tp is float:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(v)
        elif tp is str:
            if isinstance(v, str):
                return v
        else:  # pragma: no cover - a config field of an unsupported type
            raise TypeError(f"unsupported config annotation {tp!r}")
        raise self._wrong(node, tp, path)

    def _wrong(self, node: yaml.Node, tp: Any, path: str) -> _Bad:
        return _Bad(node, f"{path} must be {_describe(tp)}, got {_kind(self.value(node))}")


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _stage(item: yaml.Node, source: str) -> Stage:
    if not isinstance(item, yaml.MappingNode) or len(item.value) != 1:
        raise UserError(f"{source}:{_line(item)}: each stage is a one-key mapping such as "
                        "`- prune: {keep: {ip1: 0.08}}`")
    key_node, body = item.value[0]
    name = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
    try:
        cls = STAGES.get(name)
    except UnknownNameError as e:
        raise UserError(f"{source}:{_line(key_node)}: {e} (known: {', '.join(STAGES.names())})") from None
    c = _Coercer(source)
    kwargs: dict[str, Any] = {}
    hints = typing.get_type_hints(cls.Config)
    valid = [f.name for f in dataclasses.fields(cls.Config) if f.init]
    if isinstance(body, yaml.ScalarNode) and c.value(body) is None:
        body_items: list[tuple[yaml.Node, yaml.Node]] = []
    elif isinstance(body, yaml.MappingNode):
        body_items = body.value
    else:
        raise UserError(f"{source}:{_line(body)}: the body of stage {name!r} must be a mapping of its settings")
    for kn, vn in body_items:
        k = c.key(kn)
        if k not in valid:
            close = difflib.get_close_matches(str(k), valid, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UserError(f"{source}:{_line(kn)}: unknown key {k!r} for stage {name!r}; {hint}"
                            f"valid keys: {', '.join(valid)}")
        if k in kwargs:
            raise UserError(f"{source}:{_line(kn)}: key {k!r} given twice in stage {name!r}")
        try:
            kwargs[k] = c.coerce(vn, hints[k], k, field_name=k)
        except _Bad as e:
            raise UserError(f"{source}:{_line(e.node)}: {name}: {e.msg}") from None
        c.lines[k] = _line(vn)
    try:
        config = cls.Config(**kwargs)
    except (UserError, ValueError, TypeError) as e:
        raise UserError(f"{source}:{_line(item)}: {name}: {e}") from None
    return cls(config, origin=Origin(source, _line(item), c.lines))


def parse_recipe(text: str, source: str = "<recipe>") -> Recipe:
    """Parse and validate recipe YAML ``text``; ``source`` names it in errors."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        why = getattr(e, "problem", None) or " ".join(str(e).split())  # ReaderError (NUL...) has no mark
        raise UserError(f"{where}: not valid YAML: {why}") from None
    if root is None:
        raise UserError(f"{source}: empty recipe; it needs a `stages:` list")
    if not isinstance(root, yaml.MappingNode):
        raise UserError(f"{source}:{_line(root)}: a recipe is a mapping with `stages:` (and optional model, "
                        "dataset, description)")
    c = _Coercer(source)
    top: dict[str, Any] = {}
    stages_node = None
    for kn, vn in root.value:
        k = c.key(kn)
        if k not in TOP_KEYS:
            raise UserError(f"{source}:{_line(kn)}: unknown top-level key {k!r}; valid keys: {', '.join(TOP_KEYS)}")
        if k == "stages":
            if not isinstance(vn, yaml.SequenceNode):
                raise UserError(f"{source}:{_line(vn)}: `stages` must be a list of one-key mappings")
            stages_node = vn
            continue
        try:
            top[k] = c.coerce(vn, TOP_KEYS[k], k)
        except _Bad as e:
            raise UserError(f"{source}:{_line(e.node)}: {e.msg}") from None
    if stages_node is None or not stages_node.value:
        raise UserError(f"{source}: the recipe has no stages; add a `stages:` list")
    stages = [_stage(item, source) for item in stages_node.value]
    return Recipe(stages=stages, model=top.get("model"), description=top.get("description") or "",
                  dataset=top.get("dataset"), source=source)


def builtin_recipes() -> list[str]:
    """Names of the recipes shipped in the repository's ``recipes/`` folder."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml")) if RECIPE_DIR.is_dir() else []


def load_recipe(path_or_text: str | Path) -> Recipe:
    """A recipe from a file path, a built-in recipe name (``recipes/<name>.yaml``) or YAML text."""
    if isinstance(path_or_text, Path):
        path: Path | None = path_or_text
    elif "\n" in path_or_text or ":" in path_or_text and not Path(path_or_text).exists():
        return parse_recipe(path_or_text)
    else:
        path = Path(path_or_text)
        if not path.exists() and (RECIPE_DIR / f"{path_or_text}.yaml").exists():
            path = RECIPE_DIR / f"{path_or_text}.yaml"
    if not path.is_file():
        known = builtin_recipes()
        raise UserError(f"recipe {str(path_or_text)!r} not found: give a YAML file"
                        + (f" or one of: {', '.join(known)}" if known else ""))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read recipe {path}: {e}") from None
    return parse_recipe(text, source=str(path))
