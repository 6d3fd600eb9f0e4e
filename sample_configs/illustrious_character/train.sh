#!/usr/bin/env bash
# Illustrious character LoRA with collage training (sd-scripts + collage_ext).
# Usage: SD_SCRIPTS=/path/to/sd-scripts ./train.sh     (run it with the kohya venv active)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SD_SCRIPTS="${SD_SCRIPTS:?set SD_SCRIPTS to your sd-scripts checkout}"

# 1. Before spending GPU hours: problems (corrupt/upscaled/low-contrast images, long captions) and steps.
collage-ext check "$HERE/dataset.toml" --config "$HERE/train.toml"
# 2. The exact frames of epoch 1 (open preview/index.html in a browser).
collage-ext preview "$HERE/dataset.toml" --config "$HERE/train.toml" --epoch 1 --out "$HERE/preview"

# 3. Train. --dataset_config on the command line overrides the path in train.toml.
cd "$SD_SCRIPTS"
accelerate launch --num_cpu_threads_per_process 1 sdxl_train_network.py \
  --config_file "$HERE/train.toml" \
  --dataset_config "$HERE/dataset.toml"
# Shell-script users without a training TOML add one flag to their usual command instead:
#   --dataset_class collage_ext.CollageDataset --dataset_config dataset.toml

# 4. Later: which collage settings a LoRA was trained with.
#   collage-ext inspect /data/lora/mychar/output/mychar_illustrious_collage.safetensors
