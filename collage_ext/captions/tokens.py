"""Token budgets of the text encoders, and token counting for caption reports and phrase repetition.

CLIP (SD 1.x / 2.x / SDXL) reads a caption in 75-token chunks: sd-scripts' ``--max_token_length``
(``None`` = 75, 150 or 225) sets how many, each chunk gets its own BOS/EOS, and SDXL's pooled
vector comes from the first chunk only. T5 (FLUX.1, SD3) reads one sequence of up to 256 or 512
tokens. Text beyond the budget is truncated, i.e. never trained on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from collage_ext.core.errors import CollageConfigError

__all__ = [
    "CLIP_CHUNK",
    "TokenBudget",
    "TokenCounter",
    "chunk_token_counts",
    "clip_budget",
    "estimate_tokens",
    "t5_budget",
]

#: Number of tokens a text encodes to, *excluding* BOS/EOS, e.g.
#: ``lambda s: len(tokenizer(s, add_special_tokens=False).input_ids)``.
TokenCounter = Callable[[str], int]

#: Content tokens per CLIP chunk (77 minus BOS and EOS).
CLIP_CHUNK = 75
_CLIP_LENGTHS = (75, 150, 225)

# CLIP's pre-tokenizer splits text into letter runs, single digits and punctuation runs (and drops
# whitespace); ``_`` counts as punctuation, so "looking_at_viewer" is five pieces.
_PIECES = re.compile(r"'(?:s|t|re|ve|m|ll|d)\b|[^\W\d_]+|\d|_|[^\w\s]", re.IGNORECASE)
# Common English words up to this many letters are one CLIP BPE token.
_LETTERS_PER_TOKEN = 8


def estimate_tokens(text: str) -> int:
    """ESTIMATE how many CLIP tokens ``text`` encodes to (BOS/EOS excluded) without a tokenizer.

    This is a heuristic for previews and tests, not a tokenizer: pass a real ``TokenCounter`` when
    positions must be exact. It counts one token per punctuation character, per digit and per ASCII
    word of up to 8 letters (one more per further 8 letters), and one per character of non-ASCII
    words. It errs HIGH for long common words (``photograph`` is one CLIP token, estimated as two)
    and punctuation runs (``...`` is one token), and LOW for rare or made-up words that BPE splits
    into several pieces (names, trigger words such as ``ohwx``). T5's SentencePiece splits
    differently again; the estimate is only in the right range for it.

    Examples:
        >>> estimate_tokens("1girl, red dress")
        5
        >>> estimate_tokens("looking_at_viewer")
        5
        >>> estimate_tokens("")
        0
    """
    total = 0
    for piece in _PIECES.findall(text):
        if piece.isascii():
            total += 1 + (len(piece) - 1) // _LETTERS_PER_TOKEN if piece.isalpha() else 1
        else:
            total += len(piece)
    return total


@dataclass(frozen=True, slots=True)
class TokenBudget:
    """How many caption tokens a text encoder reads, and in which chunks.

    Attributes:
        kind: ``"clip"`` (chunked, first chunk pooled) or ``"t5"`` (one sequence).
        max_tokens: tokens read before truncation (BOS/EOS excluded).
        chunk: tokens per chunk; ``75`` for CLIP, ``max_tokens`` for T5.

    Raises:
        CollageConfigError: for an unknown kind, a non-positive size, or a CLIP budget that is not
            a whole number of chunks.
    """

    kind: Literal["clip", "t5"]
    max_tokens: int
    chunk: int

    def __post_init__(self) -> None:
        """Reject impossible budgets when they are built, not when a caption is cut."""
        if self.kind not in ("clip", "t5"):
            msg = f"token budget kind must be 'clip' or 't5', got {self.kind!r}"
            raise CollageConfigError(msg)
        for name in ("max_tokens", "chunk"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"token budget {name} must be a positive integer, got {value!r}"
                raise CollageConfigError(msg)
        if self.kind == "clip" and self.max_tokens % self.chunk:
            msg = f"a CLIP token budget must be whole chunks, got max_tokens={self.max_tokens}, chunk={self.chunk}"
            raise CollageConfigError(msg)


def clip_budget(max_token_length: int | None) -> TokenBudget:
    """Return the CLIP budget for sd-scripts' ``--max_token_length``.

    Examples:
        >>> clip_budget(None)
        TokenBudget(kind='clip', max_tokens=75, chunk=75)
        >>> clip_budget(225).max_tokens
        225

    Raises:
        CollageConfigError: unless ``max_token_length`` is ``None``, 75, 150 or 225.
    """
    if max_token_length is None:
        return TokenBudget("clip", CLIP_CHUNK, CLIP_CHUNK)
    if isinstance(max_token_length, bool) or max_token_length not in _CLIP_LENGTHS:
        msg = f"max_token_length must be None, 75, 150 or 225, got {max_token_length!r}; e.g. --max_token_length 225"
        raise CollageConfigError(msg)
    return TokenBudget("clip", max_token_length, CLIP_CHUNK)


def t5_budget(max_tokens: int = 512) -> TokenBudget:
    """Return a T5 budget (FLUX.1 dev: 512, schnell: 256; SD3 ``--t5xxl_max_token_length``).

    Examples:
        >>> t5_budget()
        TokenBudget(kind='t5', max_tokens=512, chunk=512)

    Raises:
        CollageConfigError: when ``max_tokens`` is not a positive integer.
    """
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        msg = f"t5 max_tokens must be a positive integer, got {max_tokens!r}; e.g. --t5xxl_max_token_length 512"
        raise CollageConfigError(msg)
    return TokenBudget("t5", max_tokens, max_tokens)


def chunk_token_counts(caption: str, budget: TokenBudget, counter: TokenCounter) -> list[int]:
    """Return how many of the caption's tokens each chunk reads (CLIP), or ``[total]`` (T5).

    Counts stop at ``budget.max_tokens``: truncated tokens are in no chunk (compare
    ``counter(caption)`` with ``budget.max_tokens`` to report them). A CLIP caption always has at
    least one chunk, as in sd-scripts.

    Examples:
        >>> words = lambda s: len(s.split())
        >>> chunk_token_counts(" ".join(["w"] * 160), clip_budget(225), words)
        [75, 75, 10]
        >>> chunk_token_counts(" ".join(["w"] * 600), t5_budget(512), words)
        [512]
    """
    total = min(counter(caption), budget.max_tokens)
    if budget.kind == "t5":
        return [total]
    chunks = max(1, math.ceil(total / budget.chunk))
    return [min(budget.chunk, total - k * budget.chunk) for k in range(chunks)]
