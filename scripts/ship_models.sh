#!/usr/bin/env bash
# Copies each trained run of scripts/train_shipped.sh into models/NAME/: the generator artifact,
# its ONNX files (float, uint8 and int8 serving graphs, parity-checked by `gancli export`), its training
# curves and last sample grid, and its `gancli eval` scores (fp32 and int8). No optimizer state.
# Usage: scripts/ship_models.sh RUNS_DIR [NAME ...]   (default: every run found)
set -euo pipefail
runs=${1:?usage: scripts/ship_models.sh RUNS_DIR [NAME ...]}
shift
root=$(cd "$(dirname "$0")/.." && pwd)
export GANCLI_DATA_ROOT=${GANCLI_DATA_ROOT:-$(cd "$root/.." && pwd)/shared/datasets}
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(cats-dcgan mnist-dcgan mnist-mlp)
for name in "${names[@]}"; do
  run=$(ls -d "$runs/$name"/*/ 2>/dev/null | sort | tail -n 1)
  [ -n "$run" ] && [ -f "$run/generator.json" ] || { echo "no finished epoch for $name in $runs; skipped"; continue; }
  dest="$root/models/$name"
  rm -rf "$dest.new" && mkdir -p "$dest.new"
  cp "$run/generator.json" "$run/generator.safetensors" "$run/loss.png" "$run/metrics.csv" "$run/config.json" "$dest.new/"
  cp "$(ls "$run"/samples/epoch*.png | sort | tail -n 1)" "$dest.new/samples.png"
  gancli export "$dest.new" --format onnx --int8 --out "$dest.new"
  dataset=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['dataset'])" "$dest.new/generator.json")
  gancli eval "$dest.new/generator-uint8.onnx" --dataset "$dataset" --out "$dest.new/eval.json"
  gancli eval "$dest.new/generator-int8-uint8.onnx" --dataset "$dataset" --out "$dest.new/eval-int8.json"
  rm -rf "$dest" && mv "$dest.new" "$dest"
  echo "shipped $name from $run"
done
