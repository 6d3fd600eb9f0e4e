"""Merged captions fed through sd-scripts' REAL BaseDataset.process_caption keep their grammar."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

train_util = pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import fakes  # noqa: E402
from collage_ext.captions import CaptionGrammar, merge_captions  # noqa: E402

pytestmark = pytest.mark.sdscripts


@pytest.fixture(autouse=True)
def _keep_global_rng() -> Iterator[None]:
    """process_caption shuffles with the global RNG; keep that inside the test."""
    with fakes.preserve_global_rng():
        yield


def subset(**overrides: Any) -> SimpleNamespace:
    """A subset with sd-scripts' caption-relevant fields at their defaults."""
    fields: dict[str, Any] = {
        "caption_prefix": None,
        "caption_suffix": None,
        "caption_dropout_rate": 0.0,
        "caption_dropout_every_n_epochs": 0,
        "enable_wildcard": False,
        "shuffle_caption": False,
        "token_warmup_step": 0,
        "token_warmup_min": 1,
        "caption_tag_dropout_rate": 0.0,
        "keep_tokens": 0,
        "keep_tokens_separator": "",
        "caption_separator": ",",
        "secondary_separator": None,
    }
    fields.update(overrides)
    return SimpleNamespace(**fields)


def process(caption: str, sub: SimpleNamespace, seed: int) -> str:
    """sd-scripts' own process_caption, on a minimal dataset stand-in (it only reads these fields)."""
    random.seed(seed)
    dataset = SimpleNamespace(current_epoch=1, current_step=0, max_train_steps=100, replacements={})
    return train_util.BaseDataset.process_caption(dataset, sub, caption)


def grammar_of(sub: SimpleNamespace) -> CaptionGrammar:
    """Our grammar built from the same subset fields."""
    return CaptionGrammar(
        caption_separator=sub.caption_separator,
        keep_tokens=sub.keep_tokens,
        keep_tokens_separator=sub.keep_tokens_separator,
        secondary_separator=sub.secondary_separator or "",
        enable_wildcard=sub.enable_wildcard,
        shuffle_caption=sub.shuffle_caption,
    )


@pytest.mark.parametrize("mode", ["concat", "tags"])
def test_keep_tokens_separator_survives_shuffle(mode: str) -> None:
    """The shared trigger stays first (once) and every flex tag survives sd-scripts' shuffle."""
    sub = subset(shuffle_caption=True, keep_tokens_separator="|||")
    merged = merge_captions(
        ["ohwx ||| 1girl, red dress", "ohwx ||| sunflower, field"], ["LEFT", "RIGHT"], mode, grammar_of(sub)
    )
    for seed in range(20):
        out = [t.strip() for t in process(merged, sub, seed).split(",")]
        assert out[0] == "ohwx" and out.count("ohwx") == 1 and "|||" not in ",".join(out)
        assert sorted(out[1:]) == ["1girl", "field", "red dress", "sunflower"]


def test_keep_tokens_count_keeps_trigger_first() -> None:
    """With keep_tokens = 1 a shared trigger is one fixed token at the front."""
    sub = subset(shuffle_caption=True, keep_tokens=1)
    merged = merge_captions(["ohwx, a, b", "ohwx, c"], ["TOP", "BOTTOM"], "tags", grammar_of(sub))
    for seed in range(20):
        assert process(merged, sub, seed).split(", ")[0] == "ohwx"


def test_positional_markers_stay_with_their_cell() -> None:
    """With secondary_separator each marker travels with its cell's text through shuffle_caption."""
    sub = subset(shuffle_caption=True, secondary_separator=";;;")
    merged = merge_captions(["1girl, red dress", "sunflower, field"], ["LEFT", "RIGHT"], "positional", grammar_of(sub))
    for seed in range(20):
        out = process(merged, sub, seed)
        assert re.search(r"\[LEFT\] 1girl\s*,\s*red dress", out) and re.search(r"\[RIGHT\] sunflower\s*,\s*field", out)


def test_wildcards_resolved_by_sd_scripts() -> None:
    """Wildcard braces pass through the merge untouched and sd-scripts resolves them."""
    sub = subset(enable_wildcard=True)
    merged = merge_captions(["{red|blue} dress, hat", "sky"], ["LEFT", "RIGHT"], "concat", grammar_of(sub))
    assert "{red|blue}" in merged
    outs = {process(merged, sub, seed) for seed in range(30)}
    assert outs == {"red dress, hat, sky", "blue dress, hat, sky"}
