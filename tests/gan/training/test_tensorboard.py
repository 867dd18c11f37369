"""Training writes TensorBoard events into the run folder (gan/training/tensorboard.py): read back with
tensorboard's own EventAccumulator after a tiny MNIST run."""
from __future__ import annotations

import pytest

from gancli.gan.training.config import resolve_config
from gancli.gan.training.loop import train

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
