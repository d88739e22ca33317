"""ARM Linux boards over ssh: push the .tflite and a small runner, run it with the board's Python + LiteRT.

Uses the system ``ssh`` client (keys, agents and ~/.ssh/config work as usual) with BatchMode so it
never prompts. Files are sent through ``ssh host 'cat > file'`` rather than scp/sftp, so boards with a
minimal sshd (no sftp subsystem, dropbear) work too.
"""
from __future__ import annotations

import json
import logging
import os
import posixpath
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

from edgecv.bench.stats import summarize
from edgecv.errors import UserError

log = logging.getLogger(__name__)
_MARK = "EDGECV-BOARD-RESULT "


class SshError(UserError):
    """ssh could not reach or run on the board (message says why)."""


class Ssh:
    def __init__(self, host: str, *, user: str | None = None, port: int = 22, identity: str | None = None,
                 options: list[str] | None = None, timeout: float = 30) -> None:
        self.host, self.user, self.port, self.identity = host, user, int(port), identity
        self.options = list(options or [])
        self.timeout = timeout
        self.ssh = os.environ.get("EDGECV_SSH") or shutil.which("ssh")

    @classmethod
    def from_profile(cls, prof: dict[str, Any], timeout: float = 30) -> "Ssh":
        return cls(prof["host"], user=prof.get("user"), port=prof.get("port", 22), identity=prof.get("identity"),
                   options=prof.get("ssh_options") or [], timeout=timeout)

    def argv(self, command: str) -> list[str]:
        if not self.ssh:
            raise SshError("ssh not found: install an OpenSSH client (Debian: sudo apt-get install openssh-client)")
        argv = [self.ssh, "-p", str(self.port), "-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, int(self.timeout))}"]
        if self.identity:
            argv += ["-i", os.path.expanduser(self.identity), "-o", "IdentitiesOnly=yes"]
        for o in self.options:
            argv += ["-o", o]
        target = f"{self.user}@{self.host}" if self.user else self.host
        return argv + [target, command]

    def run(self, command: str, *, timeout: float | None = None, input: bytes | None = None,
            check: bool = True) -> subprocess.CompletedProcess[bytes]:
        timeout = self.timeout if timeout is None else timeout
        try:
            p = subprocess.run(self.argv(command), input=input, capture_output=True, timeout=timeout,
                               stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise SshError(f"ssh {self.host}: `{command[:60]}` timed out after {timeout:.0f} s") from None
        if check and p.returncode != 0:
            err = p.stderr.decode(errors="replace").strip().splitlines()
            last = err[-1] if err else f"exit code {p.returncode}"
            if p.returncode == 255:
                raise SshError(f"cannot reach {self.host} over ssh: {last} (check host/port/user/identity in the profile)")
            raise SshError(f"ssh {self.host}: `{command[:60]}` failed: {last}")
        return p

    def check(self) -> None:
        self.run("true")

    def push(self, local: str | os.PathLike, remote: str, *, timeout: float = 300) -> None:
        self.run(f"cat > {shlex.quote(remote)}", input=Path(local).read_bytes(), timeout=timeout)


def run_ssh(model_file: str, profile: dict[str, Any], *, warmup: int = 10, runs: int = 50, threads: int = 1,
            timeout: float = 900) -> dict[str, Any]:
    """Benchmark a .tflite on the board of ``profile`` with its Python + LiteRT, pinned by the profile's mask."""
    ssh = Ssh.from_profile(profile)
    ssh.check()
    run_dir = posixpath.join(profile.get("remote_dir", "/tmp/edgecv"), uuid.uuid4().hex[:12])
    py = profile["python"]
    ssh.run(f"mkdir -p {shlex.quote(run_dir)}")
    try:
        runner = posixpath.join(run_dir, "board_runner.py")
        model = posixpath.join(run_dir, Path(model_file).name)
        ssh.push(Path(__file__).with_name("board_runner.py"), runner)
        ssh.push(model_file, model)
        cmd = " ".join(shlex.quote(a) for a in (py, runner, model, "--threads", str(threads), "--mask",
                                                 profile["big_core_mask"], "--warmup", str(warmup), "--runs", str(runs)))
        p = ssh.run(cmd, timeout=timeout, check=False)
        out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        line = next((ln for ln in out.splitlines() if ln.startswith(_MARK)), None)
        if line is None:
            last = (err.strip().splitlines() or [f"exit code {p.returncode}"])[-1]
            if "No module named" in err:
                last += f" (install it on the board: {py} -m pip install ai-edge-litert numpy)"
            raise SshError(f"board runner failed on {profile['host']}: {last}")
        res = json.loads(line[len(_MARK):])
    finally:
        try:
            ssh.run(f"rm -rf {shlex.quote(run_dir)}", timeout=30, check=False)
        except SshError as e:
            log.warning("could not clean %s on the board: %s", run_dir, e)
    samples = res.pop("samples_ms")
    return {"runtime": "litert (board)", "device": profile["name"], "host": profile["host"], "warmup": warmup,
            "runs": runs, "taskset_mask": profile["big_core_mask"], **res, **summarize(samples),
            "samples_ms": samples, "command": cmd}
