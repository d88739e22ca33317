"""Parse the text output of TFLite's ``benchmark_model`` (both the older and the newer format).

Older builds print ``count=50 first=.. curr=.. min=.. max=.. avg=.. std=..`` per phase and
``Inference timings in us: Init: X, First inference: Y, Warmup (avg): Z, Inference (avg): W``.
Newer builds add ``p5=.. median=.. p95=..`` to the per-phase lines. Lines may carry logcat prefixes
(``07-14 13:14:52.859 22838 22838 I tflite  : ``). Numbers may be in scientific notation (2.95e+06).
The per-operator profile (``Timings (microseconds): count=..``) is ignored.
"""
from __future__ import annotations

import re
from typing import Any

from edgecv.errors import UserError

_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_SUMMARY = re.compile(r"Inference timings in us: Init: " + _NUM + r", First inference: " + _NUM +
                      r", Warmup \(avg\): " + _NUM + r", Inference \(avg\): " + _NUM)
_PHASE = re.compile(r"(?:^|[\s:])count=(\d+)((?: \w+=" + _NUM + r")+)\s*$")
_KV = re.compile(r"(\w+)=" + _NUM)
_MEM = re.compile(r"(?:Peak memory footprint|Memory footprint delta from the start of the tool) \(MB\): init="
                  + _NUM + r" overall=" + _NUM)
_PEAK_PERIODIC = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: " + _NUM)


def parse(text: str) -> dict[str, Any]:
    """Timings in ms (init, first, mean, std, min, max, p50 and p5/p95 when printed), memory in MB.

    Raises UserError when the summary line is missing (the run failed: the message quotes the
    last ERROR line the tool printed).
    """
    summary = None
    phases: list[dict[str, float]] = []
    mem: dict[str, float] = {}
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if "Timings (microseconds):" in line:  # per-op profiler summary, not a benchmark phase
            continue
        m = _SUMMARY.search(line)
        if m:
            summary = [float(g) for g in m.groups()]
            continue
        m = _PHASE.search(line)
        if m and "curr=" in line:
            kv = {k: float(v) for k, v in _KV.findall(line[m.start():])}
            phases.append(kv)
            continue
        m = _MEM.search(line)
        if m:
            mem = {"init_mem_mb": float(m.group(1)), "overall_mem_mb": float(m.group(2))}
            continue
        m = _PEAK_PERIODIC.search(line)
        if m:
            mem["peak_mem_mb"] = float(m.group(1))
    if summary is None:
        errors = [ln.split("ERROR:", 1)[1].strip() for ln in text.splitlines() if "ERROR:" in ln]
        why = "; ".join(errors[:2]) if errors else (text.strip().splitlines() or ["no output"])[-1][:200]
        raise UserError(f"benchmark_model did not report timings: {why}")
    init_us, first_us, warm_us, avg_us = summary
    out: dict[str, Any] = {"init_ms": init_us / 1e3, "first_ms": first_us / 1e3, "warmup_mean_ms": warm_us / 1e3,
                           "mean_ms": avg_us / 1e3, "format": "old"}
    if phases:
        run = phases[-1]  # the last phase is the measured one (the first is the warm-up)
        out["n"] = int(run.get("count", 0))
        for key, name in (("std", "std_ms"), ("min", "min_ms"), ("max", "max_ms"), ("median", "p50_ms"),
                          ("p5", "p5_ms"), ("p95", "p95_ms")):
            if key in run:
                out[name] = run[key] / 1e3
        if "median" in run:
            out["format"] = "percentiles"
    out.update(mem)
    return out
