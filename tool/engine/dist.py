"""Distribution helpers for ``torchrun``: rank, world size, barrier, sharding.

The process group is joined from the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``); a SLURM job submitted by ``tool.submit`` exports the same variables from
submitit's job environment before it gets here, so both launchers share this code (docs/cluster.md).
Without them (no WORLD_SIZE) everything degrades to a single process.
Backend: gloo on CPU; on CUDA, NCCL for CUDA tensors and gloo for the CPU ones (the per-image counts, the lock
check), which NCCL cannot reduce.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")
M = TypeVar("M", bound=torch.nn.Module)


def init(device: torch.device) -> None:
    """Join the process group when launched by torchrun; a no-op otherwise or if already joined."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return
    backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items`` (round-robin, so every rank gets a similar mix)."""
    return list(items[rank()::world_size()])


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` on every rank."""
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks in place (a no-op for one process); returns ``t``."""
    if is_dist():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def sync_batchnorm(model: M, device: torch.device, trainable_bn: bool) -> M:
    """SyncBN for trainable BatchNorm under multi-GPU DDP (as the official RITC run); SyncBN needs
    CUDA/NCCL, so CPU/gloo runs keep per-rank BN. Call before building optimizer groups."""
    if world_size() > 1 and trainable_bn and device.type == "cuda":
        converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        # the BN children are swapped in place; a new module comes back only for a bare BatchNorm, never ours
        assert converted is model
    return model


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in DistributedDataParallel under torchrun (one device per rank), else unchanged."""
    if world_size() <= 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)


def cleanup() -> None:
    if is_dist():
        dist.destroy_process_group()
