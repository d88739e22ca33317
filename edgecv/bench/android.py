"""Android over adb: push the model (and benchmark_model when given), run it pinned to one big core, parse.

Flow: check the device (one, authorized), read facts (getprop, governor of the pinned core), push
the model and optionally the benchmark binary into the profile's ``remote_dir``, run
``taskset MASK benchmark_model --graph=.. --num_threads=N --warmup_runs=W --num_runs=R --use_xnnpack=true``,
parse its output, and remove what was pushed (also on failure).
"""
from __future__ import annotations

import logging
import posixpath
import shlex
from pathlib import Path
from typing import Any

from edgecv.bench.adb import Adb, AdbError
from edgecv.bench.benchmark_model import parse

log = logging.getLogger(__name__)

FACT_PROPS = {"model": "ro.product.model", "manufacturer": "ro.product.manufacturer",
              "soc": "ro.soc.model", "platform": "ro.board.platform", "abi": "ro.product.cpu.abi",
              "android": "ro.build.version.release", "sdk": "ro.build.version.sdk"}


def mask_cores(mask: str) -> list[int]:
    v = int(mask, 16)
    return [i for i in range(v.bit_length()) if v >> i & 1]


def device_facts(adb: Adb, mask: str) -> dict[str, Any]:
    props = adb.getprops()
    facts: dict[str, Any] = {k: props.get(p) for k, p in FACT_PROPS.items() if props.get(p)}
    core = mask_cores(mask)[0]
    gov = adb.shell(f"cat /sys/devices/system/cpu/cpu{core}/cpufreq/scaling_governor", check=False)
    facts["governor"] = gov.stdout.strip() if gov.returncode == 0 else None
    facts["pinned_cores"] = mask_cores(mask)
    return facts


def benchmark_command(binary: str, graph: str, mask: str, *, threads: int, warmup: int, runs: int) -> str:
    return " ".join(shlex.quote(a) for a in (
        "taskset", mask, binary, f"--graph={graph}", f"--num_threads={threads}", f"--warmup_runs={warmup}",
        f"--num_runs={runs}", "--use_xnnpack=true"))


def run_android(model_file: str, profile: dict[str, Any], *, warmup: int = 10, runs: int = 50, threads: int = 1,
                benchmark_binary: str | None = None, serial: str | None = None, adb_port: int | None = None,
                timeout: float = 900) -> dict[str, Any]:
    """Benchmark a .tflite file on the phone of ``profile``; returns timings in ms and device facts."""
    adb = Adb(serial=serial or profile.get("serial"), port=adb_port, timeout=60)
    adb.serial = adb.require_device()
    mask = profile["big_core_mask"]
    facts = device_facts(adb, mask)
    if profile.get("abi") and facts.get("abi") and facts["abi"] != profile["abi"]:
        log.warning("profile %s expects ABI %s but the device reports %s", profile["name"], profile["abi"], facts["abi"])
    remote_dir = profile.get("remote_dir", "/data/local/tmp/edgecv")
    pushed: list[str] = []
    binary_local = benchmark_binary or profile.get("benchmark_binary_local")
    try:
        adb.shell(f"mkdir -p {shlex.quote(remote_dir)}")
        if binary_local:
            if not Path(binary_local).is_file():
                raise AdbError(f"benchmark_model binary {binary_local} not found on this machine")
            binary = posixpath.join(remote_dir, "benchmark_model")
            pushed.append(binary)  # before the push: a push cut short can leave a partial file
            adb.push(str(binary_local), binary, timeout=300)
            adb.shell(f"chmod 755 {shlex.quote(binary)}")
        else:
            binary = profile["benchmark_binary"]
            if adb.shell(f"ls {shlex.quote(binary)}", check=False).returncode != 0:
                raise AdbError(f"benchmark_model not found on the device at {binary}: pass --benchmark-binary "
                               "PATH (the android_aarch64 build of TFLite's benchmark_model) to push it, or fix "
                               f"benchmark_binary: in {profile.get('file', 'the profile')}")
        graph = posixpath.join(remote_dir, Path(model_file).name)
        pushed.append(graph)
        adb.push(str(model_file), graph, timeout=300)
        cmd = benchmark_command(binary, graph, mask, threads=threads, warmup=warmup, runs=runs)
        p = adb.shell(cmd, timeout=timeout, check=False)
        if "daemon not running" in p.stderr or not (p.stdout.strip() or p.stderr.strip()):
            _still_there(adb)  # a shell cut off by an unplugged phone or a dead server prints nothing
        if p.returncode == 127 or "not found" in p.stderr:
            raise AdbError(f"benchmark_model could not be started on the device ({p.stderr.strip()[:120]}); "
                           "pass --benchmark-binary PATH")
        res = parse(p.stdout + "\n" + p.stderr)
    finally:
        if pushed:
            try:
                adb.shell("rm -f " + " ".join(shlex.quote(x) for x in pushed), timeout=30, check=False)
            except AdbError as e:
                log.warning("could not remove pushed files from the device: %s", e)
    return {"runtime": "benchmark_model", "device": profile["name"], "serial": adb.serial, "threads": threads,
            "cores": facts["pinned_cores"], "taskset_mask": mask, "warmup": warmup, "runs": runs, **res,
            "device_facts": facts, "command": cmd, "versions": {"adb": _adb_version(adb)}}


def _still_there(adb: Adb) -> None:
    """Raise AdbError when the device (or the adb server) went away during the benchmark."""
    p = adb.run("get-state", timeout=30, check=False)
    if p.returncode != 0 or p.stdout.strip() != "device":
        from edgecv.bench.adb import _explain

        if p.returncode == 0 and p.stdout.strip():
            why = f"it is {p.stdout.strip()} now"
        else:
            why = _explain(p.stderr, adb.serial) or (p.stderr.strip().splitlines() or ["no answer"])[-1]
        raise AdbError(f"device {adb.serial} went away during the benchmark ({why}); reconnect it and retry")


def _adb_version(adb: Adb) -> str | None:
    try:
        out = adb.run("version", with_serial=False, timeout=10).stdout
    except AdbError:
        return None
    return next((ln.split()[-1] for ln in out.splitlines() if ln.startswith("Version")), None)
