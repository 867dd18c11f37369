"""Running under torchrun: process-group setup and the few collectives training needs.

`torchrun --nproc-per-node K $(which gancli) train ...` sets RANK, WORLD_SIZE and LOCAL_RANK;
without them training runs as one process and every helper here is a no-op. CUDA uses NCCL
(one GPU per process, picked by LOCAL_RANK), the CPU uses gloo.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from gancli.gan.errors import ConfigError


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


def select_device(requested: str) -> torch.device:
    """auto: CUDA when torch sees a GPU, else the CPU; cuda without a GPU is an error, not a silent fallback."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def cpu_threads(sample_seconds: float = 0.25) -> int:
    """Threads for CPU training: the cores this process may use that are idle now (at least 1).

    torch's default (one thread per core) collapses when another process holds a core: every
    parallel region waits for the thread whose core is taken (measured: 84 vs 2,669 images/s on
    2 cores with one busy; benchmarks/bench_train.py). Idle share is read from /proc/stat over a
    short sample; where that is unavailable, all usable cores.
    """
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    try:
        before = _cpu_times(allowed)
        time.sleep(sample_seconds)
        after = _cpu_times(allowed)
    except (OSError, ValueError):
        return len(allowed)
    idle = sum((a[1] - b[1]) / max(a[0] - b[0], 1) for b, a in zip(before, after))
    return max(1, min(len(allowed), round(idle)))


def _cpu_times(cpus: list[int]) -> list[tuple[int, int]]:
    """(total, idle + iowait) jiffies of each cpu in `cpus`, from /proc/stat."""
    rows = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *values = line.split()
            if name.startswith("cpu") and name != "cpu":
                numbers = [int(v) for v in values]
                rows[int(name[3:])] = (sum(numbers[:8]), numbers[3] + numbers[4])
    return [rows[cpu] for cpu in cpus]


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
