"""Side-by-side view of the JSON reports that ``compress``, ``export``, ``bench`` and ``eval`` write
(``--json``): one row per run with size, latency and accuracy, and a PNG of the three (``edgecv report``).

Rows (``rows_from``) have: ``report`` (file name), ``kind`` (compress | export | bench | eval),
``model``, ``what`` (recipe, or format and precision), ``bytes``, ``ratio`` (compress), ``mean_ms`` and
``p50_ms`` (bench), ``top1`` (measured top-1 %, after compression / of the export), ``agreement``
(top-1 agreement with the float model, %), ``detail``. A value a report does not hold is None.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgecv.errors import UserError

KEYS = ("report", "kind", "model", "what", "bytes", "ratio", "mean_ms", "p50_ms", "top1", "agreement", "detail")


def _row(path: Path, **kw: Any) -> dict[str, Any]:
    return {k: kw.get(k) for k in KEYS} | {"report": path.name}


def _compress(path: Path, d: dict[str, Any]) -> list[dict[str, Any]]:
    acc = d.get("accuracy") or {}
    what = str(d.get("recipe")) + (f" {d['bits']} bit" if d.get("bits") else "")
    detail = f"top-1 {acc['before']:.2f} -> {acc['after']:.2f}%" if acc else "accuracy not measured"
    return [_row(path, kind="compress", model=d.get("model"), what=what, bytes=d.get("compressed_bytes"),
                 ratio=d.get("ratio"), top1=acc.get("after"), agreement=acc.get("agreement"), detail=detail)]


def _export(path: Path, d: dict[str, Any]) -> list[dict[str, Any]]:
    p = d.get("parity") or {}
    detail = f"rel {p['rel']:.1e}" if "rel" in p and "agreement_pct" not in p else p.get("check", "")
    return [_row(path, kind="export", model=d.get("model"), what=f"{d.get('format')} {d.get('precision')}",
                 bytes=d.get("bytes"), top1=p.get("top1_export_pct"), agreement=p.get("agreement_pct"),
                 detail=detail)]


def _bench(path: Path, d: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for r in d["results"]:
        if not isinstance(r, dict):
            raise UserError(f"{path}: 'results' holds a {type(r).__name__}, not a bench result")
        where = r.get("profile") or r.get("device") or ""
        what = " ".join(str(v) for v in (r.get("format"), r.get("precision")) if v)
        out.append(_row(path, kind="bench", model=r.get("model"), what=what, bytes=r.get("file_bytes"),
                        mean_ms=r.get("mean_ms"), p50_ms=r.get("p50_ms"),
                        detail=f"{where}, {r.get('threads', '?')} thread(s), {r.get('runtime', '')}".strip(", ")))
    return out


def _eval(path: Path, d: dict[str, Any]) -> list[dict[str, Any]]:
    return [_row(path, kind="eval", model=d.get("model"), what=str(d.get("data")), top1=d.get("top1"),
                 detail=f"{d.get('n')} images, top-5 {d.get('top5', float('nan')):.2f}%")]


def rows_from(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of one report file; anything else is a UserError naming the file."""
    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"cannot read report {p}: {e}; pass JSON written with --json") from None
    if isinstance(d, dict) and isinstance(d.get("results"), list):
        return _bench(p, d)
    if isinstance(d, dict) and "compressed_bytes" in d and "original_bytes" in d:
        return _compress(p, d)
    if isinstance(d, dict) and "format" in d and "parity" in d:
        return _export(p, d)
    if isinstance(d, dict) and "top1" in d and "n" in d:
        return _eval(p, d)
    raise UserError(f"{p} is not a report of edgecv compress, export, bench or eval; write one with --json FILE")


def collect(paths: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """Rows of every report, in the order given."""
    if not paths:
        raise UserError("no reports given; pass the JSON files written with --json")
    return [r for p in paths for r in rows_from(p)]


def label(r: dict[str, Any]) -> str:
    return f"{r['model']} {r['what']}" if r.get("what") else str(r["model"])


def plot(rows: Sequence[dict[str, Any]], out: str | os.PathLike) -> Path:
    """One PNG: size (MB), latency (ms, mean) and top-1 (%) per row, side by side; a panel lists the
    rows that hold its value (``-`` where a report has none)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("matplotlib is not installed: pip install 'edgecv[plot]'") from None
    from edgecv.checkpoint import atomic_write

    panels = [("size, MB", lambda r: r["bytes"] / 1e6 if r.get("bytes") else None),
              ("latency, ms (mean)", lambda r: r.get("mean_ms")),
              ("top-1, % (agreement if no labels)", lambda r: r.get("top1") if r.get("top1") is not None
               else r.get("agreement"))]
    labels = [f"{label(r)} [{r['report']}]" for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 0.4 * len(rows) + 1.8), sharey=True)
    ys = list(range(len(rows)))
    for ax, (title, get) in zip(axes, panels):
        vals = [get(r) for r in rows]
        ax.barh(ys, [v or 0 for v in vals], color=["#4878a8" if v is not None else "#dddddd" for v in vals])
        for y, v in zip(ys, vals):
            ax.text(v or 0, y, f" {v:.3g}" if v is not None else " -", va="center", fontsize=8)
        ax.set_title(title)
    axes[0].set_yticks(ys, labels)
    axes[0].invert_yaxis()
    fig.tight_layout()
    try:
        return atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    finally:
        plt.close(fig)
