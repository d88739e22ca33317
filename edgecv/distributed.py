"""DDP set-up shared by every training loop: the same code runs in one process or under
``torchrun --nproc_per_node N`` (gloo on CPU, nccl on CUDA)."""
from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


def maybe_init() -> bool:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1)."""
    if dist.is_available() and dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    # share the machine's cores between the processes instead of oversubscribing them
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.get_world_size()))
    log.info("DDP rank %d/%d (%s)", dist.get_rank(), dist.get_world_size(), backend)
    return True


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()
