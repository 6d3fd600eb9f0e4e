"""Token counting for phrase repetition with the trainer's real tokenizer.

Phrase repetition needs real token positions. The trainer already holds its tokenizer: on main in
the tokenize strategy it set before building the dataset (``seams.tokenize_strategy``), on v0.9.1
as the ``tokenizer`` argument of the dataset class; a script that sets its strategy later
(``flux_train.py``) gets the tokenizer its family's row names. Without one, a clearly-labelled
estimate is used and the log says so.
"""

from __future__ import annotations

import logging
from typing import Any

from collage_ext.captions import TokenBudget, TokenCounter
from collage_ext.core.config import CollageConfig
from collage_ext.kohya.runargs import RunArgs
from collage_ext.sdscripts import seams
from collage_ext.sdscripts.trainers import run_family

logger = logging.getLogger(__name__)


def token_tools(run: RunArgs, tokenizer: Any) -> tuple[TokenBudget, TokenCounter | None]:
    """The token budget of the run's text encoder and a counter built from its real tokenizer.

    The family comes from the family table (``trainers.run_family``), the same rows the CLI reads;
    a T5 length comes from the strategy itself (what it pads and truncates to), a CLIP length from
    ``--max_token_length`` (what the strategy was built from).
    """
    strategy = seams.tokenize_strategy()
    family, why = run_family(run.values, strategy)
    real, length = seams.strategy_tokens(strategy)
    budget = family.budget(length) if length is not None else family.budget_for(run.values)
    logger.debug(f"collage_ext: captions sized for {budget.max_tokens} tokens ({family.title}: {why})")
    if real is None:  # v0.9.1: the dataset class is handed the tokenizers
        real = tokenizer[0] if isinstance(tokenizer, (list, tuple)) and tokenizer else tokenizer
    if real is None and family.tokenizer is not None:
        # the script sets its strategy only after building the dataset (flux_train.py): load the tokenizer
        # it will load, from --tokenizer_cache_dir or the Hugging Face cache
        real = family.tokenizer.load(run.get("tokenizer_cache_dir"), download=True)
    return budget, _counter(real) if real is not None else None


def caption_tokens(
    config: CollageConfig, run: RunArgs, tokenizer: Any
) -> tuple[TokenBudget | None, TokenCounter | None]:
    """The token budget and counter a subset's phrase repetition uses (none without ``collage_repeat_phrases``)."""
    if not config.repeat_phrases:
        return None, None
    budget, counter = token_tools(run, tokenizer)
    if counter is None:
        logger.warning("collage_ext: no trainer tokenizer found; phrase positions use a token ESTIMATE")
    return budget, counter


class _Counter:
    """Counts tokens with a Hugging Face tokenizer, without BOS/EOS (picklable for DataLoader workers)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def _counter(tokenizer: Any) -> TokenCounter:
    return _Counter(tokenizer)
