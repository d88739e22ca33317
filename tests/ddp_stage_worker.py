"""Run by tests/test_distill.py under torchrun: prunes a LeNet-300-100 (same seeded init on every
rank, as when weights come from a file), then runs the fine-tuning stages ``distill`` (teacher
from argv[1]/teacher.safetensors) and ``finetune`` with DDP (gloo), and saves this rank's final
weights and masks as rank<R>.safetensors in argv[1]."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from edgecv import distributed as D
from edgecv.checkpoint import save_checkpoint
from edgecv.compress import Context, Distill, DistillConfig, Finetune, FinetuneConfig, Prune, PruneConfig
from edgecv.models import create_model

out = Path(sys.argv[1])
D.maybe_init()
torch.manual_seed(7)
model = create_model("lenet_300_100")
g = torch.Generator().manual_seed(0)
ds = TensorDataset(torch.randn(256, 1, 28, 28, generator=g), torch.randint(0, 10, (256,), generator=g))
ctx = Context(model_name="lenet_300_100", train_data=ds, seed=1)
Prune(PruneConfig(keep=0.3, finetune_epochs=0)).apply(model, ctx)
Distill(DistillConfig(teacher="lenet_300_100", teacher_weights=str(out / "teacher.safetensors"), temperature=3.0,
                      alpha=0.7, epochs=2, batch_size=64, lr=0.05)).apply(model, ctx)
Finetune(FinetuneConfig(epochs=1, batch_size=64, lr=0.01)).apply(model, ctx)
state = {k: v.detach().clone() for k, v in model.state_dict().items()}
state.update({f"mask.{k}": m.to(torch.uint8) for k, m in ctx.masks.items()})
save_checkpoint(state, out / f"rank{D.rank()}.safetensors", {"world_size": D.world_size()})
D.barrier()
