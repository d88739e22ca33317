#!/usr/bin/env bash
# Create .venv and install edgecv with the pinned, tested stack (constraints.txt pins
# torch==2.13.0 CPU: an unpinned install would pull a CUDA torch and GBs of nvidia wheels).
# Usage: scripts/setup.sh [EXTRAS]   (default: all,dev)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-all,dev}"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -c constraints.txt -e ".[${EXTRAS}]"
# onnx2tf hard-pins old tensorflow/numpy/onnx; it runs fine on the pinned newer ones (see docs/stack.md)
if [[ ",${EXTRAS}," == *",all,"* || ",${EXTRAS}," == *",tflite,"* ]]; then
  .venv/bin/python -m pip install -q -c constraints.txt --no-deps onnx2tf onnx-graphsurgeon sng4onnx sne4onnx onnxsim tf-keras psutil 2>/dev/null || true
fi
echo "edgecv installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
