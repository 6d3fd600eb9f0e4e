"""Caption settings for one subset: sd-scripts' grammar and the trainer's real tokenizer.

Phrase repetition needs real token positions. The trainer already holds its tokenizer: on main
through ``strategy_base.TokenizeStrategy.get_strategy()`` (set before the dataset is built), on
v0.9.1 as the ``tokenizer`` argument of the dataset class. Without one, a clearly-labelled
estimate is used and the log says so.
"""

from __future__ import annotations

import logging
from typing import Any

from collage_ext.captions import TokenBudget, TokenCounter, clip_budget, t5_budget
from collage_ext.captions.subset import check_caption_combination, grammar_of
from collage_ext.plan.collage import Collage
from collage_ext.core.config import CollageConfig
from collage_ext.core.types import Size
from collage_ext.kohya.runargs import RunArgs

logger = logging.getLogger(__name__)


def token_tools(run: RunArgs, tokenizer: Any) -> tuple[TokenBudget, TokenCounter | None]:
    """The token budget of the run's text encoder and a counter built from its real tokenizer."""
    strategy = _tokenize_strategy()
    if strategy is not None and hasattr(strategy, "t5xxl"):  # Flux / Chroma: T5 reads up to t5xxl_max_length
        return t5_budget(int(getattr(strategy, "t5xxl_max_length", 512) or 512)), _counter(strategy.t5xxl)
    budget = clip_budget(run.get("max_token_length"))
    if strategy is not None and hasattr(strategy, "tokenizer1"):
        return budget, _counter(strategy.tokenizer1)
    if strategy is not None and hasattr(strategy, "tokenizer"):
        return budget, _counter(strategy.tokenizer)
    first = tokenizer[0] if isinstance(tokenizer, (list, tuple)) and tokenizer else tokenizer
    return budget, _counter(first) if first is not None else None


def caption_setup(config: CollageConfig, frame: Size, subset: Any, run: RunArgs, tokenizer: Any) -> Collage:
    """A ``Collage`` for one subset, with its grammar, budget and (when repeating phrases) token counter."""
    check_caption_combination(config, subset, f"subset {getattr(subset, 'image_dir', '')!r}")
    budget, counter = token_tools(run, tokenizer) if config.repeat_phrases else (None, None)
    if config.repeat_phrases and counter is None:
        logger.warning("collage_ext: no trainer tokenizer found; phrase positions use a token ESTIMATE")
    return Collage(config, frame, grammar=grammar_of(subset), budget=budget, counter=counter)


def _tokenize_strategy() -> Any:
    try:
        from library import strategy_base  # type: ignore[import-not-found]
    except ImportError:  # v0.9.1 has no strategies
        return None
    return strategy_base.TokenizeStrategy.get_strategy()


class _Counter:
    """Counts tokens with a Hugging Face tokenizer, without BOS/EOS (picklable for DataLoader workers)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def _counter(tokenizer: Any) -> TokenCounter:
    return _Counter(tokenizer)
