"""Fuzz recipe parsing (edgecv.compress.recipe.parse_recipe + with_bits + dry_run) under a 2 GiB
address-space limit.

    .venv/bin/python scripts/fuzz_recipe.py                   # 10,000 mutated + 2,000 structured
    .venv/bin/python scripts/fuzz_recipe.py --cases 300 --structured 100

(1) Text mutations of every recipe in recipes/ (lines deleted, duplicated, swapped, re-indented;
hostile tokens inserted: anchors and aliases, tags such as !!python/object, huge and non-finite
numbers, tabs, NUL, unbalanced brackets). (2) hypothesis-built recipes: real stage names and their
config fields with values of every YAML type, out-of-range and non-finite numbers, nested lists,
alias bombs. Each case must give a Recipe or raise one-line UserError; a parsed recipe must hold
only finite numbers; anything else (another exception, a hang over 10 s, MemoryError) is a finding.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import resource
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AS_LIMIT = 2 << 30
CASE_TIMEOUT_S = 10
TOKENS = ["&a ", "*a", "*b", "!!python/object/apply:os.system ['echo hi']", "!!binary AAAA", "1e309", "-1e309",
          ".nan", ".inf", "-.inf", "99999999999999999999999", "-1", "0", "-0.0", "null", "~", "true", "'", '"',
          "{", "}", "[", "]", ": ", "- ", "\t", "\x00", "\ufeff", "? ", "|", ">", "%YAML 1.1\n", "---\n", "...\n",
          "<<: *a", "0x1F", "0o17", "1_000", "2001-12-14", "=", "keep", "bits", "stages", "conv", "fc", "*"]


def corpus() -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted((REPO / "recipes").glob("*.yaml"))]


def mutate(text: str, rng: random.Random, texts: list[str]) -> str:
    lines = text.splitlines(keepends=True) or [""]
    for _ in range(rng.choice((1, 1, 2, 3, 6))):
        op = rng.randrange(8)
        i = rng.randrange(len(lines))
        if op == 0 and len(lines) > 1:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif op == 2:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 3:
            lines[i] = " " * rng.choice((1, 2, 3, 8)) + lines[i]
        elif op == 4:  # a token somewhere in the line
            s = lines[i]
            k = rng.randrange(len(s) + 1)
            lines[i] = s[:k] + rng.choice(TOKENS) + s[k:]
        elif op == 5:  # replace a number or word
            words = lines[i].split(" ")
            k = rng.randrange(len(words))
            words[k] = rng.choice(TOKENS)
            lines[i] = " ".join(words)
        elif op == 6:
            other = rng.choice(texts).splitlines(keepends=True)
            lines[i:] = other[rng.randrange(len(other) + 1):] if other else []
            lines = lines or [""]
        else:
            s = lines[i]
            k = rng.randrange(len(s) + 1)
            lines[i] = s[:k] + s[k + rng.randrange(1, 5):]
    return "".join(lines)


def _numbers(obj, path="config"):
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield from _numbers(getattr(obj, f.name), f"{path}.{f.name}")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{path}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{path}[{i}]")
    elif isinstance(obj, float):
        yield path, obj


def check(text: str, bits: int) -> str:
    from edgecv.compress.recipe import parse_recipe
    from edgecv.errors import UserError

    try:
        r = parse_recipe(text, source="fuzz.yaml")
        for st in r.stages:
            for where, v in _numbers(st.config):
                if not math.isfinite(v):
                    raise AssertionError(f"accepted non-finite {where} = {v}")
        r.with_bits(bits)
        r.dry_run("lenet5")
        return "ok"
    except UserError as e:
        if "\n" in str(e).strip():
            raise AssertionError(f"UserError spans lines: {str(e)[:300]!r}") from None
        return "rejected"


def structured(n: int, record) -> None:
    import yaml
    from hypothesis import HealthCheck, given, settings, strategies as st

    from edgecv.compress.base import STAGES

    stage_fields = {}
    for name in STAGES.names():
        cls = STAGES.get(name)
        stage_fields[name] = [f.name for f in dataclasses.fields(cls.Config) if f.init]
    scalars = st.one_of(st.integers(-3, 40), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                        st.floats(0, 1), st.booleans(), st.none(), st.text(max_size=8),
                        st.sampled_from(["conv", "fc", "ip1", "conv1", "*", "", "fp32", "int8", "float16"]))
    values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                           st.dictionaries(st.text(max_size=5), inner, max_size=4)),
                          max_leaves=12)

    @st.composite
    def stage(draw):
        name = draw(st.one_of(st.sampled_from(sorted(stage_fields)), st.text(max_size=6)))
        keys = stage_fields.get(name, []) + ["bogus"]
        body = draw(st.dictionaries(st.sampled_from(keys), values, max_size=4))
        return {name: draw(st.one_of(st.just(body), values))}

    @settings(max_examples=n, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.lists(stage(), max_size=4), st.dictionaries(st.sampled_from(["model", "dataset", "description", "x"]),
                                                          values, max_size=2), st.integers(-2, 20), st.booleans())
    def one(stages, top, bits, bomb):
        doc = {**top, "stages": stages}
        text = yaml.safe_dump(doc, allow_unicode=True)
        if bomb:  # an alias bomb: 9 levels of 9 references
            text = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
                f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)) + text
        record(text, "structured", bits)

    one()


def child(cases: int, n_structured: int, seed: int, out: Path) -> dict:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError(f"over {CASE_TIMEOUT_S} s")))
    texts = corpus()
    stats = {"mutated": 0, "structured": 0, "ok": 0, "rejected": 0, "failures": 0, "corpus_files": len(texts)}
    failures: list[str] = []

    def record(text: str, kind: str, bits: int) -> None:
        stats[kind] += 1
        signal.alarm(CASE_TIMEOUT_S)
        try:
            stats[check(text, bits)] += 1
        except BaseException as e:  # noqa: BLE001 - a finding
            stats["failures"] += 1
            out.mkdir(parents=True, exist_ok=True)
            p = out / f"recipe-{kind}-{stats[kind]}.yaml"
            p.write_text(text, encoding="utf-8", errors="replace")
            failures.append(f"{p}: {type(e).__name__}: {str(e)[:200]}")
        finally:
            signal.alarm(0)

    for t in texts:
        assert check(t, 6) in ("ok", "rejected")
    t0 = time.monotonic()
    rng = random.Random(seed)
    for _ in range(cases):
        record(mutate(rng.choice(texts), rng, texts), "mutated", rng.choice((6, 8, 4, 0, 17, 2)))
    structured(n_structured, record)
    stats["seconds"] = round(time.monotonic() - t0, 1)
    stats["failure_examples"] = failures[:20]
    return stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--structured", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="fuzz-findings")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if a.child:
        print("FUZZ-RESULT " + json.dumps(child(a.cases, a.structured, a.seed, Path(a.out))), flush=True)
        return 0
    argv = [sys.executable, __file__, "--child", "--cases", str(a.cases), "--structured", str(a.structured),
            "--seed", str(a.seed), "--out", a.out]
    sys.path.insert(0, str(Path(__file__).parent))
    from fuzz_edc import run_child  # the same parent side (child output, limit, JSON)

    return run_child(argv, 600 + (a.cases + a.structured) * 0.5, a.json)


if __name__ == "__main__":
    sys.exit(main())
