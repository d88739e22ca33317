"""Device profiles (devices/*.yaml): load, validate, resolve by name, check reachability.

A profile names a target: its transport (local, adb, ssh), how to reach it (adb serial or ssh host),
its ABI, the taskset mask of one big core, where the benchmark binary lives on it, the thread count.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from edgecv.errors import UserError

log = logging.getLogger(__name__)

LOCAL_DEVICES = ("cpu", "cuda")
_REQUIRED = {"local": ("device",), "adb": ("abi", "big_core_mask", "benchmark_binary"),
             "ssh": ("host", "abi", "big_core_mask", "python")}
_DEFAULTS = {"adb": {"remote_dir": "/data/local/tmp/edgecv", "serial": None},
             "ssh": {"remote_dir": "/tmp/edgecv", "port": 22, "user": None, "identity": None, "ssh_options": []},
             "local": {}}


def devices_dir(override: str | os.PathLike | None = None) -> Path:
    """``override``, else $EDGECV_DEVICES, else the profiles shipped in the package (``edgecv/devices``)."""
    if override:
        return Path(override)
    env = os.environ.get("EDGECV_DEVICES")
    if env:
        return Path(env)
    import importlib.resources

    return Path(str(importlib.resources.files("edgecv") / "devices"))


def validate(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: a device profile must be a YAML mapping")
    transport = raw.get("transport")
    if transport not in _REQUIRED:
        raise UserError(f"{where}: transport must be one of {', '.join(_REQUIRED)} (got {transport!r})")
    missing = [k for k in ("name", *_REQUIRED[transport]) if raw.get(k) in (None, "")]
    if missing:
        raise UserError(f"{where}: missing {', '.join(missing)}")
    prof = {**_DEFAULTS[transport], **raw}
    prof["threads"] = int(prof.get("threads", 1))
    if prof["threads"] < 1:
        raise UserError(f"{where}: threads must be >= 1")
    if "big_core_mask" in prof:
        mask = str(prof["big_core_mask"]).lower().removeprefix("0x")
        if not re.fullmatch(r"[0-9a-f]+", mask) or int(mask, 16) == 0:
            raise UserError(f"{where}: big_core_mask {prof['big_core_mask']!r} is not a non-zero hex CPU mask (e.g. \"80\")")
        prof["big_core_mask"] = mask
    if transport == "local" and prof["device"] not in LOCAL_DEVICES:
        raise UserError(f"{where}: device must be cpu or cuda")
    prof["file"] = where
    return prof


def load_profiles(directory: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    import yaml

    d = devices_dir(directory)
    if not d.is_dir():
        raise UserError(f"device profile folder {d} not found; set EDGECV_DEVICES or pass --devices-dir")
    out: dict[str, dict[str, Any]] = {}
    for f in sorted(d.glob("*.yaml")):
        try:
            raw = yaml.safe_load(f.read_text())
        except yaml.YAMLError as e:
            raise UserError(f"{f}: not valid YAML ({e})") from None
        prof = validate(raw, str(f))
        if prof["name"] in out:
            raise UserError(f"{f}: device name {prof['name']!r} already used by {out[prof['name']]['file']}")
        out[prof["name"]] = prof
    return out


def resolve_device(device: str, directory: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """None for the plain local devices (cpu, cuda); else the named profile."""
    if device in LOCAL_DEVICES:
        return None
    from edgecv.registry import Registry

    reg: Registry[dict[str, Any]] = Registry("device")
    for name, prof in load_profiles(directory).items():
        reg.add(name, prof)
    return reg.get(device)


def reachable(prof: dict[str, Any], *, timeout: float = 5, adb_port: int | None = None) -> tuple[bool, str]:
    """(reachable, one-line reason) for a profile; never raises for an unreachable target."""
    t = prof["transport"]
    try:
        if t == "local":
            if prof["device"] == "cpu":
                return True, f"{os.cpu_count()} CPUs"
            import torch

            ok = torch.cuda.is_available()
            return ok, torch.cuda.get_device_name(0) if ok else "no CUDA GPU visible to torch"
        if t == "adb":
            from edgecv.bench.adb import Adb

            adb = Adb(serial=prof.get("serial"), port=adb_port, timeout=timeout)
            serial = adb.require_device()
            return True, f"adb device {serial}"
        from edgecv.bench.ssh import Ssh

        Ssh.from_profile(prof, timeout=timeout).check()
        return True, f"ssh {prof['host']}"
    except UserError as e:
        return False, str(e)
