"""Training on real data: run directory contents, artifact round trip, bit-identical resume, divergence,
and faults: stop signals mid-epoch, damaged checkpoints and configs, a full disk."""
from __future__ import annotations

import csv
import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gancli import cli
from gancli.gan.training import loop as train_module
from gancli.gan.artifact import load_generator
from gancli.gan.training.config import resolve_config
from gancli.gan.errors import ArtifactError, ConfigError, RunWriteError, TrainingDiverged, TrainingStopped
from gancli.gan.training import checkpoint, trainer
from gancli.gan.training.checkpoint import CHECKPOINT_NAME
from gancli.gan.training.config import load_run_config
from gancli.gan.training.loop import train
from gancli.gan.training.trainer import Trainer

RUN_FILES = ["config.json", "log.txt", "metrics.csv", "loss.png", "checkpoint.pt",
             "generator.safetensors", "generator.json", "samples/epoch001.png"]


def tiny(dataset, data_root, tmp_path, **overrides):
    defaults = dict(data_root=str(data_root), n_epochs=1, limit=256, batch_size=64, width=8, eval_images=20,
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
        assert math.isfinite(float(rows[-1][key])), f"{key} is {rows[-1][key]}"
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


# --- faults: stop signals ------------------------------------------------------------------------------

def signal_run(data_root, tmp_path, **overrides):
    """2 epochs of 5 batches (dcgan with dropout and spectral norm), one CPU thread: the same bits every run."""
    return tiny("mnist", data_root, tmp_path, **{**dict(n_epochs=2, limit=200, batch_size=32, g_dropout=0.2,
                                                         threads=1, eval_images=200), **overrides})


@pytest.fixture(scope="module")
def straight_run(data_root, tmp_path_factory) -> Path:
    return train(signal_run(data_root, tmp_path_factory.mktemp("straight")))


def signal_at_steps(monkeypatch, signals: dict[int, list[int]]) -> None:
    """Raise signals[n] in this process at the end of training step n (from 1): as `kill` from outside
    would, but at an exact step. The handler runs before the loop's next check."""
    real_step = Trainer.train_step
    count = {"n": 0}

    def step(self, real, labels=None):
        out = real_step(self, real, labels)
        count["n"] += 1
        for signum in signals.get(count["n"], []):
            signal.raise_signal(signum)
        return out

    monkeypatch.setattr(Trainer, "train_step", step)


def assert_same_run(a: Path, b: Path) -> None:
    """The same artifact bytes, checkpoint weights, position and per-epoch losses (all but the timings)."""
    assert (a / "generator.safetensors").read_bytes() == (b / "generator.safetensors").read_bytes()
    sa, sb = (torch.load(d / CHECKPOINT_NAME, weights_only=True) for d in (a, b))
    for key in ("G", "D", "G_ema"):
        for name, tensor in sa[key].items():
            assert torch.equal(tensor, sb[key][name]), f"{key}.{name} differs"
    assert (sa["epoch"], sa["step"], sa["batch"]) == (sb["epoch"], sb["step"], sb["batch"])

    def losses(run_dir: Path) -> list[dict]:
        return [{k: v for k, v in row.items() if k.startswith(("train_", "val_"))}
                for row in csv.DictReader(open(run_dir / "metrics.csv"))]

    assert losses(a) == losses(b)


@pytest.mark.parametrize("signum, at_step, batch", [
    (signal.SIGTERM, 8, 3),  # epoch 2, batch 3 of 5: a mid-epoch checkpoint
    (signal.SIGUSR1, 2, 2),  # Slurm's warning signal, in the first epoch (no generator files yet)
    (signal.SIGINT, 5, 0),  # Ctrl-C in an epoch's last batch: the epoch is finished and saved, then it stops
])
def test_a_stop_signal_saves_the_step_and_resume_is_bit_identical(data_root, tmp_path, monkeypatch, straight_run,
                                                                  terminal_sigint, signum, at_step, batch):
    before = signal.getsignal(signum)
    signal_at_steps(monkeypatch, {at_step: [signum]})
    with pytest.raises(TrainingStopped) as stopped:
        train(signal_run(data_root, tmp_path))
    assert signal.getsignal(signum) == before, "train() must put the previous handler back"
    run_dir = next((tmp_path / "runs").iterdir())
    message = str(stopped.value)
    assert "\n" not in message and signal.Signals(signum).name in message
    assert f"gancli train --resume {run_dir}" in message
    assert stopped.value.exit_code == 128 + signum
    state = torch.load(run_dir / CHECKPOINT_NAME, weights_only=True)
    assert (state["step"], state["batch"]) == (at_step, batch)
    epochs_done = at_step // 5
    if epochs_done:  # the artifact and metrics are the last finished epoch's; a mid-epoch stop changes neither
        assert json.loads((run_dir / "generator.json").read_text())["epochs"] == epochs_done
        assert len(list(csv.DictReader(open(run_dir / "metrics.csv")))) == epochs_done
    else:
        assert not (run_dir / "generator.json").exists() and not (run_dir / "metrics.csv").exists()
    assert not [p for p in run_dir.rglob("*") if ".tmp-" in p.name]

    monkeypatch.undo()
    resumed = train(load_run_config(run_dir), resume=run_dir)
    assert_same_run(straight_run, resumed)
    assert f"resumed at epoch {epochs_done}" in (run_dir / "log.txt").read_text()


def test_ctrl_c_twice_stops_at_once_and_keeps_the_last_checkpoint(data_root, tmp_path, monkeypatch, terminal_sigint):
    signal_at_steps(monkeypatch, {7: [signal.SIGINT, signal.SIGINT]})
    with pytest.raises(KeyboardInterrupt):
        train(signal_run(data_root, tmp_path))
    run_dir = next((tmp_path / "runs").iterdir())
    state = torch.load(run_dir / CHECKPOINT_NAME, weights_only=True)
    assert (state["epoch"], state["step"], state["batch"]) == (1, 5, 0)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_signal_before_the_first_step_stops_without_writing(data_root, tmp_path, monkeypatch):
    real_load = train_module.load_images

    def load_then_signal(cfg):
        data = real_load(cfg)
        signal.raise_signal(signal.SIGTERM)
        return data

    monkeypatch.setattr(train_module, "load_images", load_then_signal)
    with pytest.raises(TrainingStopped, match="before training began; no run directory was made"):
        train(signal_run(data_root, tmp_path))
    assert not (tmp_path / "runs").exists()


def test_cli_sigterm_from_outside_mid_run_then_resume_matches_a_straight_run(data_root, tmp_path):
    """`kill -TERM` of a real `gancli train`, sent once a sample grid shows it is training: where it lands
    is up to the scheduler, so the straight run to compare with is made afterwards, for the epochs reached."""
    args = ["--dataset", "mnist", "--width", "8", "--limit", "256", "--batch-size", "16", "--device", "cpu",
            "--threads", "1", "--eval-every", "0", "--sample-interval", "2"]
    env = {**os.environ, "GANCLI_DATA_ROOT": str(data_root), "OMP_NUM_THREADS": "1"}
    gancli = [sys.executable, "-m", "gancli.cli", "train"]
    process = subprocess.Popen([*gancli, *args, "--n-epochs", "1000", "--out-dir", str(tmp_path / "runs")], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "runs" / "00000-mnist-dcgan"
    deadline = time.monotonic() + 120
    while not list((run_dir / "samples").glob("step*.png")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr
    assert stderr.strip().splitlines()[-1].startswith("error: stopped by SIGTERM after ")
    assert f"gancli train --resume {run_dir}" in stderr.replace("\n", "")
    state = torch.load(run_dir / CHECKPOINT_NAME, weights_only=True)
    epochs = state["epoch"] + 1

    resumed = subprocess.run([*gancli, "--resume", str(run_dir), "--n-epochs", str(epochs)], env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    straight = train(tiny("mnist", data_root, tmp_path / "straight", n_epochs=epochs, batch_size=16, threads=1,
                          eval_every=0))
    assert_same_run(straight, run_dir)


# --- faults: files that cannot be read back -------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_run(data_root, tmp_path_factory) -> Path:
    """A 1-epoch run to damage (copied by each test)."""
    return train(tiny("mnist", data_root, tmp_path_factory.mktemp("finished"), sample_interval=1000, eval_every=0))


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / run_dir.name))


def resume_cli(run_dir: Path, n_epochs: int = 2):
    return CliRunner().invoke(cli.app, ["train", "--resume", str(run_dir), "--n-epochs", str(n_epochs)])


def one_error_line(result) -> str:
    """The CLI's failure: exit 1 and one red line on stderr, no traceback anywhere."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def newer_checkpoint(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    state["format_version"] = checkpoint.CHECKPOINT_FORMAT_VERSION + 1
    torch.save(state, path)


DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:p.stat().st_size // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "text": lambda p: p.write_text("not what gancli wrote\n"),
    "a JSON list": lambda p: p.write_text("[1, 2, 3]"),
    "another program's .pt": lambda p: torch.save({"model": {"w": torch.zeros(3)}, "optimizer": {}}, p),
    "a tensor": lambda p: torch.save(torch.zeros(3), p),
    "newer checkpoint": newer_checkpoint,
    "newer config": lambda p: p.write_text(p.read_text().replace('"format_version": 1', '"format_version": 2')),
    "wrong type": lambda p: p.write_text(p.read_text().replace('"width": 8', '"width": "8"')),
    "unknown key": lambda p: p.write_text(p.read_text().replace('"width": 8', '"width": 8, "depth": 3')),
}


@pytest.mark.parametrize("name, damage, expected", [
    (CHECKPOINT_NAME, "truncated", "is truncated, or not a torch file"),
    (CHECKPOINT_NAME, "empty", "is empty"),
    (CHECKPOINT_NAME, "text", "is truncated, or not a torch file"),
    (CHECKPOINT_NAME, "another program's .pt", "is not a gancli checkpoint"),
    (CHECKPOINT_NAME, "a tensor", "is not a gancli checkpoint"),
    (CHECKPOINT_NAME, "newer checkpoint", "was written by a newer gancli"),
    ("config.json", "truncated", "is not valid JSON"),
    ("config.json", "empty", "is empty"),
    ("config.json", "text", "is not valid JSON"),
    ("config.json", "a JSON list", "holds a JSON list"),
    ("config.json", "newer config", "was written by a newer gancli"),
    ("config.json", "wrong type", 'is damaged: width is "8", not an integer'),
    ("config.json", "unknown key", "has keys this gancli does not know (depth)"),
])
def test_a_damaged_run_file_is_one_line_naming_it_and_changes_nothing(finished_run, tmp_path, name, damage, expected):
    run_dir = copy_run(finished_run, tmp_path)
    DAMAGE[damage](run_dir / name)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    line = one_error_line(resume_cli(run_dir))
    assert f"{run_dir / name} {expected}" in line
    assert ("upgrade gancli" if damage.startswith("newer") else "start a new run") in line
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


def test_a_checkpoint_without_a_format_from_gancli_0_2_still_resumes(finished_run, tmp_path):
    run_dir = copy_run(finished_run, tmp_path)
    state = torch.load(run_dir / CHECKPOINT_NAME, weights_only=True)
    for key in ("format", "format_version", "batch", "partial_sums", "partial_seconds"):
        del state[key]
    torch.save(state, run_dir / CHECKPOINT_NAME)
    config = json.loads((run_dir / "config.json").read_text())
    del config["format"], config["format_version"]
    (run_dir / "config.json").write_text(json.dumps(config))
    train(load_run_config(run_dir, n_epochs=2), resume=run_dir)
    assert torch.load(run_dir / CHECKPOINT_NAME, weights_only=True)["epoch"] == 2


def test_resume_removes_the_temp_files_a_killed_run_left(finished_run, tmp_path):
    run_dir = copy_run(finished_run, tmp_path)
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    left = [run_dir / f".checkpoint.tmp-{dead}.pt", run_dir / "samples" / f".step0000002.tmp-{dead}.png"]
    live = run_dir / ".loss.tmp-1.png"  # a live process's (pid 1's) stays
    for path in [*left, live]:
        path.write_bytes(b"half a file")
    train(load_run_config(run_dir, n_epochs=2), resume=run_dir)
    assert not any(path.exists() for path in left) and live.exists()


def test_a_checkpoint_from_another_config_is_one_line(finished_run, tmp_path):
    run_dir = copy_run(finished_run, tmp_path)
    (run_dir / "config.json").write_text((run_dir / "config.json").read_text().replace('"width": 8', '"width": 16'))
    with pytest.raises(ArtifactError, match="is corrupt or from another config"):
        train(load_run_config(run_dir, n_epochs=2), resume=run_dir)


# --- faults: a full disk --------------------------------------------------------------------------------

def disk_fills_on(monkeypatch, file_name: str) -> None:
    """Writes of the temp file of `file_name` write half their bytes, then fail with ENOSPC, as on a full disk."""
    real_write_bytes, real_write_text = Path.write_bytes, Path.write_text

    stem, suffix = os.path.splitext(file_name)

    def full(path: Path, data, real):
        if path.name.startswith(f".{stem}.tmp-") and path.name.endswith(suffix):
            real(path, data[:len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    monkeypatch.setattr(Path, "write_bytes", lambda self, data: full(self, data, real_write_bytes))
    monkeypatch.setattr(Path, "write_text", lambda self, data, *a, **k: full(self, data, real_write_text))


@pytest.mark.parametrize("file_name", [CHECKPOINT_NAME, "generator.safetensors", "metrics.csv"])
def test_a_full_disk_stops_with_one_line_and_keeps_the_previous_files(finished_run, tmp_path, monkeypatch, file_name):
    run_dir = copy_run(finished_run, tmp_path)
    kept = {name: (run_dir / name).read_bytes() for name in (CHECKPOINT_NAME, "generator.safetensors",
                                                              "generator.json", "metrics.csv")}
    disk_fills_on(monkeypatch, file_name)
    line = one_error_line(resume_cli(run_dir))
    assert f"cannot write {run_dir / file_name} (No space left on device)" in line
    assert f"the previous {file_name} is kept" in line and f"gancli train --resume {run_dir}" in line
    # the failed file and the checkpoint (written last) are the previous epoch's; files written before
    # the failure may be the new epoch's, and the generator pair always matches
    assert (run_dir / file_name).read_bytes() == kept[file_name]
    assert (run_dir / CHECKPOINT_NAME).read_bytes() == kept[CHECKPOINT_NAME]
    load_generator(run_dir)
    assert not [p for p in run_dir.rglob("*") if ".tmp-" in p.name], "a temp file was left behind"
    monkeypatch.undo()
    train(load_run_config(run_dir, n_epochs=2), resume=run_dir)  # once there is space, the run goes on


def test_the_generator_files_are_replaced_as_a_pair(finished_run, tmp_path, monkeypatch):
    """generator.json failing after its weights were written leaves both old files: never new weights
    beside a JSON that names the old ones' hash."""
    run_dir = copy_run(finished_run, tmp_path)
    kept = {name: (run_dir / name).read_bytes() for name in ("generator.safetensors", "generator.json")}
    disk_fills_on(monkeypatch, "generator.json")
    with pytest.raises(RunWriteError, match=r"cannot write .*generator\.json \(No space left on device\)"):
        train(load_run_config(run_dir, n_epochs=2), resume=run_dir)
    assert {name: (run_dir / name).read_bytes() for name in kept} == kept
    load_generator(run_dir)


def test_a_really_full_disk_stops_with_one_line_and_keeps_the_checkpoint(finished_run, small_tmpfs, fill_disk):
    run_dir = copy_run(finished_run, small_tmpfs)
    kept = {name: (run_dir / name).read_bytes() for name in (CHECKPOINT_NAME, "generator.safetensors",
                                                              "generator.json")}
    filler = fill_disk(small_tmpfs, 16)
    assert "(No space left on device)" in one_error_line(resume_cli(run_dir))
    assert {name: (run_dir / name).read_bytes() for name in kept} == kept
    assert not [p for p in run_dir.rglob("*") if ".tmp-" in p.name]
    filler.unlink()
    result = resume_cli(run_dir)
    assert result.exit_code == 0, result.output


def test_mixed_precision_is_fp16_on_cuda_only():
    assert trainer.amp_dtype(True, torch.device("cuda")) == torch.float16
    assert trainer.amp_dtype(False, torch.device("cuda")) is None
    assert trainer.amp_dtype(True, torch.device("cpu")) is None  # bf16 measured worse (see amp_dtype)
