"""Training runs under torchrun (DDP, gloo on CPU): two processes end with identical weights."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file


def test_two_gloo_processes_end_with_identical_weights(tmp_path: Path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).with_name("ddp_worker.py")), str(tmp_path)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert a.keys() == b.keys() and len(a) == 6
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # and training moved the weights away from rank 0's seeded initialisation
    torch.manual_seed(100)
    from edgecv.models import create_model

    init = create_model("lenet_300_100").state_dict()
    assert any(not torch.equal(init[k], a[k]) for k in a)
