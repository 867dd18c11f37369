"""Training under torchrun: 2 CPU processes with gloo, as `torchrun --nproc-per-node 2 $(which gancli) train`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gancli.gan.artifact import load_generator

GANCLI = Path(sys.executable).with_name("gancli")
# 285 train images -> 142 per rank -> 4 batches of 32 an epoch; one thread, so runs repeat bit for bit
ARGS = ["--dataset", "mnist", "--width", "8", "--limit", "300", "--batch-size", "32", "--n-epochs", "1",
        "--sample-interval", "3", "--device", "cpu", "--threads", "1"]
# A worker that raises SIGUSR1 in rank 1 alone at the end of its second step: a signal that reaches one
# rank only (as `kill` of one process would), at an exact step.
SIGNAL_ONE_RANK = """
import os, signal, sys
from gancli.gan.training.loop import Trainer
from gancli.cli import app

real_step, steps = Trainer.train_step, []

def step(self, *args, **kwargs):
    out = real_step(self, *args, **kwargs)
    steps.append(1)
    if os.environ["RANK"] == "1" and len(steps) == 2:
        signal.raise_signal(signal.SIGUSR1)
    return out

Trainer.train_step = step
sys.argv[0] = "gancli"
app()
"""


def torchrun_train(args: list[str], data_root: Path, program: str | Path = GANCLI) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(program),
           "train", *args]
    env = {**os.environ, "GANCLI_DATA_ROOT": str(data_root), "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def two_epochs(data_root, tmp_path_factory) -> Path:
    """1 epoch on 2 gloo ranks, then --resume to 2: the run the other tests compare with."""
    out = tmp_path_factory.mktemp("ddp")
    result = torchrun_train([*ARGS, "--out-dir", str(out)], data_root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = list(out.iterdir())
    assert [p.name for p in runs] == ["00000-mnist-dcgan"], "rank 1 must not create a run directory"
    run_dir = runs[0]
    log = (run_dir / "log.txt").read_text()
    assert "2 processes on cpu" in log
    assert "all 2 ranks hold identical generator weights" in log
    assert json.loads((run_dir / "generator.json").read_text())["epochs"] == 1
    G, spec = load_generator(run_dir)
    assert spec.image_shape == (1, 28, 28)

    resumed = torchrun_train(["--resume", str(run_dir), "--n-epochs", "2"], data_root)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    return run_dir


def test_two_gloo_ranks_train_identical_weights_and_write_one_artifact(two_epochs):
    log = (two_epochs / "log.txt").read_text()
    assert "resumed at epoch 1" in log
    assert log.count("all 2 ranks hold identical generator weights") == 2
    assert json.loads((two_epochs / "generator.json").read_text())["epochs"] == 2
    assert len((two_epochs / "metrics.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs


def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step_and_resumes_exactly(two_epochs, data_root,
                                                                                   tmp_path):
    worker = tmp_path / "signal_one_rank.py"
    worker.write_text(SIGNAL_ONE_RANK)
    out = tmp_path / "runs"
    stopped = torchrun_train([*ARGS, "--n-epochs", "2", "--out-dir", str(out)], data_root, worker)
    assert stopped.returncode != 0
    run_dir = out / "00000-mnist-dcgan"
    errors = [line for line in stopped.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2, stopped.stderr[-3000:]  # one line from each rank: both stopped, neither hangs
    assert all(line.startswith("error: stopped by SIGUSR1 after step 2 (epoch 1/2, batch 2/4)") for line in errors)
    assert f"gancli train --resume {run_dir}" in errors[0]
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert (state["epoch"], state["step"], state["batch"], len(state["partial_sums"])) == (0, 2, 2, 2)

    resumed = torchrun_train(["--resume", str(run_dir)], data_root)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resumed at epoch 0, batch 2 (step 2)" in (run_dir / "log.txt").read_text()
    assert (run_dir / "generator.safetensors").read_bytes() == (two_epochs / "generator.safetensors").read_bytes()
    a, b = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (two_epochs, run_dir))
    assert all(torch.equal(a["G"][k], b["G"][k]) for k in a["G"]) and (a["step"], b["step"]) == (8, 8)
