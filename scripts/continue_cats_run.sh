#!/usr/bin/env bash
# The cats run that outlives stopped machines: continue it in the background on one core, from a separate
# worktree of the last commit (so that work on the checkout does not change files under the running job),
# starting from the state committed in models/training/cats-dcgan/ (scripts/save_training_state.py).
#   scripts/continue_cats_run.sh [WORKTREE [TRAIN FLAGS...]]
# (default ../catsrun; data from $GANCLI_DATA_ROOT, else ../shared/datasets). TRAIN FLAGS go after the line's own
# and override them: a lever's branch beside the line, from the same state, e.g. `--lr-g 1.25e-5 --lr-d 1.25e-5`
# or `--width 64` (G and D grown from the state's weights).
# Before the machine stops: kill -TERM the PID it prints (training checkpoints the step it is on), then
#   python scripts/save_training_state.py WORKTREE/runs/00000-cats-dcgan models/training/cats-dcgan
# and commit models/training/cats-dcgan/ (weights only: EMA G, G, D; its lineage counts images and hours).
# From 570,112 images on, Adam's learning rates were 1e-4 (half the preset's): side by side from the same state,
# the halved rates scored FID 27.3 / 26.6 / 25.5 against 34.5 / 33.7 / 27.0 at 78k / 157k / 236k more images.
# From 1,926,976 images on they are 5e-5: beside the 1e-4 line, that branch scored 17.9 after 78,720 more images
# against the line's 18.7 at about as many; from 2,268,032 on they are 2.5e-5: beside the 5e-5 line, that branch
# scored 17.5 after 78,720 more images against the line's 17.9; from 2,446,592 on D trains twice per G update
# (--d-steps 2): beside the line, that branch scored 17.25 / 17.17 / 17.03 against 17.21 / 17.16 / 17.26 after
# 78,720 / 157,440 / 236,160 more images, at 0.83 of its time per image (docs/models.md, "The cats run").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tree=${1:-$root/../catsrun}
shift || true
data=${GANCLI_DATA_ROOT:-$root/../shared/datasets}
git -C "$root" worktree add --detach "$tree" HEAD >/dev/null
# the worktree is imported as the package gancli, ahead of the checkout's editable install
mkdir -p "$tree.pkg" && ln -sfn "$tree" "$tree.pkg/gancli"
cd "$tree"
PYTHONPATH="$tree.pkg" GANCLI_DATA_ROOT="$data" setsid nohup "$root/.venv/bin/python" -c \
  "from gancli.cli import app; app()" train --dataset cats --init-from models/training/cats-dcgan \
  --threads 1 --eval-every 10 --n-epochs 400 --lr-g 2.5e-5 --lr-d 2.5e-5 --d-steps 2 --out-dir "$tree/runs" "$@" > "$tree/train.log" 2>&1 < /dev/null &
echo "cats run continues: PID $!, log $tree/train.log, run folder $tree/runs/"
