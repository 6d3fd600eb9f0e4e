#!/usr/bin/env bash
# Collage + single-image + regularisation subsets (sd-scripts + collage_ext).
# Usage: SD_SCRIPTS=/path/to/sd-scripts ./train.sh     (run it with the kohya venv active)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SD_SCRIPTS="${SD_SCRIPTS:?set SD_SCRIPTS to your sd-scripts checkout}"

collage-ext check "$HERE/dataset.toml" --config "$HERE/train.toml"
collage-ext preview "$HERE/dataset.toml" --config "$HERE/train.toml" --epoch 1 --count 40 --out "$HERE/preview"

cd "$SD_SCRIPTS"
accelerate launch --num_cpu_threads_per_process 1 sdxl_train_network.py \
  --config_file "$HERE/train.toml" \
  --dataset_config "$HERE/dataset.toml"

# No collage_ext on the training machine (or another trainer)? Export the frames to a plain folder:
#   collage-ext export "$HERE/dataset.toml" --config "$HERE/train.toml" --out "$HERE/export"
# and train on "$HERE/export/dataset.toml" (or --train_data_dir "$HERE/export/train" --reg_data_dir
# "$HERE/export/reg" --caption_extension .txt) with dataset_class removed from the training TOML.
