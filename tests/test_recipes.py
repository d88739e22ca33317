"""YAML recipes: loading, validation errors with file:line, targets, with_bits, dry-run and run."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from edgecv.compress import Context, Prune, Share, load_recipe, parse_recipe
from edgecv.errors import UserError
from edgecv.models import create_model

GOOD = """\
model: lenet_300_100
dataset: mnist
description: Deep Compression LeNet-300-100
stages:
  - prune:
      keep: {ip1: 0.08, ip2: 0.09, ip3: 0.26}
      finetune_epochs: 0
  - share:
      bits: {fc: 6}
      init: linear
      finetune_epochs: 0
  - huffman: {index_bits: 5}
"""


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_load_good_recipe_from_file_and_text(tmp_path):
    r = load_recipe(write(tmp_path, GOOD))
    assert [s.name for s in r.stages] == ["prune", "share", "huffman"]
    assert r.model == "lenet_300_100" and r.dataset == "mnist" and r.description.startswith("Deep")
    assert isinstance(r.stages[0], Prune) and r.stages[0].config.keep == {"ip1": 0.08, "ip2": 0.09, "ip3": 0.26}
    assert r.stages[1].config.bits == {"fc": 6} and r.stages[1].origin.line == 8
    assert load_recipe(str(write(tmp_path, GOOD))).source.endswith("r.yaml")
    t = load_recipe(GOOD)
    assert t.source == "<recipe>" and len(t.stages) == 3
    # null body = defaults; an int where a float is expected is fine
    r2 = parse_recipe("stages:\n  - finetune:\n  - prune: {keep: 1, target_keep: null}\n")
    assert r2.stages[0].config.epochs == 1 and r2.stages[1].config.keep == 1.0


@pytest.mark.parametrize("text,line,match", [
    # unknown key, with a suggestion
    ("stages:\n  - prune:\n      keep: 0.1\n      finetune_epoch: 3\n", 4, r"unknown key 'finetune_epoch'.*did you mean 'finetune_epochs'"),
    # wrong type at top level of the body
    ("stages:\n  - share:\n      bits: 5\n      iters: many\n", 4, r"iters must be an integer, got a string"),
    # wrong type nested in a mapping: the line of the bad value
    ("stages:\n  - prune:\n      keep:\n        ip1: 0.1\n        ip2: lots\n", 5, r"keep\['ip2'\] must be a number"),
    # bool is not an int
    ("stages:\n  - finetune: {epochs: true}\n", 2, r"epochs must be an integer, got a boolean"),
    # Literal choices
    ("stages:\n  - share: {init: kmeans++}\n", 2, r"init must be one of 'linear', 'density', 'random'"),
    # unknown stage, with a suggestion
    ("description: x\nstages:\n  - prune: {keep: 0.5}\n  - shar: {bits: 4}\n", 4, r"unknown stage 'shar'.*share"),
    # value checks in the config's __post_init__, reported at the stage item
    ("stages:\n  - prune: {keep: 1.5}\n", 2, r"keep must be in \(0, 1\]"),
    ("stages:\n  - prune: {finetune_epochs: 1}\n", 2, r"needs `keep`"),
    # structure
    ("stages:\n  - prune: {keep: 0.5}\n    share: {}\n", 2, r"one-key mapping"),
    ("stages:\n  - prune: [1, 2]\n", 2, r"must be a mapping"),
    ("model: lenet\nstagez: []\n", 2, r"unknown top-level key 'stagez'"),
    ("stages:\n  - prune: {keep: 0.5\n", 3, r"not valid YAML"),
    ("description: [1]\nstages:\n  - finetune:\n", 1, r"description must be a string"),
])
def test_errors_name_file_and_line(tmp_path, text, line, match):
    p = write(tmp_path, text, "bad.yaml")
    with pytest.raises(UserError, match=match) as e:
        load_recipe(p)
    assert str(e.value).startswith(f"{p}:{line}:"), str(e.value)


def test_missing_stages_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="no stages"):
        load_recipe(write(tmp_path, "model: lenet5\n"))
    with pytest.raises(UserError, match="not found"):
        load_recipe(str(tmp_path / "nope.yaml"))


def test_validate_targets_reports_pattern_line(tmp_path):
    text = ("stages:\n"
            "  - prune:\n"
            "      keep:\n"
            "        ip1: 0.1\n"
            "        fc7: 0.1\n"
            "  - share: {bits: {conv: 8, fc: 5}}\n")  # "conv" selects nothing on LeNet-300-100: fine
    p = write(tmp_path, text, "t.yaml")
    r = load_recipe(p)
    with torch.device("meta"):
        model = create_model("lenet_300_100")
    with pytest.raises(UserError, match=r"'fc7'.*valid names: ip1, ip2, ip3") as e:
        r.validate_targets(model)
    assert str(e.value).startswith(f"{p}:5:")
    with pytest.raises(UserError, match=f"{p}:5:"):
        r.dry_run("lenet_300_100")
    with pytest.raises(UserError, match=f"{p}:4:"):  # layers list items carry their line too
        load_recipe(write(tmp_path, "stages:\n  - prune:\n      keep: 0.5\n      layers: [ip*, features.*]\n",
                          "t.yaml")).dry_run("lenet_300_100")


def test_with_bits_copies(tmp_path):
    r = load_recipe(GOOD)
    r4 = r.with_bits(4)
    assert r4.stages[1].config.bits == {"fc": 4} and r.stages[1].config.bits == {"fc": 6}
    assert isinstance(r4.stages[1], Share) and r4.stages[0] is r.stages[0]
    r2 = parse_recipe("stages:\n  - share: {bits: 8}\n").with_bits(3)
    assert r2.stages[0].config.bits == 3
    with pytest.raises(UserError, match="1..16"):
        r.with_bits(17)


def test_dry_run_plan():
    plan = load_recipe(GOOD).dry_run()
    assert [p["stage"] for p in plan] == ["prune", "share", "huffman"]
    assert plan[0]["layers"]["keep"] == ["ip1", "ip2", "ip3"] and plan[1]["layers"]["bits"] == ["ip1", "ip2", "ip3"]
    with pytest.raises(UserError, match="no model"):
        parse_recipe("stages:\n  - finetune:\n").dry_run()


def test_run_applies_stages_in_order_and_times_them():
    text = GOOD.replace("  - huffman: {index_bits: 5}\n",
                        "  - finetune: {epochs: 1, batch_size: 16, max_steps: 2}\n"
                        "  - finetune: {epochs: 1, batch_size: 16, max_steps: 1}\n"
                        "  - huffman: {index_bits: {ip1: 4}}\n")
    r = load_recipe(text)
    torch.manual_seed(0)
    model = create_model("lenet_300_100")
    ds = TensorDataset(torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,)))
    ctx = Context(train_data=ds)
    r.run(model, ctx)
    assert list(ctx.timings) == ["prune", "share", "finetune", "finetune#2", "huffman"]
    assert ctx.model_name == "lenet_300_100"
    assert ctx.encoding["ip1.weight"] == (4, True) and ctx.encoding["ip2.weight"] == (5, True)
    for name, sw in ctx.shared.items():
        assert torch.equal(dict(model.named_parameters())[name].detach(), sw.codebook[sw.assign])


def test_integer_layer_names_and_empty_selection(caplog):
    r = parse_recipe("stages:\n  - prune: {keep: {3: 0.25}, finetune_epochs: 0}\n")
    assert r.stages[0].config.keep == {"3": 0.25}
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
    ctx = Context()
    r.run(model, ctx)
    assert int(ctx.masks["3.weight"].sum()) == 4
    with caplog.at_level("WARNING"):
        parse_recipe("stages:\n  - prune: {keep: 0.5, layers: [conv], finetune_epochs: 0}\n").run(
            create_model("lenet_300_100"), Context())
    assert "nothing pruned" in caplog.text


REPO_RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", REPO_RECIPES, ids=[p.stem for p in REPO_RECIPES])
def test_every_shipped_recipe_loads_dry_runs_and_documents_itself(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# edgecv compress"), "a recipe opens with the command that runs it"
    assert "Expected" in path.read_text().split("stages:")[0], "and says what result to expect"
    rec = load_recipe(path)
    from edgecv.models import list_models

    named = first.split()[3]  # "# edgecv compress MODEL ...": the model of the recipe's own command
    target = rec.model or (named if named in list_models() else "resnet18")
    plan = rec.dry_run(target)
    assert [p["stage"] for p in plan] == [s.name for s in rec.stages]
    for p, st in zip(plan, rec.stages):  # every pattern field the recipe fills selects some layer
        for name, layers in p["layers"].items():
            if getattr(st.config, name):
                assert layers, f"{st.name}.{name} selects no layer of {target}"


def test_default_recipe_per_model():
    from edgecv.pipeline import default_recipe

    assert Path(default_recipe("squeezenet")).stem == "squeezenet_dc"
    assert Path(default_recipe("lenet_300_100")).stem == "deep_compression_lenet300"
    assert Path(default_recipe("mobilenet_v2")).stem == "deep_compression_generic"


def test_keyword_values_are_not_layer_patterns():
    """`index_bits: auto` is a keyword of the field's type, not a layer called "auto"."""
    from edgecv.compress import parse_recipe

    rec = parse_recipe("model: lenet_300_100\nstages:\n  - prune: {keep: 0.1}\n  - huffman: {index_bits: auto}\n")
    rec.dry_run()
    with pytest.raises(UserError, match="matches no"):
        parse_recipe("model: lenet_300_100\nstages:\n  - prune: {keep: 0.1}\n"
                     "  - huffman: {index_bits: {autox: 4}}\n").dry_run()
