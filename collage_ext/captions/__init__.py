"""Caption handling for collages: sd-scripts grammar, merging, phrase repetition and per-cell dropout.

Pure ``str -> str`` functions, standard library only; the only randomness comes from an explicit
``rng`` argument.
"""

from __future__ import annotations

from collage_ext.captions.dropout import apply_cell_dropout, drop_cells
from collage_ext.captions.grammar import (
    CaptionGrammar,
    ParsedCaption,
    find_wildcards,
    format_caption,
    parse_caption,
    select_line,
    split_tags,
    tag_key,
)
from collage_ext.captions.merge import MERGE_MODES, MergeMode, merge_captions
from collage_ext.captions.repeat import KEEP_TOKENS, repeat_phrases
from collage_ext.captions.tokens import (
    CLIP_CHUNK,
    TokenBudget,
    TokenCounter,
    chunk_token_counts,
    clip_budget,
    estimate_tokens,
    t5_budget,
)

__all__ = [
    "CLIP_CHUNK",
    "KEEP_TOKENS",
    "MERGE_MODES",
    "CaptionGrammar",
    "MergeMode",
    "ParsedCaption",
    "TokenBudget",
    "TokenCounter",
    "apply_cell_dropout",
    "chunk_token_counts",
    "clip_budget",
    "drop_cells",
    "estimate_tokens",
    "find_wildcards",
    "format_caption",
    "merge_captions",
    "parse_caption",
    "repeat_phrases",
    "select_line",
    "split_tags",
    "t5_budget",
    "tag_key",
]
