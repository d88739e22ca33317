"""``.pte`` files on Android over adb with the user's ExecuTorch ``executor_runner`` build, output parsed.

The PyPI wheels carry no device binary (stack.md): build ``executor_runner`` for arm64-v8a with
the NDK and the XNNPACK backend (``cmake -DEXECUTORCH_BUILD_XNNPACK=ON ... --preset android-arm64-v8a``),
then either put it on the phone and name it in the profile (``executor_runner: /data/local/tmp/executor_runner``)
or pass it with ``--benchmark-binary PATH`` to be pushed. Flow as :mod:`edgecv.bench.android`
(same :class:`~edgecv.bench.adb.Adb` wrapper, device checks, facts, cleanup):
``taskset MASK executor_runner --model_path=F --num_executions=W+R --cpu_threads=N``.

What executor_runner prints (ET_LOG lines ``I 00:00:00.000526 executorch:executor_runner.cpp:82] ...``,
examples/portable/executor_runner/executor_runner.cpp):

* newer builds: ``Model loaded in X ms.``, one ``Iteration i of N: X ms`` per execution, then
  ``Model executed successfully N time(s) in X ms.`` -> init, first, and per-run samples (the first
  W iterations are the warm-up and are dropped);
* older builds: only ``Model executed successfully N time(s) in X ms.`` -> the mean over all N
  (warm-up included: there is no per-run time to drop), reported as ``format: "total-only"``;
* the oldest: ``Model executed successfully.`` without a time -> an error saying so.
"""
from __future__ import annotations

import logging
import posixpath
import re
import shlex
from pathlib import Path
from typing import Any

from edgecv.bench.adb import Adb, AdbError
from edgecv.bench.stats import summarize
from edgecv.errors import UserError

log = logging.getLogger(__name__)

_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_LOADED = re.compile(r"Model loaded in " + _NUM + r" ms")
_ITER = re.compile(r"Iteration (\d+) of (\d+): " + _NUM + r" ms")
_TOTAL = re.compile(r"Model executed successfully (\d+) time\(s\) in " + _NUM + r" ms")
_LEVEL = re.compile(r"^([EF]) [\d:.]+ executorch:[^\]]*\] (.*)$")


def parse(text: str, warmup: int = 0) -> dict[str, Any]:
    """Timings in ms from executor_runner's log; UserError quoting its error when it did not finish."""
    m = _TOTAL.search(text)
    if m is None:
        errors = [mm.group(2).strip() for ln in text.splitlines() if (mm := _LEVEL.match(ln.strip()))]
        if "Model executed successfully." in text:
            why = "this executor_runner build prints no execution time; use a build from ExecuTorch >= 0.4"
        elif "unknown command line flag" in text:
            why = "this executor_runner build lacks a flag edgecv passes (--cpu_threads / --num_executions): " + \
                  next(ln.strip() for ln in text.splitlines() if "unknown command line flag" in ln)
        else:
            why = "; ".join(errors[:2]) if errors else (text.strip().splitlines() or ["no output"])[-1][:200]
        raise UserError(f"executor_runner did not report timings: {why}")
    n, total = int(m.group(1)), float(m.group(2))
    iters = sorted((int(a), float(t)) for a, _, t in _ITER.findall(text))
    out: dict[str, Any] = {"executions": n, "total_ms": total}
    lm = _LOADED.search(text)
    out["init_ms"] = float(lm.group(1)) if lm else None
    if iters:
        samples = [t for _, t in iters]
        if len(samples) <= warmup:
            raise UserError(f"executor_runner ran {len(samples)} time(s), not more than the {warmup} warm-up runs")
        out.update({"format": "per-iteration", "first_ms": samples[0], "warmup_ms": samples[:warmup],
                    "samples_ms": samples[warmup:], **summarize(samples[warmup:])})
    else:
        out.update({"format": "total-only", "first_ms": None, "mean_ms": total / max(n, 1)})
    return out


def runner_command(binary: str, model: str, mask: str, *, threads: int, executions: int) -> str:
    return " ".join(shlex.quote(a) for a in (
        "taskset", mask, binary, f"--model_path={model}", f"--num_executions={executions}", f"--cpu_threads={threads}"))


def run_android_pte(model_file: str, profile: dict[str, Any], *, warmup: int = 10, runs: int = 50, threads: int = 1,
                    runner_binary: str | None = None, serial: str | None = None, adb_port: int | None = None,
                    timeout: float = 900) -> dict[str, Any]:
    """Benchmark a .pte on the phone of ``profile`` with executor_runner; timings in ms and device facts."""
    from edgecv.bench.android import _adb_version, device_facts

    adb = Adb(serial=serial or profile.get("serial"), port=adb_port, timeout=60)
    adb.serial = adb.require_device()
    mask = profile["big_core_mask"]
    facts = device_facts(adb, mask)
    remote_dir = profile.get("remote_dir", "/data/local/tmp/edgecv")
    pushed: list[str] = []
    local = runner_binary or profile.get("executor_runner_local")
    try:
        adb.shell(f"mkdir -p {shlex.quote(remote_dir)}")
        if local:
            if not Path(local).is_file():
                raise AdbError(f"executor_runner binary {local} not found on this machine")
            binary = posixpath.join(remote_dir, "executor_runner")
            adb.push(str(local), binary, timeout=300)
            pushed.append(binary)
            adb.shell(f"chmod 755 {shlex.quote(binary)}")
        else:
            binary = profile.get("executor_runner")
            if not binary or adb.shell(f"ls {shlex.quote(binary)}", check=False).returncode != 0:
                raise AdbError("executor_runner not found on the device"
                               + (f" at {binary}" if binary else " (the profile names no executor_runner:)")
                               + ": pass --benchmark-binary PATH (an arm64-v8a NDK build of ExecuTorch's "
                                 "executor_runner with XNNPACK) to push it, or set executor_runner: in "
                               + str(profile.get("file", "the profile")))
        model = posixpath.join(remote_dir, Path(model_file).name)
        adb.push(str(model_file), model, timeout=300)
        pushed.append(model)
        cmd = runner_command(binary, model, mask, threads=threads, executions=warmup + runs)
        p = adb.shell(cmd, timeout=timeout, check=False)
        if p.returncode == 127 or "not found" in p.stderr:
            raise AdbError(f"executor_runner could not be started on the device ({p.stderr.strip()[:120]}); "
                           "pass --benchmark-binary PATH")
        res = parse(p.stdout + "\n" + p.stderr, warmup=warmup)
    finally:
        if pushed:
            try:
                adb.shell("rm -f " + " ".join(shlex.quote(x) for x in pushed), timeout=30, check=False)
            except AdbError as e:
                log.warning("could not remove pushed files from the device: %s", e)
    return {"runtime": "executor_runner", "device": profile["name"], "serial": adb.serial, "threads": threads,
            "cores": facts["pinned_cores"], "taskset_mask": mask, "warmup": warmup, "runs": runs, **res,
            "n": len(res.get("samples_ms") or []) or res["executions"],
            "device_facts": facts, "command": cmd, "versions": {"adb": _adb_version(adb)}}
