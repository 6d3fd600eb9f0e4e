"""Caption settings read from an sd-scripts-style subset (sd-scripts' object or the CLI's own reading).

Both the adapter and the CLI call these, so a subset's grammar and the caption-setting checks are
decided in one place. Plain Python: the subset is duck-typed, nothing imports sd-scripts.
"""

from __future__ import annotations

from typing import Any

from collage_ext.captions.grammar import CaptionGrammar
from collage_ext.core.config import CollageConfig
from collage_ext.core.errors import CollageConfigError


def grammar_of(subset: Any) -> CaptionGrammar:
    """The caption grammar of an sd-scripts subset (its separators, keep_tokens, wildcards)."""
    return CaptionGrammar(
        caption_separator=getattr(subset, "caption_separator", ",") or ",",
        keep_tokens=getattr(subset, "keep_tokens", 0) or 0,
        keep_tokens_separator=getattr(subset, "keep_tokens_separator", "") or "",
        secondary_separator=getattr(subset, "secondary_separator", "") or "",
        enable_wildcard=bool(getattr(subset, "enable_wildcard", False)),
        shuffle_caption=bool(getattr(subset, "shuffle_caption", False)),
    )


def check_caption_combination(config: CollageConfig, subset: Any, where: str) -> None:
    """Reject collage caption settings that sd-scripts' own augmentations would silently break."""
    if config.caption_merge != "positional":
        return
    if getattr(subset, "flip_aug", False):
        msg = (
            f"collage_caption_merge = 'positional' cannot be combined with flip_aug = true: a flipped frame "
            f"swaps [LEFT] and [RIGHT]; set flip_aug = false or collage_caption_merge = 'concat' @ {where}"
        )
        raise CollageConfigError(msg)
    if getattr(subset, "shuffle_caption", False) and not getattr(subset, "secondary_separator", None):
        msg = (
            f"collage_caption_merge = 'positional' with shuffle_caption = true needs secondary_separator "
            f'(e.g. secondary_separator = ";;;") so each cell\'s text stays with its marker @ {where}'
        )
        raise CollageConfigError(msg)
