"""`gancli train` through Typer's CliRunner: help, dry run, a real short run, one-line errors."""
from __future__ import annotations

import json

import typer
from typer.core import TyperOption
from typer.testing import CliRunner

from gancli.cli import app

runner = CliRunner()


def train_options() -> list[TyperOption]:
    command = typer.main.get_command(app)
    return [p for p in command.commands["train"].params if isinstance(p, TyperOption) and p.name != "help"]


def test_help_lists_every_flag_with_its_default():
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "250"}, terminal_width=250)
    assert result.exit_code == 0
    for option in train_options():
        flag = option.opts[0]
        line = next((ln for ln in result.output.splitlines() if f" {flag} " in ln), None)
        assert line is not None, f"{flag} missing from --help"
        # an option's help may wrap onto following lines, up to the next option's line
        block = result.output[result.output.index(line):].split("\n│ --")[0]
        assert "[default:" in block, f"{flag} shows no default"


def test_dry_run_prints_the_resolved_preset_with_overrides(tmp_path):
    result = runner.invoke(app, ["train", "--dataset", "cats", "--lr", "0.001", "--dry-run",
                                 "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    cfg = json.loads(result.output)
    assert (cfg["img_size"], cfg["channels"], cfg["lr"], cfg["dataset"]) == (64, 3, 0.001, "cats")
    assert not any(tmp_path.iterdir()), "--dry-run must not create a run directory"


def test_bad_option_is_one_line_and_exit_1():
    result = runner.invoke(app, ["train", "--arch", "resnet", "--dry-run"])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert "--arch 'resnet' is not known; use one of mlp, dcgan" in result.output


def test_missing_data_offline_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr("torchvision.datasets.MNIST.download", _offline)
    result = runner.invoke(app, ["train", "--data-root", str(tmp_path), "--out-dir", str(tmp_path / "runs")])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert str(tmp_path / "mnist") in result.output


def _offline(self):
    raise OSError("no network")


def test_cli_short_real_run_and_resume(data_root, tmp_path):
    args = ["train", "--dataset", "mnist", "--arch", "mlp", "--n-epochs", "1", "--limit", "64", "--batch-size", "32",
            "--device", "cpu", "--out-dir", str(tmp_path)]
    result = runner.invoke(app, args, env={"GANCLI_DATA_ROOT": str(data_root)})
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "00000-mnist-mlp"
    assert (run_dir / "generator.json").is_file()
    result = runner.invoke(app, ["train", "--resume", str(run_dir), "--n-epochs", "2"],
                           env={"GANCLI_DATA_ROOT": str(data_root)})
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "generator.json").read_text())["epochs"] == 2
