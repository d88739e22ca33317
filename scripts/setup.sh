#!/usr/bin/env bash
# Create .venv and install edgecv with the pinned, tested stack (constraints.txt pins
# torch==2.13.0 CPU: an unpinned install would pull a CUDA torch and GBs of nvidia wheels).
# Usage: scripts/setup.sh [EXTRAS]   (default: all,dev)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-all,dev}"
# Debian tools the tests drive (adb, sshd): installed when missing and apt-get can run as root
pkgs=$(sed 's/#.*//' scripts/apt-packages.txt | xargs)
missing=$(for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done | xargs)
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    (apt-get install -y -q $missing || (apt-get update -q && apt-get install -y -q $missing)) >/dev/null \
      || echo "warning: could not install $missing (tests that need them will skip)"
  else
    echo "note: not root; install these for the adb/ssh tests: sudo apt-get install $missing"
  fi
fi
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -c constraints.txt -e ".[${EXTRAS}]"
# onnx2tf hard-pins old tensorflow/numpy/onnx; it runs fine on the pinned newer ones (see docs/stack.md)
if [[ ",${EXTRAS}," == *",all,"* || ",${EXTRAS}," == *",tflite,"* ]]; then
  .venv/bin/python -m pip install -q -c constraints.txt --no-deps onnx2tf onnx-graphsurgeon sng4onnx sne4onnx onnxsim tf-keras psutil 2>/dev/null || true
fi
# the arm64 root for tests/test_arm.py and `edgecv verify-arm` (~1 min: debootstrap first stage + aarch64 wheels;
# --pte: + the aarch64 torch and executorch for .pte files, ~1 min, 4.7 GB)
if [ "$(id -u)" = 0 ] && command -v debootstrap >/dev/null && command -v qemu-aarch64-static >/dev/null; then
  bash scripts/build_arm_root.sh --pte >/dev/null || echo "warning: scripts/build_arm_root.sh failed (tests/test_arm.py will skip what it lacks)"
fi
echo "edgecv installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
