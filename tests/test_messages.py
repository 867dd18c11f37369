"""What a user reads says what is true: the generate summary's arithmetic, the config --dry-run prints, Ctrl-C of
train read as generate's and export's, eval's notes on real images it could not read, the way out of a missing
Inception file, and a training that diverges stopped at its step, never shipped as a NaN generator."""
from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import gancli
from gancli.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tmp_path_factory, export_untrained) -> Path:
    return export_untrained(tmp_path_factory.mktemp("model") / "m.onnx", "mlp", 8, 1, 8, 4)


def test_the_generate_summary_adds_up(tmp_path, model):
    result = runner.invoke(app, ["generate", "-n", "300", "--out", str(tmp_path / "out"), "--model", str(model),
                                 "--device", "cpu", "--batch-size", "50"])
    assert result.exit_code == 0, result.output
    line = result.output.strip().splitlines()[-1]
    match = re.search(r"made (\d+) images in ([\d.e+-]+) s \(([\d.e+-]+) s of it generating: ([\d,]+) images/s", line)
    assert match, line
    made, total, generating, rate = int(match[1]), float(match[2]), float(match[3]), float(match[4].replace(",", ""))
    assert made == 300 and generating <= total
    assert rate == pytest.approx(made / generating, rel=0.02)  # the seconds shown give the rate shown


def test_dry_run_shows_float32_training_on_the_cpu():
    result = runner.invoke(app, ["train", "--dry-run", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["amp"] is False


@pytest.mark.parametrize("signum, code, prefix", [(signal.SIGINT, 130, "interrupted: "),
                                                   (signal.SIGTERM, 1, "error: ")])
def test_a_stopped_train_exits_as_the_other_commands_do(monkeypatch, signum, code, prefix):
    from gancli.gan.errors import TrainingStopped

    def stopped(*args, **kwargs):
        raise TrainingStopped(f"stopped by {signal.Signals(signum).name} after step 3; continue with --resume", signum)

    monkeypatch.setattr(gancli, "train", stopped)
    result = runner.invoke(app, ["train", "--device", "cpu"])
    assert result.exit_code == code and result.output.startswith(prefix), result.output
    assert result.output.count("\n") == 1


def test_a_missing_inception_file_says_what_unset_means(tmp_path):
    from gancli.gan.errors import EvalError
    from gancli.gan.metrics.detectors.inception_pytorch_fid import named_inception_weights

    with pytest.raises(EvalError) as e:
        named_inception_weights(tmp_path / "missing.pth")
    assert "default network" in str(e.value) and "without Inception" not in str(e.value)


def test_eval_says_which_real_images_it_could_not_read(tmp_path):
    from gancli.gan.metrics.evaluate import evaluate

    folder = tmp_path / "real"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG cut off")
    generated = rng.integers(0, 256, (12, 8, 8, 1), dtype=np.uint8)
    result = evaluate(generated, generated.copy(), str(folder), device="cpu", inception=False, download=False)
    assert any("skipped 1 unreadable real image" in note and "broken.png" in note for note in result["notes"])


def test_a_diverging_training_stops_with_one_line_and_ships_no_nan_generator(tmp_path, data_root):
    from gancli.gan.errors import TrainingDiverged

    with pytest.raises(TrainingDiverged, match=r"(became nan|became inf|non-finite).*(batch|step)") as e:
        gancli.train("mnist", data_root=str(data_root), n_epochs=1, limit=128, batch_size=64, arch="mlp", width=8,
                     eval_every=0, lr_g=1e30, lr_d=1e30, out_dir=str(tmp_path / "runs"), device="cpu")
    assert "\n" not in str(e.value)
    assert not list((tmp_path / "runs").glob("*/generator.safetensors"))
