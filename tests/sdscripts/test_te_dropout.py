"""Caption dropout with cached text-encoder outputs (sd-scripts main): no assertion, exact empty encoding."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import fakes  # noqa: E402
import torch  # noqa: E402
from test_collage_dataset import SIZES, dataset_toml, load, write_dataset  # noqa: E402

pytestmark = [pytest.mark.sdscripts,
              pytest.mark.skipif(not fakes.is_strategy_era(), reason="text-encoder strategies exist only on main")]




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


@pytest.mark.parametrize("to_disk", [False, True], ids=["memory", "disk"])
@pytest.mark.parametrize("kind", ["sdxl", "flux", "chroma"])
@pytest.mark.parametrize("collage", [0.0, 1.0], ids=["single-images", "collage"])
def test_dropout_with_cached_outputs(tmp_path: Path, toks: fakes.TinyTokenizers, kind: str, to_disk: bool,
                                     collage: float) -> None:
    """caption_dropout_rate + cached TE outputs: the trainer's check passes, dropped samples carry
    exactly the uncached empty-caption encoding, and the drop share matches the rate."""
    rate, repeats = 0.3, 20
    config = dataset_toml(tmp_path, write_dataset(tmp_path), general=f"collage_rate = {collage}",
                          subset=f"caption_dropout_rate = {rate}", repeats=repeats)
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

