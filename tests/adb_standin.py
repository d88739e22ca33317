"""A stand-in adb SERVER on loopback that Debian's real `adb` client talks to (``adb -P PORT ...``).

It speaks the adb host protocol (system/core/adb/OVERVIEW.TXT, SERVICES.TXT, SYNC.TXT):
requests are 4 hex digits of length + payload, answered ``OKAY`` or ``FAIL`` + hex length + message.
Implemented: host:version, host:devices[-l], host:features / host-serial:S:features,
host[-serial:S]:get-state, host:transport:S / transport-any / tport:serial:S / tport:any,
then on the device side shell (legacy and shell,v2 packets with exit codes) and sync: (STAT, SEND,
DATA, DONE, QUIT) for push. Each simulated device has getprop facts, a tiny file system, and a
``benchmark_model`` that prints a captured real output. Written for the tests: a real phone is not
available in CI, and mocking subprocess would not exercise the real client.
"""
from __future__ import annotations

import shlex
import socket
import socketserver
import struct
import threading
import time
from dataclasses import dataclass, field

ADB_SERVER_VERSION = 41  # what Debian's adb 1:29.0.6 client expects ("Version 1.0.41")
UNAUTHORIZED = ("device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\n"
                "Try 'adb kill-server' if that seems wrong.\nOtherwise check for a confirmation dialog on your device.")


@dataclass
class FakeDevice:
    serial: str
    state: str = "device"  # device | unauthorized | offline
    props: dict[str, str] = field(default_factory=lambda: {
        "ro.product.model": "Pixel 4", "ro.product.manufacturer": "Google", "ro.product.device": "flame",
        "ro.board.platform": "msmnile", "ro.soc.model": "SM8150", "ro.product.cpu.abi": "arm64-v8a",
        "ro.build.version.release": "13", "ro.build.version.sdk": "33"})
    governor: str = "schedutil"
    files: dict[str, bytes] = field(default_factory=dict)
    benchmark_output: str = ""
    hang: bool = False              # benchmark_model never returns (timeout test)
    storage_free: int | None = None  # bytes a push may still write; None = unlimited (full-storage test)
    executables: set[str] = field(default_factory=set)   # paths that exist as binaries without a push
    commands: list[str] = field(default_factory=list)    # every shell command received, in order


def _hex(s: bytes) -> bytes:
    return b"%04x" % len(s) + s


class _Handler(socketserver.BaseRequestHandler):
    server: "_Server"

    # ---- framing helpers
    def _recv(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.request.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("client closed")
            buf += chunk
        return buf

    def _okay(self, payload: bytes | None = None) -> None:
        self.request.sendall(b"OKAY" + (_hex(payload) if payload is not None else b""))

    def _fail(self, msg: str) -> None:
        self.request.sendall(b"FAIL" + _hex(msg.encode()))

    def handle(self) -> None:
        self.device: FakeDevice | None = None
        try:
            while True:
                n = int(self._recv(4), 16)
                req = self._recv(n).decode()
                self.server.requests.append(req)
                if not self._dispatch(req):
                    return
        except (ConnectionError, OSError, ValueError):
            return

    # ---- device selection
    def _select(self, serial: str | None) -> FakeDevice | None:
        devs = self.server.devices
        if serial is None:
            if not devs:
                self._fail("no devices/emulators found")
                return None
            if len(devs) > 1:
                self._fail("more than one device/emulator")
                return None
            dev = devs[0]
        else:
            dev = next((d for d in devs if d.serial == serial), None)
            if dev is None:
                self._fail(f"device '{serial}' not found")
                return None
        if dev.state == "unauthorized":
            self._fail(UNAUTHORIZED)
            return None
        if dev.state == "offline":
            self._fail("device offline")
            return None
        return dev

    def _dispatch(self, req: str) -> bool:
        if req == "host:version":
            self._okay(b"%04x" % ADB_SERVER_VERSION)
            return False
        if req in ("host:devices", "host:devices-l"):
            lines = []
            for i, d in enumerate(self.server.devices, 1):
                if req.endswith("-l"):
                    extra = "" if d.state != "device" else (
                        f" product:{d.props.get('ro.product.device', 'x')} model:"
                        f"{d.props.get('ro.product.model', 'x').replace(' ', '_')} device:{d.props.get('ro.product.device', 'x')}")
                    lines.append(f"{d.serial:<22} {d.state}{extra} transport_id:{i}\n")
                else:
                    lines.append(f"{d.serial}\t{d.state}\n")
            self._okay("".join(lines).encode())
            return False
        if req == "host:kill":
            self._okay()
            return False
        if req.startswith("host-serial:") or req.startswith("host:"):
            serial = None
            rest = req[len("host:"):]
            if req.startswith("host-serial:"):
                serial, _, rest = req[len("host-serial:"):].rpartition(":")
            if rest in ("features", "host-features"):
                if self._select(serial):
                    self._okay(b"shell_v2,cmd")
                return False
            if rest == "get-state":
                devs = self.server.devices
                dev = next((d for d in devs if d.serial == serial), None) if serial else (devs[0] if len(devs) == 1 else None)
                if dev is None:
                    self._select(serial)  # sends the matching FAIL
                else:
                    self._okay(dev.state.encode())
                return False
            if rest.startswith("transport:") or rest.startswith("tport:serial:"):
                self.device = self._select(rest.split(":", 2)[-1] if rest.startswith("tport") else rest[len("transport:"):])
            elif rest in ("transport-any", "tport:any", "transport-usb", "transport-local"):
                self.device = self._select(None)
            else:
                self._fail(f"unknown host service {req}")
                return False
            if self.device is None:
                return False
            self._okay()
            if rest.startswith("tport:"):
                self.request.sendall(struct.pack("<Q", self.server.devices.index(self.device) + 1))
            return True  # the next request on this socket goes to the device
        if self.device is None:
            self._fail("no transport selected")
            return False
        if req.startswith("shell"):
            head, _, cmd = req.partition(":")
            self._shell(cmd, v2="v2" in head.split(","))
            return False
        if req == "sync:":
            self._okay()
            self._sync()
            return False
        self._fail(f"unknown service {req}")
        return False

    # ---- shell
    def _shell(self, cmd: str, v2: bool) -> None:
        dev = self.device
        assert dev is not None
        dev.commands.append(cmd)
        self._okay()
        if dev.hang and cmd.startswith("taskset"):
            self.request.settimeout(0.2)
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:  # until the client gives up and closes the socket
                try:
                    if self.request.recv(4096) == b"":
                        return
                except socket.timeout:
                    continue
            return
        out, err, code = self.server.run_command(dev, cmd)
        if v2:
            pkts = b""
            if out:
                pkts += struct.pack("<BI", 1, len(out)) + out
            if err:
                pkts += struct.pack("<BI", 2, len(err)) + err
            pkts += struct.pack("<BIB", 3, 1, code)
            self.request.sendall(pkts)
        else:
            self.request.sendall(out + err)
        self._drain()

    def _drain(self) -> None:
        """Half-close and read what the client still sends (close-stdin packets) so close() sends no RST."""
        try:
            self.request.shutdown(socket.SHUT_WR)
            self.request.settimeout(5)
            while self.request.recv(4096):
                pass
        except OSError:
            pass

    # ---- sync (push)
    def _sync(self) -> None:
        dev = self.device
        assert dev is not None
        pending: tuple[str, bytearray] | None = None
        while True:
            ident, length = struct.unpack("<4sI", self._recv(8))
            if ident == b"QUIT":
                return
            if ident == b"STAT":
                path = self._recv(length).decode()
                if path in dev.files or path in dev.executables:
                    size = len(dev.files.get(path, b""))
                    self.request.sendall(b"STAT" + struct.pack("<III", 0o100755, size, int(time.time())))
                elif any(f.startswith(path.rstrip("/") + "/") for f in dev.files) or path in ("/data/local/tmp", "/tmp"):
                    self.request.sendall(b"STAT" + struct.pack("<III", 0o40755, 4096, int(time.time())))
                else:
                    self.request.sendall(b"STAT" + struct.pack("<III", 0, 0, 0))
            elif ident == b"SEND":
                spec = self._recv(length).decode()
                path = spec.rsplit(",", 1)[0]
                pending = (path, bytearray())
            elif ident == b"DATA":
                data = self._recv(length)
                if pending is not None:
                    pending[1].extend(data)
            elif ident == b"DONE":  # length field carries the mtime
                if pending is None:
                    self.request.sendall(b"FAIL" + struct.pack("<I", 7) + b"no SEND")
                    return
                if dev.storage_free is not None and len(pending[1]) > dev.storage_free:
                    msg = b"write failed: No space left on device"  # what adbd answers on ENOSPC
                    self.request.sendall(b"FAIL" + struct.pack("<I", len(msg)) + msg)
                    return
                dev.files[pending[0]] = bytes(pending[1])
                if dev.storage_free is not None:
                    dev.storage_free -= len(pending[1])
                pending = None
                self.request.sendall(b"OKAY" + struct.pack("<I", 0))
            else:
                self.request.sendall(b"FAIL" + struct.pack("<I", 15) + b"unsupported id")
                return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, devices: list[FakeDevice]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.devices = devices
        self.requests: list[str] = []

    def run_command(self, dev: FakeDevice, cmd: str) -> tuple[bytes, bytes, int]:
        """A tiny 'sh' for the commands the Android runner sends."""
        try:
            argv = shlex.split(cmd)
        except ValueError:
            return b"", b"/system/bin/sh: syntax error\n", 2
        if not argv:
            return b"", b"", 0
        prog, args = argv[0], argv[1:]
        if prog == "getprop":
            if args:
                return (dev.props.get(args[0], "") + "\n").encode(), b"", 0
            return "".join(f"[{k}]: [{v}]\n" for k, v in dev.props.items()).encode(), b"", 0
        if prog == "cat" and args and args[0].endswith("scaling_governor"):
            return (dev.governor + "\n").encode(), b"", 0
        if prog in ("mkdir", "chmod"):
            return b"", b"", 0
        if prog == "rm":
            for p in args:
                if not p.startswith("-"):
                    dev.files.pop(p, None)
            return b"", b"", 0
        if prog == "ls":
            paths = [a for a in args if not a.startswith("-")]
            missing = [p for p in paths if p not in dev.files and p not in dev.executables]
            if missing:
                return b"", f"ls: {missing[0]}: No such file or directory\n".encode(), 1
            return ("\n".join(paths) + "\n").encode(), b"", 0
        if prog == "taskset" and len(args) >= 2:
            binary, flags = args[1], args[2:]
            if binary not in dev.files and binary not in dev.executables:
                return b"", f"/system/bin/sh: {binary}: not found\n".encode(), 127
            graph = next((f.split("=", 1)[1] for f in flags if f.startswith(("--graph=", "--model_path="))), None)
            if graph is None or graph not in dev.files:
                return (f"STARTING!\nGraph: [{graph}]\nERROR: Could not open '{graph}'.\n"
                        "ERROR: Benchmarking failed.\n").encode(), b"", 1
            return dev.benchmark_output.encode(), b"", 0
        return b"", f"/system/bin/sh: {prog}: not found\n".encode(), 127


class AdbStandin:
    """``with AdbStandin([FakeDevice("ABC")]) as s: ... adb -P s.port ...``"""

    def __init__(self, devices: list[FakeDevice]) -> None:
        self._server = _Server(devices)
        self.port = self._server.server_address[1]
        self.devices = devices
        self.requests = self._server.requests
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "AdbStandin":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
