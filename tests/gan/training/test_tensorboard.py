"""Training writes TensorBoard events into the run folder (gan/training/tensorboard.py): read back with
tensorboard's own EventAccumulator after a tiny MNIST run."""
from __future__ import annotations

import signal

import pytest
import torch

from gancli.gan.errors import TrainingStopped
from gancli.gan.training.config import load_run_config, resolve_config
from gancli.gan.training.loop import train
from gancli.gan.training.trainer import Trainer

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def read_events(run_dir):
    events = event_accumulator.EventAccumulator(str(run_dir), size_guidance={event_accumulator.SCALARS: 0,
                                                                              event_accumulator.IMAGES: 0})
    return events.Reload()


def test_a_run_writes_losses_scores_and_grids_tensorboard_reads(data_root, tmp_path):
    cfg = resolve_config("mnist", data_root=str(data_root), n_epochs=2, limit=256, batch_size=64, width=8,
                         eval_images=20, eval_every=1, sample_interval=100, out_dir=str(tmp_path / "runs"),
                         device="cpu")
    run_dir = train(cfg)
    assert list(run_dir.glob("events.out.tfevents.*")), "no event file in the run folder"
    events = read_events(run_dir)
    tags = events.Tags()
    epoch_ends = [e.step for e in events.Scalars("epoch/train_d_loss")]
    assert len(epoch_ends) == 2 and epoch_ends[1] == 2 * epoch_ends[0]  # x is the step at each epoch's end
    for tag in ("train/d_loss", "train/g_loss", "train/d_x", "train/d_g_z", "perf/images_per_second"):
        steps = [e.step for e in events.Scalars(tag)]
        assert steps == list(range(1, epoch_ends[1] + 1)), f"{tag}: steps {steps}"  # every step, once
    for tag in ("epoch/val_d_x", "epoch/quality"):
        assert [e.step for e in events.Scalars(tag)] == epoch_ends, tag
    assert all(0 <= e.value <= 1 for e in events.Scalars("train/d_x"))
    assert "samples" in tags["images"]
    grids = events.Images("samples")
    assert [g.step for g in grids] == epoch_ends and grids[0].width > 0 and grids[0].height > 0


def stop_at_step(monkeypatch, step: int, how: str) -> None:
    """End training in step `step` (from 1): "kill" raises before the step runs, as SIGKILL would end it (but the
    writer is closed, so the steps before it are on disk); "SIGTERM" sends the signal after the step, which stops
    the run with a checkpoint of that step."""
    real_step = Trainer.train_step
    count = {"n": 0}

    def train_step(self, real, labels=None):
        count["n"] += 1
        if count["n"] == step and how == "kill":
            raise RuntimeError("killed")
        out = real_step(self, real, labels)
        if count["n"] == step:
            signal.raise_signal(signal.SIGTERM)
        return out

    monkeypatch.setattr(Trainer, "train_step", train_step)


@pytest.mark.parametrize("how, step, checkpoint_step", [
    ("kill", 7, 5),  # dies in epoch 2 after logging step 6: the checkpoint is epoch 1's end, step 5
    ("SIGTERM", 8, 8),  # stops mid-epoch 2 with a checkpoint of step 8
])
def test_a_resume_keeps_the_checkpoint_steps_points_and_hides_the_stopped_runs_later_ones(data_root, tmp_path,
                                                                                        monkeypatch, how, step,
                                                                                        checkpoint_step):
    """The checkpoint step's points (its losses and, at an epoch end, the epoch's means, score and grid) were
    logged once, before the checkpoint, and the resumed run does not log them again: they must survive the
    resume, while the stopped run's points after the checkpoint, which the resumed run logs again, must not."""
    cfg = resolve_config("mnist", data_root=str(data_root), n_epochs=2, limit=200, batch_size=32, width=8,
                         eval_images=20, eval_every=1, sample_interval=100, out_dir=str(tmp_path / "runs"),
                         device="cpu", threads=1)  # 5 steps an epoch
    stop_at_step(monkeypatch, step, how)
    with pytest.raises((RuntimeError, TrainingStopped)):
        train(cfg)
    monkeypatch.undo()
    run_dir = next((tmp_path / "runs").iterdir())
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == checkpoint_step
    train(load_run_config(run_dir), resume=run_dir)

    events = read_events(run_dir)
    tags = events.Tags()
    for tag in tags["scalars"]:
        logged = [e.step for e in events.Scalars(tag)]
        expected = list(range(1, 11)) if tag.startswith(("train/", "perf/")) else [5, 10]
        assert logged == expected, f"{tag}: steps {logged}"  # every point once, the checkpoint's included
    assert {"epoch/quality", "epoch/train_d_loss", "epoch/val_d_loss"} <= set(tags["scalars"])
    assert [g.step for g in events.Images("samples")] == [5, 10]
