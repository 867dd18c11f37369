"""gan/training/config.py: config.json round trips, configs of older gancli still load, and a damaged, foreign or
newer one is one ConfigError line naming the file and the way out."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gancli.gan.training.config import CONFIG_FORMAT, CONFIG_FORMAT_VERSION, TrainConfig, resolve_config
from gancli.gan.errors import ConfigError

WAY_OUT = "restore it from a copy"


@pytest.fixture
def config_file(tmp_path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(resolve_config("cats", n_epochs=3, width=16).to_json())
    return path


def test_to_json_names_its_format_and_round_trips(config_file):
    data = json.loads(config_file.read_text())
    assert (data["format"], data["format_version"]) == (CONFIG_FORMAT, CONFIG_FORMAT_VERSION)
    assert TrainConfig.load(config_file) == resolve_config("cats", n_epochs=3, width=16)


def test_configs_of_older_gancli_still_load(tmp_path):
    # gancli 0.2.0: no format keys; gancli 0.1: one learning rate for both networks
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"dataset": "mnist", "arch": "mlp", "lr": 0.001, "n_epochs": 4}))
    cfg = TrainConfig.load(path)
    assert (cfg.lr_g, cfg.lr_d, cfg.recipe, cfg.loss, cfg.n_epochs) == (0.001, 0.001, "classic", "bce", 4)


def replace_in(old: str, new: str):
    return lambda path: path.write_text(path.read_text().replace(old, new, 1))


@pytest.mark.parametrize("damage, expected", [
    (lambda p: p.unlink(), "cannot read"),
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_bytes(b" \n"), "is empty"),
    (lambda p: p.write_bytes(p.read_bytes()[:200]), "is not valid JSON"),
    (lambda p: p.write_text("dataset = mnist\n"), "is not valid JSON"),
    (lambda p: p.write_bytes(bytes(range(256))), "is not a text file"),
    (lambda p: p.write_text("[1, 2]"), "holds a JSON list, not a gancli training config"),
    (lambda p: p.write_text('"mnist"'), "holds a JSON string"),
    (lambda p: p.write_text('{"model": "resnet", "epochs": 3}'), "is not a gancli training config"),
    (replace_in(f'"format": "{CONFIG_FORMAT}"', '"format": "other-tool"'), "is not a gancli training config"),
    (replace_in('"format_version": 1', '"format_version": 2'), "was written by a newer gancli (a gancli training config, format 2"),
    (replace_in('"format_version": 1', '"format_version": "1"'), 'has format version "1", not an integer'),
    (replace_in('"width": 16', '"width": 16, "depth": 4'), "has keys this gancli does not know (depth)"),
    (replace_in('"width": 16', '"width": "16"'), 'is damaged: width is "16", not an integer'),
    (replace_in('"n_epochs": 3', '"n_epochs": null'), "is damaged: n_epochs is null, not an integer"),
    (lambda p: p.write_text(re.sub(r'"amp": (true|false)', '"amp": 1', p.read_text())),
     "is damaged: amp is 1, not true or false"),
    (replace_in('"limit": null', '"limit": 2.5'), "is damaged: limit is 2.5, not an integer or null"),
    (replace_in('"lr_d": 0.0002', '"lr_d": "fast"'), 'is damaged: lr_d is "fast", not a number'),
])
def test_a_bad_config_is_one_line_naming_the_file_and_the_way_out(config_file, damage, expected):
    damage(config_file)
    with pytest.raises(ConfigError) as error:
        TrainConfig.load(config_file, WAY_OUT)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{config_file} {expected}") or message.startswith(f"cannot read {config_file}")
    assert expected in message
    assert ("upgrade gancli" if "newer" in expected else WAY_OUT) in message


def test_a_float_option_takes_a_whole_number(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"dataset": "mnist", "lr_g": 1, "val_fraction": 0}))
    assert TrainConfig.load(path).lr_g == 1


@pytest.mark.parametrize("option,value,named", [("d_depth", 0, "--d-depth"), ("width", 0, "--width"),
                                                ("loss", "wgan", "--loss"), ("diffaugment", "rotate", "--diffaugment")])
def test_a_bad_option_is_one_line_naming_it(option, value, named):
    with pytest.raises(ConfigError, match=named):
        resolve_config("mnist", **{option: value})


def test_portable_drops_the_machine_it_ran_on_and_keeps_the_rest():
    cfg = TrainConfig(out_dir="/somewhere/runs", data_root="/data", threads=1, width=48, lr_g=1e-4,
                      init_from="/home/me/runs/00003-cats", lineage={"init_from": "~/runs/00003-cats", "images_seen": 5})
    portable = cfg.portable()
    assert (portable.out_dir, portable.data_root, portable.threads) == ("runs", None, None)
    assert (portable.init_from, portable.lineage) == ("00003-cats", {"init_from": "00003-cats", "images_seen": 5})
    shipped = TrainConfig(init_from="cats-dcgan", lineage={"init_from": "models/training/cats-dcgan"}).portable()
    assert (shipped.init_from, shipped.lineage["init_from"]) == ("cats-dcgan", "models/training/cats-dcgan")
    assert (portable.width, portable.lr_g) == (48, 1e-4) and cfg.out_dir == "/somewhere/runs"


@pytest.mark.parametrize("model, most", [("mnist-dcgan", 4), ("cats-dcgan", 8), ("mnist-mlp", 2)])
def test_freeze_d_is_checked_against_the_models_d(model, most, tmp_path, monkeypatch):
    """--freeze-d may fix D's layers before its output, never all of them (which crashed at the first step)."""
    dataset = "cats" if model.startswith("cats") else "mnist"
    assert resolve_config(dataset, init_from=model, freeze_d=most).freeze_d == most
    with pytest.raises(ConfigError) as refused:
        resolve_config(dataset, init_from=model, freeze_d=most + 1)
    assert str(refused.value) == (f"--freeze-d {most + 1}: D of --init-from {model} has {most} weight layers before its "
                                  f"output; use --freeze-d 0 to {most}")


def test_freeze_d_at_its_most_trains(data_root, tmp_path):
    from gancli.gan.training.loop import train

    cfg = resolve_config("mnist", init_from="mnist-dcgan", freeze_d=4, data_root=str(data_root), limit=64,
                         batch_size=32, n_epochs=1, eval_every=0, threads=1, device="cpu", out_dir=str(tmp_path))
    run_dir = train(cfg)
    assert "D's first 4 weight layers are fixed" in (run_dir / "log.txt").read_text()
