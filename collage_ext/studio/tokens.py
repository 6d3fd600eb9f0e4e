"""The token view of a caption: where each tag starts, which chunk reads it, what is cut, what is repeated.

CLIP reads 75-token chunks (``--max_token_length`` 75/150/225); T5 one sequence of 512 (or 256).
Tags are located by counting the tokens of the text before them with the run's counter (the real
tokenizer when one is installed locally, else the labelled estimate), so chunk boundaries fall
where the encoder puts them up to the tag. ``repeat_phrases`` (the same function the collage
caption uses) shows which phrases ``collage_repeat_phrases`` copies, and where.

Linear in the caption's length: positions are counted with ``PrefixCounter`` (each stretch of text
once, not every prefix again), tags past the budget are listed up to ``LISTED_CUT_TAGS`` and then
only counted, and the total of a huge caption is counted up to ``TOTAL_CAP`` budgets. A caption of
2 500 tags or of 10 MB takes milliseconds, not the seconds or minutes that counting each tag's
prefix took (issue 20 item 13).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence
from typing import Any

from collage_ext.captions import CaptionGrammar, TokenBudget, TokenCounter, find_wildcards, repeat_phrases
from collage_ext.captions.repeat import KEEP_TOKENS

#: Tags past the budget listed one by one; the rest are counted (``more_tags``): they are never trained.
LISTED_CUT_TAGS = 50
#: A caption's total is counted up to this many budgets; beyond, it is reported as a lower bound.
TOTAL_CAP = 128
#: Characters counted per step when a total is counted (the step ends at the next whitespace).
WINDOW = 4096
#: Longest caption whose phrase repetition is previewed (a longer one is far past any budget).
REPEAT_PREVIEW_CHARS = 1 << 16

_SPACE = re.compile(r"\s")


class PrefixCounter:
    """Tokens of ``text[:pos]`` for increasing ``pos``, each stretch of text counted about once.

    CLIP's pre-tokenizer and T5's SentencePiece both split at whitespace, and the estimate counts
    pieces, so the tokens of a prefix are the tokens before its last whitespace plus those after:
    the counter keeps that anchor and counts only from it. A stretch with no whitespace at all is
    counted whole each time (it is one word, or one run of punctuation).

    Examples:
        >>> words = lambda s: len(s.split())
        >>> pc = PrefixCounter("a b c d", words)
        >>> [pc.at(i) for i in (1, 3, 7)]
        [1, 2, 4]
    """

    def __init__(self, text: str, counter: TokenCounter) -> None:
        self.text, self.counter = text, counter
        self.anchor = 0
        self.base = 0

    def at(self, pos: int) -> int:
        """Tokens of ``text[:pos]``; ``pos`` may not go below an earlier call's."""
        text = self.text
        cut = max(
            text.rfind(" ", self.anchor, pos), text.rfind("\n", self.anchor, pos), text.rfind("\t", self.anchor, pos)
        )
        if cut > self.anchor:
            self.base += self.counter(text[self.anchor : cut])
            self.anchor = cut
        return self.base + self.counter(text[self.anchor : pos])

    def upto(self, limit: int) -> tuple[int, bool]:
        """Tokens of the whole text, counting stopped once past ``limit``: ``(count, counted to the end)``."""
        pos, end = self.anchor, len(self.text)
        count = self.base
        while pos < end:
            hit = _SPACE.search(self.text, min(end, pos + WINDOW))
            pos = hit.start() if hit else end
            count = self.at(pos)
            if count > limit and pos < end:
                return count, False
        return count, True


def tag_spans(text: str, separator: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every non-empty tag of ``text`` (separators outside wildcard braces, lines split).

    Examples:
        >>> tag_spans("a, red dress,, b", ",")
        [(0, 1), (3, 12), (15, 16)]
    """
    return list(iter_tag_spans(text, separator))


def iter_tag_spans(text: str, separator: str) -> Iterator[tuple[int, int]]:
    """``tag_spans`` one by one, in linear time (each separator and wildcard looked at once).

    Examples:
        >>> list(iter_tag_spans("{a, b}, c\\nd", ","))
        [(0, 6), (8, 9), (10, 11)]
    """
    spans = find_wildcards(text)
    w = 0
    start = pos = 0
    sep_at = text.find(separator) if separator else -1
    nl_at = text.find("\n")

    def piece(lo: int, hi: int) -> tuple[int, int] | None:
        chunk = text[lo:hi]
        stripped = chunk.strip()
        if not stripped:
            return None
        lead = len(chunk) - len(chunk.lstrip())
        return lo + lead, lo + lead + len(stripped)

    while True:
        if sep_at != -1 and sep_at < pos:
            sep_at = text.find(separator, pos)
        if nl_at != -1 and nl_at < pos:
            nl_at = text.find("\n", pos)
        hits = [h for h in (sep_at, nl_at) if h != -1]
        if not hits:
            break
        hit = min(hits)
        while w < len(spans) and spans[w][1] <= hit:
            w += 1
        if w < len(spans) and spans[w][0] < hit:
            pos = spans[w][1]
            continue
        if (found := piece(start, hit)) is not None:
            yield found
        step = 1 if hit == nl_at else len(separator)
        start = pos = hit + step
    if (found := piece(start, len(text))) is not None:
        yield found


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    body = r"[\s_]+".join(re.escape(p) for p in re.split(r"[\s_]+", phrase.strip()))
    return re.compile(r"(?<![^\W_])" + body + r"(?![^\W_])", re.IGNORECASE)


def token_view(
    text: str,
    budget: TokenBudget,
    counter: TokenCounter,
    grammar: CaptionGrammar,
    *,
    phrases: Sequence[str] = (),
    inserted: Sequence[int] = (),
) -> dict[str, Any]:
    """Every tag of ``text`` with its first token, chunk, cut flag and repeat marks (JSON for the page).

    ``inserted`` lists tag indices that phrase repetition added.

    Examples:
        >>> from collage_ext.captions import clip_budget
        >>> words = lambda s: len(s.replace(",", " ").split())
        >>> view = token_view("a, b, c", clip_budget(None), words, CaptionGrammar())
        >>> [(t["text"], t["start"], t["chunk"]) for t in view["tags"]], view["total"]
        ([('a', 0, 0), ('b', 1, 0), ('c', 2, 0)], 3)
    """
    patterns = [_phrase_pattern(p) for p in phrases if p.strip() and p.strip() != KEEP_TOKENS]
    added = set(inserted)
    prefix = PrefixCounter(text, counter)
    tags = []
    cut_listed = more = 0
    for i, (lo, hi) in enumerate(iter_tag_spans(text, grammar.caption_separator)):
        if cut_listed >= LISTED_CUT_TAGS:  # the rest is past the budget too: count, do not list
            more = (
                1
                + text.count(grammar.caption_separator or "\n", hi)
                + (text.count("\n", hi) if grammar.caption_separator else 0)
            )
            break
        start, end = prefix.at(lo), prefix.at(hi)
        piece = text[lo:hi]
        cut = end > budget.max_tokens
        cut_listed += cut
        tags.append(
            {
                "text": piece,
                "start": start,
                "end": end,
                "chunk": start // budget.chunk,
                "cut": cut,
                "straddles": start // budget.chunk != max(start, end - 1) // budget.chunk,
                "phrase": any(p.search(piece) for p in patterns),
                "inserted": i in added,
            }
        )
    total, exact = prefix.upto(TOTAL_CAP * budget.max_tokens)
    shown = min(total, budget.max_tokens)
    chunks = [min(budget.chunk, max(0, shown - k * budget.chunk)) for k in range(max(1, -(-shown // budget.chunk)))]
    return {
        "kind": budget.kind,
        "max": budget.max_tokens,
        "chunk": budget.chunk,
        "total": total,
        "total_exact": exact,
        "chunks": chunks if budget.kind == "clip" else [shown],
        "overflow": max(0, total - budget.max_tokens),
        "tags": tags,
        "more_tags": more,
    }


def caption_view(
    caption: str,
    budget: TokenBudget,
    counter: TokenCounter,
    grammar: CaptionGrammar,
    phrases: Sequence[str],
    count: int,
) -> dict[str, Any]:
    """The token view of a source caption as phrase repetition would write it (copies marked ``inserted``)."""
    repeated = caption
    if phrases and len(caption) <= REPEAT_PREVIEW_CHARS and caption.strip() and "\n" not in caption.strip():
        repeated = repeat_phrases(caption, list(phrases), budget, counter, grammar, count=count)
    inserted: list[int] = []
    if repeated != caption:  # both within the budget here: a few hundred tags at most
        before = [caption[lo:hi] for lo, hi in iter_tag_spans(caption, grammar.caption_separator)]
        after = [repeated[lo:hi] for lo, hi in iter_tag_spans(repeated, grammar.caption_separator)]
        for op, _, _, j1, j2 in difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
            if op in ("insert", "replace"):
                inserted.extend(range(j1, j2))
    view = token_view(repeated, budget, counter, grammar, phrases=phrases, inserted=inserted)
    view["text"] = repeated
    view["repeated"] = repeated != caption
    return view
