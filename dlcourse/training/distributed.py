"""Data-parallel training under ``torchrun``: joining the process group, averaging the logged losses.

A single process (no WORLD_SIZE > 1 in the environment) never touches torch.distributed. Under
``torchrun --nproc_per_node=K`` each process trains a replica on its own batches; DistributedDataParallel
averages the gradients, so every replica takes the same optimiser step.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import Tensor

from dlcourse.runtime import get_device

__all__ = ["distributed", "mean_over_processes"]


@contextmanager
def distributed(device: str | torch.device | None) -> Iterator[tuple[int, int, torch.device]]:
    """Yield (rank, world_size, device).

    A single process gets (0, 1, device). Under torchrun, join the process group (gloo on CPU, nccl on CUDA
    with one GPU per process, cuda:LOCAL_RANK) and leave it at the end if we created it.
    """
    device = get_device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        yield 0, 1, device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield dist.get_rank(), dist.get_world_size(), device
    finally:
        if created:
            dist.destroy_process_group()


def mean_over_processes(losses: Tensor, world_size: int) -> list[float]:
    """The losses (steps,) averaged over processes, as floats: the host sync of a log point."""
    if world_size > 1:
        losses = losses.clone()
        dist.all_reduce(losses)
        losses /= world_size
    return losses.tolist()
