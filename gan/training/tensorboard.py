"""TensorBoard event files in the run folder, written by rank 0 only: `tensorboard --logdir runs/` shows every run.

Per step (x = the step): train/d_loss, train/g_loss, train/d_x (D(x)), train/d_g_z (D(G(z))) and
perf/images_per_second. Per epoch end (x = the step, so both share one axis): the epoch means (epoch/train_*,
epoch/val_*), the judge's score (epoch/quality, and epoch/quality_is where it has classes) and the sample grid
(samples, the same PNG as samples/epochNNN.png). tensorboard comes with the train extra (torch's SummaryWriter
needs it).

A resumed run opens a new event file with purge_step one past the checkpoint's step: events of steps after the
checkpoint (written before the stop, then trained again) are hidden, so every curve is continuous, while those of
the checkpoint's own step (its losses, and at an epoch end the epoch's means, score and grid), which the resumed
run does not write again, are kept.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gancli.gan.errors import RunWriteError

TRAIN_KEYS = ("d_loss", "g_loss", "d_x", "d_g_z")


class TensorBoardLog:
    """A SummaryWriter on `run_dir`, with the scalars and images training reports."""

    def __init__(self, run_dir: Path, checkpoint_step: int | None = None):
        """`checkpoint_step`: the step a resumed run continues from (None: a new run)."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # torch is there (we train) but tensorboard is not
            raise RunWriteError(f"TensorBoard logging needs the tensorboard package ({e}); "
                                f"pip install 'gancli[train]'") from None
        # every point up to the checkpoint's step was written before the checkpoint: purge only the later ones
        purge_step = None if checkpoint_step is None else checkpoint_step + 1
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step, flush_secs=30)

    def step(self, step: int, losses: dict[str, float], images_per_second: float) -> None:
        for key in TRAIN_KEYS:
            if key in losses:
                self.writer.add_scalar(f"train/{key}", losses[key], step)
        self.writer.add_scalar("perf/images_per_second", images_per_second, step)

    def epoch(self, step: int, row: dict, grid: Path | None = None) -> None:
        """An EpochMetrics row (as a dict) and the epoch's sample grid PNG."""
        for key, value in row.items():
            if key.startswith(("train_", "val_")) and value is not None:
                self.writer.add_scalar(f"epoch/{key}", value, step)
        for key in ("quality", "quality_is"):
            if row.get(key) is not None:
                self.writer.add_scalar(f"epoch/{key}", row[key], step)
        if grid is not None and grid.exists():
            from PIL import Image

            with Image.open(grid) as image:
                self.writer.add_image("samples", np.asarray(image.convert("RGB")), step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
