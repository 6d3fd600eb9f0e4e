"""Merge the captions of a collage's cells into one caption that sd-scripts can still process.

Three modes (``collage_caption_merge``):

* ``concat``: every cell's text in reading order; kept (trigger) tags once, at the front.
* ``positional``: In-Context-LoRA style, each cell's text behind its position marker
  (``[LEFT] ...``, ``[RIGHT] ...``).
* ``tags``: the union of booru tags, without duplicates.

All three keep sd-scripts' grammar intact: kept tags stay in front of ``keep_tokens_separator``,
wildcard braces and ``secondary_separator`` groups pass through untouched, and no separator is
ever doubled. Duplicates are removed in order (``dict``, never ``set``), so every process and
DataLoader worker writes the same caption.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Literal

from collage_ext.captions.grammar import CaptionGrammar, ParsedCaption, format_caption, parse_caption, tag_key
from collage_ext.core.errors import CollageConfigError

__all__ = ["MERGE_MODES", "MergeMode", "merge_captions"]

MergeMode = Literal["concat", "positional", "tags"]
MERGE_MODES: tuple[MergeMode, ...] = ("concat", "positional", "tags")

# A letter, then sentence-ending punctuation, then optional closing quotes/brackets. The letter
# keeps booru tags such as "!?" or "..." from being taken for the end of a sentence.
_SENTENCE_END = re.compile(r"[^\W\d_][\"')\]]*[.!?\u2026\u3002\uff01\uff1f]+[\"')\]]*$")


def _ends_sentence(text: str) -> bool:
    return _SENTENCE_END.search(text) is not None


def _dedup(tags: Iterable[str], exclude: Iterable[str] = ()) -> tuple[str, ...]:
    """Drop repeated tags (compared by ``tag_key``) keeping the first spelling and order."""
    excluded = {tag_key(t) for t in exclude}
    kept: dict[str, str] = {}
    for tag in tags:
        key = tag_key(tag)
        if key not in excluded and key not in kept:
            kept[key] = tag
    return tuple(kept.values())


def _union_units(cells: Sequence[ParsedCaption], exclude: Iterable[str]) -> list[tuple[str, ...]]:
    """Each cell's flex tags not seen before (in an earlier cell or in ``exclude``), per cell."""
    seen = {tag_key(t) for t in exclude}
    units: list[tuple[str, ...]] = []
    for cell in cells:
        unit = _dedup(cell.flex, exclude=seen)
        seen.update(tag_key(t) for t in unit)
        units.append(unit)
    return units


def _glue_units(units: Iterable[Sequence[str]]) -> tuple[str, ...]:
    """Concatenate per-cell tag runs; a run that ends a sentence is followed by a space, not ", "."""
    out: list[str] = []
    for unit in units:
        if not unit:
            continue
        if out and _ends_sentence(out[-1]):
            # "A woman in red. A man." reads better than "A woman in red., A man."
            out[-1] = f"{out[-1]} {unit[0]}"
            out.extend(unit[1:])
        else:
            out.extend(unit)
    return tuple(out)


def _rehome_kept(cells: Sequence[ParsedCaption], kept: tuple[str, ...]) -> tuple[tuple[str, ...], list[ParsedCaption]]:
    """With plain ``keep_tokens`` only the first ``keep_tokens`` merged tags stay fixed: keep those in front and
    put every other cell's kept tags back at the start of that cell's own text.

    Hoisting them all to the front would not keep them fixed (sd-scripts counts ``keep_tokens`` tags) and
    puts a partner's trigger into the middle of a natural-language caption whose first clause is its kept
    "tag" ("... under a clear blue sky, subject, seen from a distance").
    """
    keys = {tag_key(t) for t in kept}
    rehomed = [
        ParsedCaption((), (*(t for t in cell.fixed if tag_key(t) not in keys), *cell.flex), cell.suffix)
        for cell in cells
    ]
    return kept, rehomed


def _positional_unit(flex: tuple[str, ...], name: str, grammar: CaptionGrammar) -> tuple[str, ...]:
    """Put the cell's marker in front of its text (no marker for a cell without flex text)."""
    if not flex:
        return ()
    marker = f"[{name.strip()}] " if name.strip() else ""
    sec = grammar.secondary_separator
    if sec:
        # One secondary-separated group is one tag to sd-scripts, so shuffle_caption moves the marker
        # and its text together; process_caption turns the glue back into caption_separator.
        glue = sec if sec[-1].isspace() else sec + " "
        return (marker + glue.join(flex),)
    return (marker + flex[0], *flex[1:])


def _check_inputs(captions: Sequence[str], names: Sequence[str], mode: str) -> None:
    if mode not in MERGE_MODES:
        msg = f"collage_caption_merge must be one of 'concat', 'positional', 'tags', got {mode!r}; "
        msg += 'e.g. collage_caption_merge = "tags"'
        raise CollageConfigError(msg)
    if isinstance(captions, str) or isinstance(names, str):
        msg = "captions and names must be sequences of strings, not a single string"
        raise TypeError(msg)
    if len(captions) != len(names):
        msg = f"captions and names must have the same length, got {len(captions)} captions and {len(names)} names"
        raise ValueError(msg)
    for i, (caption, name) in enumerate(zip(captions, names, strict=True)):
        if not isinstance(caption, str) or not isinstance(name, str):
            msg = f"captions[{i}] and names[{i}] must be strings, got {caption!r} and {name!r}"
            raise TypeError(msg)


def merge_captions(
    captions: Sequence[str],
    names: Sequence[str],
    mode: MergeMode,
    grammar: CaptionGrammar,
) -> str:
    """Merge the single-line captions of a collage's cells into one caption.

    Kept tags (``keep_tokens`` / before ``keep_tokens_separator``) of all cells come first, once each
    (a shared trigger word appears once), and suffix tags last, once each; the flex part depends on
    ``mode``. With plain ``keep_tokens`` (no separator) only the first ``keep_tokens`` merged tags can
    stay fixed, so a partner's different kept tags open its own text instead (never the middle of a
    natural-language caption). An empty caption (a dropped cell) contributes nothing, not even its marker.

    Args:
        captions: one caption per cell, in reading order; ``""`` for a cell whose text is dropped.
        names: the position marker of each cell (``"LEFT"``, ``"TOP-RIGHT"``); written as
            ``[LEFT]`` in ``positional`` mode, ignored otherwise. ``""`` writes no marker.
        mode: ``"concat"``, ``"positional"`` or ``"tags"`` (see the module docstring).
        grammar: the subset's caption grammar; the result uses the same grammar.

    Returns:
        The merged caption; ``parse_caption`` (and sd-scripts) read the merged kept tags as fixed
        when ``keep_tokens_separator`` is set. With plain ``keep_tokens`` only the first
        ``keep_tokens`` merged tags stay fixed, as sd-scripts counts them.

    Raises:
        CollageConfigError: for an unknown ``mode``.
        TypeError: when a caption or name is not a string.
        ValueError: when ``captions`` and ``names`` differ in length.

    Examples:
        >>> g = CaptionGrammar(keep_tokens_separator="|||")
        >>> caps = ["ohwx ||| 1girl, red dress", "ohwx ||| 1boy, Red_Dress"]
        >>> merge_captions(caps, ["LEFT", "RIGHT"], "concat", g)
        'ohwx ||| 1girl, red dress, 1boy, Red_Dress'
        >>> merge_captions(caps, ["LEFT", "RIGHT"], "positional", g)
        'ohwx ||| [LEFT] 1girl, red dress, [RIGHT] 1boy, Red_Dress'
        >>> merge_captions(caps, ["LEFT", "RIGHT"], "tags", g)
        'ohwx ||| 1girl, red dress, 1boy'
        >>> merge_captions(["A woman in red.", "", "A man."], ["L", "C", "R"], "concat", CaptionGrammar())
        'A woman in red. A man.'
    """
    _check_inputs(captions, names, mode)
    cells = [parse_caption(c, grammar) for c in captions]
    fixed = _dedup(t for cell in cells for t in cell.fixed)
    if not grammar.keep_tokens_separator and len(fixed) > grammar.keep_tokens:
        fixed, cells = _rehome_kept(cells, fixed[: grammar.keep_tokens])
    suffix = _dedup((t for cell in cells for t in cell.suffix), exclude=fixed)
    if mode == "concat":
        flex = _glue_units(cell.flex for cell in cells)
    elif mode == "positional":
        flex = _glue_units(_positional_unit(cell.flex, name, grammar) for cell, name in zip(cells, names, strict=True))
    else:
        flex = _glue_units(_union_units(cells, exclude=fixed + suffix))
    return format_caption(ParsedCaption(fixed, flex, suffix), grammar)
