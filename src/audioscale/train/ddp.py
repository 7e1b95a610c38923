"""Data-parallel training across processes (``torchrun`` compatible).

``torchrun --nproc_per_node=N -m audioscale pretrain ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup` reads them and joins the
process group (``nccl`` on CUDA, ``gloo`` on CPU). Without them training is one process.

How the trainer uses it:
- the global batch ``train.batch_size`` is split evenly; rank ``r`` takes its slice of the
  same global batch a single process would draw (``corpus.ClipDataset``);
- gradients are averaged by ``DistributedDataParallel``, so each update equals the
  single-process update on the global batch (up to the reduction's float rounding);
- only rank 0 writes the run folder; the feature cache is built by rank 0 first, the
  others wait at a barrier and then open it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # True when setup() created the process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device_type: str) -> DistInfo:
    """Join the process group described by the environment (or stay single-process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    owns = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
        owns = True
    rank = dist.get_rank()
    local = int(os.environ.get("LOCAL_RANK", rank))
    return DistInfo(rank, dist.get_world_size(), local, owns)


def teardown(info: DistInfo) -> None:
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def mean(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Average of ``x`` over ranks (``x`` itself when single-process)."""
    if not info.enabled:
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / info.world_size


def wrap(model: torch.nn.Module, info: DistInfo, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel`` around ``model`` when there are several ranks."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)
