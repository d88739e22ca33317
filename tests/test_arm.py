"""Exports checked on real ARM64 kernels: edgecv's fp32 and int8 TFLite and .pte files of the real MobileNet
v1 0.25 run on the aarch64 ai-edge-litert and executorch wheels under qemu-user (edgecv.verify_arm) and
compared with x86.

Needs the arm64 root of scripts/build_arm_root.sh (scripts/setup.sh builds it when run as root, ~1 min;
``--pte`` adds the aarch64 torch + executorch the .pte test needs, ~1 min) and qemu-user-static; without them the emulated tests skip and say which is missing. Nothing here is
a latency: wall times under emulation are reported as such.
"""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from edgecv.errors import UserError
from edgecv.verify_arm import PTE_READY, PTE_SITE, arm_root, check_root, compare

ROOT = arm_root()
_why = ("qemu-aarch64-static not installed: apt-get install qemu-user-static" if shutil.which("qemu-aarch64-static")
        is None else None if (ROOT / "usr/bin/python3.11").exists() else
        f"no arm64 root at {ROOT}: run scripts/build_arm_root.sh (as root, ~1 min; setup.sh does it as root)")
needs_root = pytest.mark.skipif(_why is not None, reason=_why or "")


@pytest.fixture(scope="module")
def v1_files(tmp_path_factory, shared):
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert not installed: pip install 'edgecv[tflite]'")
    from edgecv.export import export

    d = tmp_path_factory.mktemp("arm")
    fp32 = export("mobilenet_v1_025", "tflite", out=d / "v1.tflite", weights="imagenet-tf")["file"]
    int8 = export("mobilenet_v1_025", "tflite", out=d / "v1.int8.tflite", precision="int8", weights="imagenet-tf",
                  calib_images=64, min_agreement=85)["file"]
    return fp32, int8


@needs_root
def test_fp32_and_int8_tflite_match_x86_on_arm64_kernels(v1_files, tmp_path):
    import json

    from edgecv.cli import main

    out = tmp_path / "arm.json"
    assert main(["verify-arm", *v1_files, "--images", "40", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    fp32, int8 = rep["files"]
    assert rep["passed"] and rep["qemu_cpu"] == "max,sme=off" and "not a device latency" in rep["note"]
    assert fp32["precision"] == "fp32" and fp32["n_images"] == 40 and fp32["rel"] <= 1e-4
    assert int8["precision"] == "int8" and int8["agreement_pct"] >= 99.5 and int8["n_images"] == 40
    for f in (fp32, int8):  # XNNPACK took the graph on ARM (trap 1: without an ARM cpuinfo it silently does not)
        assert f["delegation_arm"]["delegate_partitions"] == 1 and f["delegation_arm"]["undelegated_ops"] == {}
        assert f["delegation_arm"] == f["delegation_x86"]


@needs_root
def test_sme_cpu_gives_wrong_int8_results_and_the_check_says_so(v1_files):
    """Trap 2 of the recipe, reproduced: qemu's plain `max` CPU (with SME) breaks int8 outputs."""
    from edgecv.verify_arm import verify

    rep = verify([v1_files[1]], images=20, qemu_cpu="max")
    f = rep["files"][0]
    assert not rep["passed"] and f["agreement_pct"] < 50 and "agreement with x86" in f["problems"][0]


def test_root_without_fake_cpuinfo_is_refused(tmp_path):
    if shutil.which("qemu-aarch64-static") is None:
        pytest.skip("qemu-aarch64-static not installed: apt-get install qemu-user-static")
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/python3.11").write_bytes(b"")
    with pytest.raises(UserError, match="no fake ARM proc/cpuinfo"):
        check_root(tmp_path)
    with pytest.raises(UserError, match="no arm64 root at"):
        check_root(tmp_path / "absent")


def test_compare_fails_without_delegate_or_beyond_tolerance():
    x86 = np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]], np.float32)
    deleg = {"delegation": {"delegate_partitions": 1, "undelegated_ops": {}}}
    ok = compare({"precision": "fp32"}, x86, x86 + 1e-5, deleg, deleg, "tflite")
    assert ok["passed"] and ok["rel"] <= 1e-4
    far = compare({"precision": "fp32"}, x86, x86 + 1e-3, deleg, deleg, "tflite")
    assert not far["passed"] and "logit range" in far["problems"][0]
    none = {"delegation": {"delegate_partitions": 0, "undelegated_ops": {"CONV_2D": 3}}}
    r = compare({"precision": "fp32"}, x86, x86, deleg, none, "tflite")
    assert not r["passed"] and "XNNPACK did not take the graph on ARM" in r["problems"][0]
    q = compare({"precision": "int8"}, x86.astype(np.int8), x86[::-1].astype(np.int8), deleg, deleg, "tflite")
    assert not q["passed"] and q["agreement_pct"] == 0.0


def test_pte_without_the_pte_stack_is_refused(tmp_path):
    if shutil.which("qemu-aarch64-static") is None:
        pytest.skip("qemu-aarch64-static not installed: apt-get install qemu-user-static")
    for d in ("usr/bin", "proc", "sys/devices/system/cpu", "opt/edgecv/site/ai_edge_litert"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    for f in ("usr/bin/python3.11", "proc/cpuinfo", "sys/devices/system/cpu/possible"):
        (tmp_path / f).write_text("")
    assert check_root(tmp_path).endswith("qemu-aarch64-static")  # .tflite files need no more
    with pytest.raises(UserError, match=r"run scripts/build_arm_root.sh --pte"):
        check_root(tmp_path, need_executorch=True)
    (tmp_path / PTE_SITE).mkdir(parents=True)  # a half-installed stack (no ready marker) is refused too
    with pytest.raises(UserError, match=r"--pte"):
        check_root(tmp_path, need_executorch=True)


def test_compare_fails_a_pte_without_xnnpack():
    x86 = np.array([[0.0, 1.0, 2.0]], np.float32)
    file_deleg = {"file_delegation": {"delegate_partitions": 1}}
    ok = compare({"precision": "int8"}, x86, x86 + 0.01, file_deleg, {"xnnpack_registered": True}, "pte")
    assert ok["passed"] and ok["agreement_pct"] == 100.0 and ok["max_abs"] == pytest.approx(0.01)
    r = compare({"precision": "fp32"}, x86, x86, file_deleg, {"xnnpack_registered": False}, "pte")
    assert not r["passed"] and "no XnnpackBackend" in r["problems"][0]
    r = compare({"precision": "fp32"}, x86, x86, {"file_delegation": {"delegate_partitions": 0}},
                {"xnnpack_registered": True}, "pte")
    assert not r["passed"] and "no XNNPACK delegate" in r["problems"][0]


_pte_why = _why or (None if (ROOT / PTE_SITE / PTE_READY).is_file() else
                    f"no aarch64 torch + executorch in {ROOT / PTE_SITE}: run scripts/build_arm_root.sh --pte "
                    "(~1 min, 4.7 GB; setup.sh does it as root)")


@pytest.mark.skipif(_pte_why is not None, reason=_pte_why or "")
def test_fp32_and_int8_pte_match_x86_on_arm64_kernels(tmp_path, shared):
    """ExecuTorch's aarch64 runtime (XNNPACK's ARM kernels) against x86 on the same real images and .pte bytes."""
    import json

    pytest.importorskip("executorch", reason="executorch not installed: pip install 'edgecv[executorch]'")
    from edgecv.cli import main
    from edgecv.export import export

    fp32 = export("mobilenet_v1_025", "executorch", out=tmp_path / "v1.pte", weights="imagenet-tf")["file"]
    int8 = export("mobilenet_v1_025", "executorch", out=tmp_path / "v1.int8.pte", precision="int8",
                  weights="imagenet-tf", calib_images=64, min_agreement=85)["file"]
    out = tmp_path / "arm.json"
    assert main(["verify-arm", str(fp32), str(int8), "--images", "30", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    f, q = rep["files"]
    assert rep["passed"] and f["precision"] == "fp32" and f["rel"] <= 1e-4 and f["n_images"] == 30
    assert q["precision"] == "int8" and q["agreement_pct"] >= 99.5
    for r in (f, q):  # the file is one XNNPACK delegate and the aarch64 runtime has the backend that ran it
        assert r["delegation"]["delegate_partitions"] == 1 and r["xnnpack_registered_arm"]


# ---------------------------------------------------------------- the ssh board flow on an emulated board
from tests.test_ssh import SSHD, sshd  # noqa: E402,F401  (the loopback sshd fixture)


@needs_root
@pytest.mark.skipif(not os.path.exists(SSHD), reason="sshd not installed: apt-get install openssh-server")
def test_rpi5_profile_flow_on_an_emulated_aarch64_board(sshd, v1_files, tmp_path):  # noqa: F811
    """`--device rpi5`'s ssh flow against a loopback sshd whose "board Python" is the arm64 root's python3.11
    under qemu-user: the pushed runner, pinning, parsing and cleanup run on aarch64. The times it measures are
    emulated and are asserted on only as present, never reported."""
    from edgecv.bench.devices import load_profiles
    from edgecv.bench.ssh import run_ssh
    from edgecv.verify_arm import QEMU_CPU
    from tests.conftest import REPO

    loop, core = sshd
    board_py = tmp_path / "board-python3"
    board_py.write_text(f"#!/bin/sh\nexport QEMU_CPU={QEMU_CPU} PYTHONPATH={ROOT}/opt/edgecv/site\n"
                        f"exec {shutil.which('qemu-aarch64-static')} -L {ROOT} {ROOT}/usr/bin/python3.11 \"$@\"\n")
    board_py.chmod(0o755)
    profile = {**load_profiles(REPO / "devices")["rpi5"],
               **{k: loop[k] for k in ("host", "port", "user", "identity", "ssh_options", "remote_dir", "big_core_mask")},
               "python": str(board_py)}
    r = run_ssh(v1_files[1], profile, warmup=1, runs=3)
    assert r["device_facts"]["machine"] == "aarch64" and r["cores"] == [core] and r["n"] == 3
    assert "ai_edge_litert" in r["versions"] and r["p50_ms"] > 0
    assert os.listdir(profile["remote_dir"]) == []
