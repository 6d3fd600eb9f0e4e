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
from types import SimpleNamespace
from typing import Any

import numpy as np

from collage_ext.core.errors import CollageConfigError
from collage_ext.core.rng import derive_rng

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
        msg = ("caption_dropout_rate with --cache_text_encoder_outputs needs sd-scripts main (strategy API); on "
               "v0.9.1 remove --cache_text_encoder_outputs or set caption_dropout_rate = 0")
        raise CollageConfigError(msg)
    for subset, rate in zip(subsets, rates):
        setattr(subset, RATE_ATTR, rate)
        subset.caption_dropout_rate = 0.0
    return max(rates)


def encode_empty_caption(models: list[Any], cache_dir: Path) -> list[np.ndarray]:
    """The cached-output form of ``""``, made by sd-scripts' own tokenize/encode/caching strategies."""
    from library import strategy_base  # type: ignore[import-not-found]

    tokenize = strategy_base.TokenizeStrategy.get_strategy()
    encode = strategy_base.TextEncodingStrategy.get_strategy()
    caching = strategy_base.TextEncoderOutputsCachingStrategy.get_strategy()
    if tokenize is None or encode is None or caching is None:
        msg = "internal: sd-scripts' text-encoder strategies are not set while caching text-encoder outputs"
        raise RuntimeError(msg)
    cache_dir.mkdir(parents=True, exist_ok=True)
    stub = SimpleNamespace(caption="", text_encoder_outputs=None,
                           text_encoder_outputs_npz=caching.get_outputs_npz_path(str(cache_dir / "empty_caption.png")))
    caching.cache_batch_outputs(tokenize, models, encode, [stub])
    outputs = stub.text_encoder_outputs
    if outputs is None:  # cache_to_disk: the strategy wrote the npz instead
        outputs = caching.load_outputs_npz(stub.text_encoder_outputs_npz)
    return [np.asarray(o) for o in outputs]


def batch_keys(dataset: Any, index: int) -> list[str]:
    """The image keys sd-scripts put into batch ``index`` (mirrors ``BaseDataset.__getitem__``)."""
    entry = dataset.buckets_indices[index]
    bucket = dataset.bucket_manager.buckets[entry.bucket_index]
    start = entry.batch_index * entry.bucket_batch_size
    return list(bucket[start : start + entry.bucket_batch_size])


def drop_decision(seed: int, epoch: int, index: int, position: int, key: str, rate: float) -> bool:
    """Whether sample ``position`` of batch ``index`` gets the empty caption this epoch."""
    return rate > 0 and derive_rng(seed, epoch, f"te-dropout:{index}:{position}:{key}", "caption").random() < rate


def substitute(example: dict[str, Any], dataset: Any, index: int, empty: list[np.ndarray], seed: int) -> int:
    """Replace the cached outputs of dropped samples by the empty encoding; returns how many were dropped."""
    outputs = example.get("text_encoder_outputs_list")
    if outputs is None:
        return 0
    import torch

    dropped = 0
    for position, key in enumerate(batch_keys(dataset, index)):
        rate = getattr(dataset.image_to_subset[key], RATE_ATTR, 0.0)
        if not drop_decision(seed, dataset.current_epoch, index, position, key, rate):
            continue
        for k, tensor in enumerate(outputs):
            value = torch.as_tensor(empty[k], dtype=tensor.dtype)
            if value.shape != tensor[position].shape:
                msg = (f"internal: empty-caption output {k} has shape {tuple(value.shape)}, cached outputs have "
                       f"{tuple(tensor[position].shape)}")
                raise RuntimeError(msg)
            tensor[position] = value
        example["captions"][position] = ""
        dropped += 1
    return dropped
