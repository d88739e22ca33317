"""PNG bar chart of benchmark results (p50 with p10..p90-style whiskers: p50 -> p90), one bar per model/format."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgecv.errors import UserError


def label(r: dict[str, Any]) -> str:
    parts = [str(r.get("model")), str(r.get("format"))]
    if r.get("precision"):
        parts.append(str(r["precision"]))
    return " ".join(parts)


def plot_results(results: Sequence[dict[str, Any]], path: str | os.PathLike, title: str | None = None) -> Path:
    """Horizontal bars of p50 latency (ms) with a whisker up to p90 (mean where percentiles are absent)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("matplotlib is not installed: pip install 'edgecv[plot]'") from None
    from edgecv.checkpoint import atomic_write

    rows = [(label(r), r.get("p50_ms") or r["mean_ms"], r.get("p90_ms")) for r in results]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    ys = range(len(rows))
    vals = [v for _, v, _ in rows]
    err = [[0] * len(rows), [max(0.0, (p90 or v) - v) for _, v, p90 in rows]]
    ax.barh(list(ys), vals, xerr=err, color="#4878a8", capsize=3)
    ax.set_yticks(list(ys), [n for n, _, _ in rows])
    ax.invert_yaxis()
    for y, v in zip(ys, vals):
        ax.text(v, y, f" {v:.2f}", va="center", fontsize=8)
    dev = results[0].get("device") if results else ""
    thr = results[0].get("threads") if results else ""
    ax.set_xlabel("latency, ms (bar: p50, whisker: p90)")
    ax.set_title(title or f"edgecv bench on {dev}, {thr} thread(s)")
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    finally:
        plt.close(fig)
