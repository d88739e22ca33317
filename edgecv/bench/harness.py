"""Timing harness: pin, load (init), first inference, warm-up, measured runs, statistics, peak memory.

Each measurement runs by default in a fresh Python process (``python -m edgecv.bench.harness``):
init time is then a cold load (no runtime caches or lazy initialisation left over from an earlier
model), and the process's peak resident memory belongs to this model alone. Runtime imports happen
before the init clock starts (they are paid once per process, not per model).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgecv.bench.stats import summarize
from edgecv.errors import UserError

log = logging.getLogger(__name__)

_MARK = "EDGECV-BENCH-RESULT "
CSV_COLUMNS = ["model", "format", "precision", "runtime", "device", "threads", "cores", "warmup", "runs",
               "init_ms", "first_ms", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "std_ms", "min_ms", "max_ms",
               "peak_mem_mb", "file_bytes"]


def default_cores(threads: int = 1) -> list[int]:
    """The last ``threads`` CPUs this process may use (on x86 desktops all cores are alike)."""
    allowed = sorted(os.sched_getaffinity(0))
    if threads > len(allowed):
        raise UserError(f"--threads {threads} but only {len(allowed)} CPU(s) are available to this process")
    return allowed[-threads:]


def pin(cores: Sequence[int]) -> list[int]:
    allowed = os.sched_getaffinity(0)
    bad = [c for c in cores if c not in allowed]
    if bad:
        raise UserError(f"core(s) {bad} not available to this process (allowed: {sorted(allowed)})")
    os.sched_setaffinity(0, set(cores))
    return sorted(os.sched_getaffinity(0))


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so it measures from now on (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ev = version("edgecv")
    except PackageNotFoundError:
        ev = "unknown"
    return {"edgecv": ev, "python": platform.python_version(), "platform": platform.platform(),
            "machine": platform.machine(), "cpu": cpu_name(), "cpu_count": os.cpu_count()}


def measure(runner_name: str, source: str, *, device: str = "cpu", threads: int = 1,
            cores: Sequence[int] | None = None, warmup: int = 10, runs: int = 50,
            input_size: Sequence[int] | None = None, precision: str | None = None,
            weights: str | None = None, seed: int = 0, pin_cores: bool = True) -> dict[str, Any]:
    """Measure in this process. Returns timings in ms, the samples, peak memory and versions."""
    from edgecv.bench import RUNNERS

    if runs < 1 or warmup < 0 or threads < 1:
        raise UserError("need --runs >= 1, --warmup >= 0 and --threads >= 1")
    cls = RUNNERS.get(runner_name)
    pinned = pin(cores if cores is not None else default_cores(threads)) if pin_cores else None
    r = cls(source, device=device, threads=threads, input_size=tuple(input_size) if input_size else None,
            precision=precision, weights=weights, seed=seed)
    r.import_runtime()
    base_mb = _status_mb("VmRSS")
    reset = _reset_peak_rss()
    t0 = time.perf_counter_ns()
    r.load()
    init_ms = (time.perf_counter_ns() - t0) / 1e6
    r.prepare_inputs()
    t0 = time.perf_counter_ns()
    r.infer()
    first_ms = (time.perf_counter_ns() - t0) / 1e6
    for _ in range(warmup):
        r.infer()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        r.infer()
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    peak = _peak_mb()
    out: dict[str, Any] = {"runtime": r.name, "device": device, "threads": threads, "cores": pinned,
                           "warmup": warmup, "runs": runs, "init_ms": init_ms, "first_ms": first_ms,
                           **summarize(samples), "peak_mem_mb": peak,
                           "rss_before_load_mb": base_mb, "peak_mem_scope": "since load" if reset else "process",
                           **r.extra_memory(), "info": r.info(), "versions": r.versions(),
                           "samples_ms": samples}
    return out


def measure_isolated(runner_name: str, source: str, *, timeout: float = 900, **kw: Any) -> dict[str, Any]:
    """``measure`` in a fresh Python process (clean init time and peak memory; see module doc)."""
    spec = json.dumps({"runner": runner_name, "source": source, **kw})
    env = dict(os.environ, PYTHONHASHSEED="0")
    try:
        p = subprocess.run([sys.executable, "-m", "edgecv.bench.harness", spec], capture_output=True,
                           text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise UserError(f"benchmark of {source} did not finish in {timeout:.0f} s; use fewer --runs") from None
    for line in p.stdout.splitlines():
        if line.startswith(_MARK):
            res = json.loads(line[len(_MARK):])
            if "error" in res:
                raise UserError(res["error"])
            return res
    # the measuring process died (a broken or hostile model file can crash a runtime): one line, no traceback
    how = f"was killed by signal {signal.Signals(-p.returncode).name}" if p.returncode < 0 else \
        f"failed (exit {p.returncode})"
    last = next((ln.strip() for ln in reversed((p.stderr or p.stdout).splitlines()) if ln.strip()), "no output")
    raise UserError(f"the benchmark process for {source} {how}: {last[:300]}; "
                    "check that the file is a valid model (re-export it)")


def to_csv(results: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in results:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items() if k in CSV_COLUMNS})
    return buf.getvalue()


def write_csv(path: str | os.PathLike, results: Sequence[dict[str, Any]]) -> Path:
    from edgecv.checkpoint import atomic_write

    text = to_csv(results)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    runner, source = spec.pop("runner"), spec.pop("source")
    try:
        res = measure(runner, source, **spec)
    except UserError as e:
        res = {"error": str(e)}
    sys.stdout.write(_MARK + json.dumps(res) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
