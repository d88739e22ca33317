"""ARM-board flow over ssh, against a real sshd on loopback; this venv's python plays the board's Python."""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgecv.errors import UserError

SSHD = "/usr/sbin/sshd"
pytestmark = [
    pytest.mark.skipif(not Path(SSHD).exists(), reason="sshd not installed: apt-get install openssh-server"),
    pytest.mark.skipif(shutil.which("ssh") is None or shutil.which("ssh-keygen") is None,
                       reason="OpenSSH client not installed: apt-get install openssh-client"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    d = tmp_path_factory.mktemp("sshd")
    if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
        # sshd running as root insists on its privilege-separation dir; Debian's service creates it at boot
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    for key in ("host_key", "id"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    (d / "authorized_keys").write_text((d / "id.pub").read_text())
    os.chmod(d / "id", 0o600)
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.skip(f"sshd would not start here: {proc.stderr.read().strip()[:200]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    core = sorted(os.sched_getaffinity(0))[-1]
    board = d / "board"
    board.mkdir()
    profile = {"name": "loopback-board", "transport": "ssh", "host": "127.0.0.1", "port": port,
               "user": getpass.getuser(), "identity": str(d / "id"), "python": sys.executable,
               "ssh_options": ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "LogLevel=ERROR"],
               "big_core_mask": format(1 << core, "x"), "remote_dir": str(board), "abi": "x86_64", "threads": 1}
    yield profile, core
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def tflite(tmp_path_factory):
    from tests.bench_models import make_tflite

    return make_tflite(tmp_path_factory.mktemp("m") / "tiny.tflite")[0]


def test_ssh_board_run_pinned_and_cleaned(sshd, tflite):
    from edgecv.bench.ssh import run_ssh

    profile, core = sshd
    r = run_ssh(str(tflite), profile, warmup=2, runs=7)
    assert r["n"] == 7 and len(r["samples_ms"]) == 7
    assert r["cores"] == [core]  # pinned by the profile's mask on the "board"
    assert r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert r["init_ms"] > 0 and r["first_ms"] > 0 and r["peak_mem_mb"] > 0
    assert "ai_edge_litert" in r["versions"] and r["device_facts"]["machine"]
    assert list(Path(profile["remote_dir"]).iterdir()) == []  # pushed model + runner removed


def test_bench_api_routes_ssh_profile(sshd, tflite, tmp_path):
    import yaml

    from edgecv.bench import bench

    profile, _ = sshd
    (tmp_path / "board.yaml").write_text(yaml.safe_dump(profile))
    r = bench(str(tflite), device="loopback-board", devices_dir=str(tmp_path), warmup=1, runs=3)
    assert r["format"] == "tflite" and r["device"] == "loopback-board" and r["runs"] == 3
    assert all(r[k] is not None for k in ("init_ms", "first_ms", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "std_ms"))


def test_unreachable_board_is_one_clear_error(sshd, tflite):
    from edgecv.bench.ssh import run_ssh

    profile, _ = sshd
    bad = {**profile, "port": _free_port()}
    with pytest.raises(UserError, match="cannot reach 127.0.0.1 over ssh"):
        run_ssh(str(tflite), bad, runs=1)


def test_board_without_litert_says_what_to_install(sshd, tflite, tmp_path):
    from edgecv.bench.ssh import SshError, run_ssh

    profile, _ = sshd
    fake_py = tmp_path / "python-without-litert"
    fake_py.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")  # -S: no site-packages, so no LiteRT
    fake_py.chmod(0o755)
    with pytest.raises(SshError, match="No module named.*pip install ai-edge-litert"):
        run_ssh(str(tflite), {**profile, "python": str(fake_py)}, runs=1)
