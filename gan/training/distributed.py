"""Running under torchrun: process-group setup and the few collectives training needs.

`torchrun --nproc-per-node K $(which gancli) train ...` sets RANK, WORLD_SIZE and LOCAL_RANK;
without them training runs as one process and every helper here is a no-op. CUDA uses NCCL
(one GPU per process, picked by LOCAL_RANK), the CPU uses gloo.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from gancli.gan.errors import GanError, RunWriteError



@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes logs, grids, checkpoints and the artifact."""
        return self.rank == 0


def launched_by_torchrun() -> DistInfo:
    return DistInfo(rank=int(os.environ.get("RANK", 0)), world_size=int(os.environ.get("WORLD_SIZE", 1)),
                    local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def init_process_group(info: DistInfo, device: torch.device) -> torch.device:
    """Join the group torchrun set up; returns this process's device (cuda:LOCAL_RANK on GPUs)."""
    if not info.enabled:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def destroy_process_group(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(info: DistInfo, obj: Any) -> Any:
    """Rank 0's `obj` on every rank (e.g. the run directory rank 0 chose)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(info: DistInfo, obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def sum_across_ranks(info: DistInfo, values: dict[str, float]) -> dict[str, float]:
    if not info.enabled:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return dict(zip(keys, tensor.cpu().tolist()))


def sync_buffers(info: DistInfo, *modules: nn.Module) -> None:
    """Copy rank 0's buffers (batch norm running stats, spectral norm vectors) to every rank.

    DDP broadcasts buffers at the start of each forward, but the last forward of an epoch still
    updates each rank's running stats from its own batch; syncing at epoch end makes every rank
    hold exactly what rank 0 checkpoints.
    """
    if not info.enabled:
        return
    for module in modules:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def weights_digest(module: nn.Module) -> str:
    """sha256 of every parameter and buffer, to prove that ranks hold the same model."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def max_across_ranks(info: DistInfo, value: int) -> int:
    """The largest of every rank's `value` (one small all-reduce; a no-op alone). Training calls it once a
    step so that a stop asked of one rank (a signal) is seen by all at the same step."""
    if not info.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def raise_together(info: DistInfo, error: GanError | None) -> None:
    """Raise rank 0's `error` (None: nothing failed) on every rank, so that no rank waits in a collective
    for one that stopped. Alone: raise it."""
    if info.enabled:
        message = broadcast_object(info, str(error) if error is not None else None)
        if message is not None and error is None:
            error = RunWriteError(message)
    if error is not None:
        raise error
