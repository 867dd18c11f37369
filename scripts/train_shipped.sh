#!/usr/bin/env bash
# Trains the generators shipped in models/ the way they were made: on the CPU of a 2-core machine,
# two single-thread jobs side by side. Each run writes its artifact after every epoch, so a run
# stopped early still leaves its last complete epoch (models/*/generator.json records how many).
# Usage: scripts/train_shipped.sh RUNS_DIR   (data from $GANCLI_DATA_ROOT, default ../shared/datasets)
# Then export each run into models/ with scripts/ship_models.sh RUNS_DIR.
set -euo pipefail
runs=${1:?usage: scripts/train_shipped.sh RUNS_DIR}
export GANCLI_DATA_ROOT=${GANCLI_DATA_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)/shared/datasets}
export OMP_NUM_THREADS=1
# cats: width 32 (256-128-64-32 at 64x64), a quarter of the DCGAN paper's FLOPs, and batch 64 for
# twice the updates per image: what a CPU can train in about an hour.
(gancli train --dataset cats --arch dcgan --width 32 --batch-size 64 --n-epochs 40 --seed 0 --device cpu \
   --out-dir "$runs/cats-dcgan" > "$runs/cats-dcgan.log" 2>&1) &
# mnist-dcgan ran 12 epochs, then `--resume` to 38 (a resumed CPU run is bit-identical to a straight one).
(gancli train --dataset mnist --arch dcgan --width 64 --n-epochs 38 --seed 0 --device cpu \
   --out-dir "$runs/mnist-dcgan" > "$runs/mnist-dcgan.log" 2>&1 &&
 gancli train --dataset mnist --arch mlp --n-epochs 20 --seed 0 --device cpu \
   --out-dir "$runs/mnist-mlp" > "$runs/mnist-mlp.log" 2>&1) &
wait
