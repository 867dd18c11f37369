"""Training on real data: run directory contents, artifact round trip, bit-identical resume, divergence."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from gancli.gan.artifact import load_generator
from gancli.gan.config import resolve_config
from gancli.gan.errors import ConfigError, TrainingDiverged
from gancli.gan.train import CHECKPOINT_NAME, Trainer, load_run_config, train

RUN_FILES = ["config.json", "log.txt", "metrics.csv", "loss.png", "checkpoint.pt",
             "generator.safetensors", "generator.json", "samples/epoch001.png"]


def tiny(dataset, data_root, tmp_path, **overrides):
    defaults = dict(data_root=str(data_root), n_epochs=1, limit=256, batch_size=64, width=8,
                    sample_interval=2, out_dir=str(tmp_path / "runs"), device="cpu")
    return resolve_config(dataset, **{**defaults, **overrides})


def assert_complete_run(run_dir: Path, epochs: int, image_shape: tuple[int, int, int]) -> None:
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), f"{name} missing from {run_dir}"
    assert list((run_dir / "samples").glob("step*.png")), "no interval sample grid"
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert len(rows) == epochs
    for key in ("train_d_loss", "train_g_loss", "train_d_x", "train_d_g_z",
                "val_d_loss", "val_g_loss", "val_d_x", "val_d_g_z"):
        assert float(rows[-1][key]) == pytest.approx(float(rows[-1][key]))  # a finite number
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["n_epochs"] == epochs
    G, spec = load_generator(run_dir)
    assert spec.epochs == epochs and spec.image_shape == image_shape
    with torch.no_grad():
        images = G(torch.randn(5, spec.latent_dim))
    assert images.shape == (5, *image_shape)
    assert images.min() >= -1 and images.max() <= 1
    assert not any(p.name.startswith(".") for p in run_dir.rglob("*")), "a temp file was left behind"


def test_mlp_mnist_run_writes_every_file(data_root, tmp_path):
    run_dir = train(tiny("mnist", data_root, tmp_path, arch="mlp"))
    assert run_dir.name == "00000-mnist-mlp"
    assert_complete_run(run_dir, 1, (1, 28, 28))


def test_dcgan_cats_run_writes_every_file(data_root, tmp_path):
    run_dir = train(tiny("cats", data_root, tmp_path, arch="dcgan", limit=160, batch_size=32))
    assert_complete_run(run_dir, 1, (3, 64, 64))


def test_run_numbers_increase(data_root, tmp_path):
    cfg = tiny("mnist", data_root, tmp_path, arch="mlp", limit=40, batch_size=16)
    assert [train(cfg).name for _ in range(2)] == ["00000-mnist-mlp", "00001-mnist-mlp"]


def test_folder_with_junk_trains_and_logs_two_skipped(data_root, tmp_path):
    folder = tmp_path / "pets"
    folder.mkdir()
    for src in sorted((data_root / "cats" / "faces").iterdir())[:40]:
        shutil.copy(src, folder / src.name)
    good = (folder / sorted(p.name for p in folder.iterdir())[0]).read_bytes()
    (folder / "broken.jpg").write_bytes(good[: len(good) // 3])
    (folder / "notes.txt").write_text("not an image")
    run_dir = train(tiny(str(folder), data_root, tmp_path, img_size=32, batch_size=16))
    log = (run_dir / "log.txt").read_text()
    assert "skipped 2 unreadable file(s)" in log
    assert "broken.jpg" in log and "notes.txt" in log
    assert run_dir.name == "00000-pets-dcgan"


def test_resume_is_bit_identical_to_a_straight_run(data_root, tmp_path):
    # dcgan with dropout and spectral norm: every RNG and buffer must survive the checkpoint
    straight = train(tiny("mnist", data_root, tmp_path / "a", n_epochs=4, limit=200, batch_size=32, g_dropout=0.2))
    first = train(tiny("mnist", data_root, tmp_path / "b", n_epochs=2, limit=200, batch_size=32, g_dropout=0.2))
    resumed = train(load_run_config(first, n_epochs=4), resume=first)
    assert resumed == first
    assert (straight / "generator.safetensors").read_bytes() == (first / "generator.safetensors").read_bytes()
    a = torch.load(straight / CHECKPOINT_NAME, weights_only=True)
    b = torch.load(first / CHECKPOINT_NAME, weights_only=True)
    for key in ("G", "D"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"
    assert a["step"] == b["step"] and a["epoch"] == b["epoch"] == 4
    assert len(list(csv.DictReader(open(first / "metrics.csv")))) == 4


def test_resume_needs_more_epochs(data_root, tmp_path):
    run_dir = train(tiny("mnist", data_root, tmp_path, arch="mlp", limit=40, batch_size=16))
    with pytest.raises(ConfigError, match="--n-epochs"):
        train(load_run_config(run_dir), resume=run_dir)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data_root, tmp_path, monkeypatch):
    cfg = tiny("mnist", data_root, tmp_path, arch="mlp", n_epochs=2, limit=130, batch_size=32)
    real_step = Trainer.train_step
    calls = {"n": 0}

    def poisoned_step(self, real, labels=None):
        losses = real_step(self, real, labels)
        calls["n"] += 1
        if calls["n"] > 5:  # epoch 1 has 3 batches: poison epoch 2
            losses["d_loss"] = losses["d_loss"] * float("nan")
        return losses

    monkeypatch.setattr(Trainer, "train_step", poisoned_step)
    with pytest.raises(TrainingDiverged, match="d loss became nan in epoch 2.*last good checkpoint"):
        train(cfg)
    run_dir = next((tmp_path / "runs").iterdir())
    assert torch.load(run_dir / CHECKPOINT_NAME, weights_only=True)["epoch"] == 1


def test_validation_changes_no_model_state(data_root, tmp_path):
    cfg = tiny("mnist", data_root, tmp_path)
    trainer = Trainer(cfg, torch.device("cpu"))
    trainer.train_step(torch.rand(16, 1, 28, 28) * 2 - 1)  # running stats away from their init
    before = {k: v.clone() for k, v in {**trainer.G.state_dict(), **{f"D.{k}": v for k, v in trainer.D.state_dict().items()}}.items()}
    images = (torch.rand(40, 1, 28, 28) * 255).to(torch.uint8)
    rng = torch.get_rng_state()
    val = trainer.validate(images)
    after = {**trainer.G.state_dict(), **{f"D.{k}": v for k, v in trainer.D.state_dict().items()}}
    assert all(torch.equal(before[k], after[k]) for k in before), "validation moved a weight or running stat"
    assert torch.equal(rng, torch.get_rng_state()), "validation moved the training RNG"
    assert trainer.G.training and trainer.D.training
    assert 0 < val["d_x"] < 1 and val["d_loss"] > 0
