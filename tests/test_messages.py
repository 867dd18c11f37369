"""What a user reads says what is true: the generate summary's arithmetic, the config --dry-run prints, Ctrl-C of
train read as generate's and export's, eval's notes on real images it could not read, the way out of a missing
Inception file, a training that diverges stopped at its step, never shipped as a NaN generator, and output piped
to a file or program left unwrapped."""
from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import signal
import subprocess
import sys
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


def walk_summary(out: Path, terminal: bool) -> str:
    """What `gancli interpolate` prints for a walk to `out`: piped with COLUMNS unset (rich's fallback then is 80
    columns), or on an 80-column pseudo-terminal."""
    command = [sys.executable, "-m", "gancli.cli", "interpolate", "--model", "mnist-mlp", "--seeds", "1,2", "--frames",
               "2", "--device", "cpu", "--out", str(out)]
    env = {name: value for name, value in os.environ.items() if name != "COLUMNS"}
    if not terminal:
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=True).stdout
    reader, writer = pty.openpty()
    # stdin too: rich takes the width of the first standard stream that is a terminal
    subprocess.run(command, stdin=subprocess.DEVNULL, stdout=writer, stderr=subprocess.DEVNULL,
                   env={**env, "COLUMNS": "80"}, timeout=120, check=True)
    os.close(writer)
    printed = b""
    with contextlib.suppress(OSError):  # a pseudo-terminal's reader ends in EIO once its writer is closed
        while chunk := os.read(reader, 4096):
            printed += chunk
    os.close(reader)
    return printed.decode().replace("\r\n", "\n")


def test_output_is_left_unwrapped_when_piped_and_wrapped_on_a_terminal(tmp_path):
    out = tmp_path / "a-folder-whose-name-takes-the-summary-line-past-80-columns" / "walk.gif"
    out.parent.mkdir()
    whole = rf"\d+ frames through seeds 1, 2 in [\d.]+ s -> {re.escape(str(out))}"
    piped = walk_summary(out, terminal=False)
    assert re.fullmatch(whole + "\n", piped), piped
    on_terminal = walk_summary(out, terminal=True)
    lines = on_terminal.splitlines()
    assert len(lines) > 1 and max(len(line) for line in lines) <= 80, on_terminal
    assert re.fullmatch(whole, "".join(lines)), on_terminal
