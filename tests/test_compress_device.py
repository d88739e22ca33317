"""`edgecv compress --device/--workers`: where the fine-tuning steps run, refused in one line when unusable."""
from __future__ import annotations

import pytest
import torch

from edgecv.cli import main
from edgecv.errors import UserError
from edgecv.pipeline import check_device


def test_check_device_accepts_cpu_and_refuses_unknown_names() -> None:
    check_device("cpu")
    for bad in ("tpu", "cuda:x", "gpu", ""):
        with pytest.raises(UserError, match="--device must be cpu, cuda or cuda:N"):
            check_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the refusal cannot be shown")
def test_cuda_without_a_gpu_exits_2_in_one_line_and_writes_nothing(tmp_path, capsys) -> None:
    out = tmp_path / "m.edc"
    assert main(["compress", "lenet5", "--device", "cuda", "-o", str(out)]) == 2
    cap = capsys.readouterr()
    lines = [ln for ln in (cap.out + cap.err).strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "sees 0 CUDA device(s)" in lines[0] and "--device cpu" in lines[0]
    assert not out.exists()


def test_workers_out_of_range_is_refused(tmp_path, capsys) -> None:
    assert main(["compress", "lenet5", "--workers", "65", "-o", str(tmp_path / "m.edc")]) == 2
    cap = capsys.readouterr()
    assert "--workers" in cap.out + cap.err
    assert not (tmp_path / "m.edc").exists()
