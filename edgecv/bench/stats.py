"""Latency statistics over a list of per-run times (milliseconds)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def summarize(samples_ms: Sequence[float]) -> dict[str, float]:
    """mean, p50/p90/p99 (numpy's linear interpolation), sample std (ddof=1), min, max, n.

    ``std_ms`` is the sample standard deviation (n-1); with one sample it is 0.
    """
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError("need at least one timing sample")
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "mean_ms": float(a.mean()),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "std_ms": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "min_ms": float(a.min()),
        "max_ms": float(a.max()),
        "n": int(a.size),
    }
