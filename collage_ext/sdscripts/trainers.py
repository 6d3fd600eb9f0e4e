"""Which sd-scripts training scripts collage_ext supports, and a clear refusal for the others.

Every script that reaches ``--dataset_class`` builds ``CollageDataset``, but the adapter sizes merged
captions for the run's text encoder (CLIP or T5 token budget, from the tokenize strategy the script
set) and is tested through each supported script's own strategies (tests/sdscripts/test_scripts.py).
The scripts below are not: their text encoders (Gemma2, Qwen3, Qwen2.5-VL + byT5) have budgets the
adapter does not model, or, in the full fine-tune scripts, the tokenize strategy is only set after
the dataset is built. Training with them would silently use a wrong caption budget, so they stop at
start-up instead, before any model loads.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from collage_ext.core.errors import CollageConfigError

#: Scripts tested with CollageDataset (README "Supported trainers" lists the same).
SUPPORTED = ("train_network.py", "sdxl_train_network.py", "sdxl_train.py", "flux_train_network.py",
             "sd3_train_network.py")

#: script stem -> why it is refused
REFUSED: dict[str, str] = {
    "sd3_train": "the full SD3 fine-tune sets its tokenizers only after the dataset is built, so collage "
                 "captions cannot be sized for T5; use sd3_train_network.py (LoRA)",
    "lumina_train_network": "Lumina's Gemma2 text encoder has a caption budget collage_ext does not model",
    "lumina_train": "Lumina's Gemma2 text encoder has a caption budget collage_ext does not model",
    "anima_train_network": "Anima's Qwen3 text encoder has a caption budget collage_ext does not model",
    "anima_train": "Anima's Qwen3 text encoder has a caption budget collage_ext does not model",
    "hunyuan_image_train_network": "HunyuanImage's Qwen2.5-VL + byT5 text encoders have caption budgets "
                                   "collage_ext does not model",
}

#: tokenize strategies of refused model families (caught even when the script was renamed)
_REFUSED_STRATEGIES = {"LuminaTokenizeStrategy": "lumina_train_network", "AnimaTokenizeStrategy": "anima_train_network",
                       "HunyuanImageTokenizeStrategy": "hunyuan_image_train_network"}


def refuse_unsupported(argv0: str | None = None, strategy: Any = None) -> None:
    """Stop when the running script (or its tokenize strategy) belongs to an unsupported trainer.

    Raises:
        CollageConfigError: names the script, why, and the supported scripts.
    """
    script = Path(argv0 if argv0 is not None else (sys.argv[0] if sys.argv else "")).stem
    if script not in REFUSED and strategy is not None:
        script = _REFUSED_STRATEGIES.get(type(strategy).__name__, script)
    if script in REFUSED:
        msg = (f"collage_ext does not support {script}.py: {REFUSED[script]}. Remove --dataset_class "
               f"collage_ext.CollageDataset for this run, or train with one of: {', '.join(SUPPORTED)}.")
        raise CollageConfigError(msg)
