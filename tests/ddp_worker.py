"""Run by tests/test_distributed.py under torchrun: trains a LeNet-300-100 for a few steps
with DDP (gloo) and saves this rank's final weights as rank<R>.safetensors in argv[1]."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from edgecv import distributed as D
from edgecv.checkpoint import save_checkpoint
from edgecv.engine import TrainConfig, train
from edgecv.models import create_model

out = Path(sys.argv[1])
D.maybe_init()
torch.manual_seed(D.rank() + 100)  # deliberately different init per rank: DDP must broadcast rank 0's
model = create_model("lenet_300_100")
g = torch.Generator().manual_seed(0)
ds = TensorDataset(torch.randn(256, 1, 28, 28, generator=g), torch.randint(0, 10, (256,), generator=g))
train(model, ds, TrainConfig(epochs=2, batch_size=64, lr=0.05, seed=1))
save_checkpoint(model, out / f"rank{D.rank()}.safetensors", {"world_size": D.world_size()})
D.barrier()
