"""The run folder (`runs/00003-cats-dcgan/`) and what training writes into it besides the checkpoint:

    config.json            resolved TrainConfig, written before the first step
    log.txt                what happened: data source, split sizes, skipped files, resumes, one line per epoch
    metrics.csv            one row per epoch: train and validation D loss, G loss, D(x), D(G(z)), quality score
    loss.png               the curves, redrawn each epoch
    samples/               grids from a fixed z every --sample-interval batches and at each epoch end
    generator.safetensors  the best-scoring EMA generator (the artifact that export and eval read)
    generator.json

Every file is written atomically; a file that cannot be written (a full disk, a read-only folder) is one
RunWriteError line that says the previous file is kept and how to go on.
"""
from __future__ import annotations

import contextlib
import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn
from torchvision.utils import save_image

from gancli.gan.errors import RunWriteError
from gancli.gan.training.config import TrainConfig
from gancli.runtime.files import atomic_path, process_alive, temp_target, write_text_atomic

CHECKPOINT_NAME = "checkpoint.pt"  # written by checkpoint.py; named here for the messages that point at it
METRICS_NAME = "metrics.csv"
PLOT_NAME = "loss.png"
LOG_NAME = "log.txt"
Say = Callable[[str], None]


@dataclass
class EpochMetrics:
    epoch: int
    step: int
    train_d_loss: float
    train_g_loss: float
    train_d_x: float  # mean D(x) on real images: near real_label when D wins
    train_d_g_z: float  # mean D(G(z)) on fakes before D's update: near 0 when D wins
    val_d_loss: float
    val_g_loss: float
    val_d_x: float
    val_d_g_z: float
    seconds: float
    quality: float | None = None  # the judge's score of the EMA generator (lower is better), when scored
    quality_is: float | None = None  # classifier IS alongside it, where the judge has classes


@contextlib.contextmanager
def writing(path: Path, run_dir: Path) -> Iterator[None]:
    """Turn a failed write of `path` (a full disk, a read-only folder) into one RunWriteError line: what
    failed, that the previous file is kept (every write is atomic) and how to go on."""
    try:
        yield
    except OSError as e:
        if e.filename and (temp := temp_target(Path(e.filename).name)):
            path = Path(e.filename).parent / temp[0]  # the file the temp was for
        kept = f"the previous {path.name} is kept" if path.exists() else f"no {path.name} was written"
        if (run_dir / CHECKPOINT_NAME).is_file():
            then = f"continue with `gancli train --resume {run_dir}`"
        else:
            then = "start the run again (no epoch was saved)"
        raise RunWriteError(f"cannot write {path} ({e.strerror or e}); {kept}; free some space (or make "
                            f"{run_dir} writable), then {then}") from e


def remove_dead_temps(run_dir: Path) -> None:
    """Delete the temp files (runtime.files.temp_path's names) that a killed process left in the run folder
    while writing; a live process's are left alone."""
    for folder in (run_dir, run_dir / "samples"):
        for path in folder.glob(".*.tmp-*"):
            temp = temp_target(path.name)
            if temp and path.is_file() and not process_alive(temp[1]):
                path.unlink(missing_ok=True)


def next_run_dir(out_dir: Path, cfg: TrainConfig) -> Path:
    """`out_dir/00007-cats-dcgan`: one more than the highest number already there."""
    out_dir.mkdir(parents=True, exist_ok=True)
    numbers = [int(m.group(1)) for p in out_dir.iterdir() if (m := re.match(r"^(\d{5})-", p.name))]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{cfg.dataset_name}-{cfg.arch}")
    return out_dir / f"{max(numbers, default=-1) + 1:05d}-{name}"


def make_run_dir(out_dir: Path, cfg: TrainConfig) -> Path:
    """Create and return next_run_dir; a failure (a full disk) is one RunWriteError line."""
    try:
        run_dir = next_run_dir(out_dir, cfg)
        run_dir.mkdir(parents=True)
    except OSError as e:
        raise RunWriteError(f"cannot create a run folder in {out_dir} ({e.strerror or e}); free some space or pass "
                            f"another --out-dir") from e
    return run_dir


def append_log(run_dir: Path, message: str, say: Say | None = None) -> None:
    """Add a line to log.txt, and pass it to `say` (the run's TrainingEvents.message) when given."""
    with writing(run_dir / LOG_NAME, run_dir), open(run_dir / LOG_NAME, "a") as f:
        f.write(message + "\n")
    if say is not None:
        say(message)


def write_metrics(run_dir: Path, history: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[f.name for f in fields(EpochMetrics)])
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(run_dir / METRICS_NAME, buf.getvalue())


def plot_losses(run_dir: Path, history: list[dict], quality_metric: str = "not scored") -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_d, ax_q) = plt.subplots(1, 3, figsize=(16, 4))
    for key, label, style in [("train_d_loss", "D train", "C0-"), ("val_d_loss", "D val", "C0--"),
                              ("train_g_loss", "G train", "C1-"), ("val_g_loss", "G val", "C1--")]:
        ax_loss.plot(epochs, [row[key] for row in history], style, marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="losses")
    ax_loss.legend()
    for key, label, style in [("train_d_x", "D(x) train", "C2-"), ("val_d_x", "D(x) val", "C2--"),
                              ("train_d_g_z", "D(G(z)) train", "C3-"), ("val_d_g_z", "D(G(z)) val", "C3--")]:
        ax_d.plot(epochs, [row[key] for row in history], style, marker="o", label=label)
    ax_d.set(xlabel="epoch", ylabel="mean sigmoid(D)", ylim=(0, 1), title="discriminator outputs")
    ax_d.legend()
    scored = [row for row in history if row.get("quality") is not None]
    ax_q.plot([row["epoch"] for row in scored], [row["quality"] for row in scored], "C4-", marker="o")
    ax_q.set(xlabel="epoch", ylabel="lower is better", title=f"quality: {quality_metric}")
    fig.tight_layout()
    with atomic_path(run_dir / PLOT_NAME) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


@torch.no_grad()
def save_grid(G_ema: nn.Module, fixed_z: torch.Tensor, fixed_labels: torch.Tensor | None, path: Path) -> None:
    """8 images a row; a conditional G gets one row per class (the same 8 z in every row)."""
    images = G_ema(fixed_z, fixed_labels).float().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_image(images, tmp, nrow=8, normalize=True, value_range=(-1, 1))
