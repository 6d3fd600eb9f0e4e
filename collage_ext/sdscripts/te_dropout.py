"""Caption dropout while text-encoder outputs are cached (sd-scripts main).

sd-scripts refuses ``caption_dropout_rate`` together with ``--cache_text_encoder_outputs`` (an
assertion in the SDXL and Flux/Chroma trainers; upstream issue #1583), yet unconditional training
is half of the technique. Other trainers substitute a cached empty-caption encoding; so do we:

1. take each subset's ``caption_dropout_rate`` over (sd-scripts then sees 0 and its check passes);
2. when sd-scripts caches the text-encoder outputs, encode ``""`` once through its *own* caching
   strategy (so it is exactly what an uncached empty caption gives, T5 attention mask included);
3. in ``__getitem__``, replace the cached outputs of dropped samples with that encoding, deciding
   per (seed, epoch, sample) with a private RNG.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from collage_ext.core.errors import CollageConfigError
from collage_ext.core.rng import derive_rng
from collage_ext.sdscripts import seams

logger = logging.getLogger(__name__)

#: Attribute set on sd-scripts subset objects whose dropout collage_ext performs.
RATE_ATTR = "_collage_te_dropout_rate"


def take_over_dropout(subsets: list[Any], caches_text_encoder: bool, strategy_era: bool) -> float:
    """Move ``caption_dropout_rate`` from sd-scripts to us when TE outputs are cached; returns the max rate."""
    if not caches_text_encoder:
        return 0.0
    rates = [getattr(s, "caption_dropout_rate", 0.0) or 0.0 for s in subsets]
    if not any(rates):
        return 0.0
    if not strategy_era:
        msg = (
            "caption_dropout_rate with --cache_text_encoder_outputs needs sd-scripts main (strategy API); on "
            "v0.9.1 remove --cache_text_encoder_outputs or set caption_dropout_rate = 0"
        )
        raise CollageConfigError(msg)
    for subset, rate in zip(subsets, rates):
        setattr(subset, RATE_ATTR, rate)
        subset.caption_dropout_rate = 0.0
    return max(rates)


def encode_empty_caption(models: list[Any], cache_dir: Path) -> list[np.ndarray]:
    """The cached-output form of ``""``, made by sd-scripts' own tokenize/encode/caching strategies."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    return [np.asarray(o) for o in seams.encode_text(models, "", cache_dir / "empty_caption.png")]


def drop_decision(seed: int, epoch: int, index: int, position: int, key: str, rate: float) -> bool:
    """Whether sample ``position`` of batch ``index`` gets the empty caption this epoch."""
    return rate > 0 and derive_rng(seed, epoch, f"te-dropout:{index}:{position}:{key}", "caption").random() < rate


def substitute(example: dict[str, Any], dataset: Any, index: int, empty: list[np.ndarray], seed: int) -> int:
    """Replace the cached outputs of dropped samples by the empty encoding; returns how many were dropped."""
    outputs = seams.cached_text_outputs(example)
    if outputs is None:
        return 0
    import torch

    dropped = 0
    for position, key in enumerate(seams.batch_keys(dataset, index)):
        rate = getattr(seams.subset_of(dataset, key), RATE_ATTR, 0.0)
        if not drop_decision(seed, seams.epoch_of(dataset), index, position, key, rate):
            continue
        for k, tensor in enumerate(outputs):
            value = torch.as_tensor(empty[k], dtype=tensor.dtype)
            if value.shape != tensor[position].shape:
                msg = (
                    f"internal: empty-caption output {k} has shape {tuple(value.shape)}, cached outputs have "
                    f"{tuple(tensor[position].shape)}"
                )
                raise RuntimeError(msg)
            tensor[position] = value
        example["captions"][position] = ""
        dropped += 1
    return dropped
