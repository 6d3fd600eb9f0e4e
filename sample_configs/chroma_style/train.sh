#!/usr/bin/env bash
# Chroma style LoRA with collage training (sd-scripts main, flux_train_network.py --model_type chroma).
# Usage: SD_SCRIPTS=/path/to/sd-scripts ./train.sh     (run it with the kohya venv active)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SD_SCRIPTS="${SD_SCRIPTS:?set SD_SCRIPTS to your sd-scripts checkout}"

collage-ext check "$HERE/dataset.toml" --config "$HERE/train.toml"            # T5 budget: 512 tokens
collage-ext preview "$HERE/dataset.toml" --config "$HERE/train.toml" --out "$HERE/preview"  # every static frame

cd "$SD_SCRIPTS"
accelerate launch --num_cpu_threads_per_process 1 flux_train_network.py \
  --config_file "$HERE/train.toml" \
  --dataset_config "$HERE/dataset.toml"
