"""The one thin wrapper around the real ``adb`` client: every adb call in edgecv goes through ``Adb.run``.

It runs the ``adb`` binary (``$EDGECV_ADB`` or ``adb`` on PATH), passes ``-P PORT`` when a server port is
given (otherwise adb itself honours ``ANDROID_ADB_SERVER_PORT``) and ``-s SERIAL`` when a serial is
given, and turns adb's failures (no device, several devices, unauthorized, offline, unknown serial,
missing binary, timeouts) into one-line ``AdbError``s that say how to fix them.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass

from edgecv.errors import UserError

log = logging.getLogger(__name__)


class AdbError(UserError):
    """adb could not do what was asked (message says why and how to fix it)."""


@dataclass
class AdbDevice:
    serial: str
    state: str
    props: dict[str, str]


def _explain(stderr: str, serial: str | None) -> str | None:
    s = stderr.lower()
    who = f"device {serial}" if serial else "the device"
    if "no space left on device" in s:
        return (f"{who} has no storage space left for the push: free space on it "
                "(adb shell df /data/local/tmp) and retry")
    if "daemon not running" in s:  # the server went away; the client started a fresh one, which has no device
        return ("the adb server stopped during the run (adb started a new one): check the cable and "
                "`adb devices`, then retry")
    if "no devices/emulators found" in s or "no devices found" in s:
        return "no Android device attached: connect one with USB debugging enabled (check `adb devices`)"
    if "more than one device" in s:
        return "several Android devices attached: pass --serial SERIAL or set serial: in the device profile"
    if "unauthorized" in s:
        return f"{who} is unauthorized: unlock it and accept the 'Allow USB debugging' prompt, then retry"
    if "offline" in s:
        return f"{who} is offline: replug the cable or run `adb reconnect`"
    if "not found" in s and "device" in s:
        return f"device {serial} not found: check the serial with `adb devices`"
    if "cannot connect to daemon" in s or "failed to start daemon" in s:
        return "cannot reach the adb server: check --adb-port / ANDROID_ADB_SERVER_PORT or run `adb start-server`"
    return None


class Adb:
    def __init__(self, serial: str | None = None, port: int | None = None, adb_path: str | None = None,
                 timeout: float = 60) -> None:
        self.serial = serial
        self.port = port
        self.timeout = timeout
        self.adb_path = adb_path or os.environ.get("EDGECV_ADB") or shutil.which("adb")

    def _argv(self, args: tuple[str, ...], with_serial: bool) -> list[str]:
        if not self.adb_path:
            raise AdbError("adb not found: install it (Debian/Ubuntu: sudo apt-get install adb; or Android "
                           "platform-tools on PATH) or set EDGECV_ADB=/path/to/adb")
        argv = [self.adb_path]
        if self.port is not None:
            argv += ["-P", str(self.port)]
        if with_serial and self.serial:
            argv += ["-s", self.serial]
        return argv + list(args)

    def run(self, *args: str, timeout: float | None = None, check: bool = True,
            with_serial: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``adb [-P port] [-s serial] ARGS``; raise AdbError on failure when ``check``."""
        argv = self._argv(args, with_serial)
        timeout = self.timeout if timeout is None else timeout
        log.debug("adb: %s", " ".join(argv))
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                               errors="replace")
        except subprocess.TimeoutExpired:
            raise AdbError(f"`adb {' '.join(args)[:80]}` timed out after {timeout:.0f} s; is the device "
                           "responding? (raise --timeout for slow models)") from None
        except OSError as e:
            raise AdbError(f"cannot run {argv[0]}: {e}") from None
        if check and p.returncode != 0:
            why = _explain(p.stderr, self.serial)
            if why is None and args and args[0] == "push":  # adb push reports its errors on stdout
                why = _explain(p.stdout, self.serial)
            if why:
                raise AdbError(why)
            msg = (p.stderr.strip() or p.stdout.strip() or f"exit code {p.returncode}").splitlines()[-1]
            raise AdbError(f"`adb {' '.join(args)[:80]}` failed: {msg}")
        return p

    def devices(self) -> list[AdbDevice]:
        """``adb devices -l`` parsed: serial, state and the key:value facts."""
        out = self.run("devices", "-l", with_serial=False).stdout
        devs = []
        for line in out.splitlines():
            if not line.strip() or line.startswith("List of devices") or line.startswith("*"):
                continue
            parts = line.split()
            if len(parts) < 2:
                continue
            props = dict(p.split(":", 1) for p in parts[2:] if ":" in p)
            devs.append(AdbDevice(parts[0], parts[1], props))
        return devs

    def require_device(self) -> str:
        """The serial of the one usable device (this serial, or the only one attached), else AdbError."""
        devs = self.devices()
        if self.serial:
            dev = next((d for d in devs if d.serial == self.serial), None)
            if dev is None:
                attached = ", ".join(d.serial for d in devs) or "none"
                raise AdbError(f"device {self.serial} not found (attached: {attached})")
        else:
            if not devs:
                raise AdbError("no Android device attached: connect one with USB debugging enabled (check `adb devices`)")
            if len(devs) > 1:
                raise AdbError(f"several Android devices attached ({', '.join(d.serial for d in devs)}): "
                               "pass --serial SERIAL or set serial: in the device profile")
            dev = devs[0]
        if dev.state == "unauthorized":
            raise AdbError(f"device {dev.serial} is unauthorized: unlock it and accept the 'Allow USB debugging' "
                           "prompt, then retry")
        if dev.state != "device":
            raise AdbError(f"device {dev.serial} is {dev.state}: replug the cable or run `adb reconnect`")
        return dev.serial

    def shell(self, command: str, *, timeout: float | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``adb shell COMMAND`` (one string, run by the device's sh); exit code is the command's."""
        return self.run("shell", command, timeout=timeout, check=check)

    def push(self, local: str, remote: str, *, timeout: float | None = None) -> None:
        self.run("push", local, remote, timeout=timeout)

    def getprops(self) -> dict[str, str]:
        props = {}
        for line in self.shell("getprop").stdout.splitlines():
            if line.startswith("[") and "]: [" in line:
                k, v = line[1:].split("]: [", 1)
                props[k] = v.rstrip("]").rstrip()
        return props
