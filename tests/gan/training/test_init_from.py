"""gan/training/init_from.py: --init-from starts from a model's G, EMA G and D with its architecture, refuses
one that does not fit in one line before anything is written, and records the lineage."""
from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

import gancli
from gancli.cli import app
from gancli.gan.errors import ConfigError
from gancli.gan.training import init_from
from gancli.gan.training.checkpoint import read_checkpoint
from gancli.models import models_dir

QUICK = dict(limit=256, n_epochs=1, eval_every=0, width=8, batch_size=64, threads=1, sample_interval=1000)


@pytest.fixture(scope="module")
def first_run(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return gancli.train("mnist", data_root=str(data_root), out_dir=str(out), **QUICK)


def test_a_run_continues_from_the_saved_state_with_its_weights_and_lineage(first_run, data_root, tmp_path):
    state = init_from.save_training_state(first_run, tmp_path / "state")
    assert {p.name for p in state.iterdir()} >= {"generator.json", "generator.safetensors", "config.json",
                                                 init_from.DISCRIMINATOR_NAME, init_from.TRAIN_GENERATOR_NAME}
    saved = read_checkpoint(first_run / "checkpoint.pt", torch.device("cpu"))
    seen = json.loads((state / "generator.json").read_text())["lineage"]["images_seen"]
    assert seen == saved["step"] * 64
    G, ema, D = init_from.source_weights(state)
    for mine, theirs in ((G, saved["G"]), (ema, saved["G_ema"]), (D, saved["D"])):
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)

    cfg = gancli.train_config("mnist", init_from=str(state), data_root=str(data_root), n_epochs=1)
    assert cfg.width == 8 and cfg.lineage["images_seen_before"] == seen  # the model's width, not the preset's
    run = gancli.train("mnist", init_from=str(state), data_root=str(data_root), out_dir=str(tmp_path / "runs"),
                       **{k: v for k, v in QUICK.items() if k != "width"})
    lineage = json.loads((run / "generator.json").read_text())["lineage"]
    assert lineage["init_from"] == state.name and lineage["images_seen"] == seen + lineage["images_this_run"]
    hours_before = json.loads((state / "generator.json").read_text())["lineage"]["train_hours"]
    seconds = sum(float(row["seconds"]) for row in csv.DictReader((run / "metrics.csv").open()))
    assert lineage["train_hours"] == pytest.approx(hours_before + seconds / 3600, abs=1e-3) and seconds > 0
    assert json.loads((run / "config.json").read_text())["init_from"] == str(state)


@pytest.mark.parametrize("flags, says", [
    (["--width", "4"], "--width 4 here, 8 in the model (a model grows wider, never narrower)"),
    (["--arch", "mlp"], "--arch mlp here, dcgan in the model"),
    (["--g-depth", "1"], "--g-depth 1 here, 2 in the model"),
])
def test_an_architecture_that_differs_is_one_line_and_no_run_folder(first_run, data_root, tmp_path, flags, says):
    # a short run should the check ever let it through: the test then fails, not trains on all of MNIST
    result = CliRunner().invoke(app, ["train", "--init-from", str(first_run), "--data-root", str(data_root),
                                      "--out-dir", str(tmp_path / "runs"), "--limit", "16", "--n-epochs", "1",
                                      "--eval-every", "0", *flags])
    assert result.exit_code == 1 and says in result.output and result.output.strip().count("\n") == 0
    assert not (tmp_path / "runs").exists()


def test_classes_that_differ_are_one_line_and_no_run_folder(first_run, data_root, tmp_path):
    """The MNIST run is unconditional; a conditional run on the same model cannot take its weights."""
    with pytest.raises(ConfigError, match="--conditional True here, False in the model"):
        gancli.train_config("mnist", init_from=str(first_run), conditional=True)
    from PIL import Image

    folder = tmp_path / "two-classes"
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (28, 28), 40 * i).save(folder / name / f"{i}.png")
    with pytest.raises(ConfigError, match="a conditional model needs the same number of classes"):
        gancli.train(str(folder), init_from="mnist-cdcgan", out_dir=str(tmp_path / "runs"), img_size=28, channels=1,
                     **QUICK | {"width": None, "limit": None})
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("dataset, model, says", [
    ("cats", "mnist-dcgan", "--init-from mnist-dcgan makes 28x28 grey images, but --dataset cats trains at 64x64 RGB; "
                            "pass --img-size 28 --channels 1 to train at the model's"),
    ("mnist", "cats-dcgan", "--init-from cats-dcgan makes 64x64 RGB images, but --dataset mnist trains at 28x28 grey; "
                            "pass --img-size 64 --channels 3 to train at the model's"),
])
def test_a_model_of_another_image_format_than_the_data_is_one_line_and_no_run_folder(data_root, tmp_path, dataset,
                                                                                     model, says):
    result = CliRunner().invoke(app, ["train", "--dataset", dataset, "--init-from", model, "--data-root",
                                      str(data_root), "--out-dir", str(tmp_path / "runs"), "--limit", "16",
                                      "--n-epochs", "1", "--eval-every", "0"])
    assert result.exit_code == 1 and says in result.output and result.output.strip().count("\n") == 0, result.output
    assert not (tmp_path / "runs").exists()


def test_a_model_of_another_image_format_trains_when_the_flags_ask_for_it():
    cfg = gancli.train_config("cats", init_from="mnist-dcgan", img_size=28, channels=1)
    assert (cfg.img_size, cfg.channels, cfg.init_from) == (28, 1, "mnist-dcgan")
    with pytest.raises(ConfigError, match="pass --channels 1 to train at the model's"):
        gancli.train_config("cats", init_from="mnist-dcgan", img_size=28)
    assert gancli.train_config("cats", init_from="cats-dcgan").img_size == 64  # the data's own format needs no flag


def test_an_unknown_model_is_one_line():
    with pytest.raises(ConfigError, match="no shipped model has that name"):
        gancli.train_config("mnist", init_from="no-such-model")
    with pytest.raises(ConfigError, match="not a run or model folder"):
        gancli.train_config("mnist", init_from="./no-such-folder")


def test_a_bare_name_is_always_the_shipped_model_and_a_folder_needs_a_path(tmp_path, monkeypatch):
    """As for --model: a folder of the working directory named like a shipped model does not replace it."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(models_dir() / "mnist-dcgan", tmp_path / "cats-dcgan")
    shutil.copytree(models_dir() / "mnist-dcgan", tmp_path / "mine")
    shipped = {name: json.loads((models_dir() / name / "generator.json").read_text())["weights_sha256"]
               for name in ("cats-dcgan", "mnist-dcgan")}
    assert gancli.train_config("cats", init_from="cats-dcgan").lineage["weights_sha256"] == shipped["cats-dcgan"]
    assert gancli.train_config("mnist", init_from="./cats-dcgan").lineage["weights_sha256"] == shipped["mnist-dcgan"]
    with pytest.raises(ConfigError, match=r"--init-from mine: no shipped model has that name \(shipped models: "
                                          r"cats-dcgan, .*\); a run or model folder needs a path, such as \./mine"):
        gancli.train_config("mnist", init_from="mine")
    assert gancli.train_config("mnist", init_from="./mine").lineage["weights_sha256"] == shipped["mnist-dcgan"]


def test_a_shipped_model_gives_its_architecture():
    shipped = json.loads((models_dir() / "mnist-dcgan" / "config.json").read_text())
    cfg = gancli.train_config("mnist", init_from="mnist-dcgan")
    assert (cfg.width, cfg.d_depth, cfg.init_from) == (shipped["width"], shipped.get("d_depth", 1), "mnist-dcgan")


def test_freeze_d_fixes_the_first_layers_of_d():
    D = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 4), torch.nn.Linear(4, 1))
    assert init_from.freeze_first_layers(D, 2) == 2
    assert [p.requires_grad for p in D.parameters()] == [False, False, False, False, True, True]
    with pytest.raises(ConfigError, match="--freeze-d"):
        gancli.train_config("mnist", freeze_d=2)


def test_freeze_d_fixes_a_spectral_normed_layer_whole():
    """Its weight sits in its parametrization and its bias in the layer: one layer, frozen together."""
    from torch.nn.utils.parametrizations import spectral_norm

    D = torch.nn.Sequential(*(spectral_norm(torch.nn.Linear(4, 4)) for _ in range(3)))
    assert init_from.freeze_first_layers(D, 2) == 2
    assert [p.requires_grad for layer in D for p in layer.parameters()] == [False, False, False, False, True, True]


def test_the_curve_of_a_long_run_grows_with_each_stretch(tmp_path):
    history = [{"step": 10, "quality": 80.0}, {"step": 20, "quality": None}, {"step": 30, "quality": 60.5}]
    first = init_from.curve_csv(tmp_path / "curve.csv", history, 0, 64)
    assert first == "images_seen,quality\n640,80.0\n1920,60.5\n"
    (tmp_path / "curve.csv").write_text(first)
    second = init_from.curve_csv(tmp_path / "curve.csv", [{"step": 5, "quality": 50.0}], 1920, 64)
    assert second.splitlines()[1:] == ["640,80.0", "1920,60.5", "2240,50.0"]
