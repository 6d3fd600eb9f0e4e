"""Per-cell caption dropout: drop one cell's text while its pixels stay in the frame.

This teaches the model that a caption need not describe every part of the image, the per-cell
counterpart of sd-scripts' whole-caption ``caption_dropout_rate``. A dropped cell keeps its kept
(trigger) tags, so a LoRA's trigger word is never lost to dropout.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from collage_ext.captions.grammar import CaptionGrammar, ParsedCaption, format_caption, parse_caption
from collage_ext.core.errors import CollageConfigError

__all__ = ["apply_cell_dropout", "drop_cells"]


def drop_cells(n: int, rate: float, *, rng: random.Random) -> tuple[bool, ...]:
    """Decide for each of ``n`` cells whether its caption text is dropped (``True`` = dropped).

    Exactly ``n`` numbers are drawn whatever ``rate`` is, so changing the rate never shifts what
    later draws on the same stream decide.

    Args:
        n: number of cells.
        rate: ``collage_cell_caption_dropout_rate``, the probability of dropping each cell's text.
        rng: the sample's caption stream.

    Raises:
        CollageConfigError: when ``rate`` is outside [0, 1] or ``n`` is negative.

    Examples:
        >>> drop_cells(3, 0.0, rng=random.Random(0)), drop_cells(3, 1.0, rng=random.Random(0))
        ((False, False, False), (True, True, True))
    """
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
        msg = f"collage_cell_caption_dropout_rate must be in [0, 1], got {rate!r}; "
        msg += "e.g. collage_cell_caption_dropout_rate = 0.1"
        raise CollageConfigError(msg)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        msg = f"n must be an integer >= 0, got {n!r}"
        raise ValueError(msg)
    # random() is in [0, 1): rate 0 never drops, rate 1 always does.
    return tuple(rng.random() < rate for _ in range(n))


def apply_cell_dropout(captions: Sequence[str], dropped: Sequence[bool], grammar: CaptionGrammar) -> list[str]:
    """Remove the flex tags of dropped cells, keeping their kept (fixed) tags and suffix.

    The result feeds ``merge_captions``; a dropped cell without kept tags becomes ``""``, which the
    merge skips (no marker, no separator).

    Raises:
        ValueError: when ``captions`` and ``dropped`` differ in length.

    Examples:
        >>> g = CaptionGrammar(keep_tokens_separator="|||")
        >>> apply_cell_dropout(["ohwx ||| 1girl, smile", "1boy"], [True, True], g)
        ['ohwx |||', '']
        >>> apply_cell_dropout(["ohwx, 1girl"], [True], CaptionGrammar(keep_tokens=1))
        ['ohwx']
    """
    if len(captions) != len(dropped):
        msg = f"captions and dropped must have the same length, got {len(captions)} and {len(dropped)}"
        raise ValueError(msg)
    out: list[str] = []
    for caption, drop in zip(captions, dropped, strict=True):
        if drop:
            parsed = parse_caption(caption, grammar)
            caption = format_caption(ParsedCaption(parsed.fixed, (), parsed.suffix), grammar)
        out.append(caption)
    return out
