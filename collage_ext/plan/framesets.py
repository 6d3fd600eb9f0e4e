"""The run's text encoder for the CLI: which token budget captions must fit and how tokens are counted.

``check``, ``preview``, ``export`` and the studio count caption tokens with this; the adapter takes
the trainer's own tokenizer (``sdscripts/captioning.py``). Which frames a run has is planned in
``plan.project`` / ``plan.subsets`` and listed in ``plan.jobs``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from collage_ext.captions import TokenBudget, TokenCounter, estimate_tokens
from collage_ext.kohya import families
from collage_ext.kohya.families import Family

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextEncoder:
    """The text encoder whose token budget captions must fit.

    Attributes:
        model: the family's name (``families.FAMILIES``: ``sdxl``, ``flux``, ``sd3`` ...).
        budget: CLIP chunks (``--max_token_length``) or the T5 length (``--t5xxl_max_token_length``).
        counter: counts tokens (a real tokenizer when one loads offline, else ``estimate_tokens``).
        exact: True when ``counter`` is the real tokenizer.
        family: the family's row in the table.
        why: how the family was recognised, for the log.
    """

    model: str
    budget: TokenBudget
    counter: TokenCounter
    exact: bool
    family: Family = field(default_factory=lambda: families.by_name(families.DEFAULT))
    why: str = ""

    @property
    def kind(self) -> str:
        """``CLIP`` or ``T5``."""
        tokenizer = self.family.tokenizer
        return tokenizer.label if tokenizer is not None else self.budget.kind.upper()

    @property
    def short(self) -> str:
        """E.g. ``CLIP, estimated``."""
        return f"{self.kind}, {'tokenizer' if self.exact else 'estimated'}"

    @property
    def label(self) -> str:
        """E.g. ``CLIP 225 tokens (estimate)``."""
        return f"{self.kind} {self.budget.max_tokens} tokens ({'tokenizer' if self.exact else 'estimate'})"

    @property
    def raise_hint(self) -> str:
        """How to read more tokens, for overflow messages (``""`` when the budget is the longest)."""
        tokenizer = self.family.tokenizer
        return tokenizer.raise_hint(self.budget) if tokenizer is not None else ""


def text_encoder_for(values: dict[str, Any], model: str = "auto") -> TextEncoder:
    """The token budget and counter of the run's text encoder, for the family ``model`` (``auto``: detected).

    The family table (``kohya.families``) says which tokenizer reads captions and how many tokens:
    ``max_token_length`` CLIP tokens (75 unless set) for SD/SDXL, ``t5xxl_max_token_length`` T5 tokens
    for the T5 families (else 512 for Flux dev and Chroma, 256 for Flux schnell and SD3). The real
    tokenizer is used when ``transformers`` is installed and has it locally (``tokenizer_cache_dir``
    or the Hugging Face cache); nothing is downloaded.

    Raises:
        CollageConfigError: an invalid ``max_token_length`` or ``t5xxl_max_token_length``, or a family
            collage_ext does not support (the trainer would refuse it too).
    """
    family, why = families.choose(values, model)
    budget = family.budget_for(values)
    tokenizer = family.tokenizer.load(values.get("tokenizer_cache_dir")) if family.tokenizer is not None else None
    if tokenizer is None:
        return TextEncoder(family.name, budget, estimate_tokens, False, family, why)
    return TextEncoder(family.name, budget, _HFCounter(tokenizer), True, family, why)


class _HFCounter:
    """Tokens of a text without BOS/EOS, with a Hugging Face tokenizer (as the adapter counts)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
