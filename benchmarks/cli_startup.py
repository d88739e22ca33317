"""Start-up time of the fast commands: ``edgecv --help``, ``models``, ``info``, ``inspect``, ``devices --no-check``.

Goal (issue 14): each <= 0.5 s. Every command runs ``--runs`` times in a fresh process; the median
wall time and CPU time (user + sys of the child) are reported, and whether torch got imported.
``--compare REV`` measures the tree of a git revision too (``git archive``, read-only), side by side.

    .venv/bin/python benchmarks/cli_startup.py --compare HEAD --json out/cli_startup.json

Wall time on a loaded machine is noisy; CPU time is the steadier figure.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMIT_S = 0.5
# runs `edgecv ARGS` from the edgecv package found first on sys.path (PYTHONPATH selects the tree)
PROBE = ("import sys, runpy; sys.argv = ['edgecv', *sys.argv[1:]]\n"
         "try:\n    runpy.run_module('edgecv.cli', run_name='__main__')\n"
         "finally:\n    sys.stderr.write('\\nTORCH=%d\\n' % ('torch' in sys.modules))\n")


def _edc_file(tmp: Path) -> Path:
    """A small real .edc file for `inspect` (written by this tree's codec)."""
    code = ("import numpy as np, sys\nfrom edgecv.codec import write_file\n"
            "rng = np.random.default_rng(0)\n"
            "write_file(sys.argv[1], {'conv.weight': rng.standard_normal((16, 8, 3, 3)).astype('float32'),"
            " 'conv.bias': np.zeros(16, 'float32')}, {'model': 'probe'})\n")
    out = tmp / "probe.edc"
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, cwd=REPO)
    return out


def commands(edc: Path) -> list[list[str]]:
    return [["--help"], ["models"], ["info", "resnet20"], ["inspect", str(edc)], ["devices", "--no-check"]]


def measure(args: list[str], *, tree: Path, runs: int) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    walls, cpus, torch_seen, rc = [], [], False, 0
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, cwd=tree)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        torch_seen |= "TORCH=1" in p.stderr
        rc = rc or p.returncode
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    return {"command": "edgecv " + " ".join(a if "/" not in a else Path(a).name for a in args),
            "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "torch_imported": torch_seen, "rc": rc,
            "within_limit": cpu <= LIMIT_S}


def _tree_of(rev: str, into: Path) -> Path:
    data = subprocess.run(["git", "archive", "--format=tar", rev, "edgecv", "recipes", "devices"], cwd=REPO,
                          check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        tf.extractall(into, filter="data")
    return into


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--compare", metavar="REV", default=None, help="also measure this git revision")
    ap.add_argument("--json", metavar="FILE", default=None)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgecv-startup-") as tmp:
        tmp_p = Path(tmp)
        edc = _edc_file(tmp_p)
        trees = {"this tree": REPO}
        if a.compare:
            trees[a.compare] = _tree_of(a.compare, tmp_p / "rev")
        table = {name: [measure(c, tree=t, runs=a.runs) for c in commands(edc)] for name, t in trees.items()}
    names = list(table)
    head = f"{'command':<28}" + "".join(f"{n + ' wall/cpu s':>26}" for n in names)
    print(head)
    print("-" * len(head))
    for i, row in enumerate(table[names[0]]):
        cells = []
        for n in names:
            r = table[n][i]
            flag = ("torch " if r["torch_imported"] else "") + ("" if r["rc"] == 0 else f"rc={r['rc']} ")
            cells.append(f"{flag}{r['wall_s']:.2f} / {r['cpu_s']:.2f}")
        print(f"{row['command']:<28}" + "".join(f"{c:>26}" for c in cells))
    ok = all(r["within_limit"] and r["rc"] == 0 for r in table[names[0]])
    print(f"\nlimit {LIMIT_S} s of CPU per command (median of {a.runs}): {'met' if ok else 'NOT met'} by this tree")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"limit_s": LIMIT_S, "runs": a.runs, "python": sys.version.split()[0],
                                            "cpus": os.cpu_count(), "results": table}, indent=2))
        print(f"wrote {a.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
