#!/usr/bin/env bash
# Trains the generators shipped in models/ the way they were made: with each data set's default
# recipe, on the CPU, one single-thread job per model side by side (torch's default threads
# collapse when jobs share cores; see benchmarks/bench_train.py). Every run scores its EMA generator
# each epoch and keeps the best one as its artifact, so a run stopped early still leaves a complete,
# best-so-far generator (models/*/generator.json records its epoch and score); `gancli train --resume
# DIR --n-epochs N` continues one.
# Usage: scripts/train_shipped.sh RUNS_DIR   (data from $GANCLI_DATA_ROOT or gancli's default data root)
# Then export each run into models/ with scripts/ship_models.sh RUNS_DIR.
set -euo pipefail
runs=${1:?usage: scripts/train_shipped.sh RUNS_DIR}
common=(--threads 1 --device cpu --seed 0 --eval-images 5000)
(gancli train --dataset mnist --conditional --g-depth 1 --n-epochs 40 "${common[@]}" \
   --out-dir "$runs/mnist-cdcgan" > "$runs/mnist-cdcgan.log" 2>&1) &
(gancli train --dataset mnist --n-epochs 26 "${common[@]}" \
   --out-dir "$runs/mnist-dcgan" > "$runs/mnist-dcgan.log" 2>&1 &&
 gancli train --dataset mnist --arch mlp --n-epochs 50 "${common[@]}" \
   --out-dir "$runs/mnist-mlp" > "$runs/mnist-mlp.log" 2>&1) &
wait
