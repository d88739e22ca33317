"""Board-side LiteRT runner, pushed over ssh and run with the board's Python (stdlib + numpy + LiteRT).

Standalone on purpose: the board has ai-edge-litert (or tflite-runtime) but not edgecv.
Prints one JSON line: init/first times, the per-run samples (ms), peak RSS, versions, board facts.
"""
import argparse
import json
import os
import platform
import sys
import time


def _interpreter():
    try:
        from ai_edge_litert.interpreter import Interpreter
        from importlib.metadata import version
        return Interpreter, "ai_edge_litert", version("ai-edge-litert")
    except ImportError:
        from tflite_runtime.interpreter import Interpreter  # older boards
        import tflite_runtime
        return Interpreter, "tflite_runtime", getattr(tflite_runtime, "__version__", "?")


def _status_mb(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _facts(cores):
    facts = {"machine": platform.machine(), "kernel": platform.release(), "python": platform.python_version()}
    try:
        with open("/proc/device-tree/model") as f:
            facts["model"] = f.read().strip("\x00\n ")
    except OSError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "cpu part", "hardware")):
                    k, v = line.split(":", 1)
                    facts.setdefault(k.strip().lower().replace(" ", "_"), v.strip())
    except OSError:
        pass
    try:
        with open("/sys/devices/system/cpu/cpu%d/cpufreq/scaling_governor" % cores[0]) as f:
            facts["governor"] = f.read().strip()
    except (OSError, IndexError):
        facts["governor"] = None
    return facts


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mask", default=None, help="hex CPU mask to pin to (taskset style)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--runs", type=int, default=50)
    a = ap.parse_args(argv)
    import numpy as np

    cores = None
    if a.mask:
        v = int(a.mask, 16)
        cores = [i for i in range(v.bit_length()) if v >> i & 1]
        os.sched_setaffinity(0, set(cores))
    Interpreter, rt, rt_version = _interpreter()
    base = _status_mb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    t0 = time.perf_counter()
    interp = Interpreter(model_path=a.model, num_threads=a.threads)
    interp.allocate_tensors()
    init_ms = (time.perf_counter() - t0) * 1e3
    rng = np.random.default_rng(0)
    for d in interp.get_input_details():
        shape = [int(s) if s > 0 else 1 for s in d["shape"]]
        dt = np.dtype(d["dtype"])
        if np.issubdtype(dt, np.integer):
            info = np.iinfo(dt)
            x = rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dt)
        else:
            x = rng.standard_normal(shape).astype(dt)
        interp.set_tensor(d["index"], x)
    t0 = time.perf_counter()
    interp.invoke()
    first_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(a.warmup):
        interp.invoke()
    samples = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        interp.invoke()
        samples.append((time.perf_counter() - t0) * 1e3)
    out = {"init_ms": init_ms, "first_ms": first_ms, "samples_ms": samples, "peak_mem_mb": _status_mb("VmHWM"),
           "rss_before_load_mb": base, "cores": sorted(os.sched_getaffinity(0)), "threads": a.threads,
           "versions": {rt: rt_version, "numpy": np.__version__}, "device_facts": _facts(cores or [0])}
    sys.stdout.write("EDGECV-BOARD-RESULT " + json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
