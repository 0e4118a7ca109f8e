"""Where a process sits in a ``torchrun`` job, and the checks that keep DDP replicas equal.

Every rank seeds the architecture RNG alike, so all ranks train the same architecture at each
step; BN buffers are broadcast from rank 0 at each epoch end and the ranks' weights compared, so
a divergence stops the run instead of silently training different models.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a ``torchrun`` job (world size 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_from_env() -> DistInfo:
    """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` as ``torchrun`` sets them."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(
        rank=int(os.environ.get("RANK", "0")),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def state_checksums(model: nn.Module) -> torch.Tensor:
    """One float64 sum per parameter and buffer: cheap evidence that two replicas agree."""
    tensors = [*model.parameters(), *model.buffers()]
    return torch.stack([t.detach().double().sum() for t in tensors])


def sync_replicas(model: nn.Module) -> None:
    """Broadcast rank 0's BN buffers and stop if the ranks' weights differ."""
    dist = torch.distributed
    for buf in model.buffers():
        dist.broadcast(buf, src=0)
    sums = state_checksums(model)
    high, low = sums.clone(), sums.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    if not torch.equal(high, low):
        raise RuntimeError(
            "DDP replicas diverged: the ranks hold different weights (did every rank "
            "sample the same architectures?)"
        )


def shutdown() -> None:
    """Leave the ``torchrun`` process group, if this process joined one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
