"""Files written by gancli 0.2 (before gan/ was split into training/ and metrics/) still load: a run folder
(config.json, checkpoint.pt, generator.safetensors + generator.json) resumes, and its exported model generates.
tests/data/gancli-0.2-run/ was written by gancli 0.2.0: a width-4 MNIST DCGAN trained for one epoch on 256 images."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

import gancli
from gancli.gan.artifact import load_generator
from gancli.gan.training.checkpoint import read_checkpoint
from gancli.gan.training.config import load_run_config
from gancli.gan.training.loop import train

OLD_RUN = Path(__file__).parent / "data" / "gancli-0.2-run"


def test_a_run_of_gancli_0_2_resumes(tmp_path, data_root):
    run = shutil.copytree(OLD_RUN, tmp_path / "run")
    cfg = load_run_config(run, n_epochs=2)
    assert (cfg.width, cfg.d_depth, cfg.init_from, cfg.lineage) == (4, 2, None, None)
    assert read_checkpoint(run / "checkpoint.pt", torch.device("cpu"))["epoch"] == 1
    cfg.data_root, cfg.threads = str(data_root), 1
    train(cfg, resume=run)
    G, spec = load_generator(run)
    assert spec.epochs == 2 and spec.lineage["images_this_run"] == 2 * 7 * 32
    assert G(torch.randn(2, spec.latent_dim)).shape == (2, 1, 28, 28)


def test_a_generator_of_gancli_0_2_loads():
    G, spec = load_generator(OLD_RUN)
    assert spec.gancli_version == "0.2.0" and spec.lineage is None
    assert G(torch.randn(3, spec.latent_dim)).shape == (3, 1, 28, 28)


def test_an_export_of_gancli_0_2_generates(tmp_path):
    images = gancli.generate_array(OLD_RUN / "export" / "generator-uint8.onnx", 5, seed=1, device="cpu")
    assert images.shape == (5, 28, 28, 1) and images.dtype == np.uint8
    files = gancli.generate(5, tmp_path / "out", model=OLD_RUN / "export" / "generator-uint8.onnx", seed=1,
                            device="cpu")
    assert files.made == 5
