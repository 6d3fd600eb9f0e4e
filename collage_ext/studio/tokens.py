"""The token view of a caption: where each tag starts, which chunk reads it, what is cut, what is repeated.

CLIP reads 75-token chunks (``--max_token_length`` 75/150/225); T5 one sequence of 512 (or 256).
Tags are located by counting the tokens of the text before them with the run's counter (the real
tokenizer when one is installed locally, else the labelled estimate), so chunk boundaries fall
where the encoder puts them up to the tag. ``repeat_phrases`` (the same function the collage
caption uses) shows which phrases ``collage_repeat_phrases`` copies, and where.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any

from ..captions import CaptionGrammar, TokenBudget, TokenCounter, find_wildcards, repeat_phrases
from ..captions.repeat import KEEP_TOKENS


def tag_spans(text: str, separator: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every non-empty tag of ``text`` (separators outside wildcard braces, lines split).

    Examples:
        >>> tag_spans("a, red dress,, b", ",")
        [(0, 1), (3, 12), (15, 16)]
    """
    spans = find_wildcards(text)
    out: list[tuple[int, int]] = []
    start = pos = 0

    def add(lo: int, hi: int) -> None:
        piece = text[lo:hi]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            out.append((lo + lead, lo + len(piece.rstrip())))

    while pos < len(text):
        hit_sep = text.find(separator, pos) if separator else -1
        hit_nl = text.find("\n", pos)
        hits = [h for h in (hit_sep, hit_nl) if h != -1]
        if not hits:
            break
        hit = min(hits)
        inside = next((end for s, end in spans if s < hit < end), None)
        if inside is not None:
            pos = inside
            continue
        add(start, hit)
        step = 1 if hit == hit_nl else len(separator)
        start = pos = hit + step
    add(start, len(text))
    return out


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    body = r"[\s_]+".join(re.escape(p) for p in re.split(r"[\s_]+", phrase.strip()))
    return re.compile(r"(?<![^\W_])" + body + r"(?![^\W_])", re.IGNORECASE)


def token_view(text: str, budget: TokenBudget, counter: TokenCounter, grammar: CaptionGrammar, *,
               phrases: Sequence[str] = (), inserted: Sequence[int] = ()) -> dict[str, Any]:
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
    tags = []
    for i, (lo, hi) in enumerate(tag_spans(text, grammar.caption_separator)):
        start, end = counter(text[:lo]), counter(text[:hi])
        piece = text[lo:hi]
        tags.append({"text": piece, "start": start, "end": end, "chunk": start // budget.chunk,
                     "cut": end > budget.max_tokens, "straddles": start // budget.chunk != max(start, end - 1) // budget.chunk,
                     "phrase": any(p.search(piece) for p in patterns), "inserted": i in set(inserted)})
    total = counter(text)
    chunks = [min(budget.chunk, max(0, min(total, budget.max_tokens) - k * budget.chunk))
              for k in range(max(1, -(-min(total, budget.max_tokens) // budget.chunk)))]
    return {"kind": budget.kind, "max": budget.max_tokens, "chunk": budget.chunk, "total": total,
            "chunks": chunks if budget.kind == "clip" else [min(total, budget.max_tokens)],
            "overflow": max(0, total - budget.max_tokens), "tags": tags}


def caption_view(caption: str, budget: TokenBudget, counter: TokenCounter, grammar: CaptionGrammar,
                 phrases: Sequence[str], count: int) -> dict[str, Any]:
    """The token view of a source caption as phrase repetition would write it (copies marked ``inserted``)."""
    repeated = caption
    if phrases and caption.strip() and "\n" not in caption.strip():
        repeated = repeat_phrases(caption, list(phrases), budget, counter, grammar, count=count)
    before = [caption[lo:hi] for lo, hi in tag_spans(caption, grammar.caption_separator)]
    after = [repeated[lo:hi] for lo, hi in tag_spans(repeated, grammar.caption_separator)]
    inserted: list[int] = []
    for op, _, _, j1, j2 in difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
        if op in ("insert", "replace"):
            inserted.extend(range(j1, j2))
    view = token_view(repeated, budget, counter, grammar, phrases=phrases, inserted=inserted)
    view["text"] = repeated
    view["repeated"] = repeated != caption
    return view
