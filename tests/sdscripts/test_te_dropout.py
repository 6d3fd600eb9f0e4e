"""Caption dropout with cached text-encoder outputs (sd-scripts main): no assertion, exact empty encoding."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import torch

import fakes
from test_collage_dataset import SIZES, dataset_toml, load, write_dataset

pytestmark = [
    pytest.mark.sdscripts,
    pytest.mark.skipif(not fakes.is_strategy_era(), reason="text-encoder strategies exist only on main"),
]


def encoders(kind: str, toks: fakes.TinyTokenizers) -> list[Any]:
    """Tiny text encoders of the kind the trainer would load."""
    if kind == "sdxl":
        return list(fakes.make_sdxl_text_encoders(toks))
    clip_l, t5 = fakes.make_flux_text_encoders(toks)
    if kind == "chroma":
        clip_l = fakes.import_sd("library.flux_utils").dummy_clip_l()
    return [clip_l, t5]


def uncached_empty(models: list[Any]) -> list[torch.Tensor]:
    """What the uncached training path encodes for an empty caption (tokenize + encode_tokens)."""
    strategy_base = fakes.import_sd("library.strategy_base")
    tokenize = strategy_base.TokenizeStrategy.get_strategy()
    encode = strategy_base.TextEncodingStrategy.get_strategy()
    tokens = tokenize.tokenize("")
    caching = strategy_base.TextEncoderOutputsCachingStrategy.get_strategy()
    with torch.no_grad():
        if hasattr(caching, "apply_t5_attn_mask"):
            out = encode.encode_tokens(tokenize, models, tokens, caching.apply_t5_attn_mask)
        else:
            out = encode.encode_tokens(tokenize, models, tokens)
    return [o[0].float() if o.dtype.is_floating_point else o[0] for o in out]


#: Six of the 3 x 2 x 2 combinations (pairwise cover). Each kind's caching strategy has its own in-memory and its
#: own on-disk (npz) path, so all six (kind, storage) pairs stay; whether the dropped sample is a collage frame or a
#: single image is decided by the adapter's one ``substitute`` for every kind and storage, so that axis alternates:
#: each kind and each storage still meets both frames and single images. (The other six repeated a (kind, storage)
#: path with the other sample type: they proved nothing these do not.)
CASES = [
    pytest.param("sdxl", False, 0.0, id="sdxl-memory-single-images"),
    pytest.param("sdxl", True, 1.0, id="sdxl-disk-collage"),
    pytest.param("flux", False, 1.0, id="flux-memory-collage"),
    pytest.param("flux", True, 0.0, id="flux-disk-single-images"),
    pytest.param("chroma", False, 0.0, id="chroma-memory-single-images"),
    pytest.param("chroma", True, 1.0, id="chroma-disk-collage"),
]


@pytest.mark.parametrize(("kind", "to_disk", "collage"), CASES)
def test_dropout_with_cached_outputs(
    tmp_path: Path, toks: fakes.TinyTokenizers, kind: str, to_disk: bool, collage: float
) -> None:
    """caption_dropout_rate + cached TE outputs: the trainer's check passes, dropped samples carry
    exactly the uncached empty-caption encoding, and the drop share matches the rate."""
    rate, repeats = 0.3, 20
    config = dataset_toml(
        tmp_path,
        write_dataset(tmp_path),
        general=f"collage_rate = {collage}",
        subset=f"caption_dropout_rate = {rate}",
        repeats=repeats,
    )
    flags = ["--cache_text_encoder_outputs", "--network_train_unet_only", "--lowram"]
    if to_disk:
        flags.append("--cache_text_encoder_outputs_to_disk")
    if kind != "sdxl":
        flags.append("--apply_t5_attn_mask")
    group, args, trainer = load(tmp_path, toks, config, *flags, kind=kind)  # runs trainer.assert_extra_args
    assert group.is_text_encoder_output_cacheable()
    models = encoders(kind, toks)
    acc = fakes.SingleProcessAccelerator()
    with torch.no_grad():
        trainer.cache_text_encoder_outputs_if_needed(args, acc, None, None, models, group, torch.float32)
    group.set_current_strategies()
    expected = uncached_empty(models)

    group.set_current_epoch(1)
    total = dropped = 0
    for i in range(len(group)):
        example = group[i]
        for n, caption in enumerate(example["captions"]):
            total += 1
            if caption == "":
                dropped += 1
                for got, want in zip(example["text_encoder_outputs_list"], expected):
                    torch.testing.assert_close(got[n].to(want.dtype), want, rtol=1e-5, atol=1e-5)
    sigma = math.sqrt(total * rate * (1 - rate))
    assert abs(dropped - total * rate) <= 4 * sigma, (dropped, total)
    if collage == 0.0:
        assert total == len(SIZES) * repeats
