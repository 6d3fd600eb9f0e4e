"""Repeat key phrases at later token positions of a caption, so every part of the encoder sees them.

CLIP reads captions in 75-token chunks and SDXL's pooled vector comes from the first chunk only, so
a phrase that matters (a trigger word, "red dress") should sit in chunk 1 and, in a long merged
collage caption, once more near the start of every later chunk. T5 reads up to 512 tokens at once;
there, copies are spread evenly through the caption instead.

Copies are inserted as whole tags into the flex part, so sd-scripts' ``keep_tokens_separator``
prefix/suffix and wildcard groups stay intact, and never past the encoder's budget. The result is
deterministic: it draws no random numbers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from collage_ext.captions.grammar import (
    CaptionGrammar,
    ParsedCaption,
    find_wildcards,
    format_caption,
    parse_caption,
    split_tags,
    tag_key,
)
from collage_ext.captions.tokens import TokenBudget, TokenCounter
from collage_ext.core.errors import CollageConfigError

__all__ = ["KEEP_TOKENS", "repeat_phrases"]

logger = logging.getLogger(__name__)

#: Phrase value meaning "the caption's kept (trigger) tags".
KEEP_TOKENS = "<keep_tokens>"
# Stands for an inserted tag while measuring where it would start; never part of a written caption.
_SENTINEL = "\0"
_EXAMPLE = 'e.g. collage_repeat_phrases = ["red dress", "<keep_tokens>"]'


def _check_args(phrases: Sequence[str], count: int) -> None:
    if isinstance(phrases, str) or not isinstance(phrases, Sequence):
        msg = f"collage_repeat_phrases must be a list of strings, got {phrases!r}; {_EXAMPLE}"
        raise CollageConfigError(msg)
    for i, phrase in enumerate(phrases):
        if not isinstance(phrase, str) or not phrase.strip():
            msg = f"collage_repeat_phrases[{i}] must be a non-empty string, got {phrase!r}; {_EXAMPLE}"
            raise CollageConfigError(msg)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        msg = f"collage_repeat_count must be an integer >= 0, got {count!r}; e.g. collage_repeat_count = 2"
        raise CollageConfigError(msg)


def _pattern(text: str) -> re.Pattern[str]:
    """Match ``text`` case-insensitively as whole words, with ``_`` and spaces interchangeable."""
    body = r"[\s_]+".join(re.escape(part) for part in re.split(r"[\s_]+", text.strip()))
    # Letters and digits bound a word; "_" does not, so "red dress" occurs in "dark_red_dress".
    head = r"(?<![^\W_])" if re.match(r"[^\W_]", text.strip()) else ""
    tail = r"(?![^\W_])" if re.search(r"[^\W_]$", text.strip()) else ""
    return re.compile(head + body + tail, re.IGNORECASE)


def _matches(text: str, pattern: re.Pattern[str], grammar: CaptionGrammar) -> list[re.Match[str]]:
    """Occurrences of ``pattern``; inside a wildcard group a phrase only occurs sometimes, so not there."""
    spans = find_wildcards(text) if grammar.enable_wildcard else []
    return [m for m in pattern.finditer(text) if not any(s < m.end() and m.start() < e for s, e in spans)]


def _find_unit(parsed: ParsedCaption, phrase: str, grammar: CaptionGrammar) -> tuple[str, ...]:
    """Return the tags to insert for ``phrase`` (its first spelling in the caption), or ``()``."""
    if phrase == KEEP_TOKENS:
        return parsed.fixed
    found = _matches(format_caption(parsed, grammar), _pattern(phrase), grammar)
    if not found:
        return ()
    unit = tuple(split_tags(found[0].group(0), grammar.caption_separator))
    kts = grammar.keep_tokens_separator
    return () if kts and any(kts in tag for tag in unit) else unit


def _join(unit: tuple[str, ...], grammar: CaptionGrammar) -> str:
    sep = grammar.caption_separator
    return unit[0] if len(unit) == 1 else (sep if sep[-1].isspace() else sep + " ").join(unit)


def _starts(parsed: ParsedCaption, unit: tuple[str, ...], grammar: CaptionGrammar, counter: TokenCounter) -> list[int]:
    """Token offsets at which the unit already occurs."""
    text = format_caption(parsed, grammar)
    pattern = _pattern(_join(unit, grammar))
    return [counter(text[: m.start()]) for m in _matches(text, pattern, grammar)]


def _insert(parsed: ParsedCaption, j: int, unit: tuple[str, ...]) -> ParsedCaption:
    return ParsedCaption(parsed.fixed, parsed.flex[:j] + unit + parsed.flex[j:], parsed.suffix)


def _offset(parsed: ParsedCaption, j: int, grammar: CaptionGrammar, counter: TokenCounter) -> int:
    """Token offset at which a tag inserted before ``flex[j]`` would start (separators included)."""
    text = format_caption(_insert(parsed, j, (_SENTINEL,)), grammar)
    return counter(text.split(_SENTINEL, 1)[0])


def _first_boundary_at(parsed: ParsedCaption, target: float, grammar: CaptionGrammar, counter: TokenCounter) -> int:
    """Smallest flex boundary whose offset is >= ``target`` (``len(flex) + 1`` when none); offsets only grow."""
    lo, hi = 0, len(parsed.flex) + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if _offset(parsed, mid, grammar, counter) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _try_insert(
    parsed: ParsedCaption,
    j: int,
    unit: tuple[str, ...],
    budget: TokenBudget,
    counter: TokenCounter,
    grammar: CaptionGrammar,
) -> ParsedCaption | None:
    """Insert ``unit`` before ``flex[j]`` unless a copy is right there or the caption would overflow."""
    keys = [tag_key(t) for t in unit]
    before, after = parsed.flex[max(0, j - len(unit)) : j], parsed.flex[j : j + len(unit)]
    if keys in ([tag_key(t) for t in before], [tag_key(t) for t in after]):
        return None
    candidate = _insert(parsed, j, unit)
    if counter(format_caption(candidate, grammar)) > budget.max_tokens:
        logger.debug(f"skip repeating {unit!r}: the caption would exceed {budget.max_tokens} tokens")
        return None
    return candidate


def _ensure_first_chunk(
    parsed: ParsedCaption,
    unit: tuple[str, ...],
    at: int,
    budget: TokenBudget,
    counter: TokenCounter,
    grammar: CaptionGrammar,
) -> ParsedCaption | None:
    """Copy ``unit`` to flex boundary ``at`` unless it already lies wholly in chunk 1 (or cannot fit there)."""
    size, chunk = counter(_join(unit, grammar)), budget.chunk
    if any(s + size <= chunk for s in _starts(parsed, unit, grammar, counter)):
        return None
    if _offset(parsed, at, grammar, counter) + size > chunk:
        return None
    return _try_insert(parsed, at, unit, budget, counter, grammar)


def _repeat_later_chunks(
    parsed: ParsedCaption,
    unit: tuple[str, ...],
    budget: TokenBudget,
    counter: TokenCounter,
    grammar: CaptionGrammar,
    count: int,
    reach: int,
) -> ParsedCaption:
    """Copy ``unit`` to the first boundary of each chunk 2..``reach`` that lacks it, at most ``count`` times."""
    chunk, added = budget.chunk, 0
    for k in range(1, reach):
        if added >= count:
            break
        if any(k * chunk <= s < (k + 1) * chunk for s in _starts(parsed, unit, grammar, counter)):
            continue
        j = _first_boundary_at(parsed, k * chunk, grammar, counter)
        if j > len(parsed.flex) or _offset(parsed, j, grammar, counter) >= (k + 1) * chunk:
            continue  # the flex part ends before this chunk, or one huge tag spans all of it
        new = _try_insert(parsed, j, unit, budget, counter, grammar)
        if new is not None:
            parsed, added = new, added + 1
    return parsed


def _repeat_clip(
    parsed: ParsedCaption,
    units: list[tuple[str, ...]],
    budget: TokenBudget,
    counter: TokenCounter,
    grammar: CaptionGrammar,
    count: int,
) -> ParsedCaption:
    """Put every unit in chunk 1 first, then copy each near the start of the later chunks."""
    reach = -(-counter(format_caption(parsed, grammar)) // budget.chunk)  # chunks reached (ceil)
    left: list[int] = []
    front = 0
    for unit in units:
        # Chunk 1 feeds SDXL's pooled vector: copies go right after the kept tags, in phrase order.
        # All chunk-1 copies are made before any later one, so they cannot push later copies off
        # their chunk starts.
        new = _ensure_first_chunk(parsed, unit, front, budget, counter, grammar)
        if new is not None:
            parsed, front = new, front + len(unit)
        left.append(count - (new is not None))
    for unit, n in zip(units, left, strict=True):
        parsed = _repeat_later_chunks(parsed, unit, budget, counter, grammar, n, reach)
    return parsed


def _repeat_t5(
    parsed: ParsedCaption,
    unit: tuple[str, ...],
    budget: TokenBudget,
    counter: TokenCounter,
    grammar: CaptionGrammar,
    count: int,
) -> ParsedCaption:
    """Insert up to ``count`` copies at the flex boundaries nearest to 1/(count+1), 2/(count+1), ... of the text."""
    total = counter(format_caption(parsed, grammar))
    picks: list[int] = []
    for i in range(1, count + 1):
        target = total * i / (count + 1)
        j = _first_boundary_at(parsed, target, grammar, counter)
        if j > 0 and (
            j > len(parsed.flex)
            or target - _offset(parsed, j - 1, grammar, counter) <= _offset(parsed, j, grammar, counter) - target
        ):
            j -= 1  # the boundary before the target is at least as close
        if j not in picks:
            picks.append(j)
    shift = 0
    for j in sorted(picks):
        new = _try_insert(parsed, j + shift, unit, budget, counter, grammar)
        if new is not None:
            parsed, shift = new, shift + len(unit)
    return parsed


def repeat_phrases(
    caption: str,
    phrases: Sequence[str],
    budget: TokenBudget,
    counter: TokenCounter,
    grammar: CaptionGrammar,
    *,
    count: int = 2,
) -> str:
    """Repeat the phrases that occur in ``caption`` at later token positions, within the token budget.

    A phrase occurs when it matches whole words of the caption, case-insensitively and with ``_``
    equal to a space (so ``"red dress"`` finds the tag ``red_dress`` and the sentence "a woman in a
    red dress."); the copy uses the caption's spelling. ``"<keep_tokens>"`` stands for the caption's
    kept (trigger) tags. For CLIP, a phrase not wholly inside chunk 1 is first copied right after
    the kept tags; then a copy goes to the first tag boundary at or after the start of each later
    chunk the caption reaches and that lacks one. For T5, copies go to the tag boundaries nearest
    to evenly spaced fractions of the caption. Either way each phrase gets at most ``count`` copies;
    a copy is skipped when it would push the caption past ``budget.max_tokens``, so a caption that
    is already over budget is returned unchanged.

    Args:
        caption: a single-line caption in sd-scripts grammar.
        phrases: ``collage_repeat_phrases``; ``"<keep_tokens>"`` means the kept tags.
        budget: the text encoder's budget (``clip_budget`` / ``t5_budget``).
        counter: counts the tokens of a text (``estimate_tokens`` when no tokenizer is at hand).
        grammar: the subset's caption grammar.
        count: ``collage_repeat_count``, the most extra copies per phrase.

    Returns:
        The caption with copies inserted as flex tags, or ``caption`` itself when nothing was inserted.

    Raises:
        CollageConfigError: when ``phrases`` is not a list of non-empty strings or ``count`` < 0.

    Examples:
        >>> from collage_ext.captions.tokens import TokenBudget, t5_budget
        >>> g = CaptionGrammar(keep_tokens_separator="|||")
        >>> words = lambda s: len(s.replace(",", " ").split())
        >>> cap = "ohwx ||| " + ", ".join(f"t{i}" for i in range(12))
        >>> repeat_phrases(cap, ["<keep_tokens>"], TokenBudget("clip", 20, 5), words, g, count=2)
        'ohwx ||| t0, t1, t2, ohwx, t3, t4, t5, t6, ohwx, t7, t8, t9, t10, t11'
        >>> repeat_phrases("a, b, c, d, e, f, g, h", ["b"], t5_budget(), words, CaptionGrammar(), count=1)
        'a, b, c, d, b, e, f, g, h'
    """
    _check_args(phrases, count)
    parsed = parse_caption(caption, grammar)
    total = counter(format_caption(parsed, grammar))
    if count == 0 or total > budget.max_tokens or _SENTINEL in caption:
        return caption
    # One unit per distinct phrase found; "red dress" and "Red_Dress" are the same unit.
    found: dict[tuple[str, ...], tuple[str, ...]] = {}
    for phrase in phrases:
        unit = _find_unit(parsed, phrase.strip(), grammar)
        if unit:
            found.setdefault(tuple(tag_key(t) for t in unit), unit)
    units = list(found.values())
    if budget.kind == "clip":
        current = _repeat_clip(parsed, units, budget, counter, grammar, count)
    else:
        current = parsed
        for unit in units:
            current = _repeat_t5(current, unit, budget, counter, grammar, count)
    return caption if current == parsed else format_caption(current, grammar)
