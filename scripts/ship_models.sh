#!/usr/bin/env bash
# Copies each trained run of scripts/train_shipped.sh into models/NAME/: the generator artifact (the
# run's best-scoring EMA generator), the discriminator of that epoch (so `gancli train --init-from NAME`
# continues or fine-tunes it), its ONNX files (float, uint8 and int8 serving graphs,
# parity-checked by `gancli export`), its training curves and the sample grid of the kept epoch, and
# its `gancli eval` scores (fp32 and int8). No optimizer state, and no path of this machine: the
# config's output and data folders are reset, and eval runs inside the model folder.
# Usage: scripts/ship_models.sh RUNS_DIR [NAME ...]   (default: every run found; data from
# $GANCLI_DATA_ROOT or gancli's default data root; $EVAL_ARGS is passed to gancli eval, e.g.
# EVAL_ARGS=--no-inception where Inception on 70,000 MNIST images would take hours of CPU)
set -euo pipefail
runs=$(cd "${1:?usage: scripts/ship_models.sh RUNS_DIR [NAME ...]}" && pwd)
shift
root=$(cd "$(dirname "$0")/.." && pwd)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(cats-dcgan mnist-dcgan mnist-cdcgan mnist-mlp)
for name in "${names[@]}"; do
  run=$(ls -d "$runs/$name"/*/ 2>/dev/null | sort | tail -n 1)
  [ -n "$run" ] && [ -f "$run/generator.json" ] || { echo "no finished epoch for $name in $runs; skipped"; continue; }
  dest="$root/models/$name"
  rm -rf "$dest.new" && mkdir -p "$dest.new"
  cp "$run/generator.json" "$run/generator.safetensors" "$run/discriminator.safetensors" "$run/loss.png" \
     "$run/metrics.csv" "$dest.new/"
  python3 - "$run" "$dest.new" <<'PY'
import json, sys
from pathlib import Path
from gancli.gan.training.config import TrainConfig
run, dest = Path(sys.argv[1]), Path(sys.argv[2])
(dest / "config.json").write_text(TrainConfig.load(run / "config.json").portable().to_json() + "\n")
quality = json.loads((run / "generator.json").read_text()).get("quality") or {}
grids = sorted((run / "samples").glob("epoch*.png"))
kept = run / "samples" / f"epoch{quality['epoch']:03d}.png" if quality else grids[-1]
(dest / "samples.png").write_bytes(kept.read_bytes())
PY
  gancli export "$dest.new" --format onnx --int8 --out "$dest.new"
  dataset=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['dataset'])" "$dest.new/generator.json")
  (cd "$dest.new" &&
   gancli eval generator-uint8.onnx --dataset "$dataset" ${EVAL_ARGS:-} --out eval.json &&
   gancli eval generator-int8-uint8.onnx --dataset "$dataset" ${EVAL_ARGS:-} --out eval-int8.json)
  rm -rf "$dest" && mv "$dest.new" "$dest"
  echo "shipped $name from $run"
done
