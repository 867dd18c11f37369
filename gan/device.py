"""Where gancli computes: the device (CUDA when torch sees a GPU, else the CPU) and, on the CPU, how many threads."""
from __future__ import annotations

import os
import time

import torch

from gancli.gan.errors import ConfigError


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
