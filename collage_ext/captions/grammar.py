"""sd-scripts caption grammar: parse a caption into fixed / flex / suffix tags and format it back.

Merged and augmented captions are fed to sd-scripts' ``BaseDataset.process_caption`` afterwards, so
everything here mirrors that method (``library/train_util.py``, sd-scripts ``48d368fa``): the
``caption_separator`` split, ``keep_tokens`` and ``keep_tokens_separator`` (``fixed ||| flex ||| suffix``),
``secondary_separator`` groups (kept whole: they are one tag to sd-scripts) and ``{a|b}`` wildcards.

One deliberate difference: sd-scripts expands wildcards *before* splitting, while collage_ext works on
the raw caption, so a wildcard group is kept as one tag even when an alternative holds a separator
(``{red, blue|green} dress``). sd-scripts expands it later exactly as it would have.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from collage_ext.core.errors import CollageConfigError

__all__ = [
    "CaptionGrammar",
    "ParsedCaption",
    "find_wildcards",
    "format_caption",
    "parse_caption",
    "select_line",
    "split_tags",
    "tag_key",
]

_BOM = "\ufeff"
_NEWLINE = re.compile(r"\r\n|\r|\n")
# sd-scripts' wildcard pattern, applied after ``{{`` / ``}}`` escapes are hidden.
_WILDCARD = re.compile(r"\{([^}]+)\}")


@dataclass(frozen=True, slots=True)
class CaptionGrammar:
    """The subset of sd-scripts subset keys that decide how a caption is read.

    Field names and defaults are those of sd-scripts' ``[[datasets.subsets]]`` keys, so a subset's
    values can be passed straight through.

    Raises:
        CollageConfigError: when a separator is empty or ``keep_tokens`` is negative.

    Examples:
        >>> CaptionGrammar(keep_tokens_separator="|||").caption_separator
        ','
    """

    caption_separator: str = ","
    keep_tokens: int = 0
    keep_tokens_separator: str = ""
    secondary_separator: str = ""
    enable_wildcard: bool = False
    shuffle_caption: bool = False

    def __post_init__(self) -> None:
        """Reject values sd-scripts would misread, at construction rather than mid-training."""
        if not isinstance(self.caption_separator, str) or not self.caption_separator.strip():
            msg = (
                f"caption_separator must be a non-blank string, got {self.caption_separator!r}; "
                "e.g. caption_separator = ','"
            )
            raise CollageConfigError(msg)
        if isinstance(self.keep_tokens, bool) or not isinstance(self.keep_tokens, int) or self.keep_tokens < 0:
            msg = f"keep_tokens must be an integer >= 0, got {self.keep_tokens!r}; e.g. keep_tokens = 1"
            raise CollageConfigError(msg)
        for key in ("keep_tokens_separator", "secondary_separator"):
            value = getattr(self, key)
            if not isinstance(value, str):
                msg = f"{key} must be a string ('' = unset), got {value!r}"
                raise CollageConfigError(msg)


@dataclass(frozen=True, slots=True)
class ParsedCaption:
    """A caption split the way ``process_caption`` splits it.

    Attributes:
        fixed: kept tags (``keep_tokens`` or the part before the first ``keep_tokens_separator``);
            usually the trigger words. sd-scripts never shuffles or drops them.
        flex: tags that sd-scripts may shuffle, drop or warm up.
        suffix: kept tags after a second ``keep_tokens_separator``.
    """

    fixed: tuple[str, ...] = ()
    flex: tuple[str, ...] = ()
    suffix: tuple[str, ...] = ()

    @property
    def tags(self) -> tuple[str, ...]:
        """All tags in caption order."""
        return self.fixed + self.flex + self.suffix


def tag_key(tag: str) -> str:
    """Return the comparison key of a tag: case, ``_`` vs space and extra whitespace ignored.

    Booru exports spell the same tag ``Red_Dress`` or ``red dress``; only the key is compared, the
    first spelling is what gets written.

    Examples:
        >>> tag_key("  Red_Dress ") == tag_key("red dress")
        True
    """
    return " ".join(tag.replace("_", " ").casefold().split())


def find_wildcards(text: str) -> list[tuple[int, int]]:
    """Return the ``(start, end)`` spans of wildcard groups ``{a|b}`` in ``text``.

    Mirrors sd-scripts: ``{{`` and ``}}`` are escaped literal braces (replaced left to right, ``{{``
    first), and a group is ``{`` up to the next ``}``.

    Examples:
        >>> find_wildcards("{a|b, c} dress, {{x}}")
        [(0, 8)]
    """
    # Same-length masks keep indices aligned with the original text.
    masked = text.replace("{{", "\0\0").replace("}}", "\0\0")
    return [m.span() for m in _WILDCARD.finditer(masked)]


def split_tags(text: str, separator: str) -> list[str]:
    """Split ``text`` on ``separator`` outside wildcard braces; strip tags and drop empty ones.

    Dropping empties is what keeps merged captions free of doubled separators (sd-scripts itself
    keeps an empty tag in the ``keep_tokens`` branch, which only changes its count).

    Examples:
        >>> split_tags(" 1girl,, {red|blue, green} dress ,smile ", ",")
        ['1girl', '{red|blue, green} dress', 'smile']
        >>> split_tags("sky;;;cloud, day", ",")
        ['sky;;;cloud', 'day']
    """
    spans = find_wildcards(text)
    tags: list[str] = []
    start = pos = 0
    while (hit := text.find(separator, pos)) != -1:
        inside = next((end for s, end in spans if s < hit < end), None)
        if inside is not None:
            pos = inside
            continue
        tags.append(text[start:hit])
        start = pos = hit + len(separator)
    tags.append(text[start:])
    return [t.strip() for t in tags if t.strip()]


def parse_caption(text: str, grammar: CaptionGrammar) -> ParsedCaption:
    """Split a one-line caption into fixed / flex / suffix tags exactly as ``process_caption`` does.

    With ``keep_tokens_separator`` present in the caption, the text before the first separator is
    fixed, between the first and second is flex and after the second is the suffix (further
    separators stay inside suffix tags); ``keep_tokens`` is then ignored. Otherwise the first
    ``keep_tokens`` tags are fixed.

    Examples:
        >>> g = CaptionGrammar(keep_tokens_separator="|||")
        >>> parse_caption("ohwx, woman ||| red dress, smile ||| best quality", g)
        ParsedCaption(fixed=('ohwx', 'woman'), flex=('red dress', 'smile'), suffix=('best quality',))
        >>> parse_caption("ohwx, red dress, smile", CaptionGrammar(keep_tokens=1))
        ParsedCaption(fixed=('ohwx',), flex=('red dress', 'smile'), suffix=())
    """
    sep, kts = grammar.caption_separator, grammar.keep_tokens_separator
    if kts and kts in text:
        fixed_part, flex_part = text.split(kts, 1)
        suffix_part = ""
        if kts in flex_part:
            flex_part, suffix_part = flex_part.split(kts, 1)
        return ParsedCaption(
            tuple(split_tags(fixed_part, sep)), tuple(split_tags(flex_part, sep)), tuple(split_tags(suffix_part, sep))
        )
    tags = split_tags(text, sep)
    return ParsedCaption(tuple(tags[: grammar.keep_tokens]), tuple(tags[grammar.keep_tokens :]), ())


def _joiner(grammar: CaptionGrammar) -> str:
    sep = grammar.caption_separator
    return sep if sep[-1].isspace() else sep + " "


def format_caption(parsed: ParsedCaption, grammar: CaptionGrammar) -> str:
    """Write a ``ParsedCaption`` back as text that ``parse_caption`` / ``process_caption`` read back.

    Tags are joined with ``caption_separator + " "``. With ``keep_tokens_separator`` set, a fixed
    part or suffix is written as ``fixed ||| flex`` / ``fixed ||| flex ||| suffix``; an empty fixed
    part is written as a leading ``|||`` only when ``keep_tokens > 0`` would otherwise fix the first
    flex tags. Without ``keep_tokens_separator`` the boundary is implied by ``keep_tokens``, so only
    captions whose fixed part holds the first ``keep_tokens`` tags round-trip (suffix tags are then
    written as plain trailing tags).

    Examples:
        >>> g = CaptionGrammar(keep_tokens_separator="|||")
        >>> format_caption(ParsedCaption(("ohwx",), ("red dress", "smile"), ("best quality",)), g)
        'ohwx ||| red dress, smile ||| best quality'
        >>> format_caption(ParsedCaption(("ohwx",), ("smile",)), CaptionGrammar(keep_tokens=1))
        'ohwx, smile'
    """
    join, kts = _joiner(grammar).join, grammar.keep_tokens_separator
    fixed, flex, suffix = join(parsed.fixed), join(parsed.flex), join(parsed.suffix)
    if kts and (parsed.fixed or parsed.suffix or (grammar.keep_tokens > 0 and parsed.flex)):
        pieces = [fixed, kts, flex, kts, suffix] if parsed.suffix else [fixed, kts, flex]
        return " ".join(p for p in pieces if p)
    return join(parsed.tags)


def select_line(text: str, grammar: CaptionGrammar, *, rng: random.Random) -> str:
    r"""Pick the caption line sd-scripts would train on, drawing from ``rng`` instead of global ``random``.

    sd-scripts' ``read_caption`` keeps the first line, or with ``enable_wildcard`` all non-blank lines
    of which ``process_caption`` picks one at random. A leading UTF-8 BOM (Windows editors) is
    removed; sd-scripts would keep it as part of the first tag.

    Examples:
        >>> select_line("\ufeffa, b\nc, d\n", CaptionGrammar(), rng=random.Random(0))
        'a, b'
        >>> select_line("a\n\nb", CaptionGrammar(enable_wildcard=True), rng=random.Random(0)) in {"a", "b"}
        True
    """
    # Universal newlines, like the text-mode ``readlines`` sd-scripts uses (not str.splitlines,
    # which also breaks on form feeds and Unicode line separators).
    lines = _NEWLINE.split(text.removeprefix(_BOM)) if text else []
    if not grammar.enable_wildcard:
        return lines[0].strip() if lines else ""
    candidates = [line.strip() for line in lines if line.strip()]
    if len(candidates) > 1:
        return rng.choice(candidates)
    return candidates[0] if candidates else ""
