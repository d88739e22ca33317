"""`pip install .` (a real wheel, not editable) gives a working tool: recipes and device profiles ship
inside the package. The wheel is built offline (--no-build-isolation, --no-deps) from a copy of the
checkout and installed into a fresh venv that sees this venv's dependencies (torch, ...) through a
path entry but not its editable edgecv; the commands run from a folder outside the checkout."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy: the build writes build/ and *.egg-info next to pyproject.toml
    shutil.copytree(REPO / "edgecv", src / "edgecv", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / f, src / f)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGECV_DEVICES")}
    env["EDGECV_CACHE"] = str(tmp / "cache")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(tmp / "dist"), str(src)], tmp, env)
    (wheel,) = (tmp / "dist").glob("edgecv-*.whl")
    root = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(root)
    py = root / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # this venv's packages as a plain path entry: its .pth files (the editable edgecv) are not run
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q", str(wheel)],
         tmp, env)
    work = tmp / "work"
    work.mkdir()
    return root, work, env, wheel


def test_wheel_holds_recipes_and_devices(installed):
    import zipfile

    names = zipfile.ZipFile(installed[3]).namelist()
    assert "edgecv/recipes/deep_compression_generic.yaml" in names and "edgecv/devices/pixel7.yaml" in names
    assert "edgecv/models/zoo_index.json" in names
    assert not any(n.startswith(("recipes/", "devices/", "tests/")) for n in names)


def test_installed_tool_runs_readme_job_devices_and_recipes(installed):
    root, work, env, _ = installed
    tool, py = str(root / "bin" / "edgecv"), str(root / "bin" / "python")
    probe = _run([py, "-c", "import json, edgecv; from edgecv.compress import builtin_recipes, load_recipe; "
                  "r = load_recipe('int8_ptq'); print(json.dumps([edgecv.__file__, r.source, builtin_recipes()]))"],
                 work, env)
    where, recipe_src, names = json.loads(probe.stdout)
    assert str(root) in where and str(REPO) not in where  # the installed package, not the checkout
    assert str(root) in recipe_src and "deep_compression_generic" in names

    p = _run([tool, "compress", "squeezenet", "--bits", "8", "--json", "r.json"], work, env)  # README's main job
    rep = json.loads((work / "r.json").read_text())
    assert (work / rep["file"]).stat().st_size == rep["compressed_bytes"] and rep["ratio"] > 7
    assert str(root) in rep["recipe_path"] and "file" in p.stdout + p.stderr

    d = _run([tool, "devices", "--no-check", "--json", "-"], work, env)
    rows = json.loads(d.stdout)
    assert {"pixel7", "rpi5", "desktop-cpu"} <= {r["name"] for r in rows}
    m = _run([tool, "models", "--json"], work, env)
    assert len(json.loads(m.stdout)) > 50


def test_shipped_zoo_index_is_current_and_matches_the_models():
    """`edgecv models`/`info` read edgecv/models/zoo_index.json instead of importing torch (fast start-up);
    a model file edited without regenerating it would make them slow (they fall back to torch)."""
    from edgecv import zoo_index
    from edgecv.inspect_model import describe
    from edgecv.models import model_info

    assert zoo_index._read(zoo_index.SHIPPED, zoo_index.source_hash()) is not None, \
        "edgecv/models/zoo_index.json is stale: run python -m edgecv.zoo_index --write"
    for name in ("lenet5", "resnet20", "mobilenet_v2"):
        assert zoo_index.describe(name) == describe(name)
        assert next(r for r in zoo_index.model_rows() if r["name"] == name) == model_info(name)
