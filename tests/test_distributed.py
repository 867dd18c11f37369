"""Training under torchrun: 2 CPU processes with gloo, as `torchrun --nproc-per-node 2 $(which gancli) train`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gancli.gan.artifact import load_generator

GANCLI = Path(sys.executable).with_name("gancli")


def torchrun_train(args: list[str], data_root: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(GANCLI),
           "train", *args]
    env = {**os.environ, "GANCLI_DATA_ROOT": str(data_root), "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def test_two_gloo_ranks_train_identical_weights_and_write_one_artifact(data_root, tmp_path):
    args = ["--dataset", "mnist", "--width", "8", "--limit", "300", "--batch-size", "32", "--n-epochs", "1",
            "--sample-interval", "3", "--device", "cpu", "--out-dir", str(tmp_path)]
    result = torchrun_train(args, data_root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = list(tmp_path.iterdir())
    assert [p.name for p in runs] == ["00000-mnist-dcgan"], "rank 1 must not create a run directory"
    run_dir = runs[0]
    log = (run_dir / "log.txt").read_text()
    assert "2 processes on cpu" in log
    assert "all 2 ranks hold identical generator weights" in log
    # each rank trains on its own half: 285 train images -> 142 per rank -> 4 batches of 32
    checkpoint_step = json.loads((run_dir / "generator.json").read_text())["epochs"]
    assert checkpoint_step == 1
    G, spec = load_generator(run_dir)
    assert spec.image_shape == (1, 28, 28)

    resumed = torchrun_train(["--resume", str(run_dir), "--n-epochs", "2"], data_root)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    log = (run_dir / "log.txt").read_text()
    assert "resumed at epoch 1" in log
    assert log.count("all 2 ranks hold identical generator weights") == 2
    assert json.loads((run_dir / "generator.json").read_text())["epochs"] == 2
    assert len((run_dir / "metrics.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs
